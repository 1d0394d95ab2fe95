#!/usr/bin/python3
"""Full TLS 1.3 ECDSA P-256 handshakes WITH OCSP stapling against nginx, one
worker pinned to the server core, hsclient (-s: asks for status, counts the
handshakes that carried a response) on the client core, every configuration
in one run, visited in random order in short slices (benchmarking.md):

  static        `ssl_certificate` + `ssl_stapling on; ssl_stapling_file R`  (a)
  static_b      the same, second instance: the A/A control                (a2)
  autotls       the same certificate from a pre-seeded autotls store; the
                module fetches the response from the certificate's
                responder and staples it from its per-worker cache         (b)
  static_plain  `ssl_certificate` without stapling: what the staple's
                bytes cost (for information)

The certificate's OCSP URL points at a loopback responder that answers every
request with one fixed response R (made here, signed by the issuing
intermediate), the very file given to nginx's ssl_stapling_file: both sides
staple the same bytes, checked before measuring.  A slice in which a
stapling configuration completed a handshake without a staple makes the run
invalid (exit 1): a fast autotls that does not staple proves nothing.

Target: autotls/static rate ratio >= 0.99 (stapling costs nothing beyond the
bytes on the wire).  usage: nginx_stapling.py BUILD_DIR.  Knobs:
BENCH_CYCLES, BENCH_SLICE, BENCH_CONC, BENCH_STAPLE_WAIT (s, default 60).
"""
import datetime
import http.server
import os
import sys
import threading
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

import benchlib as B
from nginx_handshake import conf_autotls

NAME = B.NAME_FMT % 0
STAPLING = ("static", "static_b", "autotls")


class FixedResponder:
    """Loopback HTTP answering every OCSP request (GET or POST) with the
    same DER response; counts requests."""

    def __init__(self, der):
        self.der = der
        self.requests = 0
        self.port = B.free_port()
        responder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, fmt, *args):
                pass

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                responder.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(responder.der)))
                self.end_headers()
                self.wfile.write(responder.der)

            do_GET = do_POST = _answer

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def make_response(ca, leaf):
    """A good OCSP response for leaf signed by the intermediate itself,
    valid a day (no refresh during the run)."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    b = (ocsp.OCSPResponseBuilder()
         .add_response(cert=leaf, issuer=ca.inter, algorithm=hashes.SHA1(),
                       cert_status=ocsp.OCSPCertStatus.GOOD,
                       this_update=now - datetime.timedelta(minutes=1),
                       next_update=now + datetime.timedelta(days=1),
                       revocation_time=None, revocation_reason=None)
         .responder_id(ocsp.OCSPResponderEncoding.HASH, ca.inter))
    return b.sign(ca.int_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def conf_static(crt, key, port, staple_file):
    stapling = (f"\n        ssl_stapling on; ssl_stapling_file {staple_file};"
                if staple_file else "")
    return (f"    server {{ listen 127.0.0.1:{port} ssl; server_name {NAME};\n"
            f"        ssl_certificate {crt}; ssl_certificate_key {key};{stapling} }}\n")


def stapled_der(port):
    from stapleprobe import fetch_staple
    return fetch_staple("127.0.0.1", port, NAME, timeout=5)["der"]


def main():
    build = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(B.REPO, "build"))
    cycles, secs, conc = B.knobs()
    staple_wait = float(os.environ.get("BENCH_STAPLE_WAIT", "60"))
    module = os.path.join(build, "nginx", "ngx_http_autotls_module.so")
    if not os.path.exists(module):
        print(f"nginx stapling bench: {module} is missing (make nginx)")
        return 1

    exe = B.build_client(build)
    root = B.workroot("/tmp/autotls-bench-staple-")
    print(f"nginx stapling bench: 1 name, {cycles} cycles x {secs}s slices, concurrency "
          f"{conc}, server core {B.SERVER_CORE}, client core {B.CLIENT_CORE}; work dir {root}",
          flush=True)
    ca = B.LocalCA()
    pebble = responder = None
    servers = {}
    problems = []
    try:
        # the responder's URL goes into the leaf, the response needs the leaf
        responder = FixedResponder(b"")
        chain, kpem, cert = ca.leaf(NAME, ocsp_url=responder.url)
        responder.der = make_response(ca, cert)
        crt, key = os.path.join(root, "leaf.crt"), os.path.join(root, "leaf.key")
        staple_file = os.path.join(root, "staple.der")
        with open(crt, "w") as f:
            f.write(chain)
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(kpem)
        with open(staple_file, "wb") as f:
            f.write(responder.der)
        os.chmod(staple_file, 0o644)

        pebble, ca_file, owner = B.issuer_pebble(root, "nginx")
        store = os.path.join(root, "store")
        B.seed_store(store, {NAME: (crt, key, chain, kpem, cert)}, pebble.directory, ca_file,
                     owner)

        bodies = {}
        for k in ("static", "static_b"):
            p = B.free_port()
            bodies[k] = (p, conf_static(crt, key, p, staple_file), None)
        p = B.free_port()
        bodies["static_plain"] = (p, conf_static(crt, key, p, None), None)
        p = B.free_port()
        bodies["autotls"] = (p, conf_autotls([NAME], p, store, pebble, ca_file), module)
        for k, (p, body, mod) in bodies.items():
            srv = B.nginx_server(root, k, body, p, NAME, mod)
            print(f"  starting {k} ...", flush=True)
            srv.start()
            servers[k] = srv
            B.check_serves(srv, {NAME: (crt, key, chain, kpem, cert)}, [NAME])

        # autotls fetches the response in the background: wait for it, then
        # both sides must staple byte-identical responses
        t0 = time.monotonic()
        got = None
        while time.monotonic() - t0 < staple_wait:
            got = stapled_der(servers["autotls"].port)
            if got:
                break
            time.sleep(0.2)
        if not got:
            raise RuntimeError(f"INVALID: autotls stapled nothing within {staple_wait:.0f}s "
                               f"(responder asked {responder.requests} times); see "
                               f"{root}/autotls.error.log")
        print(f"    autotls: stapling after {time.monotonic() - t0:.1f}s "
              f"(responder asked {responder.requests} times)", flush=True)
        for k in STAPLING:
            der = stapled_der(servers[k].port)
            if der != responder.der:
                raise RuntimeError(f"INVALID: {k} staples "
                                   f"{'nothing' if der is None else 'a different response'}")
        if stapled_der(servers["static_plain"].port) is not None:
            raise RuntimeError("INVALID: static_plain staples")

        client = B.Client(exe, 1, conc, extra=("-s",))
        targets = [dict(key=k, client=client, port=s.port, pids=s.workers())
                   for k, s in servers.items()]
        print(f"  measuring {len(targets)} configurations ...", flush=True)
        res = B.interleave(targets, cycles, secs)
        client.close()

        # every handshake counted on a stapling configuration carried a staple
        for k in STAPLING:
            for r in res[k]:
                if r["stapled"] != r["ok"]:
                    problems.append(f"INVALID: {k} cycle {r['cycle']}: {r['stapled']:.0f} of "
                                    f"{r['ok']:.0f} handshakes stapled")
        if any(r["stapled"] for r in res["static_plain"]):
            problems.append("INVALID: static_plain stapled")

        print("\nnginx: full TLS 1.3 ECDSA P-256 handshakes with OCSP stapling, 1 name "
              "(medians over cycles; ratios are per-cycle medians [min..max])")
        rows = B.summarize(res, [("static", ["static", "static_b", "autotls",
                                             "static_plain"])])
        print("\ntargets:")
        for row in rows:
            if row["key"] == "autotls":
                ok = row["ratio"] >= 0.99 and not problems
                print(f"  autotls_stapling/static_stapling rate ratio {row['ratio']:.3f} "
                      f"(target >= 0.99): {'MET' if ok else 'NOT MET'}; CPU/handshake "
                      f"static/autotls {row['cpu_ratio']:.3f}; A/A "
                      f"{next(r['ratio'] for r in rows if r['key'] == 'static_b'):.3f}")
        B.note_unsaturated(rows)
    except Exception as e:   # noqa: BLE001 - say why, exit 1
        problems.append(str(e))
    finally:
        if responder is not None:
            responder.close()
        B.cleanup(servers.values(), pebble, root, keep=bool(problems))
    return B.finish(problems)


if __name__ == "__main__":
    sys.exit(main())
