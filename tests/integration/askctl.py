"""A small on-demand "ask" endpoint for the tests: GET /check?domain=NAME
answers 200 for names that start with one of the allowed prefixes and 403
for the rest (names starting "slow-" only after 20 s), and appends each
asked name to a log file.  Runs as its own
process (python's http.server), started and stopped by PID."""
import os
import subprocess
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import procs
from util import free_port, wait_until


class AskServer:
    def __init__(self, workdir, allow_prefixes=("ok-",)):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/check"
        self.log = os.path.join(workdir, f"ask-{self.port}.log")
        self.allow = ",".join(allow_prefixes)
        self.proc = None

    def start(self):
        self.proc = procs.spawn([sys.executable, os.path.abspath(__file__),
                                 str(self.port), self.log, self.allow],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            import socket
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        wait_until(up, timeout=20, what="the ask server")
        return self

    def stop(self):
        if self.proc is not None:
            procs.stop(self.proc)
            self.proc = None

    def asked(self):
        try:
            with open(self.log) as f:
                return [line.strip() for line in f if line.strip()]
        except FileNotFoundError:
            return []


def _serve(port, log, allow):
    prefixes = tuple(p for p in allow.split(",") if p)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            url = urllib.parse.urlsplit(self.path)
            domain = urllib.parse.parse_qs(url.query).get("domain", [""])[0]
            with open(log, "a") as f:
                f.write(domain + "\n")
            if domain.startswith("slow-"):
                time.sleep(20)
            ok = url.path == "/check" and domain.startswith(prefixes)
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        request_queue_size = 256    # a burst of asks is not dropped at connect

    Server(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), sys.argv[2], sys.argv[3])
