"""nginx + autotls on demand against Pebble: a name nobody configured or
registered arrives in SNI; the gate (deny list, ask URL served by a small
server this test starts) decides; an allowed name's first handshake is
parked until its certificate exists; refused names never cost an order
(Pebble's own count of orders, pebblectl.Pebble.orders, is checked)."""
import datetime
import json
import math
import os
import random
import signal
import socket
import ssl
import string
import subprocess
import threading
import time
import urllib.request

import pytest

from askctl import AskServer
from nginxctl import Nginx, issuer_block, status_server
from util import PEM_RE, cert_info, free_port, stays, verify_chain, wait_until


def od_conf(pebble, root, ask, status_port, extra="", wait="60s", ask_timeout="2s"):
    body = issuer_block(pebble, root)
    body += f"""
    autotls_store {os.path.join(root, 'store')};
    autotls_check_interval 1s;
    autotls_on_demand_deny *.denied.example.com;
    autotls_on_demand_ask {ask.url} timeout={ask_timeout} cache=1h fail_cache=30s;
    autotls_on_demand_wait {wait};
    {extra}

    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl default_server;
        server_name home.example.com;
        autotls pebble on_demand;
        location / {{ return 200 "on demand $ssl_server_name\\n"; }}
    }}
"""
    return body + status_server(status_port)


def first_handshake(port, name, timeout=90):
    """One TLS handshake (openssl s_client, nothing sent after it): the
    chain the server presented, leaf first, as PEM strings."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                           "-servername", name, "-showcerts"],
                          input="", capture_output=True, text=True, timeout=timeout)
    chain = PEM_RE.findall(proc.stdout)
    assert chain, f"no certificate for {name}: {proc.stderr[-500:]}"
    return [c if c.endswith("\n") else c + "\n" for c in chain]


def client_hello(name):
    """The first flight of a TLS client for name, as bytes."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    out = ssl.MemoryBIO()
    tls = ctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname=name)
    try:
        tls.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return out.read()


def is_pebble(chain):
    info = cert_info(chain[0])
    return not info["self_signed"] and "Pebble" in info["issuer"]


def status(port):
    url = f"http://127.0.0.1:{port}/autotls-status"
    return json.loads(urllib.request.urlopen(url, timeout=10).read().decode())


def status_after(port, what, ok=lambda page: True, timeout=30):
    """The first status page rendered after now (and that ok() accepts).
    A worker answers with the page it rendered up to a second ago, longer
    under load (ngx_http_autotls_status.c): a gauge read right after a
    change may show the state before it.  "generated" (whole seconds, the
    worker's clock) at or past the next second is a page rendered after
    this call."""
    since = math.ceil(time.time())

    def fresh():
        page = status(port)
        generated = datetime.datetime.strptime(page["generated"], "%Y-%m-%dT%H:%M:%SZ")
        if generated.replace(tzinfo=datetime.timezone.utc).timestamp() < since:
            return None
        return page if ok(page) else None
    return wait_until(fresh, timeout=timeout, what=what)


def worker_rss_kb(ngx):
    total = 0
    for pid in ngx.worker_pids():
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total = max(total, int(line.split()[1]))
    return total


@pytest.fixture
def ask(test_root):
    a = AskServer(test_root).start()
    yield a
    a.stop()


def test_first_handshake_gets_the_real_certificate(pebble, test_root, ask):
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port))
    with ngx.start():
        before = pebble.orders()
        name = "ok-first.example.com"

        # the client connects before anything was ordered for the name and
        # gets Pebble's chain in that very handshake
        chain = first_handshake(pebble.tls_port, name)
        assert is_pebble(chain), ngx.log()[-3000:]
        assert cert_info(chain[0])["names"] == [name]
        assert verify_chain(chain, pebble.roots_pem())
        assert pebble.orders() == before + 1
        assert name in ask.asked()
        assert f'on-demand "{name}" is served' in ngx.log()

        # registered: the next handshake is not parked and nothing is asked
        asked = len(ask.asked())
        assert is_pebble(first_handshake(pebble.tls_port, name))
        assert len(ask.asked()) == asked
        assert pebble.orders() == before + 1
        page = status_after(status_port, "a status page after the handshakes")
        assert page["on_demand"]["parked"] == 0


def test_denied_names_never_order(pebble, test_root, ask):
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port))
    with ngx.start():
        before = pebble.orders()

        # the deny list (never asked) and the ask URL's 403: the fallback,
        # and the parked handshake goes on as soon as the verdict is in
        for name in ("x.denied.example.com", "nope.example.com", "192.0.2.1"):
            assert not is_pebble(first_handshake(pebble.tls_port, name, timeout=50))
        assert "x.denied.example.com" not in ask.asked()
        assert "nope.example.com" in ask.asked()
        wait_until(lambda: status(status_port)["on_demand"]["denied"] >= 2, timeout=30,
                   what="denied names in the status page")
        assert 'on-demand name "nope.example.com" DENY' in ngx.log() \
            or 'on-demand name "nope.example.com" deny' in ngx.log()

        # a denied name is not queued again while its verdict holds
        asked = len(ask.asked())
        assert not is_pebble(first_handshake(pebble.tls_port, "nope.example.com"))
        stays(lambda: pebble.orders() == before and len(ask.asked()) == asked, 3,
              what="no order and no second ask for a denied name")

        # plain HTTP for a denied Host: queued, refused, never ordered
        req = urllib.request.Request(f"http://127.0.0.1:{pebble.http_port}/",
                                     headers={"Host": "plain-nope.example.com"})
        assert urllib.request.urlopen(req, timeout=10).status == 200
        wait_until(lambda: "plain-nope.example.com" in ask.asked(), timeout=30,
                   what="the Host of a plain request reaching the gate")
        stays(lambda: pebble.orders() == before, 2, what="no order for denied names")


def test_ask_down_stored_names_still_served(pebble, test_root, ask):
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port))
    with ngx.start():
        kept = "ok-kept.example.com"
        chain = first_handshake(pebble.tls_port, kept)
        assert is_pebble(chain), ngx.log()[-3000:]
        serial = cert_info(chain[0])["serial"]

    ask.stop()
    before = pebble.orders()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port))
    with ngx.start():
        # the stored name: its certificate at once, whatever the gate says
        chain = first_handshake(pebble.tls_port, kept, timeout=20)
        assert is_pebble(chain) and cert_info(chain[0])["serial"] == serial

        # a new name, allowed by the ask URL were it up: denied for now
        assert not is_pebble(first_handshake(pebble.tls_port, "ok-new.example.com"))
        wait_until(lambda: 'on-demand name "ok-new.example.com"' in ngx.log(), timeout=30,
                   what="the verdict on a new name with the ask endpoint down")
        stays(lambda: pebble.orders() == before, 3, what="no order with the ask URL down")
        assert is_pebble(first_handshake(pebble.tls_port, kept, timeout=20))


def test_random_sni_flood(pebble, test_root, ask):
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port, wait="5s"))
    with ngx.start():
        kept = "ok-flood-survivor.example.com"
        assert is_pebble(first_handshake(pebble.tls_port, kept))
        before = pebble.orders()
        rss_before = worker_rss_kb(ngx)

        rnd = random.Random(11)
        names = ["".join(rnd.choices(string.ascii_lowercase + string.digits, k=12))
                 + f".flood{i % 7}.example.net" for i in range(1000)]
        errors = []

        def hit(chunk):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            for n in chunk:
                try:
                    with socket.create_connection(("127.0.0.1", pebble.tls_port),
                                                  timeout=60) as sock:
                        with ctx.wrap_socket(sock, server_hostname=n):
                            pass
                except OSError as e:
                    errors.append((n, e))
        threads = [threading.Thread(target=hit, args=(names[i::50],)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:5]

        # no order, memory bounded, and still serving
        assert pebble.orders() == before
        rss_after = worker_rss_kb(ngx)
        # ASan (make asan) keeps up to 256 MB of freed memory in quarantine
        bound = 16 * 1024 + (256 * 1024 if "LD_PRELOAD" in ngx._env() else 0)
        assert rss_after - rss_before < bound, (rss_before, rss_after)
        wait_until(lambda: status(status_port)["on_demand"]["parked"] == 0, timeout=30,
                   what="no parked connection left")
        assert is_pebble(first_handshake(pebble.tls_port, kept, timeout=20))
        stays(lambda: pebble.orders() == before, 2, what="no order after the flood")


def test_orders_per_min_limit(pebble, test_root, ask):
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port, wait="20s",
                                   extra="autotls_on_demand_limits orders_per_min=1;"))
    with ngx.start():
        before = pebble.orders()
        assert is_pebble(first_handshake(pebble.tls_port, "ok-one.example.com"))
        assert pebble.orders() == before + 1

        # the budget is spent: the fallback, the limit named, no order
        assert not is_pebble(first_handshake(pebble.tls_port, "ok-two.example.com"))
        wait_until(lambda: "orders_per_min" in ngx.log(), timeout=30,
                   what="a log line naming the limit")
        line = [l for l in ngx.log().splitlines() if "ok-two.example.com" in l
                and "orders_per_min" in l]
        assert line, ngx.log()[-3000:]
        page = status_after(status_port, "a status page after the limit was logged")
        assert page["on_demand"]["limited"] >= 1
        stays(lambda: pebble.orders() == before + 1, 3, what="no order beyond the budget")


def test_parked_client_closing(pebble, test_root, ask):
    """A client that gives up while parked leaves nothing behind: the
    parked count goes back to 0 before the gate has even answered."""
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port, ask_timeout="30s"))
    with ngx.start():
        name = "slow-gone.example.com"
        hello = client_hello(name)
        # the ClientHello in two parts: the wrapper waits for the rest
        sock = socket.create_connection(("127.0.0.1", pebble.tls_port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(hello[:20])
        sock.sendall(hello[20:])
        wait_until(lambda: status(status_port)["on_demand"]["parked"] == 1, timeout=30,
                   what="the connection parked")
        wait_until(lambda: name in ask.asked(), timeout=30, what="the ask request")
        sock.close()
        page = status_after(status_port, "the closed connection no longer parked",
                            ok=lambda p: p["on_demand"]["parked"] == 0)
        # read after the page: the driver logs a verdict before it records it
        assert f'on-demand name "{name}"' not in ngx.log(), "the gate had answered already"
        assert page["on_demand"]["pending"] >= 1

        # the worker serves on
        assert not is_pebble(first_handshake(pebble.tls_port, "nope-after.example.com"))


@pytest.mark.parametrize("line, shown", [
    ("autotls_on_demand_limits orders_per_min=0;", '"orders_per_min=0" in "autotls_on_demand_limits"'),
    ("autotls_on_demand_limits burst=3;", '"burst=3" in "autotls_on_demand_limits"'),
    ("autotls_on_demand_ask ftp://x/ ;", '"ftp://x/" in "autotls_on_demand_ask"'),
    ("autotls_on_demand_ask http://127.0.0.1/ timeout=soon;",
     '"timeout=soon" in "autotls_on_demand_ask"'),
    ("autotls_on_demand_ip maybe;", '"maybe" in "autotls_on_demand_ip"'),
    ("autotls_on_demand_max_labels 1;", '"1" in "autotls_on_demand_max_labels"'),
    ("autotls_on_demand_wait forever;", '"forever" in "autotls_on_demand_wait"'),
    ("autotls_on_demand_allow ~(a;", "autotls_on_demand_"),
])
def test_bad_values_name_the_directive(pebble, test_root, line, shown):
    body = issuer_block(pebble, test_root) + f"""
    autotls_store {os.path.join(test_root, 'store')};
    {line}
    server {{
        listen 127.0.0.1:{free_port()} ssl;
        autotls pebble on_demand;
    }}
"""
    proc = Nginx(test_root, body).test_config()
    assert proc.returncode != 0
    assert shown in proc.stderr, proc.stderr


def test_reload_hands_parked_connections_over(pebble, test_root, ask):
    """A reload does not wait for parked first handshakes: the exiting
    worker hands them over (fallback), and the new workers go on parking
    with the zone's queue and verdicts kept."""
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port, ask_timeout="30s"))
    with ngx.start():
        got = {}

        def client():
            got["chain"] = first_handshake(pebble.tls_port, "slow-reload.example.com")
        t = threading.Thread(target=client)
        t.start()
        wait_until(lambda: status(status_port)["on_demand"]["parked"] == 1, timeout=30,
                   what="the connection parked")
        ngx.reload()
        t.join(timeout=60)
        assert not t.is_alive() and not is_pebble(got["chain"])
        assert 'on-demand name "slow-reload.example.com"' not in ngx.log(), \
            "the gate had answered before the reload"

        chain = first_handshake(pebble.tls_port, "ok-after-reload.example.com")
        assert is_pebble(chain), ngx.log()[-3000:]
        page = status_after(status_port, "a status page after the reload's handshakes")
        assert page["on_demand"]["parked"] == 0


def test_parked_count_after_a_worker_dies(pebble, test_root, ask):
    """Each worker counts its parked connections in its own slot of the
    zone and the status sums the live workers': a worker killed while one
    is parked leaves no phantom behind (a shared counter stayed at 1)."""
    status_port = free_port()
    ngx = Nginx(test_root, od_conf(pebble, test_root, ask, status_port, ask_timeout="30s"),
                workers=1)
    with ngx.start():
        (worker,) = ngx.worker_pids()
        sock = socket.create_connection(("127.0.0.1", pebble.tls_port), timeout=10)
        sock.sendall(client_hello("slow-killed.example.com"))
        wait_until(lambda: status(status_port)["on_demand"]["parked"] == 1, timeout=30,
                   what="the connection parked")
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: ngx.worker_pids() and ngx.worker_pids() != [worker], timeout=30,
                   what="the master started a new worker")
        sock.close()
        wait_until(lambda: status(status_port)["on_demand"]["parked"] == 0, timeout=30,
                   what="no parked connection counted for the dead worker")
