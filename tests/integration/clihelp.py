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
