"""autotls list/show/renew/revoke against a real Pebble, and what happens
to the store when the CA goes away in the middle of a renewal."""
import datetime
import json
import os
import re

from clihelp import cert_file, issue, stored_chain, stored_meta
from util import cert_info, run_cli, verify_chain


def days_left(not_after):
    delta = not_after - datetime.datetime.now(datetime.timezone.utc)
    return delta.days    # floor, like the CLI


def test_list_table_and_json(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "list.cli.test", "www.list.cli.test")
    issue(pebble, store, "other.cli.test", extra=["--key", "rsa2048"])
    a = cert_info(stored_chain(store, "list.cli.test")[0])
    b = cert_info(stored_chain(store, "other.cli.test", "rsa2048")[0])

    out = run_cli("list", "--store", store).stdout.splitlines()
    header = out[0].split()
    for col in ("ID", "NAMES", "KEY", "ISSUER", "SERIAL", "NOT", "AFTER", "DAYS",
                "LEFT", "NEXT", "RENEWAL", "STATE", "LAST", "ERROR"):
        assert col in header
    rows = {line.split()[0]: line for line in out[1:]}
    assert set(rows) == {"list.cli.test", "other.cli.test"}
    assert a["serial"] in rows["list.cli.test"]
    assert "list.cli.test,www.list.cli.test" in rows["list.cli.test"]
    assert " ec256 " in rows["list.cli.test"] and " valid " in rows["list.cli.test"]
    assert b["serial"] in rows["other.cli.test"] and " rsa2048 " in rows["other.cli.test"]
    # DAYS LEFT column (after the NOT AFTER timestamp)
    fields = rows["list.cli.test"].split()
    na = a["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert na in fields
    assert int(fields[fields.index(na) + 1]) in (days_left(a["not_after"]),
                                                 days_left(a["not_after"]) - 1)

    doc = json.loads(run_cli("list", "--store", store, "--json").stdout)
    certs = {c["id"]: c for c in doc["certificates"]}
    assert set(certs) == {"list.cli.test", "other.cli.test"}
    c = certs["list.cli.test"]
    assert c["names"] == ["list.cli.test", "www.list.cli.test"]
    assert c["state"] == "valid"
    assert [k["type"] for k in c["keys"]] == ["ec256"]
    assert c["keys"][0]["serial"] == a["serial"]
    assert c["keys"][0]["days_left"] in (days_left(a["not_after"]),
                                         days_left(a["not_after"]) - 1)
    assert certs["other.cli.test"]["keys"][0]["serial"] == b["serial"]
    assert "PRIVATE" not in json.dumps(doc)


def test_list_empty_store(tmp_path):
    proc = run_cli("list", "--store", str(tmp_path / "empty"))
    assert "no certificates" in proc.stdout
    doc = json.loads(run_cli("list", "--store", str(tmp_path / "empty"), "--json").stdout)
    assert doc["certificates"] == []


def test_show(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "show.cli.test", "alias.show.cli.test",
          extra=["--renew-before", "30d"])
    chain = stored_chain(store, "show.cli.test")
    info = cert_info(chain[0])
    # any of the names finds the certificate
    for name in ("show.cli.test", "alias.show.cli.test"):
        out = run_cli("show", "--store", store, name).stdout
        assert "show.cli.test" in out and "alias.show.cli.test" in out
        assert info["serial"] in out
        assert info["issuer"] in out
        assert os.path.realpath(cert_file(store, "show.cli.test")) in out
        assert pebble.directory in out
        assert re.search(r"renew before: +30d before expiry", out), out
        # chain subjects and issuers
        for pem in chain:
            ci = cert_info(pem)
            assert ci["issuer"] in out
        assert "PRIVATE KEY" not in out and "BEGIN" not in out
    proc = run_cli("show", "--store", store, "nosuch.cli.test", check=False)
    assert proc.returncode == 1
    assert "nosuch.cli.test" in proc.stderr


def test_renew_uses_stored_settings(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "renew.cli.test", extra=["--key", "ec384"])
    before = cert_info(stored_chain(store, "renew.cli.test", "ec384")[0])
    gen = stored_meta(store, "renew.cli.test")["generation"]

    # no issuer options at all: directory, CA file, port and key type come from the store
    proc = run_cli("renew", "--store", store, "renew.cli.test")
    after = cert_info(stored_chain(store, "renew.cli.test", "ec384")[0])
    assert after["serial"] != before["serial"]
    assert after["key_type"] == "ec384"
    assert after["serial"] in proc.stdout
    assert verify_chain(stored_chain(store, "renew.cli.test", "ec384"), pebble.roots_pem())
    meta = stored_meta(store, "renew.cli.test")
    assert meta["generation"] > gen and meta["state"] == "valid"


def test_renew_request(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "req.cli.test", "www.req.cli.test")
    serial = cert_info(stored_chain(store, "req.cli.test")[0])["serial"]
    request = os.path.join(store, "requests", "req.cli.test")
    assert not os.path.exists(request)
    # by any of its names
    proc = run_cli("renew", "--store", store, "--request", "www.req.cli.test")
    assert "requested" in proc.stdout
    assert os.path.exists(request)
    # only a request: nothing was renewed
    assert cert_info(stored_chain(store, "req.cli.test")[0])["serial"] == serial
    # a real renewal consumes the request
    run_cli("renew", "--store", store, "req.cli.test")
    assert not os.path.exists(request)


def test_revoke(pebble, tmp_path):
    store = str(tmp_path / "store")
    issue(pebble, store, "revoke.cli.test", extra=["--key", "ec256", "--key", "rsa2048"])
    serials = [cert_info(stored_chain(store, "revoke.cli.test", kt)[0])["serial"]
               for kt in ("ec256", "rsa2048")]
    for s in serials:
        assert pebble.cert_status(s)["Status"] == "Valid"
    proc = run_cli("revoke", "--store", store, "--reason", "keyCompromise", "revoke.cli.test")
    for s in serials:
        st = pebble.cert_status(s)
        assert st["Status"] == "Revoked"
        assert st["Reason"] == 1
        assert s in proc.stdout
    # every server sharing the store learns it: the plan replaces both
    meta = stored_meta(store, "revoke.cli.test")
    for kt in ("ec256", "rsa2048"):
        facts = meta["certs"][kt]
        assert facts["revoked_source"] == "operator"
        assert facts["revoked_reason"] == 1
        assert facts["revoked_seen"] and facts["revoked_at"]


def assert_store_kept(store, cert_id, pem_before, stderr, verb):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert lines[0].startswith(f"autotls: {verb} {cert_id}"), lines[0]
    with open(cert_file(store, cert_id), "rb") as f:
        assert f.read() == pem_before, "the stored certificate changed"
    meta = stored_meta(store, cert_id)          # still valid JSON
    assert meta["state"] == "failed"
    assert meta["failures"] == 1
    assert meta["last_error"]
    assert meta["generation"] == 1
    # list still shows the old certificate
    serial = cert_info(stored_chain(store, cert_id)[0])["serial"]
    assert serial in run_cli("list", "--store", store).stdout


def test_renew_with_ca_down(pebble_factory, tmp_path):
    p = pebble_factory()
    store = str(tmp_path / "store")
    issue(p, store, "down.cli.test")
    with open(cert_file(store, "down.cli.test"), "rb") as f:
        pem_before = f.read()
    p.stop()
    proc = run_cli("renew", "--store", store, "down.cli.test", check=False)
    assert proc.returncode == 1
    assert "autotls:transport" in proc.stderr
    assert_store_kept(store, "down.cli.test", pem_before, proc.stderr, "renew")


def test_ca_stops_mid_order(pebble_factory, tmp_path):
    """The dns-01 hook kills Pebble after the order was created: the renewal
    fails with one clear line and the previous certificate stays."""
    # no authorization reuse: the renewal must meet a challenge (and the hook)
    p = pebble_factory(env={"PEBBLE_AUTHZREUSE": "0"})
    store = str(tmp_path / "store")
    hook_ok = tmp_path / "hook-ok.sh"
    hook_ok.write_text(f"""#!/bin/sh
[ "$1" = setup ] && exec curl -sf -X POST -d '{{"host":"'$2'.","value":"'$3'"}}' {p.chall_url}/set-txt
exec curl -sf -X POST -d '{{"host":"'$2'."}}' {p.chall_url}/clear-txt
""")
    hook_ok.chmod(0o755)
    issue(p, store, "mid.cli.test", challenge="dns-01", extra=["--dns-hook", str(hook_ok)])
    with open(cert_file(store, "mid.cli.test"), "rb") as f:
        pem_before = f.read()

    hook_kill = tmp_path / "hook-kill.sh"
    hook_kill.write_text(f"#!/bin/sh\n[ \"$1\" = setup ] && kill {p._pebble.pid}\nexit 0\n")
    hook_kill.chmod(0o755)
    proc = run_cli("renew", "--store", store, "--dns-hook", str(hook_kill), "mid.cli.test",
                   check=False)
    assert proc.returncode == 1
    assert_store_kept(store, "mid.cli.test", pem_before, proc.stderr, "renew")
