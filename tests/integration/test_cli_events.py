"""The CLI's actions in the store's audit trail, and the store's policy.

A full life against a real Pebble (issue, renew, renew --request, revoke,
and a policy denial) leaves one audit record per action with the CLI as
actor (invoking uid and user name), `autotls audit --json` shows them, -v
prints the same events, and the audit log never holds key material or the
EAB secret.  A policy.json in the store (as a server saves it) makes issue
and renew refuse, before any CA is contacted, a certificate it does not
allow, naming the rule and the value.  Root on a store another user owns
still records itself (uid 0, root) though it works as the owner.  The
server's notification sinks (notify.json) get the CLI's events too."""
import base64
import glob
import json
import os
import pwd
import secrets
import subprocess

from clihelp import cert_file, issue, issue_args, stored_chain, stored_meta
from util import cert_info, cli_path, run_cli
from webhookrx import WebhookReceiver

WORKER = "nobody"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def audit_json(store, *extra):
    """The records `autotls audit --json` prints, one JSON object a line."""
    out = run_cli("audit", "--store", store, "--json", *extra).stdout
    return [json.loads(line) for line in out.splitlines()]


def audit_text(store):
    """Every audit file as written (audit.log and rotated ones)."""
    text = ""
    for path in sorted(glob.glob(os.path.join(store, "audit.log*"))):
        with open(path, encoding="utf-8") as f:
            text += f.read()
    return text


def printed_events(stderr):
    """The events -v printed: "autotls: event NAME: {json}" lines."""
    out = []
    for line in stderr.splitlines():
        if line.startswith("autotls: event "):
            name, _, doc = line[len("autotls: event "):].partition(": ")
            ev = json.loads(doc)
            assert ev["event"] == name, line
            out.append(ev)
    return out


def of(records, event, cert_id):
    return [r for r in records if r["event"] == event and r.get("id") == cert_id]


def assert_cli_actor(rec, uid, user):
    actor = rec["actor"]
    assert actor["kind"] == "cli", rec
    assert actor["uid"] == uid and actor["user"] == user, rec
    assert actor["software"].startswith("autotls/"), rec
    assert actor["pid"] > 0, rec


def write_policy(store, doc, owner=None):
    """policy.json as a server saves it: public, the store owner's."""
    path = os.path.join(store, "policy.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    os.chmod(path, 0o644)
    if owner is not None:
        pw = pwd.getpwnam(owner)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def test_audit_full_life(pebble_factory, tmp_path):
    kid = "kid-audit"
    hmac = b64url(secrets.token_bytes(32))
    p = pebble_factory(eab={kid: hmac})
    store = str(tmp_path / "store")
    name = "life.audit.test"

    # issue (-v: the events printed are the ones recorded)
    proc = issue(p, store, name, "www.life.audit.test",
                 extra=["-v", "--eab-kid", kid, "--eab-hmac-key", hmac])
    first = cert_info(stored_chain(store, name)[0])["serial"]
    shown = printed_events(proc.stderr)
    assert of(shown, "obtained", name), proc.stderr

    # renew
    proc = run_cli("renew", "--store", store, "-v", name)
    second = cert_info(stored_chain(store, name)[0])["serial"]
    assert second != first
    assert of(printed_events(proc.stderr), "renewed", name), proc.stderr

    # renew --request
    proc = run_cli("renew", "--store", store, "--request", "-v", "www.life.audit.test")
    req_shown = of(printed_events(proc.stderr), "renewal-requested", name)
    assert len(req_shown) == 1, proc.stderr

    # revoke
    proc = run_cli("revoke", "--store", store, "--reason", "keyCompromise", "-v", name)
    rev_shown = of(printed_events(proc.stderr), "revoked", name)
    assert len(rev_shown) == 1, proc.stderr
    assert p.cert_status(second)["Status"] == "Revoked"

    # a policy the certificate breaks: renew refused before any CA contact
    write_policy(store, {"names": ["*.allowed.test"], "key": ["ec256"]})
    meta_before = stored_meta(store, name)
    proc = run_cli("renew", "--store", store, name, check=False)
    assert proc.returncode == 1, proc.stdout
    assert (f"autotls: renew {name}: refused by the store's policy, rule names: "
            f"name {name} matches no names pattern") in proc.stderr
    assert cert_info(stored_chain(store, name)[0])["serial"] == second
    meta_after = stored_meta(store, name)
    assert meta_after["failures"] == meta_before["failures"]
    assert meta_after.get("last_attempt") == meta_before.get("last_attempt")

    records = audit_json(store)

    obtained = of(records, "obtained", name)
    assert len(obtained) == 1
    assert obtained[0]["serial"] == first
    assert obtained[0]["names"] == [name, "www.life.audit.test"]
    assert obtained[0]["directory"] == p.directory
    assert obtained[0] == of(shown, "obtained", name)[0]

    renewed = of(records, "renewed", name)
    assert len(renewed) == 1
    assert renewed[0]["serial"] == second and renewed[0]["old_serial"] == first

    requested = of(records, "renewal-requested", name)
    assert len(requested) == 1 and requested[0] == req_shown[0]
    assert requested[0]["serial"] == second

    revoked = of(records, "revoked", name)
    assert len(revoked) == 1 and revoked[0] == rev_shown[0]
    assert revoked[0]["serial"] == second
    assert revoked[0]["reason"] == "keyCompromise"
    assert revoked[0]["revoked_source"] == "operator"
    assert revoked[0]["key_type"] == "ec256"

    denied = of(records, "policy-denied", name)
    assert len(denied) == 1
    assert denied[0]["rule"] == "names"
    assert name in denied[0]["detail"]
    assert denied[0]["outcome"] == "denied"

    # every record of this CLI's actions names root, who ran it
    mine = obtained + renewed + requested + revoked + denied
    for rec in mine:
        assert_cli_actor(rec, 0, "root")
    # --name selects one certificate's records
    assert {r["id"] for r in audit_json(store, "--name", name)} == {name}

    text = audit_text(store)
    for needle in ("BEGIN", "PRIVATE KEY", hmac, kid + '"' + hmac):
        assert needle not in text, needle


def test_policy_denies_issue(pebble, tmp_path):
    store = str(tmp_path / "store")
    os.makedirs(store, mode=0o700)
    write_policy(store, {"names": ["*.allowed.test", "~^api[0-9]+\\.allowed\\.net$"],
                         "min_rsa_bits": 3072, "max_names": 2})

    # a name outside every pattern: refused, nothing recorded for it
    proc = issue(pebble, store, "ok.allowed.test", "evil.other.test", check=False)
    assert proc.returncode == 1
    assert ("autotls: issue ok.allowed.test: refused by the store's policy, rule names: "
            "name evil.other.test matches no names pattern") in proc.stderr
    assert not os.path.exists(os.path.join(store, "certs", "ok.allowed.test"))

    # RSA below min_rsa_bits
    proc = issue(pebble, store, "rsa.allowed.test", check=False,
                 extra=["--key", "rsa2048"])
    assert proc.returncode == 1
    assert "rule min_rsa_bits: key type rsa2048 has 2048 bits, below min_rsa_bits 3072" \
        in proc.stderr
    assert not os.path.exists(os.path.join(store, "certs", "rsa.allowed.test"))

    # too many names
    proc = issue(pebble, store, "a.allowed.test", "b.allowed.test", "c.allowed.test",
                 check=False)
    assert proc.returncode == 1
    assert "rule max_names: 3 names exceed max_names 2" in proc.stderr

    # --each: the allowed names are issued, the refused one is not
    proc = issue(pebble, store, "one.allowed.test", "api7.allowed.net", "nope.test",
                 check=False, extra=["--each"])
    assert proc.returncode == 1
    assert "issue nope.test: refused by the store's policy, rule names" in proc.stderr
    assert os.path.exists(cert_file(store, "one.allowed.test"))
    assert os.path.exists(cert_file(store, "api7.allowed.net"))
    assert not os.path.exists(os.path.join(store, "certs", "nope.test"))

    # --ignore-policy is not a thing
    proc = run_cli(*issue_args(pebble, store, "x.test", extra=["--ignore-policy"]),
                   check=False)
    assert proc.returncode == 2

    records = audit_json(store)
    denied = [r for r in records if r["event"] == "policy-denied"]
    assert [(r["id"], r["rule"]) for r in denied] == [
        ("ok.allowed.test", "names"), ("rsa.allowed.test", "min_rsa_bits"),
        ("a.allowed.test", "max_names"), ("nope.test", "names")]
    for r in denied:
        assert_cli_actor(r, 0, "root")
        assert r["outcome"] == "denied"
        assert r["directory"] == pebble.directory

    # a policy.json that cannot be read refuses everything, naming the file
    write_policy(store, {"names": ["~(unclosed"]})
    proc = issue(pebble, store, "two.allowed.test", check=False)
    assert proc.returncode == 1
    assert "policy.json" in proc.stderr and "not a POSIX extended regex" in proc.stderr
    assert not os.path.exists(os.path.join(store, "certs", "two.allowed.test"))

    # without a policy, anything goes again
    os.unlink(os.path.join(store, "policy.json"))
    issue(pebble, store, "nope.test")

    # renew --all: the certificate the policy refuses is left out, the others go on
    before = cert_info(stored_chain(store, "one.allowed.test")[0])["serial"]
    kept = cert_info(stored_chain(store, "nope.test")[0])["serial"]
    for name in ("one.allowed.test", "nope.test"):
        run_cli("renew", "--store", store, "--request", name)
    write_policy(store, {"names": ["*.allowed.test"]})
    proc = run_cli("renew", "--store", store, "--all", check=False)
    assert proc.returncode == 1
    assert ("autotls: renew nope.test: refused by the store's policy, rule names: "
            "name nope.test matches no names pattern") in proc.stderr
    assert cert_info(stored_chain(store, "one.allowed.test")[0])["serial"] != before
    assert cert_info(stored_chain(store, "nope.test")[0])["serial"] == kept
    assert of(audit_json(store, "--name", "nope.test"), "policy-denied", "nope.test")[-1][
        "rule"] == "names"


def test_actor_is_the_invoking_user(pebble, test_root):
    """Root on a store the worker owns works as the worker but records
    root; the worker itself is recorded as the worker."""
    store = os.path.join(test_root, "store")
    name = "actor.audit.test"
    issue(pebble, store, name)
    pw = pwd.getpwnam(WORKER)
    for top, dirs, files in os.walk(store):
        for n in [top] + [os.path.join(top, x) for x in dirs + files]:
            os.lchown(n, pw.pw_uid, pw.pw_gid)

    run_cli("renew", "--store", store, "--request", name)
    proc = subprocess.run(["runuser", "-u", WORKER, "--", cli_path(), "renew",
                           "--store", store, "--request", name],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr

    requested = of(audit_json(store), "renewal-requested", name)
    assert len(requested) == 2
    assert_cli_actor(requested[0], 0, "root")
    assert_cli_actor(requested[1], pw.pw_uid, WORKER)
    # what root appended belongs to the owner
    assert os.stat(os.path.join(store, "audit.log")).st_uid == pw.pw_uid


def test_cli_events_go_to_the_servers_sinks(pebble, tmp_path):
    """With the server's notify.json in the store, the CLI's events are
    queued for its sinks; issue and renew deliver the queue on their way
    out (the same notifier as the servers), header values never logged."""
    store = str(tmp_path / "store")
    name = "sink.audit.test"
    issue(pebble, store, name)
    token = secrets.token_hex(16)
    with WebhookReceiver() as rx:
        path = os.path.join(store, "notify.json")
        with open(path, "w") as f:
            json.dump({"webhook": rx.url, "headers": [f"Authorization: Bearer {token}"]}, f)
        os.chmod(path, 0o600)

        # a request alone: recorded and queued for the server's notifier
        run_cli("renew", "--store", store, "--request", name)
        queued = os.listdir(os.path.join(store, "events"))
        assert len(queued) == 1, queued
        with open(os.path.join(store, "events", queued[0])) as f:
            assert "renewal-requested" in f.read()

        # a renewal delivers what was queued and its own events
        run_cli("renew", "--store", store, name)
        req = rx.wait_for_event("renewal-requested")
        ren = rx.wait_for_event("renewed")
        for body in (req, ren):
            assert body["id"] == name
            assert_cli_actor(body, 0, "root")
        assert all(r.headers.get("authorization") == f"Bearer {token}"
                   for r in rx.delivered())
    assert token not in audit_text(store)
