"""autotls_policy in nginx: nginx -t names the file, line and rule a managed
certificate breaks; a compliant configuration starts, issues and saves the
policy in the store, where the CLI honours it (refused with a policy-denied
audit record)."""
import json
import os

import pytest

from clihelp import issue
from nginxctl import Nginx, issuer_block, server_block, until_issued
from util import wait_until

ISSUER = """
    autotls_issuer pebble {
        directory    https://127.0.0.1:14000/dir;
        contact      admin@example.com;
        accept_terms on;
        KEY
    }
"""


def body(policy, names="a.example.com www.example.com", key="", extra=""):
    issuer = ISSUER.replace("KEY", key)
    return f"""
    autotls_policy {{
        {policy}
    }}
{issuer}
    server {{
        listen 127.0.0.1:18080;
        listen 127.0.0.1:18443 ssl;
        server_name {names};
        autotls pebble;
        {extra}
    }}
"""


# (case, policy, issuer key line, rule named, a detail the message carries)
RULES = [
    ("key", "key rsa3072 ec384;", "", "key", "ec256"),
    ("min_rsa_bits", "min_rsa_bits 3072;", "key rsa2048;", "min_rsa_bits", "2048"),
    ("ca", "ca https://acme-v02.api.letsencrypt.org/directory;", "", "ca",
     "https://127.0.0.1:14000/dir"),
    ("names", "names *.example.org example.org;", "", "names", "example.com"),
    ("max_names", "max_names 1;", "", "max_names", "2"),
]


def rejected(test_root, text, *messages, at):
    """nginx -t fails with every message, naming the line holding at."""
    ngx = Nginx(test_root, text)
    proc = ngx.test_config()
    out = proc.stderr + ngx.log()
    assert proc.returncode != 0, out
    for m in messages:
        assert m in out, out
    assert f"in {ngx.conf}:{ngx.conf_line(at)}" in out, out


@pytest.mark.parametrize("case,policy,key,rule,detail", RULES, ids=[r[0] for r in RULES])
def test_config_breaking_a_rule_fails_with_file_and_line(test_root, case, policy, key,
                                                         rule, detail):
    # the line of the "autotls" directive of the certificate at fault
    rejected(test_root, body(policy, key=key), f'breaks autotls_policy rule "{rule}"',
             detail, at="autotls pebble;")


BAD_BLOCKS = [
    ("unknown key type", "key rsa1024;", 'invalid autotls_policy "key" value "rsa1024"'),
    ("bad number", "max_names many;", 'invalid autotls_policy "max_names" value "many"'),
    ("bad regex", "names ~^(unclosed$;", 'invalid autotls_policy "names" value "~^(unclosed$"'),
    ("unknown keyword", "colour blue;", 'unknown directive or wrong number of arguments '
     '"colour" in autotls_policy'),
]


@pytest.mark.parametrize("case,policy,message", BAD_BLOCKS, ids=[b[0] for b in BAD_BLOCKS])
def test_bad_policy_block_names_keyword_value_and_line(test_root, case, policy, message):
    rejected(test_root, body(policy), message, at=policy)


def test_policy_block_twice_is_an_error(test_root):
    text = body("max_names 5;").replace("autotls_policy {", "autotls_policy { }\n"
                                        "    autotls_policy {", 1)
    rejected(test_root, text, '"autotls_policy" directive is duplicate',
             at="autotls_policy {\n")


def test_compliant_config_passes_nginx_t(test_root):
    ngx = Nginx(test_root, body("key ec256 ec384; names *.example.com example.com "
                                "~^[a-z0-9-]+\\.example\\.net$; max_names 5; "
                                "ca https://127.0.0.1:14000/dir;",
                                names="a.example.com x-1.example.net"))
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()


def audit_records(store):
    path = os.path.join(store, "audit.log")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_runtime_cli_refused_by_the_stored_policy(pebble, test_root):
    """The server starts with a compliant policy, saves it in the store; a
    CLI issue on that store for a name the policy refuses is denied and
    audited, and nothing is ordered for it."""
    store = os.path.join(test_root, "store")
    text = issuer_block(pebble, test_root)
    text += f"    autotls_store {store};\n    autotls_check_interval 1s;\n"
    text += "    autotls_policy { names *.pol.test; key ec256; }\n"
    text += server_block(["a.pol.test"], pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, text)
    with ngx.start():
        until_issued(ngx, pebble, pebble.tls_port, "a.pol.test")
        policy_file = os.path.join(store, "policy.json")
        wait_until(lambda: os.path.exists(policy_file), timeout=30, what="policy.json")
        with open(policy_file) as f:
            saved = json.load(f)
        assert "*.pol.test" in json.dumps(saved)

        proc = issue(pebble, store, "evil.other.test", check=False)
        assert proc.returncode != 0, proc.stdout + proc.stderr
        assert "policy" in proc.stderr, proc.stderr
        assert not os.path.exists(os.path.join(store, "certs", "evil.other.test",
                                               "ec256.pem"))

        denied = [r for r in audit_records(store) if r.get("event") == "policy-denied"]
        assert denied, audit_records(store)
        rec = denied[-1]
        assert rec["rule"] == "names"
        assert "evil.other.test" in json.dumps(rec)
        assert rec["actor"]["kind"] == "cli"
        assert rec["actor"]["uid"] == os.getuid()
