"""The job layer against real Pebble: what happens to the store and to the
challenges when an attempt fails.  Driven through the CLI (`issue`/`renew`),
which runs common/job.c's blocking path."""
import os

from clihelp import cert_file, issue, stored_meta
from util import run_cli


def _hook_with_wrong_value(directory, pebble, log_path):
    """A dns-01 hook that 'succeeds' but publishes a wrong TXT value, so
    Pebble's validation fails after setup; it logs every call."""
    path = os.path.join(directory, "wrong-hook.py")
    with open(path, "w") as f:
        f.write(f"""#!/usr/bin/python3
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
host = name if name.endswith(".") else name + "."
if action == "setup":
    body, p = {{"host": host, "value": "not-" + value}}, "/set-txt"
else:
    body, p = {{"host": host}}, "/clear-txt"
req = urllib.request.Request({pebble.chall_url!r} + p, data=json.dumps(body).encode(),
                             method="POST")
urllib.request.urlopen(req, timeout=10).read()
with open({log_path!r}, "a") as log:
    log.write(f"{{action}} {{name}} {{value}}\\n")
""")
    os.chmod(path, 0o755)
    return path


def test_failed_validation_tears_down_every_challenge(pebble, tmp_path):
    store = str(tmp_path / "store")
    log = str(tmp_path / "hook.log")
    hook = _hook_with_wrong_value(str(tmp_path), pebble, log)
    names = ["tear.job.test", "www.tear.job.test"]
    proc = issue(pebble, store, *names, challenge="dns-01",
                 extra=["--dns-hook", hook], check=False)
    assert proc.returncode != 0
    with open(log) as f:
        calls = [tuple(line.split()) for line in f]
    setups = {(c[1], c[2]) for c in calls if c[0] == "setup"}
    teardowns = {(c[1], c[2]) for c in calls if c[0] == "teardown"}
    assert setups, "the hook was never asked to publish"
    # every published record is withdrawn, with the same name and value
    assert setups <= teardowns
    assert not os.path.exists(cert_file(store, "tear.job.test"))
    meta = stored_meta(store, "tear.job.test")
    assert meta["state"] == "failed"
    assert meta["failures"] == 1
    assert meta["last_error"].startswith("urn:ietf:params:acme:error:")


def test_failed_renewal_keeps_the_certificate(pebble_factory, tmp_path):
    ca = pebble_factory()
    store = str(tmp_path / "store")
    issue(ca, store, "keep.job.test")
    path = cert_file(store, "keep.job.test")
    with open(path, "rb") as f:
        before = f.read()
    meta = stored_meta(store, "keep.job.test")
    assert meta["state"] == "valid" and meta["failures"] == 0
    generation = meta["generation"]

    ca.stop()
    proc = run_cli("renew", "--store", store, "--listen-address", "127.0.0.1",
                   "keep.job.test", check=False)
    assert proc.returncode != 0

    with open(path, "rb") as f:
        assert f.read() == before
    meta = stored_meta(store, "keep.job.test")
    assert meta["failures"] == 1
    assert meta["state"] == "failed"
    assert meta["last_error"].startswith("autotls:transport: ")
    assert meta["next_attempt"]
    assert meta["generation"] == generation

    proc = run_cli("renew", "--store", store, "--listen-address", "127.0.0.1",
                   "keep.job.test", check=False)
    assert proc.returncode != 0
    assert stored_meta(store, "keep.job.test")["failures"] == 2
    with open(path, "rb") as f:
        assert f.read() == before


def test_renewal_replaces_the_certificate(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "renew.job.test")
    path = cert_file(store, "renew.job.test")
    with open(path, "rb") as f:
        before = f.read()
    generation = stored_meta(store, "renew.job.test")["generation"]

    run_cli("renew", "--store", store, "--listen-address", "127.0.0.1",
            "--http-port", pebble.http_port, "renew.job.test")
    with open(path, "rb") as f:
        after = f.read()
    assert after != before
    meta = stored_meta(store, "renew.job.test")
    assert meta["state"] == "valid"
    assert meta["failures"] == 0
    assert meta.get("last_error") is None
    assert meta["generation"] == generation + 1
    assert meta["renew_at"]
