"""Events from nginx's driver to the notification sinks (a command and a
webhook), against Pebble: obtaining/obtained/deployed for a first issue,
renewed after `autotls renew --request`, failed for a dns hook that fails;
at-least-once delivery to a webhook that is down (503, then stopped across
an nginx restart); a hanging command delays neither handshakes nor orders;
expiry levels of static certificates, once per level, never again after a
reload; and the server's actions in the audit log (actor server, nginx,
the driver worker's pid)."""
import glob
import json
import os

import pytest

from certmaker import CertMaker
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import cert_info, run_cli, served_chain, stays, wait_until
from webhookrx import WebhookReceiver

# Records each run: argv in NAME.argv, stdin in NAME.json (NAME unique per run).
RECORDER = """#!/bin/sh
out={out}
n="$1-$2-$$"
printf '%s\\n' "$@" > "$out/$n.argv.tmp" && mv "$out/$n.argv.tmp" "$out/$n.argv"
cat > "$out/$n.json.tmp" && mv "$out/$n.json.tmp" "$out/$n.json"
"""

HANGER = """#!/bin/sh
echo "$$" > {out}/hanging.pid
exec sleep 100000
"""

FAILING_HOOK = """#!/bin/sh
echo 'no zone for this name' >&2
exit 3
"""


def script(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, 0o755)
    return path


def outbox(root):
    """A directory the unprivileged workers' commands can write to."""
    d = os.path.join(root, "outbox")
    os.makedirs(d, exist_ok=True)
    os.chmod(d, 0o777)
    return d


def command_runs(out, event=None):
    """(argv, event JSON) of every finished command run."""
    runs = []
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path[:-5] + ".argv") as f:
            argv = f.read().split("\n")[:-1]
        with open(path) as f:
            ev = json.load(f)
        if event is None or ev["event"] == event:
            runs.append((argv, ev))
    return runs


def audit(store):
    path = os.path.join(store, "audit.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def config(pebble, root, *servers, sinks="", extra=""):
    store = os.path.join(root, "store")
    body = issuer_block(pebble, root)
    body += f"    autotls_store {store};\n    autotls_check_interval 1s;\n"
    body += sinks + extra
    for s in servers:
        body += s
    return body


def check_event(ev, name, cert_id, ngx):
    assert ev["event"] == name
    assert ev["id"] == cert_id
    assert ev["time"].endswith("Z")
    assert ev["source"] == "managed"
    assert ev["actor"]["kind"] == "server"
    assert ev["actor"]["software"].startswith("nginx/")
    # emitted by a worker of this nginx (the driver), never the master
    assert ev["actor"]["pid"] != ngx.master
    assert "PRIVATE" not in json.dumps(ev)


@pytest.fixture
def rx():
    with WebhookReceiver() as r:
        yield r


def test_first_issue_renewal_and_failure_reach_both_sinks(pebble, test_root, rx):
    out = outbox(test_root)
    cmd = script(os.path.join(test_root, "recorder.sh"), RECORDER.format(out=out))
    hook = script(os.path.join(test_root, "failhook.sh"), FAILING_HOOK)
    sinks = (f"    autotls_notify_exec {cmd};\n"
             f"    autotls_notify_webhook {rx.url} \"X-Autotls-Test: yes\";\n")
    broken = f"""
    autotls_issuer broken {{
        directory    {pebble.directory};
        contact      admin@example.com;
        accept_terms on;
        ca_certificate {test_root}/pebble-ca.pem;
        challenge    dns-01;
        dns_hook     {hook};
    }}
"""
    body = config(pebble, test_root,
                  server_block(["ev.example.com", "www.ev.example.com"],
                               pebble.http_port, pebble.tls_port),
                  server_block(["fail.example.com"], pebble.http_port, pebble.tls_port,
                               issuer="broken"),
                  sinks=sinks, extra=broken)
    ngx = Nginx(test_root, body)
    with ngx.start():
        chain = until_issued(ngx, pebble, pebble.tls_port, "ev.example.com")
        serial = cert_info(chain[0])["serial"].lower().lstrip("0")

        for name in ("obtaining", "obtained", "deployed"):
            ev = rx.wait_for_event(name, pred=lambda e: e["id"] == "ev.example.com")
            check_event(ev, name, "ev.example.com", ngx)
        obtained = rx.events("obtained")[0]
        assert sorted(obtained["names"]) == ["ev.example.com", "www.ev.example.com"]
        assert obtained["key_type"] == "ec256"
        assert obtained["serial"].lower().lstrip("0") == serial
        assert obtained["not_after"].endswith("Z") and obtained["issuer"]
        assert obtained["directory"] == pebble.directory
        # the configured header, and the body is the event alone
        req = [r for r in rx.delivered() if r.body["event"] == "obtained"][0]
        assert req.headers.get("x-autotls-test") == "yes"

        # the command: argv PATH EVENT ID, the same JSON on stdin
        runs = wait_until(lambda: command_runs(out, "deployed") or None, timeout=60,
                          what="the command run for deployed")
        argv, ev = runs[0]
        assert argv == ["deployed", "ev.example.com"]
        check_event(ev, "deployed", "ev.example.com", ngx)
        assert ev["serial"].lower().lstrip("0") == serial

        # failed: the dns hook of the other certificate
        failed = rx.wait_for_event("failed", pred=lambda e: e["id"] == "fail.example.com",
                                   timeout=90)
        assert failed["outcome"] == "error"
        assert failed["error"]["attempt"] >= 1
        assert failed["error"]["class"] in ("retry-later", "permanent")
        assert failed["error"]["detail"]
        wait_until(lambda: command_runs(out, "failed") or None, timeout=60,
                   what="the command run for failed")

        # renewed: an operator's request, carried out by the server
        run_cli("renew", "--store", ngx.store, "--request", "ev.example.com")
        new = until_issued(ngx, pebble, pebble.tls_port, "ev.example.com",
                           not_serial=cert_info(chain[0])["serial"])
        renewed = rx.wait_for_event("renewed", pred=lambda e: e["id"] == "ev.example.com",
                                    timeout=90)
        check_event(renewed, "renewed", "ev.example.com", ngx)
        assert renewed["old_serial"].lower().lstrip("0") == serial
        assert renewed["serial"].lower().lstrip("0") == \
            cert_info(new[0])["serial"].lower().lstrip("0")
        wait_until(lambda: command_runs(out, "renewed") or None, timeout=60,
                   what="the command run for renewed")

        # the audit trail: the server's actions, by the driver worker
        driver = ngx.driver_pid()
        records = audit(ngx.store)
        mine = [r for r in records if r.get("id") == "ev.example.com"
                and r["actor"]["kind"] == "server"]
        events = {r["event"] for r in mine}
        assert {"obtaining", "obtained", "deployed", "renewed"} <= events, events
        assert all(r["actor"]["software"].startswith("nginx/") for r in mine)
        assert driver in {r["actor"]["pid"] for r in mine}
        assert any(r["event"] == "renewal-requested" and r["actor"]["kind"] == "cli"
                   for r in records)
        with open(os.path.join(ngx.store, "audit.log")) as f:
            assert "PRIVATE KEY" not in f.read()


def delivered_keys(rx):
    return [(e["event"], e.get("id"), e["time"], e.get("serial")) for e in rx.events()]


def test_webhook_down_then_back_across_a_restart_loses_nothing(pebble, test_root, rx):
    rx.fail_with(503)
    body = config(pebble, test_root,
                  server_block(["down.example.com"], pebble.http_port, pebble.tls_port),
                  sinks=f"    autotls_notify_webhook {rx.url};\n")
    ngx = Nginx(test_root, body)
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, "down.example.com")
        # tried, refused, and kept
        rx.wait_requests(2, timeout=90)
        assert not rx.delivered()
        assert glob.glob(os.path.join(ngx.store, "events", "*.json"))

    # nginx is down, then the receiver too; nginx comes back first
    rx.stop()
    rx.clear()
    queued = len(glob.glob(os.path.join(ngx.store, "events", "*.json")))
    assert queued > 0
    with ngx.start():
        rx.succeed()
        rx.start()
        wait_until(lambda: not glob.glob(os.path.join(ngx.store, "events", "*.json")),
                   timeout=180, what="the queue to drain once the receiver is back")

        # every event the server recorded for its certificate was delivered;
        # waited for, not read once: the restarted server may record (and
        # then deliver) an event of its own just after the queue drained
        def missing():
            got = delivered_keys(rx)
            return [(r["event"], r.get("id"), r["time"], r.get("serial"))
                    for r in audit(ngx.store) if r["actor"]["kind"] == "server"
                    and (r["event"], r.get("id"), r["time"], r.get("serial")) not in got]
        wait_until(lambda: not missing(), timeout=60,
                   what="every recorded event to be delivered")
        got = delivered_keys(rx)
        for name in ("obtaining", "obtained", "deployed"):
            assert any(k[0] == name and k[1] == "down.example.com" for k in got), name
        # at least once: a redelivery only of what was in flight at the stop
        for k in set(got):
            assert got.count(k) <= 2, (k, got.count(k))


def test_hanging_command_delays_neither_handshakes_nor_orders(pebble, test_root, rx):
    out = outbox(test_root)
    cmd = script(os.path.join(test_root, "hang.sh"), HANGER.format(out=out))
    sinks = (f"    autotls_notify_exec {cmd};\n    autotls_notify_timeout 600s;\n"
             f"    autotls_notify_webhook {rx.url};\n")
    body = config(pebble, test_root,
                  server_block(["hang1.example.com"], pebble.http_port, pebble.tls_port),
                  server_block(["hang2.example.com"], pebble.http_port, pebble.tls_port),
                  sinks=sinks)
    ngx = Nginx(test_root, body)
    with ngx.start():
        pidfile = os.path.join(out, "hanging.pid")
        hung = int(wait_until(lambda: os.path.exists(pidfile) and open(pidfile).read().strip(),
                              timeout=60, what="the command to start hanging"))
        # both orders complete and are served while the command hangs
        for name in ("hang1.example.com", "hang2.example.com"):
            until_issued(ngx, pebble, pebble.tls_port, name)
        os.kill(hung, 0)
        for _ in range(5):
            served_chain(pebble.tls_port, "hang1.example.com")
        # the webhook is not held up by the command
        for name in ("hang1.example.com", "hang2.example.com"):
            rx.wait_for_event("deployed", pred=lambda e, n=name: e["id"] == n)
        os.kill(hung, 0)
    # stopping nginx ends the command's process group
    def gone():
        # a zombie is gone too: whether it is reaped at once depends on
        # the machine's init, not on nginx
        try:
            with open(f"/proc/{hung}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True
    wait_until(gone, timeout=20, what="the hanging command to be killed with nginx")


def test_static_expiry_levels_once_each_and_not_after_reload(pebble, test_root, rx):
    cm = CertMaker(os.path.join(test_root, "static"))
    # Levels 10m and 30s of a certificate that expires in 2 minutes: the 10m
    # level is the first one seen as long as the driver's first check comes
    # within 90 s of this line (a loaded machine starts nginx and Pebble in
    # far less), and the 30s level gets a 30 s window of 1 s checks.
    soon = cm.expiring("soon.example.com", minutes=2)
    gone = cm.expired("gone.example.com")
    static = ""
    for name, leaf in (("soon.example.com", soon), ("gone.example.com", gone)):
        static += f"""
    server {{
        listen 127.0.0.1:{pebble.tls_port} ssl;
        server_name {name};
        ssl_certificate     {leaf.cert};
        ssl_certificate_key {leaf.key};
    }}
"""
    sinks = f"    autotls_warn 10m 30s;\n    autotls_notify_webhook {rx.url};\n"
    body = config(pebble, test_root,
                  server_block(["lvl.example.com"], pebble.http_port, pebble.tls_port),
                  static, sinks=sinks)
    ngx = Nginx(test_root, body)

    def of(event, path):
        return [e for e in rx.events(event) if e.get("path") == path]
    with ngx.start():
        first = rx.wait_for_event("expiring", pred=lambda e: e.get("path") == soon.cert,
                                  timeout=60)
        assert first["source"] == "static"
        assert first["level"] == "10m" and first["level_seconds"] == 600
        assert first["id"].startswith("static-")
        assert "soon.example.com" in first["names"]
        rx.wait_for_event("expired", pred=lambda e: e.get("path") == gone.cert, timeout=60)
        assert not of("expiring", gone.cert)

        second = rx.wait_for_event("expiring", pred=lambda e: e.get("path") == soon.cert
                                   and e["level"] == "30s", timeout=180)
        assert second["level_seconds"] == 30
        rx.wait_for_event("expired", pred=lambda e: e.get("path") == soon.cert, timeout=150)
        assert [e["level"] for e in of("expiring", soon.cert)] == ["10m", "30s"]

        # only the static certificates' alerts: the managed one's own events
        # (its first issue, running alongside) may still be arriving
        def alerts():
            return [k for k in delivered_keys(rx) if k[0] in ("expiring", "expired")]
        drivers = ngx.log().count("drives issuance")
        ngx.reload()
        before = alerts()
        # a driver of the new workers synced the items, keeping their alert state
        wait_until(lambda: ngx.log().count("drives issuance") > drivers, timeout=30,
                   what="a driver after the reload")
        stays(lambda: alerts() == before, 8,
              what="no expiring/expired event repeated after the reload")
        assert len(of("expired", soon.cert)) == 1
        assert len(of("expired", gone.cert)) == 1
        assert len(of("expiring", soon.cert)) == 2


MINIMAL = """
    autotls_issuer pebble {
        directory    https://127.0.0.1:14000/dir;
        accept_terms on;
    }
    server {
        listen 127.0.0.1:18443 ssl;
        server_name a.example.com;
        autotls pebble;
    }
"""


def bad_commands(root):
    """name -> (path, the message nginx -t must print)."""
    ok = script(os.path.join(root, "ok.sh"), "#!/bin/sh\nexit 0\n")
    noexec = os.path.join(root, "noexec.sh")
    with open(noexec, "w") as f:
        f.write("#!/bin/sh\n")
    os.chmod(noexec, 0o644)
    writable = script(os.path.join(root, "writable.sh"), "#!/bin/sh\n")
    os.chmod(writable, 0o775)
    return ok, {
        "relative": ("bin/notify.sh", "needs an absolute path"),
        "missing": (os.path.join(root, "nope.sh"), "stat(\""),
        "directory": (root, "is not a regular file"),
        "not executable": (noexec, "is not executable"),
        "group-writable": (writable, "writable by its group or by anyone"),
    }


def nginx_t_fails(test_root, text):
    """nginx -t output (and the log) of a configuration it must refuse."""
    ngx = Nginx(test_root, text)
    proc = ngx.test_config()
    out = proc.stderr + ngx.log()
    assert proc.returncode != 0, out
    return ngx, out


@pytest.mark.parametrize("case", ["relative", "missing", "directory", "not executable",
                                  "group-writable"])
def test_notify_exec_checked_by_nginx_t(test_root, case):
    _, cases = bad_commands(test_root)
    path, message = cases[case]
    ngx, out = nginx_t_fails(test_root, f"    autotls_notify_exec {path};\n" + MINIMAL)
    assert message in out and "autotls_notify_exec" in out, out
    assert f"in {ngx.conf}:{ngx.conf_line('autotls_notify_exec')}" in out, out


BAD_SETTINGS = [
    ("webhook scheme", "autotls_notify_webhook ftp://h/x;", "autotls_notify_webhook"),
    ("webhook header", 'autotls_notify_webhook http://127.0.0.1:1/x "No colon";',
     "autotls_notify_webhook"),
    ("warn value", "autotls_warn 7d soon;", "soon"),
    ("warn twice", "autotls_warn 7d 7d;", "autotls_warn"),
    ("timeout", "autotls_notify_timeout 0;", "autotls_notify_timeout"),
    ("queue", "autotls_notify_queue 0;", "autotls_notify_queue"),
]


@pytest.mark.parametrize("case,line,message", BAD_SETTINGS, ids=[b[0] for b in BAD_SETTINGS])
def test_bad_notification_settings_fail_nginx_t(test_root, case, line, message):
    ngx, out = nginx_t_fails(test_root, f"    {line}\n" + MINIMAL)
    assert message in out, out
    assert f"{ngx.conf}:" in out, out


def test_good_notification_settings_pass_nginx_t(test_root):
    ok, _ = bad_commands(test_root)
    ngx = Nginx(test_root, f"""
    autotls_warn 30d 2h 90s;
    autotls_notify_exec {ok};
    autotls_notify_timeout 5s;
    autotls_notify_webhook https://hooks.example/x "Authorization: Bearer t0k3n";
    autotls_notify_queue 50;
""" + MINIMAL)
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()
    # header values never reach a log
    assert "t0k3n" not in proc.stderr + ngx.log()
