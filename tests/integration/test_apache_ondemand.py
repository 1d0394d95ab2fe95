"""On-demand issuance in Apache (AutoTLS OnDemand): a name nobody
configured or registered arrives in SNI; the policy (a deny list, an allow
list, an ask URL served by a small server this file starts) decides; an
allowed name is ordered from Pebble while its first handshake waits, and
that very handshake gets the real chain.  Denied names, floods of random
names and names beyond the order budget never cost an order (pebblectl's
orders count); a stored name is served when the ask endpoint is down,
across a graceful and a full restart."""
import http.server
import json
import os
import random
import socket
import ssl
import string
import sys
import threading
import urllib.parse

import pytest

from apache_helpers import apache_factory, served, wait_issued  # noqa: F401
from util import cert_info, free_port, stays, wait_until
import procs

HOME = "od.apache.test"


# ---- the ask endpoint: a separate process, stopped by PID ----------------

def _ask_serve(port, allow_path, log_path):
    """GET /check?domain=NAME: 200 when NAME is a line of allow_path (read
    at each request), else 403; every request is appended to log_path."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
            name = (q.get("domain") or [""])[0]
            with open(allow_path) as f:
                allowed = name in f.read().split()
            with open(log_path, "a") as f:
                f.write(name + "\n")
            self.send_response(200 if allowed else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


class AskServer:
    def __init__(self, root, allowed=()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/check"
        self.allow_path = os.path.join(root, "ask-allow.txt")
        self.log_path = os.path.join(root, "ask.log")
        self.allow(*allowed)
        open(self.log_path, "w").close()
        self.proc = None

    def allow(self, *names):
        with open(self.allow_path, "a") as f:
            f.write("".join(n + "\n" for n in names))

    def start(self):
        self.proc = procs.spawn([sys.executable, os.path.abspath(__file__), "ask-serve",
                                 str(self.port), self.allow_path, self.log_path])

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                assert self.proc.poll() is None, "the ask server exited"
                return False
        wait_until(up, timeout=20, what="the ask server")
        return self

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def asked(self):
        with open(self.log_path) as f:
            return f.read().split()


# ---- an on-demand Apache ----------------------------------------------------

def on_demand_apache(apache_factory, pebble, ask=None, extra="", wait="60s"):  # noqa: F811
    """One TLS host, the first on its port (so that every unknown SNI name
    lands there), marked AutoTLS OnDemand with the given policy."""
    lines = [f"AutoTLSOnDemandWait {wait}", "AutoTLSOnDemandDeny *.blocked.test"]
    if ask is not None:
        lines.append(f"AutoTLSOnDemandAsk {ask.url} timeout=2s cache=1h fail_cache=1s")
    lines.append(extra)
    apache = apache_factory(pebble, [[HOME]], vhost_extra="\n".join(lines))
    with open(apache.conf_path) as f:
        conf = f.read()
    assert "    AutoTLS On\n" in conf
    with open(apache.conf_path, "w") as f:
        f.write(conf.replace("    AutoTLS On\n", "    AutoTLS OnDemand\n"))
    return apache


def start(apache, pebble):
    """Started, with the home's own certificate issued: from then on every
    order at Pebble is an on-demand one."""
    apache.start()
    wait_issued(apache, pebble, HOME, timeout=120)
    return apache


def first_handshake(apache, name, roots_pem=None, timeout=120, get=None):
    """One handshake, blocking until the server answers (openssl s_client
    gives up on a handshake that waits once its stdin ends): the leaf's
    facts.  With roots_pem, the chain the server sent must verify up to
    those roots for name, or this raises ssl.SSLCertVerificationError.
    With get (a path), also the response to a GET on that connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if roots_pem is None:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cadata=roots_pem)
    try:
        with socket.create_connection(("127.0.0.1", apache.tls_port), timeout=timeout) as s:
            with ctx.wrap_socket(s, server_hostname=name) as tls:
                der = tls.getpeercert(binary_form=True)
                response = _get(tls, name, get) if get is not None else None
    except (OSError, ssl.SSLError) as e:
        raise AssertionError(f"handshake for {name}: {e!r}\nerror log:\n"
                             f"{apache.log_text()[-4000:]}") from None
    info = cert_info(ssl.DER_cert_to_PEM_cert(der))
    return info if get is None else (info, response)


def _get(tls, name, path):
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                .encode())
    data = b""
    while True:
        chunk = tls.recv(65536)
        if not chunk:
            return data
        data += chunk


def is_real(apache, pebble, name):
    """The first handshake for name gets a chain Pebble issued for it."""
    info = first_handshake(apache, name, pebble.roots_pem())
    return not info["self_signed"] and info["names"] == [name]


def becomes_real(apache, pebble, name, timeout=120):
    """Until a handshake for name gets a chain Pebble issued for it, the
    fallback (the home's certificate) meanwhile: for a name whose first
    handshake may give up waiting (a short AutoTLSOnDemandWait on a busy
    machine) while its order goes on."""
    def real():
        info = first_handshake(apache, name)
        return (not info["self_signed"] and info["names"] == [name]
                and is_real(apache, pebble, name))
    return wait_until(real, timeout=timeout, interval=1, what=f"Pebble's chain for {name}")


def ec_pem(apache, name):
    return os.path.join(apache.store, "certs", name, "ec256.pem")


def denied(apache, name):
    """The handshake gets the home's certificate (AutoTLSDynamicUnknown
    fallback), and the store has nothing of name."""
    info = first_handshake(apache, name)
    return name not in info["names"] and not os.path.exists(ec_pem(apache, name))


def denied_and_said(apache, name, said):
    """denied(name), handshake after handshake, until the child logged the
    watchdog's answer (said, a regex): a child logs it when a handshake
    finds the answer, and a handshake whose wait ended before the answer
    came (a busy machine) got the fallback without it."""
    def told():
        assert denied(apache, name), f"{name} was served its own certificate"
        return apache.log_count(said) > 0
    try:
        wait_until(told, timeout=180, interval=1, what=f"{said!r} in the error log")
    except AssertionError as e:
        raise AssertionError(f"{e}\nerror log tail:\n{apache.log_text()[-4000:]}") from None


@pytest.fixture
def ask_factory(test_root):
    made = []

    def make(allowed=()):
        a = AskServer(test_root, allowed)
        made.append(a)
        return a.start()

    yield make
    for a in made:
        a.stop()


def test_allowed_name_gets_its_chain_in_its_first_handshake(pebble, apache_factory,  # noqa: F811
                                                           ask_factory):
    ask = ask_factory(allowed=["shop1.customer.test"])
    apache = start(on_demand_apache(apache_factory, pebble, ask,
                                    extra="AutoTLSOnDemandAllow static.customer.test"),
                   pebble)
    before = pebble.orders()
    assert not os.path.exists(ec_pem(apache, "shop1.customer.test"))

    # the client connects before anything about the name exists: the
    # handshake itself starts the order and waits for it
    info, response = first_handshake(apache, "shop1.customer.test", pebble.roots_pem(),
                                     get="/index.html")
    assert not info["self_signed"] and info["names"] == ["shop1.customer.test"]
    # ... and the site answers on that very connection
    assert response.startswith(b"HTTP/1.1 200") and b"hello from autotls" in response
    assert pebble.orders() == before + 1
    assert ask.asked().count("shop1.customer.test") == 1
    # registered for the home, so later handshakes need no policy at all
    with open(os.path.join(apache.store, "names", "shop1.customer.test.json")) as f:
        entry = json.load(f)
    assert entry["source"] == "on-demand" and entry["home"] == HOME

    # an allow-list name needs no ask at all
    assert is_real(apache, pebble, "static.customer.test")
    assert "static.customer.test" not in ask.asked()
    assert pebble.orders() == before + 2


def test_denied_names_cause_no_order(pebble, apache_factory, ask_factory):  # noqa: F811
    ask = ask_factory(allowed=[])
    apache = start(on_demand_apache(apache_factory, pebble, ask), pebble)
    before = pebble.orders()

    # refused by the ask endpoint (403): the fallback, and the answer is
    # said once in the log
    denied_and_said(apache, "nope.customer.test", r"on demand: nope\.customer\.test denied")
    assert "nope.customer.test" in ask.asked()
    # the deny list and the syntax rules decide in the child: not even asked
    assert denied(apache, "x.blocked.test")
    assert denied(apache, "a.b.c.d.e.f.g.h.i.j.k.test")
    stays(lambda: pebble.orders() == before, 3, what="no order at Pebble")
    # checked after that window: an ask made late would show by now
    assert "x.blocked.test" not in ask.asked()
    assert "a.b.c.d.e.f.g.h.i.j.k.test" not in ask.asked()
    assert not os.path.exists(os.path.join(apache.store, "names",
                                           "nope.customer.test.json"))


def _burst(port, names, threads=20):
    """One handshake per name, many at once; every handshake must end
    (fallback or refused), none may hang."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    results = {"ok": 0, "failed": 0}
    lock = threading.Lock()
    todo = list(names)

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                name = todo.pop()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                    with ctx.wrap_socket(s, server_hostname=name):
                        pass
                key = "ok"
            except (OSError, ssl.SSLError):
                key = "failed"
            with lock:
                results[key] += 1

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in ts), "handshakes hung"
    return results


def test_burst_of_random_names_orders_nothing(pebble, apache_factory, ask_factory):  # noqa: F811
    ask = ask_factory(allowed=["real.customer.test"])
    apache = start(on_demand_apache(apache_factory, pebble, ask, wait="5s"), pebble)
    before = pebble.orders()
    rnd = random.Random(11)
    names = ["".join(rnd.choice(string.ascii_lowercase) for _ in range(12)) + ".flood.test"
             for _ in range(200)]
    results = _burst(apache.tls_port, names)
    assert results["ok"] + results["failed"] == 200
    assert results["ok"] > 0, results
    stays(lambda: pebble.orders() == before, 3, what="no order at Pebble")
    assert not [n for n in os.listdir(os.path.join(apache.store, "certs"))
                if n.endswith(".flood.test")]
    # at most one policy lookup each: no name was asked about twice
    asked = [n for n in ask.asked() if n.endswith(".flood.test")]
    assert len(asked) == len(set(asked)) <= 200
    # still serving, the home and a new allowed name alike, same parent
    assert apache.proc.poll() is None
    status, _, body = apache.http_get("/index.html", host=HOME, tls=True)
    assert status == 200 and b"hello" in body
    # AutoTLSOnDemandWait is 5 s here (for the burst): on a busy machine the
    # first handshake may get the fallback while the order goes on
    becomes_real(apache, pebble, "real.customer.test")
    assert "exit signal" not in apache.log_text()


def test_ask_down_stored_names_still_served(pebble, apache_factory, ask_factory):  # noqa: F811
    ask = ask_factory(allowed=["kept.customer.test", "later.customer.test"])
    apache = start(on_demand_apache(apache_factory, pebble, ask), pebble)
    info = first_handshake(apache, "kept.customer.test", pebble.roots_pem())
    serial = info["serial"]

    ask.stop()
    before = pebble.orders()

    def kept_served():
        _, info = served(apache, "kept.customer.test")
        return info["serial"] == serial

    # a graceful restart: the registered name is served without asking
    r = apache.graceful()
    assert r.returncode == 0, r.stderr
    apache.wait_log(r"resuming normal operations", count=2)
    assert wait_until(kept_served, timeout=60, what="the stored name after a graceful restart")
    # a full restart: the same
    apache.stop()
    apache.start()
    wait_until(kept_served, timeout=60, what="the stored name after a full restart")
    # a new name, even one the endpoint would allow, is denied while it is down
    denied_and_said(apache, "later.customer.test", r"on demand: later\.customer\.test denied")
    stays(lambda: pebble.orders() == before, 3, what="no order at Pebble")


def test_orders_per_min_limit(pebble, apache_factory, ask_factory):  # noqa: F811
    apache = start(on_demand_apache(apache_factory, pebble, None,
                                    extra="AutoTLSOnDemandAllow *.budget.test\n"
                                          "AutoTLSOnDemandLimits orders_per_min=1"),
                   pebble)
    before = pebble.orders()
    assert is_real(apache, pebble, "one.budget.test")
    assert pebble.orders() == before + 1
    # the second name within the same minute: over budget, the fallback,
    # a log line naming the limit, no order
    denied_and_said(apache, "two.budget.test", r"two\.budget\.test limited \(.*orders_per_min")
    assert apache.log_count(r"on-demand name two\.budget\.test not ordered: "
                            r"on_demand_orders_per_min 1 reached") == 1
    stays(lambda: pebble.orders() == before + 1, 3, what="no order beyond the budget")


def test_directive_errors_name_the_directive(pebble, apache_factory):  # noqa: F811
    bad = [
        ("AutoTLSOnDemandAllow ~(unclosed", "AutoTLSOnDemandAllow"),
        ("AutoTLSOnDemandAsk ftp://x/", "AutoTLSOnDemandAsk: 'ftp://x/'"),
        ("AutoTLSOnDemandAsk http://x/ timeout=soon", "AutoTLSOnDemandAsk: timeout='soon'"),
        ("AutoTLSOnDemandLimits orders_per_min=0", "AutoTLSOnDemandLimits: orders_per_min='0'"),
        ("AutoTLSOnDemandLimits burst=3", "AutoTLSOnDemandLimits: unknown limit 'burst=3'"),
        ("AutoTLSOnDemandMaxLabels lots", "AutoTLSOnDemandMaxLabels: 'lots'"),
        ("AutoTLSOnDemandWait 5m", "AutoTLSOnDemandWait: '5m'"),
    ]
    for line, want in bad:
        apache = on_demand_apache(apache_factory, pebble, None, extra=line)
        r = apache.configtest()
        assert r.returncode != 0, line
        assert want in r.stderr + r.stdout, (line, r.stderr)
    ok = on_demand_apache(apache_factory, pebble, None,
                          extra="AutoTLSOnDemandAllow a.test *.b.test ~^c[0-9]+\\.test$\n"
                                "AutoTLSOnDemandLimits cooldown=10m orders_per_min=5 "
                                "per_domain_week=20 per_account_3h=100 max_pending=10\n"
                                "AutoTLSOnDemandIP On\nAutoTLSOnDemandMaxLabels 5")
    r = ok.configtest()
    assert r.returncode == 0, r.stderr


if __name__ == "__main__" and len(sys.argv) == 5 and sys.argv[1] == "ask-serve":
    _ask_serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
