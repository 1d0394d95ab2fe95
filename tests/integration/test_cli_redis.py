"""The autotls CLI against a Redis store (issue 12): migrate a store from a
directory into a real redis-server and back, list/show/renew --request/audit
on Redis, rekey, and the errors for a wrong key file or password."""
import json
import os
import shutil
import stat

import pytest

from clihelp import cert_file, issue, mode, stored_chain
from redisctl import Redis, key_file, store_spec
from util import cert_info, run_cli


@pytest.fixture
def redis(tmp_path):
    r = Redis(tmp_path / "redis")
    try:
        r.start()
        yield r
    finally:
        r.stop()    # by PID, also when it never answered PING


def spec(redis, key, password=None):
    """The --store of this file's certificates (prefix cli:)."""
    return store_spec(redis, key, password, prefix="cli:")


def key_body_lines(pem_path):
    """The base64 lines of the private key block in a key+chain file."""
    lines, inside = [], False
    with open(pem_path) as f:
        for line in f:
            if "PRIVATE KEY-----" in line:
                inside = "BEGIN" in line
                continue
            if inside:
                lines.append(line.strip().encode())
    assert lines
    return lines


def redis_gen(redis, cert_id):
    """The certificate's generation in Redis, that the nodes' mirrors follow."""
    out = redis.cli("GET", f"cli:{{{cert_id}}}:gen").stdout.strip()
    return int(out) if out else 0


def same_bytes(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def serials(store):
    doc = json.loads(run_cli("list", "--store", store, "--json").stdout)
    return {c["id"]: [k["serial"] for k in c["keys"]] for c in doc["certificates"]}


def test_migrate_to_redis_and_back(pebble, redis, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "mig.redis.test", "www.mig.redis.test")
    issue(pebble, store, "two.redis.test", extra=["--key", "rsa2048"])
    key = key_file(tmp_path / "redis.key")
    rs = spec(redis, key)

    out = run_cli("migrate", "--from", store, "--to", rs).stdout
    assert " 0 failed" in out, out
    # list and show from Redis give the same certificates
    assert serials(rs) == serials(store)
    leaf = cert_info(stored_chain(store, "mig.redis.test")[0])
    shown = run_cli("show", "--store", rs, "www.mig.redis.test").stdout
    assert leaf["serial"] in shown and "mig.redis.test" in shown
    assert key not in shown and "PRIVATE" not in shown

    # no private key in clear in any Redis value
    values = redis.values()
    assert any(k.startswith(b"cli:") for k in values)
    secret_lines = (key_body_lines(cert_file(store, "mig.redis.test"))
                    + key_body_lines(cert_file(store, "two.redis.test", "rsa2048")))
    for k, v in values.items():
        assert b"PRIVATE KEY" not in v, k
        for line in secret_lines:
            assert line not in v, k

    # each certificate copied was announced to the nodes
    gens = {c: redis_gen(redis, c) for c in ("mig.redis.test", "two.redis.test")}
    assert all(g >= 1 for g in gens.values()), gens

    # a second run changes nothing
    again = run_cli("migrate", "--from", store, "--to", rs).stdout
    assert " 0 copied" in again and " 0 failed" in again, again
    assert {c: redis_gen(redis, c) for c in gens} == gens

    # back into an empty directory: the same files, private modes
    back = str(tmp_path / "back")
    out = run_cli("migrate", "--from", rs, "--to", back).stdout
    assert " 0 failed" in out, out
    for cid, kt in (("mig.redis.test", "ec256"), ("two.redis.test", "rsa2048")):
        dst = cert_file(back, cid, kt)
        assert same_bytes(cert_file(store, cid, kt), dst)
        assert mode(dst) == 0o600
        assert mode(os.path.dirname(dst)) == 0o700
        assert same_bytes(os.path.join(store, "certs", cid, "meta.json"),
                          os.path.join(back, "certs", cid, "meta.json"))
    for dirpath, dirnames, filenames in os.walk(back):
        assert mode(dirpath) == 0o700, dirpath
        assert "redis-key-check" not in filenames
    accounts = os.path.join(back, "accounts")
    for dirpath, _, filenames in os.walk(accounts):
        for name in filenames:
            if name == "account.key":
                assert mode(os.path.join(dirpath, name)) == 0o600
    assert serials(back) == serials(store)
    # the audit trail came along
    trail = run_cli("audit", "--store", back).stdout
    assert "mig.redis.test" in trail


def in_redis(pebble, redis, tmp_path, name):
    """A certificate issued into a directory store, migrated to Redis."""
    store = str(tmp_path / "store")
    issue(pebble, store, name)
    rs = spec(redis, key_file(tmp_path / "redis.key"))
    run_cli("migrate", "--from", store, "--to", rs)
    return store, rs


def test_target_newer_certificate_is_kept(pebble, redis, tmp_path):
    store, rs = in_redis(pebble, redis, tmp_path, "keep.redis.test")
    # the fs copy is older than what Redis holds after a renewal there
    old = str(tmp_path / "old")
    shutil.copytree(store, old)
    gen = redis_gen(redis, "keep.redis.test")
    run_cli("renew", "--store", rs, "--http-port", pebble.http_port,
            "--listen-address", "127.0.0.1", "--ca-file", pebble.ca_file,
            "keep.redis.test")
    renewed = serials(rs)
    assert redis_gen(redis, "keep.redis.test") > gen
    assert renewed != serials(old)
    out = run_cli("migrate", "--from", old, "--to", rs, "-v").stdout
    assert "kept     certs/keep.redis.test/" in out, out
    assert serials(rs) == renewed


def test_rekey(pebble, redis, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "rekey.redis.test")
    old_key = key_file(tmp_path / "old.key", "11")
    new_key = key_file(tmp_path / "new.key", "22")
    run_cli("migrate", "--from", store, "--to", spec(redis, old_key))
    before = redis.values()

    out = run_cli("rekey", "--store", spec(redis, old_key), "--new-key", new_key).stdout
    assert " 0 failed" in out, out
    after = redis.values()
    pem_key = b"cli:{rekey.redis.test}:v:certs/rekey.redis.test/ec256.pem"
    assert before[pem_key] != after[pem_key]

    # the old key file no longer opens the store; the error names it
    proc = run_cli("list", "--store", spec(redis, old_key), check=False)
    assert proc.returncode == 1
    assert old_key in proc.stderr and "not the key" in proc.stderr, proc.stderr
    # a second run finds everything done (and would re-seal what a node
    # wrote with the old key meanwhile)
    again = run_cli("rekey", "--store", spec(redis, old_key), "--new-key", new_key).stdout
    assert ": 0 re-sealed" in again and " 0 failed" in again, again
    # key files that are neither are refused before anything is touched
    third, fourth = key_file(tmp_path / "3.key", "33"), key_file(tmp_path / "4.key", "44")
    proc = run_cli("rekey", "--store", spec(redis, third), "--new-key", fourth, check=False)
    assert proc.returncode == 1 and "neither" in proc.stderr and fourth in proc.stderr
    assert redis.values() == after
    # the new one does, private values included
    assert serials(spec(redis, new_key)) == serials(store)
    back = str(tmp_path / "back")
    run_cli("migrate", "--from", spec(redis, new_key), "--to", back)
    assert same_bytes(cert_file(store, "rekey.redis.test"),
                      cert_file(back, "rekey.redis.test"))


def test_wrong_key_file_and_bad_specs(redis, tmp_path):
    key = key_file(tmp_path / "a.key", "33")
    run_cli("list", "--store", spec(redis, key))       # seals the key check
    other = key_file(tmp_path / "b.key", "44")
    proc = run_cli("list", "--store", spec(redis, other), check=False)
    assert proc.returncode == 1
    assert other in proc.stderr and "not the key" in proc.stderr, proc.stderr

    loose = key_file(tmp_path / "loose.key")
    os.chmod(loose, 0o644)
    proc = run_cli("list", "--store", spec(redis, loose), check=False)
    assert proc.returncode == 1 and loose in proc.stderr and "0600" in proc.stderr

    proc = run_cli("list", "--store", f"redis://127.0.0.1:{redis.port}/0", check=False)
    assert proc.returncode == 1 and "key_file" in proc.stderr

    proc = run_cli("list", "--store", "http://127.0.0.1/store", check=False)
    assert proc.returncode == 1 and "unknown scheme" in proc.stderr


def test_wrong_password_is_not_echoed(tmp_path):
    r = Redis(tmp_path / "redis", password="right-horse-battery")
    try:
        r.start()
        key = key_file(tmp_path / "redis.key")
        assert run_cli("list", "--store", spec(r, key, "right-horse-battery")).returncode == 0
        proc = run_cli("list", "--store", spec(r, key, "wrong-secret-771"), check=False)
        assert proc.returncode == 1
        assert "wrong-secret-771" not in proc.stderr + proc.stdout
        assert "password" in proc.stderr and "AUTH" in proc.stderr, proc.stderr
    finally:
        r.stop()


def test_renew_request_seen_by_another_invocation(pebble, redis, tmp_path):
    _, rs = in_redis(pebble, redis, tmp_path, "req.redis.test")

    out = run_cli("renew", "--store", rs, "--request", "req.redis.test").stdout
    assert "requested" in out
    assert "redis://127.0.0.1" in out
    # a second invocation (another process, another connection) sees it
    assert redis.cli("EXISTS", "cli:{/requests}:v:requests/req.redis.test").stdout.strip() \
        == b"1"
    trail = run_cli("audit", "--store", rs, "--name", "req.redis.test").stdout
    assert "renewal-requested" in trail
    # and migrating back carries the request into the directory
    back = str(tmp_path / "back")
    run_cli("migrate", "--from", rs, "--to", back)
    assert os.path.exists(os.path.join(back, "requests", "req.redis.test"))
    assert stat.S_IMODE(os.stat(back).st_mode) == 0o700


def test_issue_and_revoke_directly_on_redis(pebble, redis, tmp_path):
    rs = spec(redis, key_file(tmp_path / "redis.key"))
    issue(pebble, rs, "direct.redis.test")
    keys = serials(rs)["direct.redis.test"]
    assert len(keys) == 1
    assert b"PRIVATE KEY" not in b"".join(redis.values().values())
    gen = redis_gen(redis, "direct.redis.test")
    assert gen >= 1
    out = run_cli("revoke", "--store", rs, "--reason", "superseded", "direct.redis.test")
    assert redis_gen(redis, "direct.redis.test") > gen
    assert f"revoked direct.redis.test ec256 serial {keys[0]}" in out.stdout, out.stdout
    shown = run_cli("show", "--store", rs, "direct.redis.test").stdout
    assert "revoked" in shown, shown
    assert "revoked" in run_cli("audit", "--store", rs).stdout


def test_migrate_reports_a_tampered_value(pebble, redis, tmp_path):
    _, rs = in_redis(pebble, redis, tmp_path, "bad.redis.test")
    pem = "cli:{bad.redis.test}:v:certs/bad.redis.test/ec256.pem"
    sealed = redis.cli("GET", pem).stdout
    assert sealed
    redis.cli("SETRANGE", pem, "30", "XXXX")
    proc = run_cli("migrate", "--from", rs, "--to", str(tmp_path / "back"), check=False)
    assert proc.returncode == 1
    assert pem in proc.stderr and "failed authentication" in proc.stderr, proc.stderr
    assert " 1 failed" in proc.stdout, proc.stdout


LOG_PATHS = ("audit.log", "changes.log", "names-journal")


def test_migrate_leaves_no_log_as_a_plain_value(pebble, redis, tmp_path):
    """The change journal is an append-only log (a LIST in Redis), numbered
    by the source's generations: migrate must not copy it as a string, or
    every later bump on the target fails with "not a log (wrong type)"."""
    store = str(tmp_path / "store")
    issue(pebble, store, "journal.redis.test")
    assert os.path.exists(os.path.join(store, "changes.log"))   # something to migrate
    rs = spec(redis, key_file(tmp_path / "redis.key"))
    out = run_cli("migrate", "--from", store, "--to", rs).stdout
    assert " 0 failed" in out, out

    def log_keys():
        keys = filter(None, redis.cli("--scan", "--pattern", "cli:*:v:*").stdout.split(b"\n"))
        return {k: redis.cli("TYPE", k).stdout.strip() for k in keys
                if k.split(b":v:", 1)[1].decode().removesuffix(".1") in LOG_PATHS}
    kinds = log_keys()
    assert b"cli:{/audit.log}:v:audit.log" in kinds, kinds        # the check sees logs
    assert all(kind == b"list" for kind in kinds.values()), kinds

    # the target journals its own bumps: a deploy on Redis appends to it, no
    # wrong-type warning, and the journal reads back as its lines
    proc = issue(pebble, rs, "after.redis.test")
    assert "wrong type" not in proc.stderr and "not a log" not in proc.stderr, proc.stderr
    kinds = log_keys()
    journal = b"cli:{/changes.log}:v:changes.log"
    assert kinds.get(journal) == b"list", kinds
    lines = redis.cli("LRANGE", journal, "0", "-1").stdout
    assert b"after.redis.test" in lines and b"journal.redis.test" not in lines, lines
