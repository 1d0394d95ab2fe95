"""mod_autotls on a Redis store (issue 12, AutoTLSStore redis://...): one
Apache node with a real redis-server on loopback and Pebble.  The
certificate is ordered through Redis and served from the node's mirror;
Redis holds no private key in clear; a deploy another node announces is
served live; Redis stopped (or a wrong password) leaves the node serving
its mirror, with the error naming AutoTLSStore; Redis restarted empty is
repopulated from the mirror."""
import os
import pwd
import stat
import subprocess

import pytest

import procs
from apachectl import port_open
from apache_helpers import apache_factory, assert_no_restart, served, wait_issued  # noqa: F401
from clihelp import issue
from redisctl import Redis, key_file, store_spec
from util import free_port, run_cli, stays, wait_until

PASSWORD = "s3cret-Pw-apache"
PREFIX = "ap:"


@pytest.fixture
def redis(test_root):
    r = Redis(os.path.join(test_root, "redis"), password=PASSWORD)
    try:
        r.start()
        yield r
    finally:
        r.stop()    # by PID, also when it never answered PING


@pytest.fixture
def tls_redis(test_root):
    """A redis-server speaking TLS only, with a self-signed certificate no
    node trusts; yields its port."""
    d = os.path.join(test_root, "redis-tls")
    os.makedirs(d)
    crt, key = os.path.join(d, "server.crt"), os.path.join(d, "server.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", crt], check=True, capture_output=True)
    port = free_port()
    proc = procs.spawn(["/usr/bin/redis-server", "--bind", "127.0.0.1", "--port", "0",
                        "--tls-port", str(port), "--tls-cert-file", crt,
                        "--tls-key-file", key, "--tls-auth-clients", "no",
                        "--save", "", "--appendonly", "no", "--dir", d],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: proc.poll() is None and port_open(port), timeout=30,
                   what="redis-server listening with TLS")
        yield port
    finally:
        procs.stop(proc)


def node_key(test_root):
    """The key file every node holds, readable by the children's user (who
    runs the renewal driver): 0600, owned by www-data when Apache runs as
    root."""
    path = key_file(os.path.join(test_root, "redis.key"))
    if os.geteuid() == 0:
        pw = pwd.getpwnam("www-data")
        os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def store_line(redis, key, password=PASSWORD):
    return "AutoTLSStore " + store_spec(redis, key, password=password, prefix=PREFIX)


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def private_files(store):
    out = []
    for d, _, files in os.walk(store):
        for f in files:
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                if b"PRIVATE KEY" in fh.read():
                    out.append(p)
    return out


def redis_gen(redis, cert_id):
    v = redis.get(f"{PREFIX}{{{cert_id}}}:gen")
    return int(v) if v else 0


def test_issued_through_redis_served_live_and_through_outages(pebble, redis, apache_factory,  # noqa: F811
                                                              test_root, tmp_path):
    name = "node.redis.apache.test"
    # a certificate another node will deploy later, ordered now, while
    # Pebble's validation ports are free (the CLI answers them itself)
    other = str(tmp_path / "other-node")
    issue(pebble, other, name)

    alpn = "alpn.redis.apache.test"     # tls-alpn-01 answers are sealed in Redis
    key = node_key(test_root)
    # autotls at debug: the challenge acks' polling is logged
    apache = apache_factory(pebble, [[name], [alpn]],
                            global_extra=store_line(redis, key) + "\nLogLevel info autotls:debug",
                            host_extra={alpn: "AutoTLSChallenges tls-alpn-01"}).start()
    parent = apache.pid
    _, first = wait_issued(apache, pebble, name)
    wait_issued(apache, pebble, alpn)
    # the CA was asked to validate once this node (the only live one) acked
    # each answer, the acks polled every 100 ms by the driver's loop (its
    # own pace is 500 ms)
    for kind, key_re in (("http-01", r"\S+"), ("tls-alpn-01", alpn.replace(".", r"\."))):
        apache.wait_log(rf"AutoTLSStore: {kind} {key_re}: loaded by every live node "
                        r"\(acks polled \d+ time\(s\) in \d+ ms, every 100 ms\)")
    apache.wait_log(r"AutoTLSStore redis://127\.0\.0\.1:\d+/0: node \S+ synced its mirror")

    # ordered through Redis: meta, sealed key, generation there
    assert redis.get(f"{PREFIX}{{{name}}}:v:certs/{name}/meta.json").startswith(b"p")
    assert redis_gen(redis, name) >= 1
    assert redis.cli("ZCARD", f"{PREFIX}{{/cluster}}:members").stdout.strip() == b"1"
    assert redis.clear_text_keys() == []
    # the mirror: private files 0600 in 0700 directories
    secrets = private_files(apache.store)
    assert any(p.endswith(os.path.join(name, "ec256.pem")) for p in secrets), secrets
    for p in secrets:
        assert mode(p) == 0o600, p
        assert mode(os.path.dirname(p)) == 0o700, p
    log = apache.log_text()
    assert PASSWORD not in log

    # another node deploys (migrate announces it): this node's mirror pulls
    # it and every child serves it, without a restart
    gen = redis_gen(redis, name)
    cli_key = key_file(tmp_path / "cli.key")    # the same key, the CLI user's copy
    run_cli("migrate", "--from", other, "--to", store_spec(redis, cli_key, PASSWORD, PREFIX))
    assert redis_gen(redis, name) > gen
    _, second = wait_issued(apache, pebble, name, not_serial=first["serial"], timeout=10)
    for _ in range(4):
        assert served(apache, name)[1]["serial"] == second["serial"]
    # the status page reads the mirror: the pulled certificate, valid
    c = {c["id"]: c for c in apache.status_json()["certificates"]}[name]
    assert c["state"] == "valid"
    assert int(c["keys"][0]["serial"], 16) == int(second["serial"], 16)

    # Redis stops: the node says so, naming the directive, and serves on
    redis.stop()
    apache.wait_log(r"\[autotls:error\].*AutoTLSStore redis://127\.0\.0\.1:\d+/0: .*"
                    r"serving from the mirror", timeout=30)
    for _ in range(4):
        assert served(apache, name)[1]["serial"] == second["serial"]
    status, _, body = apache.http_get("/index.html", host=name, tls=True)
    assert status == 200 and b"hello" in body

    # Redis comes back empty: the node pushes its mirror, then resumes
    redis.start()
    wait_until(lambda: redis_gen(redis, name) > 0, timeout=30,
               what="the mirror's certificate pushed back into Redis")
    apache.wait_log(r"synced its mirror .*\(0 certificate\(s\) pulled, 2 pushed\)")
    assert redis.clear_text_keys() == []
    # nothing ordered anew from the empty Redis (checks run every second)
    stays(lambda: served(apache, name)[1]["serial"] == second["serial"], 3,
          interval=0.5, what="the certificate the mirror pushed back")
    assert apache.log_count(r"ordering certificate") == 2
    assert PASSWORD not in apache.log_text()
    assert_no_restart(apache, parent)

    # a graceful restart: the old driver leaves the members, the new one
    # joins with the same node id and syncs; nothing crashed
    apache.graceful()
    apache.wait_log(r"synced its mirror", count=3)
    assert redis.cli("ZCARD", f"{PREFIX}{{/cluster}}:members").stdout.strip() == b"1"
    assert served(apache, name)[1]["serial"] == second["serial"]
    assert "exit signal" not in apache.log_text()


def refused_serves(apache, name, why, secret):
    apache.wait_log(r"\[autotls:error\].*AutoTLSStore rediss?://127\.0\.0\.1:\d+/0: .*" + why)
    assert secret not in apache.log_text()
    # still serving (the fallback, since the mirror is empty)
    _, info = served(apache, name)
    assert info["self_signed"]
    status, _, body = apache.http_get("/index.html", host=name, tls=True)
    assert status == 200 and b"hello" in body


def test_wrong_password_names_directive_and_serves(pebble, redis, apache_factory,  # noqa: F811
                                                   test_root):
    name = "wrongpw.redis.apache.test"
    line = store_line(redis, node_key(test_root), password="not-it")
    apache = apache_factory(pebble, [[name]], global_extra=line).start()
    refused_serves(apache, name, "AUTH", "not-it")
    # nothing was written without Redis
    assert redis.keys(f"{PREFIX}*") == []


def test_tls_failure_names_directive_and_serves(pebble, tls_redis, apache_factory,  # noqa: F811
                                                test_root):
    name = "tlsfail.redis.apache.test"
    line = (f"AutoTLSStore rediss://:{PASSWORD}@127.0.0.1:{tls_redis}/0 "
            f"key_file={node_key(test_root)} prefix={PREFIX}")
    apache = apache_factory(pebble, [[name]], global_extra=line).start()
    refused_serves(apache, name, "TLS.*certificate verify failed", PASSWORD)


def test_config_errors_name_the_directive(pebble, redis, apache_factory, test_root):  # noqa: F811
    key = node_key(test_root)
    cases = [
        (store_line(redis, key).replace(f"key_file={key} ", ""), "key_file"),
        (store_line(redis, key).replace("redis://", "memcache://"), "only redis://"),
        (store_line(redis, os.path.join(test_root, "missing.key")), "missing.key"),
    ]
    for line, what in cases:
        a = apache_factory(pebble, [["cfg.redis.apache.test"]], global_extra=line)
        out = a.configtest()
        assert out.returncode != 0, line
        assert "AutoTLSStore" in out.stderr and what in out.stderr, out.stderr
        assert PASSWORD not in out.stderr
    # AutoTLSStore DIR is AutoTLSStoreDir
    a = apache_factory(pebble, [["cfg.redis.apache.test"]],
                       global_extra=f'AutoTLSStore "{test_root}/store2"')
    out = a.configtest()
    assert out.returncode == 0, out.stderr
    # names at runtime are mirrored to the nodes (test_cluster_names.py) and
    # names on demand are admitted cluster-wide (test_cluster_ondemand.py):
    # both accepted
    a = apache_factory(pebble, [["dyn.redis.apache.test"]], global_extra=store_line(redis, key),
                       host_extra={"dyn.redis.apache.test": "AutoTLS Dynamic"})
    out = a.configtest()
    assert out.returncode == 0, out.stderr
    a = apache_factory(pebble, [["od.redis.apache.test"]], global_extra=store_line(redis, key),
                       host_extra={"od.redis.apache.test": "AutoTLS OnDemand"})
    out = a.configtest()
    assert out.returncode == 0, out.stderr
