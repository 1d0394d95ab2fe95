"""A store written by the first release (tests/fixtures/store-v0.1.0, see
tests/fixtures/README.md) keeps working: the CLI lists and shows it, and
nginx and Apache serve its certificate, as after a package upgrade."""
import os
import shutil
import types

from apachectl import Apache, stop_quietly
from nginxctl import Nginx, issuer_block, server_block
from util import REPO, cert_info, run_cli, served_chain, wait_until

FIXTURE = os.path.join(REPO, "tests", "fixtures", "store-v0.1.0")
CERT_ID = "v010.example.com"
NAMES = ["v010.example.com", "v010-www.example.com"]
SERIAL = "5a91b28770eafd3a"
# The CA the fixture was issued by (it no longer runs): the servers are
# configured with it, as after an upgrade, so they have no reason to renew
# (renew_at is in 2030) and must serve the stored certificate.
DIRECTORY = "https://127.0.0.1:49353/dir"


def same_ca(pebble):
    return types.SimpleNamespace(directory=DIRECTORY, ca_file=pebble.ca_file,
                                 http_port=pebble.http_port, tls_port=pebble.tls_port)


def old_store(root):
    """The fixture with the modes the store had (git keeps none)."""
    store = os.path.join(root, "store")
    shutil.copytree(FIXTURE, store)
    for dirpath, _, files in os.walk(store):
        os.chmod(dirpath, 0o700)
        for name in files:
            secret = name.endswith((".pem", ".key"))
            os.chmod(os.path.join(dirpath, name), 0o600 if secret else 0o644)
    return store


def serves_fixture(port, name):
    """The fixture's own certificate is what the server hands out."""
    def served():
        info = cert_info(served_chain(port, name)[0])
        return None if info["self_signed"] else info
    info = wait_until(served, timeout=30, what=f"the stored certificate for {name}")
    assert info["serial"].lstrip("0").lower() == SERIAL
    assert sorted(info["names"]) == sorted(NAMES)


def test_cli_reads_v0_1_0_store(test_root):
    store = old_store(test_root)
    listed = run_cli("list", "--store", store).stdout
    assert CERT_ID in listed and "valid" in listed
    shown = run_cli("show", "--store", store, "v010-www.example.com").stdout
    assert SERIAL in shown.lower().replace(":", "")
    for name in NAMES:
        assert name in shown


def test_nginx_serves_v0_1_0_store(pebble, test_root):
    store = old_store(test_root)
    body = issuer_block(same_ca(pebble), test_root) + f"    autotls_store {store};\n" + \
        server_block(NAMES, pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        for name in NAMES:
            serves_fixture(pebble.tls_port, name)


def test_apache_serves_v0_1_0_store(pebble, test_root):
    old_store(test_root)    # Apache() uses ROOT/store
    apache = Apache(test_root, same_ca(pebble), [NAMES])
    try:
        apache.start()
        for name in NAMES:
            serves_fixture(pebble.tls_port, name)
    finally:
        stop_quietly(apache)
