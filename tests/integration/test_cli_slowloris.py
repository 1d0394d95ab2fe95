"""The CLI's standalone responders against slow clients: connections are
served concurrently, each closed after a total deadline (10 s), and the CLI
exits as soon as the order is done even with slow connections open.

The order is held back by a gated proxy in front of Pebble (the CLI's
first request waits there), so the responder is up long enough to watch
the deadline."""
import http.client
import http.server
import os
import select
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

import pytest

from clihelp import cert_file, issue_args, stored_chain
from util import cli_path, verify_chain, wait_until

DEADLINE = 10       # tools/autotls/standalone.c CLI_CONN_DEADLINE_MS
TRICKLE = 2.0       # seconds between two bytes of a slow client

# what a slow client trickles: a request head that never ends, or a TLS
# record header announcing a ClientHello whose body never arrives
SLOW_BYTES = {
    "http-01": b"GET /.well-known/acme-challenge/x HTTP/1.1\r\nX-Slow: " + b"a" * 64,
    "tls-alpn-01": b"\x16\x03\x01\x02\x00" + b"\x00" * 64,
}


class GatedCA:
    """A TLS reverse proxy in front of Pebble on its own loopback port that
    holds every answer until open() is called.  It passes the client's Host
    on, so Pebble builds every URL on the proxy's origin: the CLI insists
    that the CA's URLs share the directory's origin, and the JWS "url"
    Pebble checks is the one the CLI signed.  TLS is terminated here with
    Pebble's own listener certificate, so the handshake is answered at once
    (curl's connect timeout covers it) and only the HTTP answer waits."""

    HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}

    def __init__(self, pebble):
        gate = self.gate = threading.Event()
        upstream = ("127.0.0.1", pebble.port)
        up_ctx = ssl.create_default_context(cafile=pebble.ca_file)
        hop = self.HOP

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self):
                gate.wait()
                body = None
                if "Content-Length" in self.headers:
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                conn = http.client.HTTPSConnection(*upstream, context=up_ctx, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items()
                               if k.lower() not in hop}
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in hop:
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_POST = _forward

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(pebble.pki["cert"], pebble.pki["key"])
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/dir"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def open(self):
        self.gate.set()

    def close(self):
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


class SlowClient:
    """Sends one byte every TRICKLE seconds on a connection; records when
    it opened and when the server closed it (monotonic times).  With
    reconnect, connects again at once each time (a persistent attacker),
    until the port refuses."""

    def __init__(self, port, payload, reconnect=False):
        self.port = port
        self.payload = payload
        self.reconnect = reconnect
        self.conns = []             # [opened, closed or None]
        self.stop = threading.Event()
        self._connect()
        threading.Thread(target=self._run, daemon=True).start()

    def _connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.conns.append([time.monotonic(), None])

    @property
    def closed(self):
        return self.conns[0][1]

    def _trickle(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.sock.send(self.payload[i % len(self.payload):][:1])
                i += 1
                # readable while only trickling = the server closed (EOF/RST)
                ready, _, _ = select.select([self.sock], [], [], TRICKLE)
                if ready and not self.sock.recv(1024):
                    break
            except OSError:
                break
        if not self.stop.is_set():
            self.conns[-1][1] = time.monotonic()
        self.sock.close()

    def _run(self):
        while True:
            self._trickle()
            if self.stop.is_set() or not self.reconnect:
                return
            try:
                self._connect()
            except OSError:
                return

    def connected(self, start, end, gap=0.5):
        """Connected all along from start to end (a reconnection after the
        deadline may leave a gap of up to `gap` seconds)."""
        t = start
        for o, c in sorted(self.conns):
            if o > t + gap:
                break
            if c is None or c >= end:
                return o <= t + gap
            t = max(t, c)
        return False

    def close(self):
        self.stop.set()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.parametrize("challenge", ["http-01", "tls-alpn-01"])
def test_slow_clients_do_not_stall_validation(pebble, tmp_path, challenge):
    store = str(tmp_path / "store")
    port = pebble.http_port if challenge == "http-01" else pebble.tls_port
    proxy = GatedCA(pebble)
    args = issue_args(pebble, store, "slow.cli.test", challenge=challenge)
    args[args.index(pebble.directory)] = proxy.url
    proc = subprocess.Popen([cli_path(), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    slow = []
    try:
        wait_until(lambda: _listening(port), timeout=20, what="the CLI's responder")

        # one slow client alone: closed by the server after the deadline,
        # while the CLI (held at the proxy) is still running
        first = SlowClient(port, SLOW_BYTES[challenge])
        slow.append(first)
        wait_until(lambda: first.closed, timeout=DEADLINE + 15,
                   what="the server to close a slow connection")
        assert proc.poll() is None, "the CLI exited before the deadline could show"
        lived = first.closed - first.conns[0][0]
        assert DEADLINE - 1 <= lived <= DEADLINE + 2 * TRICKLE + 1, lived

        # several persistent slow clients while the CA validates: issuance
        # works, and the CLI exits without waiting for them
        more = [SlowClient(port, SLOW_BYTES[challenge], reconnect=True) for _ in range(4)]
        slow += more
        proxy.open()
        gate = time.monotonic()
        out, err = proc.communicate(timeout=DEADLINE + 80)
        exited = time.monotonic()
        assert proc.returncode == 0, f"stdout: {out}\nstderr: {err}"
        assert verify_chain(stored_chain(store, "slow.cli.test"), pebble.roots_pem())
        # the certificate was stored after validation and before the
        # responders stopped: each slow client was connected from the gate
        # (validation cannot start earlier) to that moment
        stored = os.stat(cert_file(store, "slow.cli.test")).st_mtime \
            - time.time() + time.monotonic()
        assert all(x.connected(gate, stored) for x in more), \
            (gate, stored, [x.conns for x in more])
        # and the CLI did not wait for them to finish
        assert exited - stored < 10, exited - stored
    finally:
        for c in slow:
            c.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proxy.close()
