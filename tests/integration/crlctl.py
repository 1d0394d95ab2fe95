"""CRLs in tests: a test CA made with `openssl req` / `openssl ca`, leaves
that name a CRL Distribution Point (and no OCSP responder), CRLs made with
`openssl ca -gencrl`, and a loopback HTTP server that publishes them.

Pebble 2.4 writes no CRL Distribution Point, so the CRL tests seed a
server's store with these leaves (storeseed.py) and let the server replace
a listed one through Pebble.

    srv = CrlServer().start()                 # free port, thread
    ca = TestCA(workdir, crl_url=srv.url("ca.crl"))
    leaf = ca.issue(["a.crl.test"], days=30)  # Leaf: key_pem, cert_pem, chain_pem, serial
    srv.publish("ca.crl", ca.gencrl())        # DER, ETag, Last-Modified
    ca.revoke(leaf)
    srv.publish("ca.crl", ca.gencrl())
    srv.count("ca.crl")                       # GETs of /ca.crl (200 and 304)
    srv.stop()
"""
import datetime
import email.utils
import hashlib
import http.server
import os
import subprocess
import threading

from cryptography import x509

from util import free_port

CA_CONF = """\
[ ca ]
default_ca = this_ca

[ this_ca ]
dir              = {dir}
database         = {dir}/index.txt
new_certs_dir    = {dir}/newcerts
serial           = {dir}/serial
crlnumber        = {dir}/crlnumber
default_md       = sha256
policy           = any_name
unique_subject   = no
copy_extensions  = none
default_days     = 30
default_crl_hours = 24
email_in_dn      = no

[ any_name ]
commonName       = supplied

[ req ]
distinguished_name = req_dn
prompt           = no

[ req_dn ]
CN = unused

[ v3_root ]
basicConstraints = critical, CA:true
keyUsage         = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_intermediate ]
basicConstraints = critical, CA:true, pathlen:0
keyUsage         = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""

LEAF_EXT = """\
[ leaf ]
basicConstraints = critical, CA:false
keyUsage         = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
subjectAltName   = {san}
{cdp}
"""


def _run(argv, cwd=None):
    p = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=60)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])} failed ({p.returncode}): {p.stderr[-800:]}")
    return p.stdout


def _ca_time(when):
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def _serial_lower(n):
    h = format(n, "x")
    return "0" + h if len(h) % 2 else h


class Leaf:
    """A leaf the test CA issued: key_pem (PKCS#8), cert_pem, chain_pem
    (leaf + intermediate, as a server serves it), serial (lower-case hex,
    whole bytes, as autotls and util.cert_info print it), names, cert."""

    def __init__(self, names, key_pem, cert_pem, inter_pem):
        self.names = list(names)
        self.key_pem = key_pem
        self.cert_pem = cert_pem
        self.chain_pem = cert_pem + inter_pem
        self.cert = x509.load_pem_x509_certificate(cert_pem.encode())
        self.serial = _serial_lower(self.cert.serial_number)


class TestCA:
    """Root and intermediate (P-256) made with openssl; the intermediate
    issues the leaves and signs the CRLs.  crl_url: the CRL Distribution
    Point written into every leaf unless issue() is given another one."""

    __test__ = False      # not a pytest class despite its name

    def __init__(self, workdir, crl_url=None, name="autotls test CRL CA"):
        self.dir = os.path.join(workdir, f"testca-{os.urandom(3).hex()}")
        self.crl_url = crl_url
        self.root_dir = os.path.join(self.dir, "root")
        self.int_dir = os.path.join(self.dir, "intermediate")
        for d in (self.root_dir, self.int_dir):
            os.makedirs(os.path.join(d, "newcerts"), mode=0o700)
            open(os.path.join(d, "index.txt"), "w").close()
            with open(os.path.join(d, "index.txt.attr"), "w") as f:
                f.write("unique_subject = no\n")
            with open(os.path.join(d, "serial"), "w") as f:
                f.write(os.urandom(8).hex().upper() + "\n")
            with open(os.path.join(d, "crlnumber"), "w") as f:
                f.write("01\n")
            with open(os.path.join(d, "ca.cnf"), "w") as f:
                f.write(CA_CONF.format(dir=d))
        r, i = self.root_dir, self.int_dir
        self.root_key = os.path.join(r, "ca.key")
        self.root_cert = os.path.join(r, "ca.pem")
        self.key = os.path.join(i, "ca.key")
        self.cert = os.path.join(i, "ca.pem")
        _run(["openssl", "req", "-x509", "-new", "-newkey", "ec", "-pkeyopt",
              "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.root_key,
              "-out", self.root_cert, "-days", "30", "-subj", f"/CN={name} root",
              "-config", os.path.join(r, "ca.cnf"), "-extensions", "v3_root"])
        csr = os.path.join(i, "ca.csr")
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", self.key, "-out", csr, "-subj", f"/CN={name} intermediate",
              "-config", os.path.join(i, "ca.cnf")])
        _run(["openssl", "ca", "-batch", "-config", os.path.join(r, "ca.cnf"),
              "-keyfile", self.root_key, "-cert", self.root_cert, "-extensions",
              "v3_intermediate", "-days", "30", "-notext", "-in", csr, "-out", self.cert])
        with open(self.cert) as f:
            self.inter_pem = f.read()
        with open(self.root_cert) as f:
            self.root_pem = f.read()
        self.leaves = []

    def issue(self, names, days=30, valid_for=None, crl_url=None, cdp=True):
        """A P-256 leaf for names (the first is the CN), valid from an hour
        ago for `days` days (or the timedelta valid_for), with a CRL
        Distribution Point (crl_url or the CA's; cdp=False: none) and no
        Authority Information Access (no OCSP responder)."""
        url = crl_url or self.crl_url
        if cdp and not url:
            raise ValueError("a CRL Distribution Point needs a URL (crl_url)")
        tag = os.urandom(4).hex()
        key = os.path.join(self.int_dir, f"leaf-{tag}.key")
        csr = os.path.join(self.int_dir, f"leaf-{tag}.csr")
        crt = os.path.join(self.int_dir, f"leaf-{tag}.pem")
        ext = os.path.join(self.int_dir, f"leaf-{tag}.ext")
        san = ", ".join(f"DNS:{n}" for n in names)
        with open(ext, "w") as f:
            f.write(LEAF_EXT.format(san=san, cdp=f"crlDistributionPoints = URI:{url}"
                                    if cdp else ""))
        _run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
              "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={names[0]}",
              "-config", os.path.join(self.int_dir, "ca.cnf")])
        now = _now()
        end = now + (valid_for if valid_for is not None else datetime.timedelta(days=days))
        _run(["openssl", "ca", "-batch", "-config", os.path.join(self.int_dir, "ca.cnf"),
              "-keyfile", self.key, "-cert", self.cert, "-extfile", ext, "-extensions", "leaf",
              "-startdate", _ca_time(now - datetime.timedelta(hours=1)),
              "-enddate", _ca_time(end), "-notext", "-in", csr, "-out", crt])
        with open(key) as f:
            key_pem = f.read()
        with open(crt) as f:
            cert_pem = f.read()
        os.unlink(key)
        leaf = Leaf(names, key_pem, cert_pem, self.inter_pem)
        self.leaves.append(leaf)
        return leaf

    def revoke(self, leaf, reason="keyCompromise"):
        """`openssl ca -revoke` of a leaf this CA issued (Leaf or its PEM)."""
        pem = leaf.cert_pem if isinstance(leaf, Leaf) else leaf
        path = os.path.join(self.int_dir, f"revoke-{os.urandom(4).hex()}.pem")
        with open(path, "w") as f:
            f.write(pem)
        argv = ["openssl", "ca", "-config", os.path.join(self.int_dir, "ca.cnf"),
                "-keyfile", self.key, "-cert", self.cert, "-revoke", path]
        if reason:
            argv += ["-crl_reason", reason]
        _run(argv)

    def gencrl(self, hours=None, secs=None, pem=False):
        """`openssl ca -gencrl` signed by the intermediate: DER bytes (PEM
        text with pem=True).  nextUpdate: thisUpdate + hours (default 24)
        or + secs."""
        out = os.path.join(self.int_dir, f"crl-{os.urandom(4).hex()}.pem")
        argv = ["openssl", "ca", "-gencrl", "-config", os.path.join(self.int_dir, "ca.cnf"),
                "-keyfile", self.key, "-cert", self.cert, "-crlexts", "crl_ext", "-out", out]
        if secs is not None:
            argv += ["-crlsec", str(int(secs))]
        elif hours is not None:
            argv += ["-crlhours", str(int(hours))]
        _run(argv)
        if pem:
            with open(out) as f:
                return f.read()
        return subprocess.run(["openssl", "crl", "-in", out, "-outform", "DER"],
                              capture_output=True, check=True, timeout=30).stdout


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        self.server.crl._serve(self, head=False)

    def do_HEAD(self):
        self.server.crl._serve(self, head=True)


class CrlServer:
    """Loopback HTTP publishing CRLs by name (GET /NAME): 200 with ETag and
    Last-Modified; 304 when If-None-Match matches the ETag or (without
    If-None-Match) If-Modified-Since is not older than Last-Modified; 404
    for anything else.  Every request is counted per name, whatever the
    answer: requests[name], count(name), log [(name, status, conditional)]."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.files = {}           # name -> (data, etag, last_modified, content_type)
        self.requests = {}
        self.log = []
        self._lock = threading.Lock()
        self._httpd = None
        self._thread = None

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def start(self):
        self._httpd = _Server(("127.0.0.1", self.port), _Handler)
        self._httpd.crl = self
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="crl-server",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    close = stop

    def publish(self, name, data, content_type="application/pkix-crl"):
        """Serves data at /name from now on, with a new ETag and
        Last-Modified (now)."""
        if isinstance(data, str):
            data = data.encode()
        etag = '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
        modified = email.utils.formatdate(usegmt=True)
        with self._lock:
            self.files[name] = (data, etag, modified, content_type)

    def unpublish(self, name):
        with self._lock:
            self.files.pop(name, None)

    def count(self, name=None):
        with self._lock:
            if name is None:
                return sum(self.requests.values())
            return self.requests.get(name, 0)

    def _serve(self, h, head):
        name = h.path.split("?", 1)[0].lstrip("/")
        inm = h.headers.get("If-None-Match")
        ims = h.headers.get("If-Modified-Since")
        with self._lock:
            self.requests[name] = self.requests.get(name, 0) + 1
            entry = self.files.get(name)
        if entry is None:
            status, body, headers = 404, b"not found\n", {"Content-Type": "text/plain"}
        else:
            data, etag, modified, ctype = entry
            headers = {"ETag": etag, "Last-Modified": modified}
            if inm is not None:
                fresh = etag in [t.strip() for t in inm.split(",")] or inm.strip() == "*"
            elif ims is not None:
                try:
                    fresh = (email.utils.parsedate_to_datetime(ims)
                             >= email.utils.parsedate_to_datetime(modified))
                except (TypeError, ValueError):
                    fresh = False
            else:
                fresh = False
            if fresh:
                status, body = 304, b""
            else:
                status, body = 200, data
                headers["Content-Type"] = ctype
        with self._lock:
            self.log.append((name, status, {"If-None-Match": inm, "If-Modified-Since": ims}))
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        if status != 304:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if not head and status != 304:
            h.wfile.write(body)
