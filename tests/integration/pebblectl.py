"""Start and stop a private Pebble ACME CA and pebble-challtestsrv on loopback.

Every instance gets fresh ports, a fresh TLS certificate for its own HTTPS
listener and (inside Pebble) a fresh CA, so tests never see state from an
earlier run.  Every DNS name resolves to 127.0.0.1 through challtestsrv.
"""
import datetime
import json
import os
import shutil
import signal
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import procs
from util import free_port, wait_until

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def _write_listener_pki(workdir):
    """A small CA and a leaf for 127.0.0.1/localhost: Pebble's own HTTPS."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "autotls test listener CA")])
    ca = (x509.CertificateBuilder()
          .subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {
        "ca": os.path.join(workdir, "listener-ca.pem"),
        "cert": os.path.join(workdir, "listener-cert.pem"),
        "key": os.path.join(workdir, "listener-key.pem"),
    }
    with open(paths["ca"], "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    with open(paths["cert"], "wb") as f:
        f.write(leaf.public_bytes(serialization.Encoding.PEM))
    with open(paths["key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(paths["key"], 0o600)
    return paths


class Pebble:
    """One Pebble + challtestsrv pair.  Use start()/stop(); stop() is idempotent."""

    def __init__(self, validity=None, eab=None, env=None, workdir=None, ocsp_url=None):
        for binary in (PEBBLE, CHALLTESTSRV):
            if not os.access(binary, os.X_OK):
                raise RuntimeError(f"{binary} not found: run 'make deps' (Debian package pebble)")
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix="autotls-pebble-")
        os.chmod(self.workdir, 0o755)
        self.validity = validity
        self.eab = eab
        self.env = dict(env or {})
        # written into the AIA of every certificate issued (ocspctl.py
        # answers there); Pebble itself answers no OCSP
        self.ocsp_url = ocsp_url or ""
        self.port = free_port()
        self.mgmt_port = free_port()
        self.http_port = free_port()
        self.tls_port = free_port()
        self.dns_port = free_port(udp=True)
        self.chall_port = free_port()
        self.directory = f"https://127.0.0.1:{self.port}/dir"
        self.mgmt_url = f"https://127.0.0.1:{self.mgmt_port}"
        self.chall_url = f"http://127.0.0.1:{self.chall_port}"
        self.pki = _write_listener_pki(self.workdir)
        self.ca_file = self.pki["ca"]
        self._pebble = None
        self._chall = None
        self._write_config()

    def _write_config(self):
        conf = {
            "listenAddress": f"127.0.0.1:{self.port}",
            "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
            "certificate": self.pki["cert"],
            "privateKey": self.pki["key"],
            "httpPort": self.http_port,
            "tlsPort": self.tls_port,
            "ocspResponderURL": self.ocsp_url,
            "externalAccountBindingRequired": bool(self.eab),
        }
        if self.eab:
            conf["externalAccountMACKeys"] = self.eab
        if self.validity is not None:
            conf["certificateValidityPeriod"] = int(self.validity)
        self.config_path = os.path.join(self.workdir, "pebble-config.json")
        with open(self.config_path, "w") as f:
            json.dump({"pebble": conf}, f, indent=2)

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        if self._chall is None:
            log = open(os.path.join(self.workdir, "challtestsrv.log"), "ab")
            self._chall = procs.spawn(
                [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
                 "-dns01", f"127.0.0.1:{self.dns_port}",
                 "-management", f"127.0.0.1:{self.chall_port}",
                 "-http01", "", "-https01", "", "-tlsalpn01", ""],
                stdout=log, stderr=subprocess.STDOUT)
        if self._pebble is None:
            env = dict(os.environ)
            env.setdefault("PEBBLE_VA_NOSLEEP", "1")
            env.update(self.env)
            env.setdefault("PEBBLE_VA_NOSLEEP", "1")
            log = open(os.path.join(self.workdir, "pebble.log"), "ab")
            self._pebble = procs.spawn(
                [PEBBLE, "-config", self.config_path,
                 "-dnsserver", f"127.0.0.1:{self.dns_port}"],
                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.workdir)
        wait_until(self._ready, timeout=30, what="Pebble to answer its directory",
                   first_interval=0.05)
        return self

    def _ready(self):
        for proc, name in ((self._pebble, "pebble"), (self._chall, "challtestsrv")):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}; see {self.workdir}")
        try:
            self._get(self.directory)
            urllib.request.urlopen(self.chall_url + "/", timeout=2)
        except urllib.error.HTTPError:
            return True     # challtestsrv answers 404 on "/": it is up
        except Exception:
            return False
        return True

    def stop(self):
        """Stops Pebble only (challtestsrv keeps running) so start() brings it back."""
        if self._pebble is not None:
            procs.stop(self._pebble)
            self._pebble = None

    def close(self):
        self.stop()
        if self._chall is not None:
            procs.stop(self._chall)
            self._chall = None
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def running(self):
        return self._pebble is not None and self._pebble.poll() is None

    # -- management API ----------------------------------------------------

    def _ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_file)

    def _get(self, url):
        with urllib.request.urlopen(url, context=self._ssl_context(), timeout=10) as r:
            return r.read().decode()

    def roots_pem(self):
        """Every current root (the default one and any alternates), concatenated."""
        pems = []
        for i in range(0, 10):
            try:
                pems.append(self._get(f"{self.mgmt_url}/roots/{i}"))
            except urllib.error.HTTPError:
                break
        return "".join(pems)

    def root_pem(self, i=0):
        return self._get(f"{self.mgmt_url}/roots/{i}")

    def intermediate_pem(self, i=0):
        return self._get(f"{self.mgmt_url}/intermediates/{i}")

    def cert_status(self, serial_hex):
        serial = serial_hex.lower().lstrip("0") or "0"
        return json.loads(self._get(f"{self.mgmt_url}/cert-status-by-serial/{serial}"))

    def _chall_post(self, path, body):
        req = urllib.request.Request(self.chall_url + path, data=json.dumps(body).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    def set_txt(self, name, value):
        host = name if name.endswith(".") else name + "."
        self._chall_post("/set-txt", {"host": host, "value": value})

    def clear_txt(self, name):
        host = name if name.endswith(".") else name + "."
        self._chall_post("/clear-txt", {"host": host})

    # -- what Pebble was asked ---------------------------------------------

    def orders(self):
        """How many new orders Pebble accepted since its workdir was made.
        Pebble logs "Added order <id> to the db" once per successful
        newOrder request (wfe.go, before its reply), and nothing for a
        refused one; its log is appended across restarts, so the count is
        over this instance's whole life.  Tests compare counts before and
        after: a difference of 0 means nothing was ordered."""
        try:
            with open(os.path.join(self.workdir, "pebble.log"), errors="replace") as f:
                return sum(1 for line in f if "Added order " in line)
        except FileNotFoundError:
            return 0
