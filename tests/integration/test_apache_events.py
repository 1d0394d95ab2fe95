"""Events and notifications on Apache: AutoTLSNotifyCmd and
AutoTLSNotifyWebhook receive the documented JSON for obtaining, obtained,
deployed, renewed and failed; a webhook receiver that is down gets its
events once it is back, across an Apache restart; a command that hangs
delays neither handshakes nor orders; static certificates that expire
within minutes give one expiring event per AutoTLSWarn level and one
expired event."""
import glob
import json
import os
import signal

import pytest

from apache_helpers import apache_factory, served, wait_issued, RESTART_MARKS  # noqa: F401
from certmaker import CertMaker
from test_apache_monitoring import static_vhost
from util import run_cli, stays, wait_until
from webhookrx import WebhookReceiver


def chown_worker(path):
    """The command runs as the children's user: let it write there."""
    if os.geteuid() == 0:
        import pwd
        pw = pwd.getpwnam("www-data")
        os.chown(path, pw.pw_uid, pw.pw_gid)
    else:
        os.chmod(path, 0o777)


def write_sink(root, hang=False):
    """A command sink: records argv, its stdin and its pid, one file set per
    run; with hang it then waits (for teardown to kill it)."""
    out = os.path.join(root, "cmd-events")
    os.makedirs(out)
    chown_worker(out)
    script = os.path.join(root, "notify.sh")
    with open(script, "w") as f:
        f.write(f"""#!/bin/sh
n=$(date +%s%N)-$$
cat > "{out}/$n.tmp"
echo "$$" > "{out}/$n.pid"
printf '%s\\n' "$@" > "{out}/$n.argv"
mv "{out}/$n.tmp" "{out}/$n.json"
{"exec sleep 3600" if hang else "exit 0"}
""")
    os.chmod(script, 0o755)
    return script, out


def cmd_runs(out):
    """[(argv, event)] of the command runs so far."""
    runs = []
    for path in sorted(glob.glob(os.path.join(out, "*.json"))):
        with open(path) as f:
            body = json.load(f)
        with open(path[:-5] + ".argv") as f:
            argv = f.read().split("\n")[:-1]
        runs.append((argv, body))
    return runs


def cmd_events(out, name=None):
    return [b for _, b in cmd_runs(out) if name is None or b["event"] == name]


def kill_runs(out):
    for path in glob.glob(os.path.join(out, "*.pid")):
        try:
            with open(path) as f:
                os.kill(int(f.read()), signal.SIGKILL)
        except (ProcessLookupError, ValueError, OSError):
            pass


@pytest.fixture
def receiver():
    rx = WebhookReceiver()
    yield rx
    rx.close()


def check_event(ev, name, cert_id, serial=None):
    """The documented members of a managed certificate's event."""
    assert ev["event"] == name
    assert ev["id"] == cert_id
    assert cert_id in ev["names"]
    assert ev["time"].endswith("Z")
    assert ev.get("source", "managed") == "managed"
    actor = ev["actor"]
    assert actor["kind"] == "server" and actor["software"].startswith("Apache/")
    assert isinstance(actor["pid"], int) and actor["pid"] > 0
    if serial is not None:
        assert int(ev["serial"], 16) == int(serial, 16)
    text = json.dumps(ev)
    assert "PRIVATE KEY" not in text


def test_command_and_webhook_sinks_see_a_life(pebble, apache_factory, test_root,  # noqa: F811
                                              receiver):
    script, out = write_sink(test_root)
    name = "life.ev.apache.test"
    fail = "fail.ev.apache.test"
    # the failing host: Pebble's validation reaches an address nobody answers on
    pebble._chall_post("/add-a", {"host": fail + ".", "addresses": ["127.0.0.9"]})
    try:
        apache = apache_factory(pebble, [[name], [fail]], global_extra="\n".join([
            f"AutoTLSNotifyCmd {script}",
            "AutoTLSNotifyTimeout 20s",
            f'AutoTLSNotifyWebhook {receiver.url} "X-Autotls-Test: apache"',
        ])).start()
        _, info = wait_issued(apache, pebble, name)

        # first issue: obtaining, obtained, deployed through both sinks
        for ev in ("obtaining", "obtained", "deployed"):
            body = receiver.wait_for_event(ev, pred=lambda b: b["id"] == name)
            check_event(body, ev, name, None if ev == "obtaining" else info["serial"])
        assert receiver.delivered()[0].headers["x-autotls-test"] == "apache"
        assert receiver.delivered()[0].headers["content-type"].startswith("application/json")
        got = wait_until(lambda: {e["event"] for e in cmd_events(out) if e["id"] == name}
                         >= {"obtaining", "obtained", "deployed"} and cmd_runs(out),
                         timeout=60, what="the command sink's first-issue events")
        for argv, body in got:
            assert argv == [body["event"], body["id"]], argv
        if os.geteuid() == 0:
            # run by the watchdog child as the children's user, not by root
            import pwd
            worker = pwd.getpwnam("www-data").pw_uid
            for path in glob.glob(os.path.join(out, "*.json")):
                assert os.stat(path).st_uid == worker, path
        obtained = [e for e in cmd_events(out, "obtained") if e["id"] == name][0]
        check_event(obtained, "obtained", name, info["serial"])
        assert obtained["not_after"].endswith("Z") and obtained["key_type"] == "ec256"
        assert obtained["directory"] == pebble.directory
        assert obtained["server"]

        # a failure: class, CA problem, attempt
        failed = receiver.wait_for_event("failed", pred=lambda b: b["id"] == fail,
                                         timeout=120)
        assert failed["outcome"] == "error"
        err = failed["error"]
        assert err["class"] and err["attempt"] >= 1 and err["detail"]
        assert err["type"].startswith("urn:ietf:params:acme:error:")
        wait_until(lambda: [e for e in cmd_events(out, "failed") if e["id"] == fail],
                   timeout=60, what="failed through the command")

        # a renewal an operator asks for: renewed with old and new serials
        run_cli("renew", "--store", apache.store, "--request", name)
        _, info2 = wait_issued(apache, pebble, name, not_serial=info["serial"])
        renewed = receiver.wait_for_event("renewed", pred=lambda b: b["id"] == name)
        check_event(renewed, "renewed", name, info2["serial"])
        assert int(renewed["old_serial"], 16) == int(info["serial"], 16)
        wait_until(lambda: [e for e in cmd_events(out, "renewed") if e["id"] == name],
                   timeout=60, what="renewed through the command")
    finally:
        pebble._chall_post("/clear-a", {"host": fail + "."})


def test_webhook_down_then_back_across_a_restart(pebble, apache_factory, receiver):  # noqa: F811
    name = "down.ev.apache.test"
    receiver.stop()
    apache = apache_factory(pebble, [[name]],
                            global_extra=f"AutoTLSNotifyWebhook {receiver.url}").start()
    wait_issued(apache, pebble, name)
    queue = os.path.join(apache.store, "events")
    wait_until(lambda: os.path.isdir(queue) and os.listdir(queue), timeout=30,
               what="undelivered events in the store's queue")

    # a graceful restart, then a full stop and start, while the receiver is
    # still down: the queue is the store's, no process holds it
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: any(m in apache.log_text() for m in RESTART_MARKS), timeout=30,
               what="the graceful restart")
    apache.stop()
    assert os.listdir(queue)
    apache.start()
    receiver.start()
    for ev in ("obtaining", "obtained", "deployed"):
        body = receiver.wait_for_event(ev, pred=lambda b: b["id"] == name, timeout=180)
        check_event(body, ev, name)
    # at least once, never multiplied per pass
    stays(lambda: len(receiver.events("obtained")) <= 2, 5, what="no stream of duplicates")


def test_hanging_command_delays_no_handshake_nor_order(pebble, apache_factory,  # noqa: F811
                                                       test_root):
    script, out = write_sink(test_root, hang=True)
    name = "hang.ev.apache.test"
    try:
        apache = apache_factory(pebble, [[name]], global_extra="\n".join([
            f"AutoTLSNotifyCmd {script}",
            "AutoTLSNotifyTimeout 1h",
        ])).start()
        _, info = wait_issued(apache, pebble, name)
        wait_until(lambda: cmd_runs(out), timeout=60, what="the command to start")
        first_pid = int(open(glob.glob(os.path.join(out, "*.pid"))[0]).read())

        # the command still hangs; handshakes are answered and a renewal runs
        os.kill(first_pid, 0)
        _, again = served(apache, name)
        assert again["serial"] == info["serial"]
        run_cli("renew", "--store", apache.store, "--request", name)
        wait_issued(apache, pebble, name, not_serial=info["serial"])
        os.kill(first_pid, 0)   # raises if the command had ended
    finally:
        kill_runs(out)


def test_expiry_levels_of_static_certificates(pebble, apache_factory, test_root,  # noqa: F811
                                              receiver):
    cm = CertMaker(os.path.join(test_root, "static"))
    # Levels 10m, 100s and 50s of a certificate that expires in 3 minutes:
    # 10m is the first level seen as long as the watchdog's first check comes
    # within 80 s of this line, even on a loaded machine; the later levels
    # get 50 s windows each.
    soon = cm.expiring("soon.ev.apache.test", minutes=3)
    old = cm.expired("old.ev.apache.test")
    apache = apache_factory(pebble, [])
    apache.write_config(global_extra="\n".join([
        "AutoTLSWarn 10m 100s 50s",
        f"AutoTLSNotifyWebhook {receiver.url}",
        static_vhost(apache.tls_port, "soon.ev.apache.test", soon),
        static_vhost(apache.tls_port, "old.ev.apache.test", old),
    ]))
    apache.start()

    def of(ev, path):
        return [e for e in receiver.events(ev) if e.get("path") == path]

    expired = wait_until(lambda: of("expired", old.cert), timeout=60,
                         what="expired for the expired certificate")[0]
    assert expired["source"] == "static" and "old.ev.apache.test" in expired["names"]
    first = wait_until(lambda: of("expiring", soon.cert), timeout=60,
                       what="the first expiring level")[0]
    assert first["level"] == "10m" and first["level_seconds"] == 600
    assert first["source"] == "static"
    wait_until(lambda: len(of("expiring", soon.cert)) >= 3, timeout=240,
               what="the 100s and 50s levels")
    wait_until(lambda: of("expired", soon.cert), timeout=120, what="expired")
    levels = [e["level"] for e in of("expiring", soon.cert)]
    assert levels == ["10m", "100s", "50s"], levels

    # a restart sends none of them again: the state is the store's
    drivers = apache.log_text().count("renewal driver starting in pid")
    proc = apache.graceful()
    assert proc.returncode == 0, proc.stderr
    wait_until(lambda: any(m in apache.log_text() for m in RESTART_MARKS), timeout=30,
               what="the graceful restart")
    # the new watchdog child is the one that would repeat them: watch after
    # it started, not only after the signal
    wait_until(lambda: apache.log_text().count("renewal driver starting in pid") > drivers,
               timeout=60, what="a driver after the restart")
    stays(lambda: (len(of("expired", old.cert)) == 1 and len(of("expired", soon.cert)) == 1
                   and len(of("expiring", soon.cert)) == 3), 6, what="no alert sent twice")


@pytest.mark.parametrize("make, message", [
    (lambda d: "relative/notify.sh", "is not an absolute path"),
    (lambda d: os.path.join(d, "missing.sh"), "No such file"),
    (lambda d: d, "is not a regular file"),
    (lambda d: _script(d, 0o644), "is not executable"),
    (lambda d: _script(d, 0o775), "writable by its group or by everyone"),
    (lambda d: _script(d, 0o757), "writable by its group or by everyone"),
])
def test_notify_cmd_is_checked_at_config_time(pebble, test_root, make, message):
    from apachectl import Apache
    path = make(test_root)
    a = Apache(test_root, pebble, [["cmd.ev.apache.test"]],
               global_extra=f"AutoTLSNotifyCmd {path}")
    with open(a.conf_path) as f:
        no = [i for i, ln in enumerate(f, 1) if ln.startswith("AutoTLSNotifyCmd")][0]
    proc = a.configtest()
    assert proc.returncode != 0
    assert f"line {no} of {a.conf_path}" in proc.stderr, proc.stderr
    assert "AutoTLSNotifyCmd" in proc.stderr and message in proc.stderr, proc.stderr


def _script(d, mode):
    path = os.path.join(d, f"notify-{mode:o}.sh")
    with open(path, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("line, directive", [
    ("AutoTLSNotifyWebhook ftp://127.0.0.1/hook", "AutoTLSNotifyWebhook"),
    ('AutoTLSNotifyWebhook http://127.0.0.1/hook "No colon here"', "AutoTLSNotifyWebhook"),
    ("AutoTLSNotifyTimeout never", "AutoTLSNotifyTimeout"),
    ("AutoTLSNotifyQueue 0", "AutoTLSNotifyQueue"),
    ("AutoTLSWarn 7d 7d", "AutoTLSWarn"),
    ("AutoTLSWarn soon", "AutoTLSWarn"),
])
def test_bad_notify_values_name_the_directive(pebble, test_root, line, directive):
    from apachectl import Apache
    a = Apache(test_root, pebble, [["val.ev.apache.test"]], global_extra=line)
    proc = a.configtest()
    assert proc.returncode != 0
    assert directive in proc.stderr and "Syntax error on line" in proc.stderr, proc.stderr


def test_good_notify_settings_pass(pebble, test_root):
    from apachectl import Apache
    a = Apache(test_root, pebble, [["ok.ev.apache.test"]], global_extra="\n".join([
        f"AutoTLSNotifyCmd {_script(test_root, 0o755)}",
        "AutoTLSNotifyTimeout 2m",
        'AutoTLSNotifyWebhook https://hooks.example.test/x "Authorization: Bearer t0k"',
        "AutoTLSNotifyQueue 500",
        "AutoTLSWarn 30d 14d 2d 12h",
    ]))
    proc = a.configtest()
    assert proc.returncode == 0, proc.stderr
