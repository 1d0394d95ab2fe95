"""Helpers for the autotls CLI integration tests (test_cli_*.py)."""
import json
import os
import stat

from util import run_cli, split_pem_chain

CONTACT = "ops@autotls.test"


def issue_args(pebble, store, *names, challenge="http-01", extra=()):
    """argv for `autotls issue` against pebble, answering challenges on the
    ports Pebble validates on (loopback only)."""
    args = ["issue", "--directory", pebble.directory, "--ca-file", pebble.ca_file,
            "--store", store, "--contact", CONTACT, "--agree-tos",
            "--listen-address", "127.0.0.1"]
    if challenge == "http-01":
        args += ["--http-port", pebble.http_port]
    elif challenge == "tls-alpn-01":
        args += ["--challenge", "tls-alpn-01", "--tls-port", pebble.tls_port]
    else:
        args += ["--challenge", challenge]
    return [*args, *extra, *names]


def issue(pebble, store, *names, check=True, **kw):
    return run_cli(*issue_args(pebble, store, *names, **kw), check=check)


def cert_file(store, cert_id, key_type="ec256"):
    return os.path.join(store, "certs", cert_id, f"{key_type}.pem")


def stored_chain(store, cert_id, key_type="ec256"):
    """The certificates (leaf first) of the stored key+chain file."""
    with open(cert_file(store, cert_id, key_type)) as f:
        text = f.read()
    return [c if c.endswith("\n") else c + "\n" for c in split_pem_chain(text)]


def stored_meta(store, cert_id):
    with open(os.path.join(store, "certs", cert_id, "meta.json")) as f:
        return json.load(f)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def write_dns_hook(directory, pebble, log_path):
    """A dns-01 hook (argv: setup|teardown NAME VALUE) that publishes the TXT
    record through challtestsrv's management API and logs each call."""
    path = os.path.join(directory, "dns-hook.py")
    with open(path, "w") as f:
        f.write(f"""#!/usr/bin/python3
import json, sys, urllib.request
action, name, value = sys.argv[1:4]
host = name if name.endswith(".") else name + "."
body = {{"host": host, "value": value}} if action == "setup" else {{"host": host}}
path = "/set-txt" if action == "setup" else "/clear-txt"
req = urllib.request.Request({pebble.chall_url!r} + path, data=json.dumps(body).encode(),
                             method="POST")
urllib.request.urlopen(req, timeout=10).read()
with open({log_path!r}, "a") as log:
    log.write(f"{{action}} {{name}} {{value}}\\n")
""")
    os.chmod(path, 0o755)
    return path


def rfc3339(when):
    """A datetime (or seconds from now, negative: in the past) as meta.json writes times."""
    import datetime
    if not isinstance(when, datetime.datetime):
        when = (datetime.datetime.now(datetime.timezone.utc)
                + datetime.timedelta(seconds=when))
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def edit_meta(store, cert_id, edit):
    """Rewrites a certificate's meta.json with edit(meta) applied (a function
    changing the dict in place), atomically, keeping the file's owner and
    mode: a test playing "the store was left in this state"."""
    path = os.path.join(store, "certs", cert_id, "meta.json")
    st = os.stat(path)
    meta = stored_meta(store, cert_id)
    edit(meta)
    tmp = os.path.join(os.path.dirname(path), ".tmp.meta.json.test")
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.rename(tmp, path)
    return meta


def stored_serials(store, cert_id, key_types=("ec256", "rsa2048")):
    """{key type: serial} of the certificates the store holds for cert_id."""
    from util import cert_info
    out = {}
    for kt in key_types:
        if os.path.exists(cert_file(store, cert_id, kt)):
            out[kt] = cert_info(stored_chain(store, cert_id, kt)[0])["serial"]
    return out


def write_gated_dns_hook(directory, pebble, log_path, hold, release_path, wait_for=None,
                         limit=120):
    """A dns-01 hook like write_dns_hook whose setup for the name containing
    `hold` logs "started NAME", blocks until release_path exists (at most
    `limit` seconds, then fails), publishes, and logs "done NAME".  With
    wait_for, the setup of a name containing wait_for logs "waiting NAME"
    and waits (at most `limit` s, then fails) until the log shows `hold`
    started: its order can then only succeed while the held one's hook is
    running, whichever order the host started them in.  The log is made
    0666: the hook runs as the worker."""
    open(log_path, "a").close()
    os.chmod(log_path, 0o666)
    path = os.path.join(directory, "gated-dns-hook.py")
    with open(path, "w") as f:
        f.write(f"""#!/usr/bin/python3
import json, os, sys, time, urllib.request
action, name, value = sys.argv[1:4]
LOG, HOLD, RELEASE, WAIT_FOR, LIMIT = {log_path!r}, {hold!r}, {release_path!r}, {wait_for!r}, {limit!r}

def log(what):
    with open(LOG, "a") as f:
        f.write(f"{{what}} {{name}}\\n")

def held_started():
    with open(LOG) as f:
        return any(l.startswith("started ") and HOLD in l for l in f)

def wait(cond, why):
    deadline = time.monotonic() + LIMIT
    while not cond():
        if time.monotonic() > deadline:
            log("gave-up")
            sys.exit(f"gated hook: gave up waiting for {{why}}")
        time.sleep(0.05)

if action == "setup" and HOLD in name:
    log("started")
    wait(lambda: os.path.exists(RELEASE), "the release file")
elif action == "setup" and WAIT_FOR and WAIT_FOR in name:
    log("waiting")
    # the release file also ends this wait: a test's teardown frees every hook
    wait(lambda: held_started() or os.path.exists(RELEASE), "the held hook to start")
    if not held_started():
        log("gave-up")
        sys.exit("gated hook: released before the held hook started")
host = name if name.endswith(".") else name + "."
body = {{"host": host, "value": value}} if action == "setup" else {{"host": host}}
req = urllib.request.Request({pebble.chall_url!r} + ("/set-txt" if action == "setup" else "/clear-txt"),
                             data=json.dumps(body).encode(), method="POST")
urllib.request.urlopen(req, timeout=10).read()
log("done" if action == "setup" else "teardown")
""")
    os.chmod(path, 0o755)
    return path
