"""`autotls audit`: the store's audit trail read back across its rotated
files, oldest first, filtered by name and time, readable or as stored."""
import datetime
import json
import os

import pytest

from util import run_cli


def ago(hours):
    t = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=hours)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


SERVER = {"kind": "server", "software": "nginx/1.22.1", "pid": 1234}
CLI = {"kind": "cli", "software": "autotls/0.1.0", "pid": 99, "uid": 0, "user": "root"}


def record(event, hours, cert_id, **extra):
    rec = {"event": event, "time": ago(hours), "id": cert_id, "names": [cert_id, "www." + cert_id],
           "source": "managed", "outcome": "ok", "server": "web1", "actor": SERVER}
    rec.update(extra)
    return rec


def seed(store):
    """audit.log.2 (oldest) .. audit.log (newest), as rotation leaves them."""
    files = {
        "audit.log.2": [record("obtained", 50, "a.test", key_type="ec256", serial="01ab")],
        "audit.log.1": [record("renewal-requested", 30, "a.test", actor=CLI)],
        "audit.log": [record("renewed", 3, "a.test", key_type="ec256", serial="02cd",
                             old_serial="01ab"),
                      record("failed", 1, "b.test", outcome="error",
                             error={"class": "retry-later",
                                    "type": "urn:ietf:params:acme:error:rateLimited",
                                    "detail": "slow\x1b[2J down", "attempt": 2})],
    }
    os.makedirs(store, mode=0o700)
    lines = {}
    for name, recs in files.items():
        lines[name] = [json.dumps(r, separators=(",", ":")) for r in recs]
        with open(os.path.join(store, name), "w") as f:
            f.write("".join(line + "\n" for line in lines[name]))
        os.chmod(os.path.join(store, name), 0o600)
    return lines["audit.log.2"] + lines["audit.log.1"] + lines["audit.log"]


def rows(stdout):
    out = stdout.splitlines()
    assert out[0].split() == ["TIME", "EVENT", "ID", "KEY", "SERIAL", "ACTOR", "OUTCOME"]
    return out[1:]


def test_audit_oldest_first_readable(tmp_path):
    store = str(tmp_path / "store")
    seed(store)
    out = rows(run_cli("audit", "--store", store).stdout)
    assert [line.split()[1] for line in out] == ["obtained", "renewal-requested", "renewed",
                                                  "failed"]
    assert "server nginx/1.22.1 pid 1234" in out[0]
    assert "cli root (uid 0) pid 99" in out[1]
    assert "02cd" in out[2] and "(replaces 01ab)" in out[2]
    assert "urn:ietf:params:acme:error:rateLimited" in out[3]
    # text from the store never reaches the terminal raw
    assert "\x1b" not in out[3] and "\\x1b" in out[3]


def test_audit_filters_and_json(tmp_path):
    store = str(tmp_path / "store")
    lines = seed(store)
    # a name among the names, any case; the id
    by_name = rows(run_cli("audit", "--store", store, "--name", "WWW.a.test").stdout)
    assert [line.split()[1] for line in by_name] == ["obtained", "renewal-requested", "renewed"]
    assert len(rows(run_cli("audit", "--store", store, "--name", "b.test").stdout)) == 1
    # a duration back from now, and an RFC 3339 time
    recent = run_cli("audit", "--store", store, "--since", "40h", "--json").stdout
    assert recent.splitlines() == lines[1:]
    since = run_cli("audit", "--store", store, "--since", ago(4), "--name", "a.test").stdout
    assert [line.split()[1] for line in rows(since)] == ["renewed"]
    assert run_cli("audit", "--store", store, "--since", ago(2), "--name", "a.test",
                   "--json").stdout == ""
    # the records exactly as stored
    assert run_cli("audit", "--store", store, "--json").stdout.splitlines() == lines
    none = run_cli("audit", "--store", store, "--name", "nothing.test").stdout
    assert none.strip() == "no audit record matches"


def test_audit_bad_since_and_torn_line(tmp_path):
    store = str(tmp_path / "store")
    lines = seed(store)
    proc = run_cli("audit", "--store", store, "--since", "yesterday", check=False)
    assert proc.returncode == 2
    assert "--since" in proc.stderr and "yesterday" in proc.stderr
    with open(os.path.join(store, "audit.log"), "a") as f:
        f.write('{"event":"obt')            # a record cut by a full disk
    proc = run_cli("audit", "--store", store, "--json")
    assert proc.stdout.splitlines() == lines
    assert "1 line(s) that are not a JSON record skipped" in proc.stderr


def test_audit_json_never_passes_terminal_codes(tmp_path):
    """A line the worker planted: valid JSON, but with a bare CR between
    members (it would overwrite what the terminal shows) and a UTF-8 C1
    control (CSI): printed as the same record, escaped."""
    store = str(tmp_path / "store")
    seed(store)
    with open(os.path.join(store, "audit.log"), "ab") as f:
        f.write(b'{"event":"revoked",\r"id":"c.test","detail":"x\xc2\x9b2J"}\n')
    out = run_cli("audit", "--store", store, "--json").stdout
    assert "\r" not in out and "\u009b" not in out
    last = out.splitlines()[-1]
    assert json.loads(last) == {"event": "revoked", "id": "c.test", "detail": "x\u009b2J"}
    assert last.isascii()


def test_audit_empty_store(tmp_path):
    proc = run_cli("audit", "--store", str(tmp_path / "store"))
    assert proc.stdout.strip() == "no audit records"


def test_audit_root_on_worker_store(test_root):
    """Root reads a store the worker user owns as that user (the CLI drops
    to the owner before it opens the store)."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    store = os.path.join(test_root, "store")
    lines = seed(store)
    for root, dirs, files in os.walk(store):
        for name in [root] + [os.path.join(root, f) for f in files]:
            os.chown(name, 65534, 65534)
    assert run_cli("audit", "--store", store, "--json").stdout.splitlines() == lines
