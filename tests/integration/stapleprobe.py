"""What a TLS client that asks for OCSP status gets from a server.

staple_of()      `openssl s_client -status`: the facts it prints about the
                 stapled response (or that none was sent), plus the served
                 leaf's serial.
fetch_staple()   one handshake through libssl (ctypes) asking for status:
                 the stapled response's DER and the served chain, for
                 verify_staple(), which lets `openssl ocsp` check it against
                 the issuer as the only trusted responder.
"""
import ctypes
import ctypes.util
import datetime
import os
import re
import socket
import struct
import subprocess
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from util import PEM_RE, cert_info

_TIME_FMT = "%b %d %H:%M:%S %Y %Z"


def _parse_time(s):
    s = re.sub(r"\s+", " ", s.strip())
    return datetime.datetime.strptime(s, _TIME_FMT).replace(tzinfo=datetime.timezone.utc)


def _serial_lower(hexstr):
    h = hexstr.strip().replace(":", "").lower().lstrip("0") or "0"
    return "0" + h if len(h) % 2 else h


def parse_status_text(text):
    """The OCSP facts in `openssl s_client -status` / `openssl ocsp
    -resp_text` output: {"sent", "response_status", "cert_status",
    "serial" (lower-case hex, whole bytes), "this_update", "next_update"
    (aware datetimes or None), "revocation_reason", "revocation_time"}."""
    facts = {"sent": False, "response_status": None, "cert_status": None, "serial": None,
             "this_update": None, "next_update": None, "revocation_reason": None,
             "revocation_time": None}
    if "OCSP response: no response sent" in text:
        return facts
    m = re.search(r"OCSP Response Status: (\w+)", text)
    if not m:
        return facts
    facts["sent"] = True
    facts["response_status"] = m.group(1)
    patterns = {
        "cert_status": r"Cert Status: (\w+)",
        "serial": r"Serial Number: ([0-9A-Fa-f:]+)",
        "this_update": r"This Update: (.+)",
        "next_update": r"Next Update: (.+)",
        "revocation_reason": r"Revocation Reason: (\w+)",
        "revocation_time": r"Revocation Time: (.+)",
    }
    for key, pat in patterns.items():
        m = re.search(pat, text)
        if not m:
            continue
        v = m.group(1)
        if key in ("this_update", "next_update", "revocation_time"):
            v = _parse_time(v)
        elif key == "serial":
            v = _serial_lower(v)
        facts[key] = v
    return facts


def staple_of(host, port, sni, cafile=None, timeout=15):
    """`openssl s_client -connect -servername -status -showcerts` (stdin
    closed): parse_status_text()'s facts plus "leaf_serial" (the served
    leaf, lower-case hex) and "text" (the whole output).  cafile only adds
    `-CAfile` (the verify result is in text; no verification is required).
    Raises ConnectionError when no certificate was served (no connection,
    failed handshake), so that "no staple sent" is never read off a dead
    server; util.wait_until retries on it, util.stays fails on it."""
    argv = ["openssl", "s_client", "-connect", f"{host}:{port}", "-servername", sni,
            "-status", "-showcerts"]
    if cafile:
        argv += ["-CAfile", cafile]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    facts = parse_status_text(p.stdout)
    # the OCSP section may print the responder's certificate: the served
    # chain is what follows "Certificate chain"
    chain = PEM_RE.findall(p.stdout.split("Certificate chain", 1)[-1])
    if not chain:
        raise ConnectionError(f"no certificate from {host}:{port} for {sni} "
                              f"(s_client exit {p.returncode}): {(p.stdout + p.stderr)[-500:]}")
    facts["leaf_serial"] = cert_info(chain[0])["serial"]
    facts["text"] = p.stdout + p.stderr
    return facts


# ---- one handshake through libssl --------------------------------------------------

_SSL_CTRL_SET_TLSEXT_HOSTNAME = 55
_SSL_CTRL_SET_TLSEXT_STATUS_REQ_TYPE = 65
_SSL_CTRL_GET_TLSEXT_STATUS_REQ_OCSP_RESP = 70
_SSL_CTRL_SET_SIGALGS_LIST = 98
_TLSEXT_NAMETYPE_host_name = 0
_TLSEXT_STATUSTYPE_ocsp = 1

_lib = None


def _libssl():
    global _lib
    if _lib is not None:
        return _lib
    ssl = ctypes.CDLL(ctypes.util.find_library("ssl") or "libssl.so.3")
    crypto = ctypes.CDLL(ctypes.util.find_library("crypto") or "libcrypto.so.3")
    vp, i, li = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
    for lib, name, res, args in (
            (ssl, "TLS_client_method", vp, []),
            (ssl, "SSL_CTX_new", vp, [vp]),
            (ssl, "SSL_CTX_free", None, [vp]),
            (ssl, "SSL_CTX_set_verify", None, [vp, i, vp]),
            (ssl, "SSL_new", vp, [vp]),
            (ssl, "SSL_free", None, [vp]),
            (ssl, "SSL_set_fd", i, [vp, i]),
            (ssl, "SSL_ctrl", li, [vp, i, li, vp]),
            (ssl, "SSL_connect", i, [vp]),
            (ssl, "SSL_shutdown", i, [vp]),
            (ssl, "SSL_get_peer_cert_chain", vp, [vp]),
            (crypto, "OPENSSL_sk_num", i, [vp]),
            (crypto, "OPENSSL_sk_value", vp, [vp, i]),
            (crypto, "i2d_X509", i, [vp, ctypes.POINTER(ctypes.c_char_p)]),
            (crypto, "ERR_clear_error", None, [])):
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args
    _lib = (ssl, crypto)
    return _lib


def fetch_staple(host, port, sni, timeout=10, sigalgs=None):
    """One full handshake asking for OCSP status: {"der": stapled response
    bytes or None, "chain": [PEM of each certificate served, leaf first]}.
    No certificate verification (verify_staple does what matters here).
    sigalgs (e.g. "rsa_pss_rsae_sha256"): the client's signature algorithms,
    which pick the server's RSA or ECDSA certificate.  Raises
    ConnectionError (OSError) when the connection or handshake fails or
    times out."""
    ssl, crypto = _libssl()
    ctx = ssl.SSL_CTX_new(ssl.TLS_client_method())
    if not ctx:
        raise RuntimeError("SSL_CTX_new failed")
    s = conn = None
    try:
        ssl.SSL_CTX_set_verify(ctx, 0, None)
        conn = ssl.SSL_new(ctx)
        s = socket.create_connection((host, port), timeout=timeout)
        # libssl needs a blocking fd (a Python timeout makes it non-blocking);
        # the kernel's own timeouts keep a silent server from hanging us
        s.settimeout(None)
        tv = struct.pack("ll", int(timeout), 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        name = sni.encode()
        if (ssl.SSL_set_fd(conn, s.fileno()) != 1
                or ssl.SSL_ctrl(conn, _SSL_CTRL_SET_TLSEXT_HOSTNAME, _TLSEXT_NAMETYPE_host_name,
                                ctypes.cast(ctypes.c_char_p(name), ctypes.c_void_p)) != 1
                or ssl.SSL_ctrl(conn, _SSL_CTRL_SET_TLSEXT_STATUS_REQ_TYPE,
                                _TLSEXT_STATUSTYPE_ocsp, None) != 1
                or (sigalgs and ssl.SSL_ctrl(conn, _SSL_CTRL_SET_SIGALGS_LIST, 0,
                                             ctypes.cast(ctypes.c_char_p(sigalgs.encode()),
                                                         ctypes.c_void_p)) != 1)):
            raise RuntimeError("cannot set up the TLS connection")
        if ssl.SSL_connect(conn) != 1:
            crypto.ERR_clear_error()
            # ConnectionError (not RuntimeError): util.wait_until retries it
            raise ConnectionError(f"TLS handshake with {host}:{port} ({sni}) failed "
                                  "or timed out")
        ptr = ctypes.c_void_p()
        n = ssl.SSL_ctrl(conn, _SSL_CTRL_GET_TLSEXT_STATUS_REQ_OCSP_RESP, 0, ctypes.byref(ptr))
        der = ctypes.string_at(ptr, n) if n > 0 and ptr.value else None
        chain = []
        sk = ssl.SSL_get_peer_cert_chain(conn)
        for k in range(crypto.OPENSSL_sk_num(sk) if sk else 0):
            x = crypto.OPENSSL_sk_value(sk, k)
            size = crypto.i2d_X509(x, None)
            buf = ctypes.create_string_buffer(size)
            p = ctypes.c_char_p(ctypes.addressof(buf))
            crypto.i2d_X509(x, ctypes.byref(p))
            cert = x509.load_der_x509_certificate(buf.raw[:size])
            chain.append(cert.public_bytes(serialization.Encoding.PEM).decode())
        ssl.SSL_shutdown(conn)
        return {"der": der, "chain": chain}
    finally:
        if conn:
            ssl.SSL_free(conn)
        ssl.SSL_CTX_free(ctx)
        if s is not None:
            s.close()


def verify_staple(der, leaf_pem, issuer_pem, at=None):
    """`openssl ocsp -respin` over a stapled response: the response must be
    signed by issuer_pem itself or by a responder it certified (-VAfile
    trusts only the issuer; -partial_chain lets that end the chain) and be
    for leaf_pem.  Returns parse_status_text()'s facts plus "verified"
    (bool: the signature and the signer check out), "leaf_status"
    (openssl's "good"/"revoked"/"unknown" for leaf; None when the
    response says nothing about leaf), "for_leaf" (bool), "times_valid"
    (False when openssl finds thisUpdate/nextUpdate invalid at `at`, e.g.
    past nextUpdate) and "text"."""
    with tempfile.TemporaryDirectory() as d:
        paths = {n: os.path.join(d, n) for n in ("resp.der", "leaf.pem", "issuer.pem")}
        with open(paths["resp.der"], "wb") as f:
            f.write(der)
        with open(paths["leaf.pem"], "w") as f:
            f.write(leaf_pem)
        with open(paths["issuer.pem"], "w") as f:
            f.write(issuer_pem)
        argv = ["openssl", "ocsp", "-respin", paths["resp.der"], "-issuer", paths["issuer.pem"],
                "-cert", paths["leaf.pem"], "-CAfile", paths["issuer.pem"], "-partial_chain",
                "-no_nonce",
                "-resp_text"]
        if at is not None:
            argv += ["-attime", str(int(at))]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    out = p.stdout + p.stderr
    facts = parse_status_text(out)
    m = re.search(r"leaf\.pem: (\w+)", out)
    facts["leaf_status"] = m.group(1) if m and m.group(1) != "ERROR" else None
    facts["for_leaf"] = facts["leaf_status"] in ("good", "revoked", "unknown")
    facts["times_valid"] = "Status times invalid" not in out
    facts["verified"] = "Response verify OK" in out and p.returncode == 0
    facts["text"] = out
    return facts


def check_staple(host, port, sni, issuer_pem, sigalgs=None):
    """fetch_staple then verify_staple of what that one handshake got:
    verify_staple's facts (or {"sent": False}) plus "leaf_serial"."""
    got = fetch_staple(host, port, sni, sigalgs=sigalgs)
    leaf = got["chain"][0] if got["chain"] else None
    if got["der"] is None:
        return {"sent": False, "verified": False,
                "leaf_serial": cert_info(leaf)["serial"] if leaf else None}
    facts = verify_staple(got["der"], leaf, issuer_pem)
    facts["leaf_serial"] = cert_info(leaf)["serial"]
    facts["der"] = got["der"]
    return facts
