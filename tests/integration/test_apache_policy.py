"""Policy on Apache (AutoTLSPolicy*): a managed host that breaks it is an
`apache2 -t` / start-up error naming the rule and the file:line of the
host's AutoTLS directive; a bad rule value is a syntax error at its line;
the server saves its policy in the store and a CLI order on that store
that breaks it is refused with a policy-denied audit record; the server's
own actions are in the audit trail with its actor (server, Apache, the
watchdog child's pid)."""
import json
import os
import re
import types

import pytest

from apachectl import Apache, stop_quietly
from apache_helpers import apache_factory, wait_issued  # noqa: F401
from clihelp import CONTACT
from util import free_port, run_cli, wait_until


def autotls_line(conf_path, server_name):
    """The line number of "AutoTLS On" in the <VirtualHost> of server_name."""
    in_host = False
    with open(conf_path) as f:
        for no, line in enumerate(f, 1):
            s = line.strip()
            if s.startswith("<VirtualHost"):
                in_host = False
            if s == f"ServerName {server_name}":
                in_host = True
            if in_host and s == "AutoTLS On":
                return no
    raise AssertionError(f"no AutoTLS On for {server_name} in {conf_path}")


HOSTS = [["pol.apache.test", "www.pol.apache.test"], ["other.apache.test"]]


@pytest.mark.parametrize("policy, keys, rule, directive, host", [
    ("AutoTLSPolicyKeys ec384 rsa3072", None, "key", "AutoTLSPolicyKeys",
     "pol.apache.test"),
    ("AutoTLSPolicyMinRSABits 3072", "ec256 rsa2048", "min_rsa_bits",
     "AutoTLSPolicyMinRSABits", "pol.apache.test"),
    ("AutoTLSPolicyCA https://acme.example.invalid/directory", None, "ca",
     "AutoTLSPolicyCA", "pol.apache.test"),
    ("AutoTLSPolicyNames pol.apache.test *.pol.apache.test", None, "names",
     "AutoTLSPolicyNames", "other.apache.test"),
    ("AutoTLSPolicyMaxNames 1", None, "max_names", "AutoTLSPolicyMaxNames",
     "pol.apache.test"),
])
def test_policy_violation_is_a_config_error_with_file_and_line(test_root, pebble, policy,
                                                               keys, rule, directive, host):
    a = Apache(test_root, pebble, HOSTS, keys=keys, global_extra=policy)
    where = f"{a.conf_path}:{autotls_line(a.conf_path, host)}"
    for proc in (a.configtest(), _start_fails(a)):
        assert proc.returncode != 0, proc.stderr
        text = proc.stderr
        assert where in text, text
        assert f"rule {rule}" in text and directive in text, text
        assert "Syntax OK" not in text


def _start_fails(a):
    """Starting with the same configuration: apache2 must exit (stopped by
    PID if it did not)."""
    try:
        a.start()
    except RuntimeError:
        return types.SimpleNamespace(returncode=a.proc.returncode,
                                     stderr=a.stdout_text() + a.log_text())
    finally:
        stop_quietly(a)
    raise AssertionError("Apache started with a configuration that breaks the policy")


def test_policy_that_holds_passes(test_root, pebble):
    policy = "\n".join([
        "AutoTLSPolicyKeys ec256 rsa3072",
        "AutoTLSPolicyMinRSABits 3072",
        f"AutoTLSPolicyCA {pebble.directory}",
        "AutoTLSPolicyNames *.apache.test ~^pol\\.apache\\.test$",
        "AutoTLSPolicyMaxNames 2",
    ])
    proc = Apache(test_root, pebble, HOSTS, global_extra=policy).configtest()
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("line", [
    "AutoTLSPolicyKeys rsa1024",
    "AutoTLSPolicyMinRSABits lots",
    "AutoTLSPolicyCA not-a-url",
    "AutoTLSPolicyNames ~[unclosed",
    "AutoTLSPolicyMaxNames 0",
])
def test_bad_rule_value_is_a_syntax_error_at_its_line(test_root, pebble, line):
    a = Apache(test_root, pebble, HOSTS, global_extra=line)
    with open(a.conf_path) as f:
        no = [i for i, text in enumerate(f, 1) if text.strip() == line][0]
    proc = a.configtest()
    assert proc.returncode != 0
    assert f"line {no} of {a.conf_path}" in proc.stderr, proc.stderr
    assert line.split()[0] in proc.stderr, proc.stderr


def read_audit(store):
    path = os.path.join(store, "audit.log")
    try:
        with open(path) as f:
            return [json.loads(x) for x in f if x.strip()]
    except FileNotFoundError:
        return []


def driver_pid(apache):
    m = re.findall(r"renewal driver starting in pid (\d+)", apache.log_text())
    return int(m[-1]) if m else None


def test_cli_on_the_server_store_honours_its_policy(pebble, apache_factory):  # noqa: F811
    hosts = [["cli.pol.apache.test"]]
    apache = apache_factory(pebble, hosts,
                            global_extra="AutoTLSPolicyNames *.pol.apache.test").start()
    _, info = wait_issued(apache, pebble, "cli.pol.apache.test")

    # the server's own actions, with its actor: the watchdog child
    pid = driver_pid(apache)
    assert pid in apache.children()
    recs = wait_until(lambda: [r for r in read_audit(apache.store)
                               if r.get("event") == "obtained"
                               and r.get("id") == "cli.pol.apache.test"],
                      timeout=30, what="an obtained audit record")
    actor = recs[-1]["actor"]
    assert actor["kind"] == "server" and actor["software"].startswith("Apache/")
    assert actor["pid"] == pid
    assert int(recs[-1]["serial"], 16) == int(info["serial"], 16)

    # the CLI on the same store: the stored policy refuses this name
    assert os.path.exists(os.path.join(apache.store, "policy.json"))
    proc = run_cli("issue", "--directory", pebble.directory, "--ca-file", pebble.ca_file,
                   "--store", apache.store, "--contact", CONTACT, "--agree-tos",
                   "--listen-address", "127.0.0.1", "--http-port", free_port(),
                   "elsewhere.example.test", check=False)
    assert proc.returncode != 0, proc.stdout
    assert "names" in proc.stderr, proc.stderr
    assert not os.path.exists(os.path.join(apache.store, "certs", "elsewhere.example.test",
                                           "ec256.pem"))
    denied = [r for r in read_audit(apache.store) if r.get("event") == "policy-denied"]
    assert denied, read_audit(apache.store)
    assert denied[-1]["rule"] == "names" and denied[-1]["outcome"] == "denied"
    assert denied[-1]["actor"]["kind"] == "cli"
    assert "elsewhere.example.test" in json.dumps(denied[-1])
    with open(os.path.join(apache.store, "audit.log")) as f:
        assert "PRIVATE KEY" not in f.read()
