"""A small webhook receiver for the notification tests (nginx, Apache, CLI).

It runs in the test process (a threaded http.server on 127.0.0.1, a free
port), records every POST it gets and answers what the test says:

    rx = WebhookReceiver()          # started; rx.url is http://127.0.0.1:PORT/hook
    ...configure the server with rx.url...
    rx.wait_for_event("obtained")   # the first delivered "obtained" body
    rx.fail_with(503)               # answer 503 from now on (recorded too)
    rx.stop(); ...; rx.start()      # down for a while, back on the same port
    rx.close()                      # in teardown (also: `with WebhookReceiver() as rx`)

Each request is a Received(path, headers, body, status): headers a dict with
lower-case names, body the parsed JSON (None when it was not JSON, raw bytes
in .raw), status what the receiver answered.  `delivered()` lists the
requests answered 2xx (what the sender may count as delivered), `events()`
their JSON bodies, optionally of one event name.

Waiting uses util.wait_until (no fixed sleeps): wait_for_event(name),
wait_count(n, name=None), wait_requests(n) (any answer, failures included).
"""
import http.server
import json
import threading
from dataclasses import dataclass, field

import util


@dataclass
class Received:
    path: str
    headers: dict
    body: object
    raw: bytes
    status: int
    method: str = "POST"
    extra: dict = field(default_factory=dict)


class _Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True


class WebhookReceiver:
    def __init__(self, port=None, status=200, path="/hook"):
        self.port = port or util.free_port()
        self.path = path
        self._status = status
        self._delay = 0.0
        self._lock = threading.Lock()
        self._requests = []
        self._server = None
        self._thread = None
        self._release = threading.Event()
        self.start()

    # ---- life ----------------------------------------------------------
    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{self.path}"

    def start(self):
        """Listens again (same port) after stop()."""
        if self._server is not None:
            return
        rx = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):   # keep pytest output clean
                pass

            def do_POST(self):
                rx._handle(self, "POST")

            def do_PUT(self):
                rx._handle(self, "PUT")

            def do_GET(self):
                rx._handle(self, "GET")

        self._release.clear()
        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def stop(self):
        """Stops listening (connections are refused) until start()."""
        if self._server is None:
            return
        self._release.set()             # let hanging handlers finish
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        self._server = None
        self._thread = None

    close = stop

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    # ---- behaviour -----------------------------------------------------
    def fail_with(self, status):
        """Answer status (500, 503...) to every request from now on."""
        self._status = status

    def succeed(self):
        self._status = 200

    def hang(self, seconds):
        """Wait seconds before answering (a receiver slower than the
        sender's timeout); 0 ends it."""
        self._delay = seconds

    # ---- what was received ----------------------------------------------
    def requests(self):
        with self._lock:
            return list(self._requests)

    def delivered(self):
        return [r for r in self.requests() if 200 <= r.status < 300]

    def events(self, name=None):
        out = []
        for r in self.delivered():
            if isinstance(r.body, dict) and (name is None or r.body.get("event") == name):
                out.append(r.body)
        return out

    def clear(self):
        with self._lock:
            self._requests.clear()

    def wait_for_event(self, name, timeout=60, pred=None):
        """The first delivered body of event name (and pred(body) true)."""
        def found():
            for body in self.events(name):
                if pred is None or pred(body):
                    return body
            return None
        return util.wait_until(found, timeout=timeout, what=f"webhook event {name!r}")

    def wait_count(self, n, name=None, timeout=60):
        """Waits until at least n bodies (of event name) were delivered."""
        util.wait_until(lambda: len(self.events(name)) >= n, timeout=timeout,
                        what=f"{n} webhook deliveries of {name or 'any event'}")
        return self.events(name)

    def wait_requests(self, n, timeout=60):
        """Waits until n requests arrived, whatever was answered."""
        util.wait_until(lambda: len(self.requests()) >= n, timeout=timeout,
                        what=f"{n} webhook requests")
        return self.requests()

    # ---- internals -----------------------------------------------------
    def _handle(self, h, method):
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        if self._delay:
            self._release.wait(self._delay)
        status = self._status
        with self._lock:
            self._requests.append(Received(path=h.path,
                                           headers={k.lower(): v for k, v in h.headers.items()},
                                           body=body, raw=raw, status=status, method=method))
        reply = b'{"ok":true}' if 200 <= status < 300 else b'{"ok":false}'
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(reply)))
        # one request per connection: a kept-alive connection would outlive
        # stop() (its handler thread goes on answering), and a receiver
        # that is "down" must refuse everything
        h.send_header("Connection", "close")
        h.close_connection = True
        h.end_headers()
        h.wfile.write(reply)
