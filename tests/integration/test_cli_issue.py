"""autotls issue against a real Pebble: every challenge type, key types,
dual certificates, EAB, alternate chains, badNonce storms."""
import base64
import os
import secrets

from cryptography import x509
from cryptography.x509.oid import NameOID

from clihelp import (cert_file, issue, issue_args, mode, stored_chain, stored_meta,
                     write_dns_hook)
from util import cert_info, run_cli, split_pem_chain, verify_chain


def check_issued(pebble, store, cert_id, names, key_type="ec256", roots=None):
    chain = stored_chain(store, cert_id, key_type)
    assert len(chain) >= 2, "leaf and intermediate expected"
    info = cert_info(chain[0])
    assert sorted(info["names"]) == sorted(names)
    assert info["key_type"] == key_type
    assert not info["self_signed"]
    assert verify_chain(chain, roots or pebble.roots_pem())
    return info


def test_http01_single_name(pebble, tmp_path):
    store = str(tmp_path / "store")
    proc = issue(pebble, store, "single.cli.test")
    info = check_issued(pebble, store, "single.cli.test", ["single.cli.test"])
    # the summary names the serial, expiry and the file it wrote
    assert info["serial"] in proc.stdout
    assert info["not_after"].strftime("%Y-%m-%dT%H:%M") in proc.stdout
    assert os.path.realpath(cert_file(store, "single.cli.test")) in proc.stdout
    meta = stored_meta(store, "single.cli.test")
    assert meta["state"] == "valid"
    # the key file holds the key matching the leaf, and nothing else secret
    with open(cert_file(store, "single.cli.test")) as f:
        assert "PRIVATE KEY" in f.read()
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr


def test_file_permissions(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "perm.cli.test")
    for root, dirs, files in os.walk(store):
        assert mode(root) == 0o700, root
        for name in files:
            path = os.path.join(root, name)
            if name.endswith(".key") or name in ("ec256.pem", "ec384.pem", "rsa2048.pem"):
                assert mode(path) == 0o600, path
            assert mode(path) & 0o022 == 0, f"{path} writable by others"
    assert mode(cert_file(store, "perm.cli.test")) == 0o600


def test_tls_alpn01(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "alpn.cli.test", challenge="tls-alpn-01")
    check_issued(pebble, store, "alpn.cli.test", ["alpn.cli.test"])
    assert stored_meta(store, "alpn.cli.test")["issuer"]["challenge"] == "tls-alpn-01"


def test_dns01_hook(pebble, tmp_path):
    store = str(tmp_path / "store")
    log = str(tmp_path / "hook.log")
    hook = write_dns_hook(str(tmp_path), pebble, log)
    issue(pebble, store, "dns.cli.test", challenge="dns-01", extra=["--dns-hook", hook])
    check_issued(pebble, store, "dns.cli.test", ["dns.cli.test"])
    with open(log) as f:
        calls = [line.split() for line in f]
    actions = [c[0] for c in calls]
    assert "setup" in actions and "teardown" in actions
    assert all(c[1].rstrip(".") == "_acme-challenge.dns.cli.test" for c in calls)
    setup_values = {c[2] for c in calls if c[0] == "setup"}
    assert setup_values == {c[2] for c in calls if c[0] == "teardown"}


def test_dns01_hook_failure_is_reported(pebble, tmp_path):
    store = str(tmp_path / "store")
    hook = tmp_path / "failing-hook.sh"
    hook.write_text("#!/bin/sh\necho 'no zone for this name' >&2\nexit 3\n")
    hook.chmod(0o755)
    proc = issue(pebble, store, "dnsfail.cli.test", challenge="dns-01",
                 extra=["--dns-hook", str(hook)], check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith("autotls: issue dnsfail.cli.test")
    assert not os.path.exists(cert_file(store, "dnsfail.cli.test"))
    meta = stored_meta(store, "dnsfail.cli.test")
    assert meta["state"] == "failed" and meta["last_error"]


def test_three_names(pebble, tmp_path):
    store = str(tmp_path / "store")
    names = ["three.cli.test", "www.three.cli.test", "api.three.cli.test"]
    proc = issue(pebble, store, *names)
    check_issued(pebble, store, "three.cli.test", names)
    for n in names:
        assert n in proc.stdout


def test_key_types(pebble, tmp_path):
    for i, kt in enumerate(("ec256", "ec384", "rsa2048")):
        store = str(tmp_path / f"store{i}")
        name = f"{kt}.keys.cli.test"
        issue(pebble, store, name, extra=["--key", kt])
        check_issued(pebble, store, name, [name], key_type=kt)
        # only the requested key type was issued
        others = {"ec256", "ec384", "rsa2048"} - {kt}
        for other in others:
            assert not os.path.exists(cert_file(store, name, other))


def test_dual_key_types(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "dual.cli.test", extra=["--key", "ec256", "--key", "rsa2048"])
    ec = check_issued(pebble, store, "dual.cli.test", ["dual.cli.test"], "ec256")
    rsa = check_issued(pebble, store, "dual.cli.test", ["dual.cli.test"], "rsa2048")
    assert ec["serial"] != rsa["serial"]
    listing = run_cli("list", "--store", store).stdout
    assert ec["serial"] in listing and rsa["serial"] in listing


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_eab(pebble_factory, tmp_path):
    kid = "kid-autotls"
    key = b64url(secrets.token_bytes(32))
    p = pebble_factory(eab={kid: key})

    # without EAB the CA refuses the account
    store0 = str(tmp_path / "store0")
    proc = issue(p, store0, "noeab.cli.test", check=False)
    assert proc.returncode == 1
    assert "externalAccountRequired" in proc.stderr or "external account" in proc.stderr.lower()

    # a wrong MAC key: a clear one-line error, no certificate
    store1 = str(tmp_path / "store1")
    wrong = b64url(secrets.token_bytes(32))
    proc = issue(p, store1, "eab.cli.test", check=False,
                 extra=["--eab-kid", kid, "--eab-hmac-key", wrong])
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("autotls: issue eab.cli.test")
    assert "urn:ietf:params:acme:error:" in lines[0]
    assert not os.path.exists(cert_file(store1, "eab.cli.test"))

    # the right one works, and the secret is not written into the store
    store2 = str(tmp_path / "store2")
    issue(p, store2, "eab.cli.test", extra=["--eab-kid", kid, "--eab-hmac-key", key])
    check_issued(p, store2, "eab.cli.test", ["eab.cli.test"])
    for root, _, files in os.walk(store2):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert key.encode() not in f.read(), name


def cn(pem):
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def issuer_cn(pem):
    cert = x509.load_pem_x509_certificate(pem.encode())
    return cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def test_preferred_chain(pebble_factory, tmp_path):
    p = pebble_factory(env={"PEBBLE_ALTERNATE_ROOTS": "2"})
    roots = [p.root_pem(i) for i in range(3)]
    root_cns = [cn(r) for r in roots]
    assert len(set(root_cns)) == 3

    # default chain: ends at the default root
    store = str(tmp_path / "default")
    issue(p, store, "chain.cli.test")
    chain = stored_chain(store, "chain.cli.test")
    assert issuer_cn(chain[-1]) == root_cns[0]
    assert verify_chain(chain, roots[0])

    for i in (1, 2):
        store = str(tmp_path / f"alt{i}")
        issue(p, store, "chain.cli.test", extra=["--preferred-chain", root_cns[i]])
        chain = stored_chain(store, "chain.cli.test")
        assert issuer_cn(chain[-1]) == root_cns[i], f"chain does not end at {root_cns[i]}"
        assert verify_chain(chain, roots[i])
        assert not verify_chain(chain, roots[0])
        assert stored_meta(store, "chain.cli.test")["issuer"]["preferred_chain"] == root_cns[i]

    # an unknown name falls back to the default chain
    store = str(tmp_path / "unknown")
    issue(p, store, "chain.cli.test", extra=["--preferred-chain", "No Such Root"])
    assert issuer_cn(stored_chain(store, "chain.cli.test")[-1]) == root_cns[0]


def test_nonce_reject(pebble_factory, tmp_path):
    p = pebble_factory(env={"PEBBLE_WFE_NONCEREJECT": "50"})
    store = str(tmp_path / "store")
    issue(p, store, "nonce.cli.test", "www.nonce.cli.test")
    check_issued(p, store, "nonce.cli.test", ["nonce.cli.test", "www.nonce.cli.test"],
                 roots=p.roots_pem())


def test_issue_again_keeps_valid_certificate(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "again.cli.test")
    before = stored_chain(store, "again.cli.test")[0]
    proc = issue(pebble, store, "again.cli.test")
    assert "not yet due" in proc.stdout
    assert stored_chain(store, "again.cli.test")[0] == before
    issue(pebble, store, "again.cli.test", extra=["--force"])
    assert stored_chain(store, "again.cli.test")[0] != before


def test_csr_cn(pebble, tmp_path):
    """--csr-cn is recorded and kept by renewals.  Pebble 2.4 puts the first
    name in the leaf's CN whether or not the CSR carries one (it copies the
    CSR's first SAN when the subject is empty), so the leaf alone cannot tell
    the two apart: the CSR itself is checked in the unit tests (fakeca)."""
    store = str(tmp_path / "store")
    names = ["cn.cli.test", "alt.cn.cli.test"]
    issue(pebble, store, *names, extra=["--csr-cn"])
    check_issued(pebble, store, "cn.cli.test", names)
    first = stored_chain(store, "cn.cli.test")[0]
    assert cn(first) == "cn.cli.test"
    assert stored_meta(store, "cn.cli.test")["issuer"]["csr_cn"] is True
    assert "csr common name: yes" in run_cli("show", "--store", store, "cn.cli.test").stdout

    # a renewal with no options keeps the recorded setting
    run_cli("renew", "--store", store, "cn.cli.test")
    renewed = stored_chain(store, "cn.cli.test")[0]
    assert cert_info(renewed)["serial"] != cert_info(first)["serial"]
    assert cn(renewed) == "cn.cli.test"
    assert stored_meta(store, "cn.cli.test")["issuer"]["csr_cn"] is True

    # without the option: recorded as off; Pebble still names the first SAN
    store2 = str(tmp_path / "store2")
    issue(pebble, store2, "nocn.cli.test", "alt.nocn.cli.test")
    assert stored_meta(store2, "nocn.cli.test")["issuer"]["csr_cn"] is False
    assert "csr common name: no" in run_cli("show", "--store", store2,
                                            "nocn.cli.test").stdout
    assert cn(stored_chain(store2, "nocn.cli.test")[0]) == "nocn.cli.test"
