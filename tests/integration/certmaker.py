"""Static certificates for the monitoring tests, made with the openssl CLI
(the certificates an operator installs by hand, which autotls does not
manage): a root CA and an intermediate, and leaves that are valid, expired,
not yet valid, expiring in N minutes, with a name mismatch, RSA-1024,
SHA-1-signed, or served without their intermediate.

    cm = CertMaker(dir)                    # the CA pair, made once
    leaf = cm.valid("ok.test")             # Leaf(cert=, key=, leaf=, names=)
    leaf = cm.expired("old.test")
    leaf = cm.expiring("soon.test", minutes=30)

leaf.cert is what a server is configured with (the leaf, the intermediate
and the root, or the leaf alone for no_intermediate / self_signed),
leaf.key the private key (0600), leaf.leaf the leaf alone, cm.root the
root CA certificate a client would trust, cm.chain the intermediate and
the root (openssl s_server -cert_chain).  The root is served too because
it is in no system trust store: a chain ending at the intermediate would
be an incomplete chain, a finding of its own.

openssl ca is used because it is the only command of OpenSSL 3.0 that sets
an arbitrary notBefore/notAfter (x509 -req only counts days from now).
Servers must lower their security level to load an RSA-1024 or SHA-1 leaf
(openssl s_server -cipher DEFAULT:@SECLEVEL=0, nginx ssl_ciphers
DEFAULT:@SECLEVEL=0, Apache SSLCipherSuite DEFAULT:@SECLEVEL=0).
"""
import collections
import datetime
import os
import subprocess

Leaf = collections.namedtuple("Leaf", "cert key leaf names")

SECLEVEL0 = "DEFAULT:@SECLEVEL=0"

_CA_CONF = """\
[ca]
default_ca = ca_here

[ca_here]
dir = {dir}
database = {dir}/index.txt
serial = {dir}/serial
new_certs_dir = {dir}/newcerts
policy = policy_any
unique_subject = no
copy_extensions = none
email_in_dn = no

[policy_any]
commonName = supplied

[v3_ca]
basicConstraints = critical, CA:true
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always

"""

# the leaf extensions, written per leaf with its subjectAltName appended
_LEAF_EXT = """\
[v3_leaf]
basicConstraints = critical, CA:false
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
"""


def _run(*argv):
    proc = subprocess.run(["openssl", *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def _asn1_time(when):
    """openssl ca -startdate/-enddate: YYYYMMDDHHMMSSZ (GeneralizedTime
    form, accepted for every year)."""
    return when.astimezone(datetime.timezone.utc).strftime("%Y%m%d%H%M%SZ")


def _now():
    return datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)


class CertMaker:
    def __init__(self, directory):
        self.dir = os.path.abspath(directory)
        self.ca_dir = os.path.join(self.dir, "ca")
        os.makedirs(os.path.join(self.ca_dir, "newcerts"), mode=0o700, exist_ok=True)
        with open(os.path.join(self.ca_dir, "index.txt"), "w"):
            pass
        with open(os.path.join(self.ca_dir, "serial"), "w") as f:
            f.write(os.urandom(8).hex().upper() + "\n")
        self.conf = os.path.join(self.ca_dir, "ca.cnf")
        with open(self.conf, "w") as f:
            f.write(_CA_CONF.format(dir=self.ca_dir))
        self.root, self.root_key = self._make_root()
        self.inter, self.inter_key = self._make_intermediate()
        self.chain = os.path.join(self.dir, "chain.pem")
        with open(self.chain, "w") as out:
            for path in (self.inter, self.root):
                with open(path) as f:
                    out.write(f.read())

    # ---- the CA pair ------------------------------------------------------

    def _key(self, path, kind="ec256"):
        if kind.startswith("rsa"):
            _run("genpkey", "-algorithm", "RSA", "-pkeyopt", f"rsa_keygen_bits:{kind[3:]}",
                 "-out", path)
        else:
            curve = {"ec256": "P-256", "ec384": "P-384", "ec224": "P-224"}[kind]
            _run("genpkey", "-algorithm", "EC", "-pkeyopt", f"ec_paramgen_curve:{curve}",
                 "-out", path)
        os.chmod(path, 0o600)
        return path

    def _make_root(self):
        key = self._key(os.path.join(self.ca_dir, "root.key"))
        cert = os.path.join(self.dir, "root.pem")
        _run("req", "-new", "-x509", "-key", key, "-out", cert, "-days", "3650",
             "-subj", "/CN=autotls test static root", "-config", self.conf,
             "-extensions", "v3_ca")
        return cert, key

    def _sign(self, csr, out, signer_cert, signer_key, ext, not_before, not_after,
              md="sha256", extfile=None):
        argv = ["ca", "-batch", "-notext", "-config", self.conf, "-in", csr, "-out", out,
                "-cert", signer_cert, "-keyfile", signer_key, "-md", md,
                "-startdate", _asn1_time(not_before), "-enddate", _asn1_time(not_after)]
        if extfile:
            argv += ["-extfile", extfile, "-extensions", ext]
        else:
            argv += ["-extensions", ext]
        _run(*argv)

    def _make_intermediate(self):
        key = self._key(os.path.join(self.ca_dir, "inter.key"))
        csr = os.path.join(self.ca_dir, "inter.csr")
        _run("req", "-new", "-key", key, "-out", csr, "-subj",
             "/CN=autotls test static intermediate")
        cert = os.path.join(self.dir, "intermediate.pem")
        now = _now()
        self._sign(csr, cert, self.root, self.root_key, "v3_ca",
                   now - datetime.timedelta(days=30), now + datetime.timedelta(days=3000))
        return cert, key

    # ---- leaves -------------------------------------------------------------

    def leaf(self, label, names, not_before=None, not_after=None, key="ec256", md="sha256",
             chain=True):
        """A leaf for names (DNS names or IP literals) named label in the
        directory; chain=False leaves the intermediate out of leaf.cert."""
        now = _now()
        not_before = not_before or now - datetime.timedelta(days=1)
        not_after = not_after or now + datetime.timedelta(days=90)
        key_path = self._key(os.path.join(self.dir, f"{label}.key"), key)
        csr = os.path.join(self.ca_dir, f"{label}.csr")
        _run("req", "-new", "-key", key_path, "-out", csr, "-subj", f"/CN={names[0]}")
        san = ",".join(("IP:" if _is_ip(n) else "DNS:") + n for n in names)
        ext = os.path.join(self.ca_dir, f"{label}.ext")
        with open(ext, "w") as f:
            f.write(_LEAF_EXT + f"subjectAltName = {san}\n")
        leaf = os.path.join(self.dir, f"{label}.leaf.pem")
        self._sign(csr, leaf, self.inter, self.inter_key, "v3_leaf", not_before, not_after,
                   md=md, extfile=ext)
        cert = os.path.join(self.dir, f"{label}.pem")
        with open(leaf) as f:
            text = f.read()
        if chain:
            with open(self.chain) as f:
                text += f.read()
        with open(cert, "w") as f:
            f.write(text)
        return Leaf(cert=cert, key=key_path, leaf=leaf, names=list(names))

    def valid(self, name, *more):
        return self.leaf(f"valid-{name}", [name, *more])

    def expired(self, name):
        now = _now()
        return self.leaf(f"expired-{name}", [name], now - datetime.timedelta(days=100),
                         now - datetime.timedelta(days=10))

    def not_yet_valid(self, name):
        now = _now()
        return self.leaf(f"future-{name}", [name], now + datetime.timedelta(days=10),
                         now + datetime.timedelta(days=100))

    def expiring(self, name, minutes):
        now = _now()
        return self.leaf(f"expiring-{name}", [name], now - datetime.timedelta(days=1),
                         now + datetime.timedelta(minutes=minutes))

    def mismatch(self, served_name, cert_name="other.invalid"):
        """A leaf for cert_name that a server answers served_name with."""
        return self.leaf(f"mismatch-{served_name}", [cert_name])

    def rsa1024(self, name):
        return self.leaf(f"rsa1024-{name}", [name], key="rsa1024")

    def sha1(self, name):
        return self.leaf(f"sha1-{name}", [name], md="sha1")

    def no_intermediate(self, name):
        return self.leaf(f"nointer-{name}", [name], chain=False)

    def self_signed(self, name):
        """A self-signed leaf (not a finding: there is no chain to complete)."""
        key = self._key(os.path.join(self.dir, f"self-{name}.key"))
        cert = os.path.join(self.dir, f"self-{name}.pem")
        _run("req", "-new", "-x509", "-key", key, "-out", cert, "-days", "90",
             "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}")
        return Leaf(cert=cert, key=key, leaf=cert, names=[name])


def _is_ip(name):
    return ":" in name or name.replace(".", "").isdigit()
