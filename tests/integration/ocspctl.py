"""A real OCSP responder for the certificates a test's Pebble issues.

`openssl ocsp` answers, signing with Pebble's own issuing key (fetched from
Pebble's management interface: /intermediates/0 and /intermediate-keys/0),
from an index file this class writes from the serials the test registers
(see /work/shared/reference/test-environment.md, "OCSP and CRL in tests").

OpenSSL 3.0's responder reads its index once, so every index change restarts
it (stopped by PID, the new one waited for until it listens).  The URL the
certificates carry belongs to a small in-process relay that forwards each
request to the current `openssl ocsp` process: a restart is invisible to the
servers under test (no refused connection they would count as a failure),
and the relay counts and decodes every request (`requests`), so a test can
say which serials a server asked about and how often.  `stop()` closes the
relay's listener too: then the responder is really down.

The responder's port must be known before Pebble starts (Pebble writes the
URL into every certificate): take `port = free_port()`, start
`Pebble(ocsp_url=ocsp_url_for(port))`, then `OcspResponder(pebble, workdir,
port=port).start()`.  The `ocsp_pebble` fixture (conftest.py) does this.
"""
import base64
import datetime
import http.client
import http.server
import os
import subprocess
import threading
import time
import urllib.parse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

import procs
from util import cert_info, free_port, served_chain, split_pem_chain, wait_until

# An OCSPResponse with responseStatus tryLater (3) and no body, for serve_raw.
TRY_LATER = bytes.fromhex("30030a0103")

REASONS = ("unspecified", "keyCompromise", "CACompromise", "affiliationChanged",
           "superseded", "cessationOfOperation", "certificateHold", "removeFromCRL",
           "privilegeWithdrawn", "AACompromise")


def ocsp_url_for(port):
    return f"http://127.0.0.1:{port}/"


def index_serial(serial):
    """A serial as `openssl ocsp` looks it up in the index: upper-case hex
    of whole bytes (BN_bn2hex).  serial: int, or hex string in any case with
    or without leading zeros or colons."""
    if isinstance(serial, str):
        serial = int(serial.replace(":", ""), 16)
    h = format(serial, "X")
    return "0" + h if len(h) % 2 else h


def _index_time(when):
    return when.astimezone(datetime.timezone.utc).strftime("%y%m%d%H%M%SZ")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _load_cert(pem_or_cert):
    if isinstance(pem_or_cert, x509.Certificate):
        return pem_or_cert
    data = pem_or_cert.encode() if isinstance(pem_or_cert, str) else pem_or_cert
    return x509.load_pem_x509_certificate(data)


class _Relay(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _RelayHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):   # noqa: D401 - keep pytest output clean
        pass

    def do_GET(self):
        raw = urllib.parse.unquote(self.path.lstrip("/"))
        self._relay("GET", None, raw)

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self._relay("POST", body, None)

    def _relay(self, method, body, b64):
        self.server.responder._relayed(self, method, body, b64)


class OcspResponder:
    """`openssl ocsp` for one Pebble's intermediate 0.

    url             what Pebble writes into certificates (the relay)
    add_good(x)     x: certificate PEM/object (serial, notAfter, subject taken
                    from it) or a serial (int or hex); answered "good"
    add_serial_good(serial) the same for a bare serial
    revoke(x, reason="keyCompromise", when=None)  answered "revoked"
    forget(x)       answered "unknown" again
    set_wrong_key(True)  responses signed by a fresh unrelated key and
                    self-signed certificate: they never verify
    set_delegated(True)  responses signed by a delegated responder that
                    Pebble's intermediate certified (id-kp-OCSPSigning): valid
    serve_raw(data, status=200, content_type=...)  the relay answers this
                    instead of asking openssl (None: back to openssl), e.g.
                    TRY_LATER or garbage
    set_delay(seconds)  the relay waits this long before answering (a slow
                    or hanging responder; 0: none)
    stop() / start()  the responder down (connections refused) / up;
                    start() again after a Pebble restart (a new CA)
    requests        [(method, serial_hex_lower or None)] in order served
    request_count(serial=None)
    auto            (default True) a serial nobody registered is looked up
                    in Pebble when asked about: what Pebble issued is good,
                    what Pebble revoked is revoked, anything else unknown.
                    Explicit add_good/revoke/forget always win.  Set False
                    for "only what the test registered".
    add_good_served(port, sni) / add_good_from_store(store, cert_id, kt)
                    register what a server serves / what a store holds
    """

    def __init__(self, pebble, workdir, nmin=1, port=None, auto=True):
        self.pebble = pebble
        self.issuer = None
        self.workdir = os.path.join(workdir, f"ocsp-{id(self):x}")
        os.makedirs(self.workdir, mode=0o700, exist_ok=True)
        self.nmin = nmin
        self.port = port or free_port()
        self.url = ocsp_url_for(self.port)
        self.index_path = os.path.join(self.workdir, "index.txt")
        self.inter_path = os.path.join(self.workdir, "inter.pem")
        self.inter_key_path = os.path.join(self.workdir, "inter.key")
        self.entries = {}        # INDEX serial -> dict
        self.requests = []
        self._lock = threading.Lock()        # entries, requests, backend swap
        self._restart_lock = threading.Lock()  # one restart at a time, in order
        self.auto = auto
        self._wrong_key = False
        self._delegated = False
        self._raw = None
        self._delay = 0.0
        self._proc = None
        self._backend_port = None
        self._relay = None
        self._relay_thread = None
        self.restarts = 0

    # -- what Pebble signs with --------------------------------------------

    def _fetch_issuer(self):
        inter = self.pebble.intermediate_pem(0)
        key = self.pebble._get(f"{self.pebble.mgmt_url}/intermediate-keys/0")
        with open(self.inter_path, "w") as f:
            f.write(inter)
        fd = os.open(self.inter_key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
        self.issuer_pem = inter
        probe = os.path.join(self.workdir, "probe-req.der")
        if os.path.exists(probe):
            os.unlink(probe)
        self.issuer = x509.load_pem_x509_certificate(inter.encode())
        self._issuer_key = serialization.load_pem_private_key(key.encode(), None)

    def _signer_files(self):
        """(-rsigner, -rkey): the intermediate itself, a delegated responder
        it certified, or an unrelated self-signed key."""
        if self._wrong_key:
            return self._made_signer("wrong", None)
        if self._delegated:
            return self._made_signer("delegated", self.issuer)
        return self.inter_path, self.inter_key_path

    def _made_signer(self, kind, issuer):
        cert_path = os.path.join(self.workdir, f"{kind}.pem")
        key_path = os.path.join(self.workdir, f"{kind}.key")
        if os.path.exists(cert_path):
            return cert_path, key_path
        now = _now()
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"autotls test OCSP {kind}")])
        b = (x509.CertificateBuilder().subject_name(name)
             .issuer_name(issuer.subject if issuer is not None else name)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.OCSP_SIGNING]),
                            critical=False))
        cert = b.sign(self._issuer_key if issuer is not None else key, hashes.SHA256())
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        return cert_path, key_path

    # -- the index -----------------------------------------------------------

    def _entry_from(self, cert_or_serial):
        if isinstance(cert_or_serial, (int,)) or (
                isinstance(cert_or_serial, str) and "BEGIN" not in cert_or_serial):
            serial = index_serial(cert_or_serial)
            return serial, {"not_after": _now() + datetime.timedelta(days=90),
                            "subject": "/CN=unknown"}
        cert = _load_cert(cert_or_serial)
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return index_serial(cert.serial_number), {
            "not_after": cert.not_valid_after.replace(tzinfo=datetime.timezone.utc),
            "subject": "/CN=" + (cn[0].value if cn else "unknown")}

    def add_good(self, *certs_or_serials):
        """Registers certificates (PEM, object) or serials as good; restarts
        the responder once."""
        with self._lock:
            for c in certs_or_serials:
                serial, e = self._entry_from(c)
                e["status"] = "V"
                self.entries[serial] = e
        self._restart()

    def add_serial_good(self, serial):
        self.add_good(serial)

    def add_good_served(self, port, sni, host="127.0.0.1"):
        """Registers the leaf a server serves for sni as good; returns its
        serial (lower-case hex)."""
        leaf = served_chain(port, sni, host=host)[0]
        self.add_good(leaf)
        return cert_info(leaf)["serial"]

    def add_good_from_store(self, store, cert_id, key_type="ec256"):
        """Registers the leaf of certs/<cert_id>/<key_type>.pem as good;
        returns its serial (lower-case hex)."""
        with open(os.path.join(store, "certs", cert_id, f"{key_type}.pem")) as f:
            leaf = split_pem_chain(f.read())[0]
        self.add_good(leaf)
        return cert_info(leaf)["serial"]

    def revoke(self, cert_or_serial, reason="keyCompromise", when=None):
        if reason is not None and reason not in REASONS:
            raise ValueError(f"unknown CRLReason {reason!r}")
        with self._lock:
            serial, e = self._entry_from(cert_or_serial)
            e = {**e, **{k: v for k, v in self.entries.get(serial, {}).items()
                         if k in ("not_after", "subject")}}
            e.update(status="R", revoked_at=when or _now() - datetime.timedelta(seconds=5),
                     reason=reason)
            self.entries[serial] = e
        self._restart()

    def forget(self, cert_or_serial):
        """Answered "unknown" from now on (also with auto on)."""
        with self._lock:
            serial = self._entry_from(cert_or_serial)[0]
            self.entries[serial] = {"status": None}
        self._restart()

    def _learn(self, serial):
        """auto: a serial the index does not know yet is looked up in
        Pebble (/cert-status-by-serial): a certificate Pebble issued enters
        the index as good, or revoked when Pebble revoked it (ACME
        revokeCert, `autotls revoke`; entries learnt this way are looked up
        again at each request until Pebble says revoked).  Serials Pebble
        never issued stay unknown; whatever the test set explicitly is kept."""
        with self._lock:
            if not self.auto or serial is None:
                return
            known = self.entries.get(index_serial(serial))
            if known is not None and (not known.get("auto") or known["status"] == "R"):
                return
        try:
            st = self.pebble.cert_status(serial)
        except Exception:   # noqa: BLE001 - Pebble does not know it (404) or is down
            return
        if st.get("Status") not in ("Valid", "Revoked") or not st.get("Certificate"):
            return
        with self._lock:
            key, e = self._entry_from(st["Certificate"])
            old = self.entries.get(key)
            if old is not None and (not old.get("auto") or old["status"] == "R"
                                    or st["Status"] == "Valid"):
                return
            e["auto"] = True
            if st["Status"] == "Valid":
                e["status"] = "V"
            else:
                reason = st.get("Reason")
                e.update(status="R", revoked_at=_now() - datetime.timedelta(seconds=5),
                         reason=REASONS[reason] if isinstance(reason, int)
                         and 0 <= reason < len(REASONS) and reason != 7 else None)
            self.entries[key] = e
        self._restart()

    def _write_index(self):
        lines = []
        for serial, e in self.entries.items():
            if e["status"] is None:
                continue        # forgotten: unknown
            rev = ""
            if e["status"] == "R":
                rev = _index_time(e["revoked_at"]) + (f",{e['reason']}" if e["reason"] else "")
            lines.append("\t".join([e["status"], _index_time(e["not_after"]), rev, serial,
                                    "unknown", e["subject"]]))
        tmp = self.index_path + ".tmp"
        with open(tmp, "w") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, self.index_path)
        with open(self.index_path + ".attr", "w") as f:
            f.write("unique_subject = no\n")

    # -- modes ------------------------------------------------------------------

    def set_wrong_key(self, on=True):
        self._wrong_key = bool(on)
        self._restart()

    def set_delegated(self, on=True):
        self._delegated = bool(on)
        self._restart()

    def serve_raw(self, data, status=200, content_type="application/ocsp-response"):
        with self._lock:
            self._raw = None if data is None else (status, content_type, data)

    def set_delay(self, seconds):
        with self._lock:
            self._delay = float(seconds)

    # -- processes --------------------------------------------------------------

    def start(self):
        """Fetches Pebble's current intermediate (a restarted Pebble has a
        new CA), starts openssl and the relay; returns self."""
        self._fetch_issuer()
        self._restart()
        if self._relay is None:
            self._relay = _Relay(("127.0.0.1", self.port), _RelayHandler)
            self._relay.responder = self
            self._relay_thread = threading.Thread(target=self._relay.serve_forever,
                                                  name="ocsp-relay", daemon=True)
            self._relay_thread.start()
        return self

    def _spawn(self):
        rsigner, rkey = self._signer_files()
        port = free_port()
        log = open(os.path.join(self.workdir, "openssl-ocsp.log"), "ab")
        proc = procs.spawn(["openssl", "ocsp", "-index", self.index_path, "-port", str(port),
                            "-rsigner", rsigner, "-rkey", rkey, "-CA", self.inter_path,
                            "-nmin", str(self.nmin), "-ignore_err"],
                           stdout=log, stderr=subprocess.STDOUT)
        log.close()

        def listening():
            # a real request: a connection closed without one wedges
            # OpenSSL 3.0's responder (it waits on it for ever)
            if proc.poll() is not None:
                raise RuntimeError(f"openssl ocsp exited with {proc.returncode}; "
                                   f"see {self.workdir}/openssl-ocsp.log")
            return self._post(port, self._probe_request()) is not None
        wait_until(listening, timeout=15, interval=0.05, what="openssl ocsp to listen")
        return proc, port

    def _probe_request(self):
        """An OCSP request (for serial 1) made once per issuer."""
        path = os.path.join(self.workdir, "probe-req.der")
        if not os.path.exists(path):
            subprocess.run(["openssl", "ocsp", "-issuer", self.inter_path, "-serial", "0x01",
                            "-no_nonce", "-reqout", path], check=True, capture_output=True,
                           timeout=30)
        with open(path, "rb") as f:
            return f.read()

    @staticmethod
    def _post(port, body, timeout=2):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            conn.request("POST", "/", body=body,
                         headers={"Content-Type": "application/ocsp-request"})
            resp = conn.getresponse()
            return resp.read() if resp.status == 200 else None
        finally:
            conn.close()

    def _restart(self):
        """A new openssl process on the current index and signer; the old one
        is stopped by PID once the new one listens (the relay switches under
        the lock, so no request sees neither; a request the old one was
        answering when stopped is sent again to the new one: _relayed)."""
        if self.issuer is None:
            return          # not started yet: start() writes and spawns
        with self._restart_lock:
            with self._lock:
                self._write_index()
            proc, port = self._spawn()
            with self._lock:
                old, self._proc, self._backend_port = self._proc, proc, port
            if old is not None:
                procs.stop(old)
            self.restarts += 1

    def stop(self):
        """The responder is down: connections to url are refused."""
        if self._relay is not None:
            self._relay.shutdown()
            self._relay.server_close()
            self._relay = None
        with self._lock:
            old, self._proc = self._proc, None
        if old is not None:
            procs.stop(old)

    close = stop

    @property
    def running(self):
        return self._relay is not None

    # -- the relay ----------------------------------------------------------------

    def _relayed(self, handler, method, body, b64):
        serial = None
        try:
            der = body if method == "POST" else base64.b64decode(b64)
            req = ocsp.load_der_ocsp_request(der)
            serial = format(req.serial_number, "x")
            serial = "0" + serial if len(serial) % 2 else serial
        except Exception:   # noqa: BLE001 - a malformed request is forwarded as is
            pass
        self._learn(serial)
        with self._lock:
            self.requests.append((method, serial))
            raw, port, delay = self._raw, self._backend_port, self._delay
        if delay:
            time.sleep(delay)   # a slow responder, on purpose
        if raw is not None:
            status, ctype, data = raw
            return self._answer(handler, status, ctype, data)
        got = self._forward(handler, method, body, port)
        if got is None:
            self._answer(handler, 502, "text/plain", b"openssl ocsp did not answer\n")
        else:
            self._answer(handler, *got)

    def _forward(self, handler, method, body, port):
        """(status, content type, body) from openssl ocsp, or None when it
        does not answer.  A _restart() stops the old process, which may be
        answering this very request (or refuse it): then the request goes
        again to the new one once it listens (for up to ~10 s), so restarts
        stay invisible to clients."""
        path = handler.path if method == "GET" else "/"
        deadline = time.monotonic() + 10
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request(method, path, body=body,
                             headers={"Content-Type": "application/ocsp-request"} if body else {})
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.getheader("Content-Type",
                                                   "application/ocsp-response"), data
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
            # retry only while a restart is under way or has switched ports
            while True:
                with self._lock:
                    new_port, proc = self._backend_port, self._proc
                if proc is None or time.monotonic() >= deadline:
                    return None         # stopped, or it really does not answer
                if new_port != port:
                    port = new_port
                    break
                if not self._restart_lock.locked():
                    return None         # no restart: a real failure
                time.sleep(0.05)

    @staticmethod
    def _answer(handler, status, ctype, data):
        handler.send_response(status)
        handler.send_header("Content-Type", ctype)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def request_count(self, serial=None):
        """Requests served so far (for serial: lower-case hex, any case accepted)."""
        with self._lock:
            if serial is None:
                return len(self.requests)
            want = index_serial(serial).lower()
            return sum(1 for _, s in self.requests if s == want)

    # -- asking it directly ---------------------------------------------------------

    def query(self, serial, issuer_path=None, respout=None, timeout=10):
        """`openssl ocsp -issuer -serial -url -resp_text` against url, with
        the intermediate as the only trust anchor (-CAfile, -partial_chain):
        {"status": "good"|"revoked"|"unknown"|None, "verified": bool,
        "text": output}.  verified: the response is signed by the
        intermediate or by a responder it certified.  respout: also write
        the DER response there (e.g. for `openssl s_server -status_file`);
        timeout: seconds the client waits for the answer."""
        issuer_path = issuer_path or self.inter_path
        serial_arg = "0x" + index_serial(serial)
        argv = ["openssl", "ocsp", "-issuer", issuer_path, "-serial", serial_arg,
                "-url", self.url, "-CAfile", issuer_path, "-partial_chain", "-resp_text",
                "-timeout", str(timeout)]
        if respout:
            argv += ["-respout", respout]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        status = None
        for line in out.splitlines():
            s = line.strip()
            if s.startswith(serial_arg + ":"):
                status = s.split(":", 1)[1].strip()
        return {"status": status, "verified": "Response verify OK" in out, "text": out}
