#!/usr/bin/python3
"""On-demand first contact in nginx: the time from a client's ClientHello
to its completed handshake, for names nobody configured or registered.

  real      the ask URL allows the name: the first handshake is parked
            until Pebble (PEBBLE_VA_NOSLEEP=1, http-01) issued the
            certificate, and the client gets the real chain in it
  fallback  the ask URL refuses the name: the parked handshake goes on
            with the fallback certificate as soon as the verdict is in
  served    the same names once registered: an ordinary handshake

Each sample is one TCP connection and one TLS handshake (Python's ssl,
TLS 1.3), timed from the first byte sent to the handshake's end; names are
taken one after another (orders_per_min is raised out of the way).

usage: nginx_ondemand.py BUILD_DIR        Knobs: BENCH_OD_NAMES (10).
"""
import os
import shutil
import socket
import ssl
import statistics
import sys
import tempfile
import time

import benchlib as B  # noqa: F401  (puts tests/integration on sys.path)
from askctl import AskServer
from nginxctl import Nginx, issuer_block
from pebblectl import Pebble
from util import cert_info

N = int(os.environ.get("BENCH_OD_NAMES", "10"))


def handshake(port, name):
    """Seconds from connect to the end of the handshake, and the leaf."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        with ctx.wrap_socket(sock, server_hostname=name) as tls:
            took = time.monotonic() - start
            der = tls.getpeercert(binary_form=True)
    return took, ssl.DER_cert_to_PEM_cert(der)


def summary(label, samples):
    ms = sorted(s * 1000 for s in samples)
    p90 = ms[max(0, int(len(ms) * 0.9) - 1)]
    print(f"  {label:9s} n={len(ms):3d}  median {statistics.median(ms):8.1f} ms"
          f"  p90 {p90:8.1f} ms  max {ms[-1]:8.1f} ms")


def main(build):
    os.environ["ATLS_BUILD"] = build
    root = tempfile.mkdtemp(prefix="autotls-bench-od-")
    os.chmod(root, 0o755)
    pebble = Pebble(env={"PEBBLE_VA_NOSLEEP": "1"}).start()
    ask = AskServer(root).start()
    ngx = None
    try:
        body = issuer_block(pebble, root) + f"""
    autotls_store {os.path.join(root, 'store')};
    autotls_on_demand_ask {ask.url};
    autotls_on_demand_limits orders_per_min=1000 max_pending=1000;
    autotls_on_demand_wait 60s;
    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl default_server;
        autotls pebble on_demand;
    }}
"""
        ngx = Nginx(root, body, level="notice").start()
        real, fallback, served = [], [], []
        for i in range(N):
            name = f"ok-b{i}.bench.test"
            took, pem = handshake(pebble.tls_port, name)
            assert "Pebble" in cert_info(pem)["issuer"], f"{name}: not Pebble's"
            real.append(took)
        for i in range(N):
            took, pem = handshake(pebble.tls_port, f"no-b{i}.bench.test")
            assert cert_info(pem)["self_signed"], "a refused name got a real certificate"
            fallback.append(took)
        for i in range(N):
            took, _ = handshake(pebble.tls_port, f"ok-b{i}.bench.test")
            served.append(took)
        print(f"on-demand first contact, {N} names each (nginx, Pebble NOSLEEP):")
        summary("real", real)
        summary("fallback", fallback)
        summary("served", served)
        print(f"  ratio real/served (median): "
              f"{statistics.median(real) / statistics.median(served):.0f}x")
        return 0
    finally:
        if ngx is not None:
            ngx.stop()
        ask.stop()
        pebble.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(os.path.abspath(sys.argv[1])))
