"""Writing certificates into an autotls store (docs/store.md layout) as if
autotls had obtained them: `certs/<id>/meta.json` (state valid, not due) and
`certs/<id>/<keytype>.pem` (key PEM then chain PEM), owned by the server's
worker user, 0700 directories, 0600 key files.

A server started on such a store serves these certificates at once.  Its
configuration decides whether it keeps them: a certificate is ordered anew
only when the configured names or the issuer's ACME directory differ from
meta.json (common/job.c, atls_job_ensure; other issuer settings are merely
rewritten).  So seed with the server's names and its issuer's directory,
and the server replaces a seeded certificate only for a reason of its own
(revocation, expiry, ARI): through that directory.

The per key type facts (meta "certs": serial, dates, and where revocation
is published) are left out on purpose: the server learns them from the
files at its first check, as it does for a store written by an older
autotls, so seeding never has to know their format.

Used by the integration tests (CRL revocation) and by bench/benchlib.py.
"""
import datetime
import json
import os
import pwd
import grp

from cryptography import x509

KEY_TYPES = ("ec256", "ec384", "rsa2048", "rsa3072", "rsa4096")


def cert_id(first_name):
    """docs/store.md: the first name in lower case, '*' written as '_'."""
    return first_name.lower().replace("*", "_")


def rfc3339(t):
    return t.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def worker_owner(server):
    """(uid, gid) of the worker user the integration tests' servers run as
    when the tests run as root ("nginx": nobody/nogroup, "apache":
    www-data); None otherwise (the files stay the caller's)."""
    if os.geteuid() != 0:
        return None
    user, group = {"nginx": ("nobody", "nogroup"), "apache": ("www-data", "www-data")}[server]
    return pwd.getpwnam(user).pw_uid, grp.getgrnam(group).gr_gid


def issuer_meta(directory, ca_file=None, contact=(), challenge="http-01",
                key_types=("ec256",), http_port=0, tls_port=0, **extra):
    """meta.json's "issuer" object.  Match the server's configuration where
    it matters (directory); the rest is rewritten by the server if it
    differs."""
    is_ = {"directory": directory, "contact": list(contact), "agree_tos": True,
           "challenge": challenge, "key_types": list(key_types), "profile_required": False,
           "renew": {"fraction": 0.0, "before": 0}, "http_port": http_port,
           "tls_port": tls_port}
    if ca_file:
        is_["ca_file"] = ca_file
    is_.update(extra)
    return is_


def _write_private(path, text):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def seed_cert(store, names, issuer, certs, renew_at=None, generation=1):
    """One certificate entry.  names: the configured names (first = id);
    issuer: issuer_meta(...); certs: {key type: (key_pem, chain_pem)}.
    renew_at: when it falls due (default: two thirds into the first
    leaf's lifetime, and at least an hour from now).  Returns the cert id."""
    for kt in certs:
        if kt not in KEY_TYPES:
            raise ValueError(f"unknown key type {kt}")
    cid = cert_id(names[0])
    d = os.path.join(store, "certs", cid)
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    now = datetime.datetime.now(datetime.timezone.utc)
    if renew_at is None:
        first_chain = next(iter(certs.values()))[1]
        leaf = x509.load_pem_x509_certificate(first_chain.encode())
        nb = leaf.not_valid_before.replace(tzinfo=datetime.timezone.utc)
        na = leaf.not_valid_after.replace(tzinfo=datetime.timezone.utc)
        renew_at = max(nb + (na - nb) * 2 / 3, now + datetime.timedelta(hours=1))
    meta = {
        "id": cid,
        "names": list(names),
        "issuer": issuer,
        "state": "valid",
        "failures": 0,
        "last_attempt": rfc3339(now),
        "last_success": rfc3339(now),
        "renew_at": rfc3339(renew_at),
        "generation": generation,
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    os.chmod(os.path.join(d, "meta.json"), 0o644)
    for kt, (key_pem, chain_pem) in certs.items():
        _write_private(os.path.join(d, f"{kt}.pem"), key_pem + chain_pem)
    return cid


def seed_store(store, entries, owner=None, generation=1):
    """A store holding every entry: entries is a list of dicts with the
    keyword arguments of seed_cert (names, issuer, certs[, renew_at]).
    Creates the store (0700) if needed, writes `generation`, and gives
    everything to owner ((uid, gid), e.g. worker_owner("nginx"))."""
    os.makedirs(os.path.join(store, "certs"), mode=0o700, exist_ok=True)
    os.chmod(store, 0o700)
    os.chmod(os.path.join(store, "certs"), 0o700)
    ids = [seed_cert(store, generation=generation, **e) for e in entries]
    with open(os.path.join(store, "generation"), "w") as f:
        f.write(f"{generation}\n")
    if owner:
        chown_tree(store, owner)
    return ids


def chown_tree(path, owner):
    for dirpath, _dirnames, filenames in os.walk(path):
        os.chown(dirpath, *owner)
        for fn in filenames:
            os.chown(os.path.join(dirpath, fn), *owner)
