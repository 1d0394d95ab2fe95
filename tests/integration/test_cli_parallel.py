"""Many certificates at once against a real Pebble: `autotls issue --each`
and `autotls renew --all` run the core's concurrent driver
(atls_job_run_many) with shared standalone responders."""
import os

from clihelp import issue, issue_args, stored_chain, stored_meta
from util import cert_info, run_cli, verify_chain


def check_chain(pebble, store, name):
    chain = stored_chain(store, name)
    info = cert_info(chain[0])
    assert info["names"] == [name]
    assert not info["self_signed"]
    assert verify_chain(chain, pebble.roots_pem()), name
    return info


def test_issue_each_http01_ten(pebble, tmp_path):
    store = str(tmp_path / "store")
    names = [f"p{i}.each.test" for i in range(10)]
    proc = issue(pebble, store, *names, extra=["--each", "--parallel", "5"])
    serials = set()
    for name in names:
        info = check_chain(pebble, store, name)
        serials.add(info["serial"])
        assert info["serial"] in proc.stdout
        meta = stored_meta(store, name)
        assert meta["state"] == "valid"
        assert meta["names"] == [name]
    assert len(serials) == 10, "one certificate per name"
    assert "10 of 10 certificates obtained" in proc.stdout

    # nothing due: a second run leaves every certificate alone
    proc = issue(pebble, store, *names, extra=["--each"])
    assert proc.stdout.count("not yet due") == 10
    for name in names:
        assert cert_info(stored_chain(store, name)[0])["serial"] in serials


def write_logging_hook(directory, pebble, log_path, fail_prefix):
    """dns-01 hook: publishes through challtestsrv (a wrong value for names
    starting with fail_prefix, so that their validation fails after the
    challenge was published) and logs every call in call order."""
    path = os.path.join(directory, "hook.py")
    with open(path, "w") as f:
        f.write(f"""#!/usr/bin/python3
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
host = name if name.endswith(".") else name + "."
if action == "setup" and host.startswith("_acme-challenge.{fail_prefix}"):
    value = "wrong-" + value
body = {{"host": host, "value": value}} if action == "setup" else {{"host": host}}
path = "/set-txt" if action == "setup" else "/clear-txt"
req = urllib.request.Request({pebble.chall_url!r} + path, data=json.dumps(body).encode(),
                             method="POST")
urllib.request.urlopen(req, timeout=10).read()
with open({log_path!r}, "a") as log:
    log.write(f"{{action}} {{name.rstrip('.')}}\\n")
""")
    os.chmod(path, 0o755)
    return path


def test_each_bounded_concurrency_and_isolated_failure(pebble, tmp_path):
    store = str(tmp_path / "store")
    log = str(tmp_path / "hook.log")
    hook = write_logging_hook(str(tmp_path), pebble, log, "bad")
    good = [f"g{i}.dns-each.test" for i in range(7)]
    bad = "bad.dns-each.test"
    names = good[:3] + [bad] + good[3:]
    proc = run_cli(*issue_args(pebble, store, *names, challenge="dns-01",
                               extra=["--dns-hook", hook, "--each", "--parallel", "3"]),
                   check=False)
    assert proc.returncode == 1, proc.stderr
    assert "7 of 8 certificates obtained" in proc.stdout

    # the failure did not stop the others
    for name in good:
        check_chain(pebble, store, name)
    # ... and was recorded as job state, with a backoff
    meta = stored_meta(store, bad)
    assert meta["state"] == "failed"
    assert meta["failures"] == 1
    assert "urn:ietf:params:acme:error" in meta["last_error"]
    assert not os.path.exists(os.path.join(store, "certs", bad, "ec256.pem"))
    assert f"issue {bad} (ec256):" in proc.stderr

    with open(log) as f:
        calls = [line.split() for line in f]
    published, peak = set(), 0
    for action, name in calls:
        if action == "setup":
            assert name not in published
            published.add(name)
            peak = max(peak, len(published))
        else:
            published.discard(name)
    # every record was withdrawn, the failed order's too
    assert published == set()
    assert ("teardown", "_acme-challenge." + bad) in [tuple(c) for c in calls]
    assert sum(1 for c in calls if c[0] == "setup") == 8
    # never more than --parallel orders at a time (that they overlap at all
    # depends on how fast Pebble validates; test_job_multi proves the overlap
    # deterministically)
    assert 1 <= peak <= 3, calls


def test_renew_all_renews_only_due(pebble, tmp_path):
    store = str(tmp_path / "store")
    names = [f"r{i}.renew-all.test" for i in range(4)]
    issue(pebble, store, *names, extra=["--each"])
    before = {n: check_chain(pebble, store, n)["serial"] for n in names}

    proc = run_cli("renew", "--store", store, "--all")
    assert "no certificate" in proc.stdout and "due" in proc.stdout

    for n in names[:3]:
        run_cli("renew", "--store", store, "--request", n)
    proc = run_cli("renew", "--store", store, "--all", "--parallel", "2",
                   "--listen-address", "127.0.0.1")
    assert "3 of 3 certificates obtained" in proc.stdout
    for n in names[:3]:
        assert check_chain(pebble, store, n)["serial"] != before[n]
        assert not os.path.exists(os.path.join(store, "requests", n))
        assert stored_meta(store, n)["state"] == "valid"
    assert check_chain(pebble, store, names[3])["serial"] == before[names[3]]

    # consumed: nothing is due any more
    proc = run_cli("renew", "--store", store, "--all")
    assert "no certificate" in proc.stdout


def test_parallel_usage_errors(tmp_path):
    store = str(tmp_path / "store")
    proc = run_cli("renew", "--store", store, "--all", "x.test", check=False)
    assert proc.returncode == 2 and "takes no NAME" in proc.stderr
    proc = run_cli("renew", "--store", store, "--all", "--key", "ec384", check=False)
    assert proc.returncode == 2 and "--all" in proc.stderr
    proc = run_cli("renew", "--store", store, "--parallel", "2", "x.test", check=False)
    assert proc.returncode == 2 and "--parallel goes with --all" in proc.stderr
    proc = run_cli("renew", "--store", store, "--all", "--parallel", "0", check=False)
    assert proc.returncode == 2 and "--parallel" in proc.stderr
    proc = run_cli("issue", "--directory", "https://127.0.0.1:1/dir", "--store", store,
                   "--agree-tos", "--parallel", "2", "x.test", check=False)
    assert proc.returncode == 2 and "--parallel goes with --each" in proc.stderr
