"""Cold start of an nginx node on the Redis store (issue 12): a node whose
mirror is empty, over a Redis already holding many certificates, pulls
them into its mirror and serves every one of them, live, without a reload.

The certificates are stored at generation 0, as `autotls migrate` copies a
store written by names_seed or by an autotls without generations: the
driver's first look at the empty mirror sees them absent, and a pulled
certificate must still count as changed (it once compared equal to
"absent", and the workers served the fallback for it until a reload)."""
import os
import random

from certmaker import CertMaker
from nginxctl import Nginx, issuer_block
from redisctl import Redis, key_file, store_spec, store_url
from storeseed import issuer_meta, seed_store
from util import cert_info, run_cli, served_chain, wait_until

N_CERTS = 300
SAMPLE = 30


def names():
    return [f"n{i}.cold.test" for i in range(N_CERTS)]


def node_conf(pebble, root, redis, key, mirror):
    body = issuer_block(pebble, root, name="pebble", challenge="http-01")
    body += (f"    autotls_store {store_url(redis)} key_file={key} prefix=c: "
             f"mirror={mirror} node=cold-1;\n")
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.tls_port} ssl;
        server_name {' '.join(names())};
        autotls pebble per_name;
        location / {{ return 200 "hello $server_name\\n"; }}
    }}
"""
    return body


def chown_nobody(path):
    if os.geteuid() == 0:
        import pwd
        nobody = pwd.getpwnam("nobody")
        os.chown(path, nobody.pw_uid, nobody.pw_gid)


def test_empty_mirror_serves_every_certificate(pebble, test_root):
    # one CA-signed leaf covering every name, stored once per name: what
    # the node serves is then told from its self-signed fallback
    maker = CertMaker(os.path.join(test_root, "ca"))
    leaf = maker.leaf("cold", ["*.cold.test"])
    with open(leaf.key) as f:
        key_pem = f.read()
    with open(leaf.cert) as f:
        chain_pem = f.read()
    serial = cert_info(chain_pem)["serial"]
    issuer = issuer_meta(pebble.directory, os.path.join(test_root, "pebble-ca.pem"),
                         contact=["admin@example.com"])
    src = os.path.join(test_root, "seed-store")
    seed_store(src, [{"names": [n], "issuer": issuer,
                      "certs": {"ec256": (key_pem, chain_pem)}} for n in names()],
               generation=0)

    redis = Redis(os.path.join(test_root, "redis"))
    redis.start()
    try:
        key = key_file(os.path.join(test_root, "redis.key"))
        run_cli("migrate", "--from", src, "--to", store_spec(redis, key, prefix="c:"))
        chown_nobody(key)
        # kept in redis's directory, loaded again when it restarts: the node
        # first looks at its empty mirror with Redis away, then catches up
        # (so the driver has seen every certificate absent before any pull,
        # whatever the timing of its first look and its first sync)
        assert redis.cli("SAVE").stdout.strip() == b"OK"
        redis.stop()
        mirror = os.path.join(test_root, "mirror")
        ngx = Nginx(test_root, node_conf(pebble, test_root, redis, key, mirror))
        with ngx.start():
            master, workers = ngx.master, ngx.worker_pids()
            wait_until(lambda: "orders wait until Redis is back" in ngx.log(), timeout=30,
                       what="the node serving its empty mirror, Redis away")
            assert cert_info(served_chain(pebble.tls_port, names()[0])[0])["self_signed"]
            redis.start()

            def mirrored():
                d = os.path.join(mirror, "certs")
                return os.path.isdir(d) and sum(
                    os.path.exists(os.path.join(d, n, "meta.json")) for n in os.listdir(d)) \
                    >= N_CERTS
            wait_until(mirrored, timeout=240, what=f"{N_CERTS} certificates in the mirror")

            pending = set(random.Random(12).sample(names(), SAMPLE))

            def all_served():
                for name in sorted(pending):
                    info = cert_info(served_chain(pebble.tls_port, name)[0])
                    if not info["self_signed"] and info["serial"] == serial:
                        pending.discard(name)
                return not pending
            try:
                wait_until(all_served, timeout=60,
                           what="every sampled name served with its certificate")
            except AssertionError as e:
                raise AssertionError(f"{e}: still the fallback for {sorted(pending)}\n"
                                     f"{ngx.log()[-3000:]}") from None
            assert (ngx.master, ngx.worker_pids()) == (master, workers), "not live"
    finally:
        redis.stop()
