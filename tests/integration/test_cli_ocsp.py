"""The scheduler's OCSP checks on the curl-multi host (`autotls renew --all`,
the same check pass Apache's watchdog runs), against Pebble naming a real
`openssl ocsp` responder (ocspctl): the response of a certificate the pass
deploys is fetched right after the deploy, verified and stored next to it.
(The CLI hands the check pass only the certificates due for renewal: a
server's scheduler refreshes the others; see the unit tests.)"""
import os

from cryptography.x509 import ocsp

from clihelp import issue, stored_chain, stored_meta
from util import cert_info, run_cli

CERT = "ocsp.cli.test"


def ocsp_file(store, cert_id, key_type="ec256"):
    return os.path.join(store, "certs", cert_id, f"{key_type}.ocsp")


def stored_response(store, cert_id):
    with open(ocsp_file(store, cert_id), "rb") as f:
        return ocsp.load_der_ocsp_response(f.read())


def test_renewal_fetches_the_new_response(ocsp_pebble, tmp_path):
    pebble = ocsp_pebble.pebble
    store = str(tmp_path / "store")
    issue(pebble, store, CERT)
    serial = cert_info(stored_chain(store, CERT)[0])["serial"]
    assert stored_meta(store, CERT)["certs"]["ec256"]["ocsp_url"] == ocsp_pebble.url
    # issue runs on the scheduler too: it fetched the first response
    asked = ocsp_pebble.request_count(serial)

    # a renewal by the check pass: the new certificate's response is fetched
    # right after its deploy, in the same pass
    run_cli("renew", "--store", store, "--request", CERT)
    run_cli("renew", "--store", store, "--all")
    new_serial = cert_info(stored_chain(store, CERT)[0])["serial"]
    assert new_serial != serial
    assert ocsp_pebble.request_count(new_serial) == 1
    assert ocsp_pebble.request_count(serial) == asked
    resp = stored_response(store, CERT)
    assert resp.response_status == ocsp.OCSPResponseStatus.SUCCESSFUL
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert resp.serial_number == int(new_serial, 16)
    facts = stored_meta(store, CERT)["certs"]["ec256"]
    assert facts["ocsp_status"] == "good"
    assert "ocsp_error" not in facts
    assert facts["ocsp_next_refresh"] > facts["ocsp_this_update"]


def test_no_responder_no_request(pebble, tmp_path):
    """Pebble without a responder URL: a check pass asks nobody, says nothing."""
    store = str(tmp_path / "store")
    issue(pebble, store, "quiet.cli.test")
    assert "ocsp_url" not in stored_meta(store, "quiet.cli.test")["certs"]["ec256"]
    proc = run_cli("renew", "--store", store, "--all")
    assert "OCSP" not in proc.stderr
    assert not os.path.exists(ocsp_file(store, "quiet.cli.test"))
