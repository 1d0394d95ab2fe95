"""nginx as a node of a Redis cluster (issue 12), one node against a real
redis-server and Pebble: certificates issued through the Redis store and
served from the node's mirror, nothing secret in clear in Redis, the
mirror's modes, Redis stopped and restarted empty, a wrong password, and
what the directive refuses."""
import os
import re
import shutil
import stat

from nginxctl import Nginx, issuer_block, server_block, until_issued
from redisctl import Redis, key_file, store_spec, store_url, tls_pair
from util import cert_info, make_test_root, run_cli, served_chain, wait_until

PASSWORD = "s3cret-Pw"
NAMES = {"http-01": "h.redis.test", "tls-alpn-01": "t.redis.test"}


def chown_nobody(path):
    """Workers run as nobody when the tests run as root: the key file is
    theirs, as an operator would install it."""
    if os.geteuid() == 0:
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def node_conf(pebble, root, redis, key, mirror, password=PASSWORD, node=1):
    """Node N listens on 127.0.0.N, the ports Pebble validates on."""
    body = issuer_block(pebble, root, name="web", challenge="http-01")
    body += issuer_block(pebble, root, name="alpn", challenge="tls-alpn-01")
    body += (f"    autotls_store {store_url(redis, password)} key_file={key} "
             f"prefix=n: mirror={mirror} node=node-{node};\n")
    body += "    autotls_check_interval 1s;\n"
    for issuer, name in (("web", NAMES["http-01"]), ("alpn", NAMES["tls-alpn-01"])):
        body += f"""
    server {{
        listen 127.0.0.{node}:{pebble.http_port};
        listen 127.0.0.{node}:{pebble.tls_port} ssl;
        server_name {name};
        autotls {issuer};
        location / {{ return 200 "hello $server_name\\n"; }}
    }}
"""
    return body


def serial(port, name, node=1):
    info = cert_info(served_chain(port, name, host=f"127.0.0.{node}")[0])
    return None if info["self_signed"] else info["serial"]


def check_second_node(pebble, redis, key, serials):
    """Another node pulls what the first one issued, and a renewal by either
    one reaches both, live."""
    root = make_test_root()
    try:
        ngx = Nginx(root, node_conf(pebble, root, redis, key, os.path.join(root, "mirror"),
                                    node=2))
        with ngx.start():
            for name, s in serials.items():
                wait_until(lambda: serial(pebble.tls_port, name, node=2) == s, timeout=30,
                           what=f"node 2 serving {name} from its mirror")
            wait_until(lambda: b"node-2" in redis.get_members("n:"), timeout=30,
                       what="node 2 in the member registry")

            # the operator's copy of the key file (the workers' is theirs)
            own = key_file(os.path.join(root, "operator.key"))
            name = NAMES["http-01"]
            run_cli("renew", "--store", store_spec(redis, own, PASSWORD, prefix="n:"),
                    "--request", name)

            def renewed_everywhere():
                now = {serial(pebble.tls_port, name, node=n) for n in (1, 2)}
                return len(now) == 1 and serials[name] not in now and now
            new = wait_until(renewed_everywhere, timeout=60,
                             what="the renewed certificate served by both nodes")
            serials[name] = new.pop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def key_lines(pem):
    """The base64 lines of the private key block of a key+chain file."""
    lines, inside = [], False
    for line in pem.split(b"\n"):
        if b"PRIVATE KEY-----" in line:
            inside = b"BEGIN" in line
        elif inside and line.strip():
            lines.append(line.strip())
    assert lines
    return lines


def check_mirror_modes(mirror):
    assert stat.S_IMODE(os.stat(mirror).st_mode) == 0o700
    keys = 0
    for dirpath, dirnames, filenames in os.walk(mirror):
        for d in dirnames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700, d
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, errors="replace") as fh:
                if "PRIVATE KEY" in fh.read():
                    keys += 1
                    assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p
    assert keys >= 2, "the mirror holds the certificates' keys"


def test_node_issues_serves_and_outlives_redis(pebble, test_root):
    redis = Redis(os.path.join(test_root, "redis"), password=PASSWORD)
    redis.start()
    try:
        key = key_file(os.path.join(test_root, "redis.key"))
        chown_nobody(key)
        mirror = os.path.join(test_root, "mirror")
        ngx = Nginx(test_root, node_conf(pebble, test_root, redis, key, mirror))
        with ngx.start():
            serials = {}
            for name in NAMES.values():
                until_issued(ngx, pebble, pebble.tls_port, name)
                serials[name] = serial(pebble.tls_port, name)

            # Redis is the source of truth: each certificate has its
            # generation there, and no value holds a private key in clear
            for name in NAMES.values():
                assert int(redis.get(f"n:{{{name}}}:gen") or 0) >= 1, name
            assert redis.get("n:{/cluster}:gen")
            assert b"node-1" in redis.get_members("n:")
            values = redis.values()
            assert [k for k, v in values.items() if b"PRIVATE KEY" in v] == []
            for name in NAMES.values():
                with open(os.path.join(mirror, "certs", name, "ec256.pem"), "rb") as f:
                    body = key_lines(f.read())
                for value in values.values():
                    assert not any(line in value for line in body)
            check_mirror_modes(mirror)
            assert "published to the cluster" in ngx.log()

            check_second_node(pebble, redis, key, serials)

            # a reload hands the driver, its mirror and subscription over
            ngx.reload()
            wait_until(lambda: ngx.log().count("drives issuance") >= 2, timeout=30,
                       what="a new driver after the reload")
            wait_until(lambda: b"node-1" in redis.get_members("n:"), timeout=30,
                       what="node 1 in the member registry after the reload")
            for name, s in serials.items():
                assert serial(pebble.tls_port, name) == s

            # Redis gone: the node goes on serving from its mirror, and says
            # so once, naming the directive
            mark = len(ngx.log())
            redis.stop()
            wait_until(lambda: re.search(r"autotls_store \"redis://127\.0\.0\.1:\d+/0\": .*"
                                         r"serving from the mirror", ngx.log()),
                       timeout=30, what="the outage in the error log")
            for name, s in serials.items():
                assert serial(pebble.tls_port, name) == s

            # back, but empty (no persistence): the node fills it again
            redis.start()
            wait_until(lambda: all(redis.get(f"n:{{{n}}}:gen") for n in NAMES.values()),
                       timeout=45, what="the mirror pushed back into an empty Redis")
            assert "Redis reachable again" in ngx.log()
            assert redis.clear_text_keys() == []
            # the scheduler ran again only once the mirror had filled Redis:
            # nothing ordered anew
            wait_until(lambda: re.search(r"mirror synced: 0 certificate\(s\) pulled, 2 pushed",
                                         ngx.log()[mark:]),
                       timeout=30, what="the sync after Redis came back")
            for name, s in serials.items():
                assert serial(pebble.tls_port, name) == s
            assert "ordering certificate" not in ngx.log()[mark:]

        # a wrong password: one clear error at start naming the directive,
        # the node serves what its mirror holds
        ngx = Nginx(test_root, node_conf(pebble, test_root, redis, key, mirror,
                                         password="wrong-" + PASSWORD))
        mark = len(ngx.log())
        with ngx.start():
            wait_until(lambda: re.search(r"autotls_store \"redis://127\.0\.0\.1:\d+/0\": "
                                         r"AUTH: WRONGPASS", ngx.log()[mark:]),
                       timeout=30, what="the AUTH failure in the error log")
            for name, s in serials.items():
                assert serial(pebble.tls_port, name) == s
            assert len(re.findall(r"autotls_store .*WRONGPASS", ngx.log()[mark:])) == 1
            assert PASSWORD not in ngx.log()
    finally:
        redis.stop()


def test_directive_errors(test_root, pebble):
    """What autotls_store refuses, named in nginx -t's message."""
    redis = Redis(os.path.join(test_root, "redis"))     # never started
    key = key_file(os.path.join(test_root, "redis.key"))
    mirror = os.path.join(test_root, "mirror")
    cases = [
        (f"autotls_store {store_url(redis)} prefix=n: mirror={mirror};",
         r"autotls_store: redis option key_file: required"),
        (f"autotls_store {store_url(redis)} key_file={key} \"prefix=a{{b\";",
         r"autotls_store: redis option prefix: "),
        (f"autotls_store {store_url(redis)} key_file={key} mirror=relative/dir;",
         r"autotls_store: redis option mirror"),
        (f"autotls_store {test_root}/store key_file={key};",
         r"autotls_store: a directory takes no options"),
    ]
    for line, message in cases:
        body = issuer_block(pebble, test_root) + f"    {line}\n"
        body += server_block(["e.redis.test"], pebble.http_port, pebble.tls_port)
        proc = Nginx(test_root, body).test_config()
        assert proc.returncode != 0 and re.search(message, proc.stderr), (line, proc.stderr)

    # the key file is checked at configuration: group or others may not read it
    os.chmod(key, 0o644)
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {store_url(redis)} key_file={key} mirror={mirror};\n"
    body += server_block(["e.redis.test"], pebble.http_port, pebble.tls_port)
    proc = Nginx(test_root, body).test_config()
    assert proc.returncode != 0 and "autotls_store: redis option key_file: " in proc.stderr
    os.chmod(key, 0o600)

    # names at runtime are mirrored to the nodes and the admin API writes to
    # Redis (test_cluster_names.py), names on demand are admitted
    # cluster-wide (test_cluster_ondemand.py): all accepted
    for kw in (dict(autotls_names="dynamic"), dict(extra="location /api/ { autotls_api; }"),
               dict(autotls_names="on_demand")):
        body = issuer_block(pebble, test_root)
        body += f"    autotls_store {store_url(redis)} key_file={key} mirror={mirror};\n"
        body += server_block(["d.redis.test"], pebble.http_port, pebble.tls_port, **kw)
        proc = Nginx(test_root, body).test_config()
        assert proc.returncode == 0, (kw, proc.stderr)


def test_tls_to_redis(pebble, test_root):
    """rediss:// verified with ca_file: a certificate the file does not
    trust is one clear error at start (the node serves its fallback), the
    right file lets the node join the cluster."""
    redis = Redis(os.path.join(test_root, "redis"), tls=tls_pair(test_root))
    redis.start()
    try:
        other, _ = tls_pair(test_root, "other")
        key = key_file(os.path.join(test_root, "redis.key"))
        chown_nobody(key)
        mirror = os.path.join(test_root, "mirror")

        def conf(ca):
            body = issuer_block(pebble, test_root)
            body += (f"    autotls_store {store_url(redis)} ca_file={ca} key_file={key} "
                     f"prefix=n: mirror={mirror} node=tls-node;\n")
            return body + server_block(["s.redis.test"], pebble.http_port, pebble.tls_port)

        ngx = Nginx(test_root, conf(other))
        with ngx.start():
            wait_until(lambda: re.search(r'autotls_store "rediss://127\.0\.0\.1:\d+/0": '
                                         r'.*TLS.*serving from the mirror', ngx.log()),
                       timeout=30, what="the TLS failure in the error log")
            assert serial(pebble.tls_port, "s.redis.test") is None   # the fallback
            assert b"tls-node" not in redis.get_members("n:")

            ngx.write(conf(redis.tls[0]))
            ngx.reload()
            wait_until(lambda: b"tls-node" in redis.get_members("n:"), timeout=30,
                       what="the node in the member registry over TLS")
    finally:
        redis.stop()
