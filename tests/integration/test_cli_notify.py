"""autotls notify-test: a "test" event through a real webhook receiver
(webhookrx) and a real command, the receiver down, the store's own
notification settings, and root on a store another user owns."""
import json
import os
import pwd
import stat

import pytest

from util import make_test_root, run_cli
from webhookrx import WebhookReceiver

RECORDER = """#!/bin/sh
# argv, uid and the event (stdin) of each run, one block per run
{{ echo "ARGV $*"; echo "UID $(id -u)"; cat; echo; }} >> {out}
"""


def make_recorder(directory):
    out = os.path.join(directory, "runs.txt")
    script = os.path.join(directory, "record.sh")
    with open(script, "w") as f:
        f.write(RECORDER.format(out=out))
    os.chmod(script, 0o755)
    return script, out


def runs(out):
    """[(argv, uid, event JSON)] of each run of the recorder."""
    if not os.path.exists(out):
        return []
    blocks = []
    lines = open(out).read().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("ARGV "):
            blocks.append((line[5:], int(lines[i + 1][4:]), json.loads(lines[i + 2])))
    return blocks


def queued(store):
    d = os.path.join(store, "events")
    return sorted(os.listdir(d)) if os.path.isdir(d) else []


@pytest.fixture
def rx():
    r = WebhookReceiver()
    yield r
    r.close()


def test_webhook_and_command_get_the_test_event(tmp_path, rx):
    store = str(tmp_path / "store")
    script, out = make_recorder(str(tmp_path))

    p = run_cli("notify-test", "--store", store, "--webhook", rx.url,
                "--header", "X-Token: sekrit", "--exec", script)
    assert f"webhook {rx.url}: delivered" in p.stdout
    assert f"exec {script}: delivered" in p.stdout

    reqs = rx.requests()
    assert len(reqs) == 1
    req = reqs[0]
    assert req.path == "/hook"
    assert req.headers["content-type"] == "application/json"
    assert req.headers["x-token"] == "sekrit"
    assert req.headers["user-agent"].startswith("autotls/")
    assert req.body["event"] == "test"
    assert req.body["actor"]["kind"] == "cli"

    (argv, _, event), = runs(out)
    assert argv == "test -"                 # EVENT ID, "-" without a certificate
    assert event == req.body                # the same JSON on stdin
    assert queued(store) == []              # delivered everywhere: gone
    # the header value is a secret: in no output
    assert "sekrit" not in p.stdout + p.stderr


def test_receiver_down_then_back(tmp_path, rx):
    store = str(tmp_path / "store")
    rx.stop()
    p = run_cli("notify-test", "--store", store, "--webhook", rx.url, check=False)
    assert p.returncode == 1
    assert f"webhook {rx.url}: NOT delivered" in p.stdout
    assert "connect" in p.stdout.lower()    # curl's reason, not a guess
    assert "stays queued" in p.stdout
    assert len(queued(store)) == 1          # at-least-once: kept for later

    rx.start()
    rx.fail_with(503)
    p = run_cli("notify-test", "--store", store, "--webhook", rx.url, check=False)
    assert p.returncode == 1
    assert "HTTP 503" in p.stdout
    assert len(queued(store)) == 2

    rx.succeed()
    p = run_cli("notify-test", "--store", store, "--webhook", rx.url)
    assert f"webhook {rx.url}: delivered" in p.stdout
    # every queued event arrived, oldest first, once the receiver took them
    delivered = rx.events("test")
    assert len(delivered) == 3
    assert [e["time"] for e in delivered] == sorted(e["time"] for e in delivered)
    assert queued(store) == []


def test_failing_command_is_reported(tmp_path):
    store = str(tmp_path / "store")
    script = str(tmp_path / "fail.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\necho 'no route to pager' >&2\nexit 4\n")
    os.chmod(script, 0o755)
    p = run_cli("notify-test", "--store", store, "--exec", script, check=False)
    assert p.returncode == 1
    assert "exit status 4" in p.stdout and "no route to pager" in p.stdout


def test_sinks_from_the_store(tmp_path, rx):
    store = str(tmp_path / "store")
    p = run_cli("notify-test", "--store", store, check=False)
    assert p.returncode == 1
    assert "no notification settings" in p.stderr

    script, out = make_recorder(str(tmp_path))
    with open(os.path.join(store, "notify.json"), "w") as f:
        json.dump({"exec": script, "webhook": rx.url, "headers": ["X-From: store"]}, f)
    os.chmod(os.path.join(store, "notify.json"), 0o600)
    run_cli("notify-test", "--store", store)
    assert rx.wait_for_event("test")["event"] == "test"
    assert rx.requests()[0].headers["x-from"] == "store"
    assert len(runs(out)) == 1


def test_bulk_add_and_remove_are_batched(tmp_path, rx):
    """1,000 names added then removed from files, with the store's webhook
    and command: a few queue entries of at most 500 events each, not one
    per name; each entry is one request and one run (`EVENT -`, the batch
    on stdin) carrying its events in order; the audit log still has one
    record a name; a single name keeps the one-event payload."""
    store = str(tmp_path / "store")
    os.makedirs(store, mode=0o700)
    script, out = make_recorder(str(tmp_path))
    with open(os.path.join(store, "notify.json"), "w") as f:
        json.dump({"exec": script, "webhook": rx.url}, f)
    os.chmod(os.path.join(store, "notify.json"), 0o600)
    names = [f"b{i}.bulk.example" for i in range(1000)]
    listing = tmp_path / "names.txt"
    listing.write_text("\n".join(names) + "\n")

    run_cli("add", "--store", store, "--from-file", str(listing), timeout=600)
    assert len(queued(store)) == 2
    run_cli("remove", "--store", store, "--from-file", str(listing), timeout=600)
    assert len(queued(store)) == 4
    run_cli("add", "--store", store, "single.example")
    assert len(queued(store)) == 5

    run_cli("notify-test", "--store", store, timeout=300)
    bodies = [r.body for r in rx.delivered()]
    assert [b["event"] for b in bodies] == ["name-added"] * 2 + ["name-removed"] * 2 + [
        "name-added", "test"]
    for b in bodies[:4]:
        assert b["batch"] is True and b["count"] == 500 == len(b["events"])
        assert all(e["event"] == b["event"] and e["source"] == "cli" for e in b["events"])
    assert [e["id"] for e in bodies[0]["events"] + bodies[1]["events"]] == names
    assert [e["id"] for e in bodies[2]["events"] + bodies[3]["events"]] == names
    assert bodies[4]["id"] == "single.example" and "batch" not in bodies[4]

    blocks = runs(out)
    assert [argv for argv, _, _ in blocks] == [
        "name-added -", "name-added -", "name-removed -", "name-removed -",
        "name-added single.example", "test -"]
    assert [event for _, _, event in blocks] == bodies     # the same JSON on stdin
    assert queued(store) == []

    audit = [json.loads(line) for line in
             run_cli("audit", "--store", store, "--json").stdout.splitlines()]
    assert sum(r["event"] == "name-added" for r in audit) == 1001
    assert sum(r["event"] == "name-removed" for r in audit) == 1000


def test_usage_errors(tmp_path):
    store = str(tmp_path / "store")
    p = run_cli("notify-test", "--store", store, "--header", "X: y", check=False)
    assert p.returncode == 2 and "--header goes with --webhook" in p.stderr
    p = run_cli("notify-test", "--store", store, "--webhook", "ftp://x/", check=False)
    assert p.returncode == 2 and "ftp://x/" in p.stderr
    p = run_cli("notify-test", "--store", store, "--exec", "relative.sh", check=False)
    assert p.returncode == 2 and "absolute" in p.stderr


def test_output_holds_no_credential_nor_terminal_codes(tmp_path, rx):
    """The URL is shown without userinfo and query; what a command (or the
    worker, in the store's queue) wrote reaches the terminal escaped."""
    store = str(tmp_path / "store")
    script = str(tmp_path / "fail.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nprintf '\\033[2Jcleared\\n' >&2\nexit 3\n")
    os.chmod(script, 0o755)
    base = rx.url.split("://", 1)[1]
    url = f"http://hookuser:pw-sekrit@{base}?token=abc"
    p = run_cli("notify-test", "--store", store, "--webhook", url, "--exec", script,
                check=False)
    assert p.returncode == 1
    assert f"webhook http://{base}: delivered" in p.stdout
    assert "pw-sekrit" not in p.stdout + p.stderr and "token=abc" not in p.stdout
    assert "\x1b" not in p.stdout
    assert "\\x1b[2Jcleared" in p.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to own a store as another user")
def test_root_runs_the_stores_command_as_its_owner():
    owner = pwd.getpwnam("nobody")
    root = make_test_root()
    try:
        work = os.path.join(root, "work")
        os.mkdir(work)
        os.chown(work, owner.pw_uid, owner.pw_gid)   # the recorder writes here as nobody
        script, out = make_recorder(work)
        store = os.path.join(root, "store")
        os.mkdir(store, 0o700)
        with open(os.path.join(store, "notify.json"), "w") as f:
            json.dump({"exec": script}, f)
        os.chmod(os.path.join(store, "notify.json"), 0o600)
        for path in (store, os.path.join(store, "notify.json")):
            os.chown(path, owner.pw_uid, owner.pw_gid)

        p = run_cli("notify-test", "--store", store)
        assert f"exec {script}: delivered" in p.stdout
        (argv, uid, event), = runs(out)
        assert uid == owner.pw_uid               # never root
        assert event["actor"]["uid"] == 0        # the invoking user is recorded
        # what the CLI left in the store belongs to the owner
        for name in os.listdir(store):
            st = os.lstat(os.path.join(store, name))
            assert st.st_uid == owner.pw_uid, name
            assert not stat.S_ISLNK(st.st_mode)
    finally:
        import shutil
        shutil.rmtree(root, ignore_errors=True)
