"""autotls scan against real TLS servers (openssl s_server on loopback)
serving the static certificates of certmaker: the findings it lists, its
exit status (0 ok, 1 warning, 2 critical or unreachable), the JSON
schema, --targets files and IPv6 literals."""
import json
import os
import socket
import subprocess

import pytest

import certmaker
import procs
import util


def _accepts(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


class SServer:
    """One openssl s_server on a free port, stopped by PID at teardown."""

    def __init__(self, leaf, chain_file=None, host="127.0.0.1"):
        self.port = util.free_port()
        self.host = host
        argv = ["openssl", "s_server", "-accept", f"{host}:{self.port}" if ":" not in host
                else f"[{host}]:{self.port}", "-cert", leaf.leaf, "-key", leaf.key,
                "-quiet", "-cipher", certmaker.SECLEVEL0]
        if chain_file:
            argv += ["-cert_chain", chain_file]
        # stdin kept open: s_server stops at end of input
        self.proc = procs.spawn(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        util.wait_until(lambda: self.proc.poll() is None and _accepts(self.port, host),
                        timeout=15, what=f"s_server on port {self.port}")

    @property
    def target(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def stop(self):
        procs.stop(self.proc)


@pytest.fixture(scope="module")
def cm(tmp_path_factory):
    return certmaker.CertMaker(str(tmp_path_factory.mktemp("static")))


@pytest.fixture
def serve(cm):
    servers = []

    def start(leaf, chain=True, host="127.0.0.1"):
        s = SServer(leaf, cm.chain if chain else None, host=host)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def scan(*args):
    return util.run_cli("scan", *args, check=False, timeout=60)


def scan_json(*args):
    proc = scan("--json", *args)
    return proc, json.loads(proc.stdout)


def findings_of(target):
    return {f["finding"]: f for f in target["findings"]}


def test_valid_certificate_exits_0_with_no_finding(cm, serve):
    s = serve(cm.valid("ok.test"))
    proc, doc = scan_json("--sni", "ok.test", s.target)
    assert proc.returncode == 0, proc.stderr
    t = doc["targets"][0]
    assert t["findings"] == [] and t["severity"] == "ok" and doc["severity"] == "ok"
    assert t["names"] == ["ok.test"]
    assert t["chain"] == {"length": 3, "complete": True, "self_signed": False}
    # the table form says the same
    text = scan("--sni", "ok.test", s.target)
    assert text.returncode == 0 and f"{s.target} (SNI ok.test): ok" in text.stdout


def test_names_from_the_server_reach_the_terminal_escaped(cm, serve):
    """A dNSName may hold any IA5 byte: the endpoint scanned must not be
    able to send escape codes to the operator's terminal."""
    s = serve(cm.leaf("esc", ["a\x1b[2Jb.test"]))
    text = scan("--sni", "ok.test", s.target)
    assert "\x1b" not in text.stdout
    assert "a\\x1b[2Jb.test" in text.stdout


def test_json_schema(cm, serve):
    leaf = cm.valid("schema.test")
    s = serve(leaf)
    proc, doc = scan_json("--sni", "schema.test", s.target)
    assert set(doc) == {"scanned", "severity", "targets"}
    t = doc["targets"][0]
    assert {"target", "host", "port", "sni", "severity", "error", "names", "subject",
            "issuer", "serial", "key", "signature", "not_before", "not_after", "days_left",
            "chain", "findings"} <= set(t)
    assert t["target"] == s.target and t["host"] == "127.0.0.1" and t["port"] == str(s.port)
    assert t["sni"] == "schema.test" and t["error"] is None
    info = util.cert_info(open(leaf.leaf).read())
    assert t["serial"].lower() == info["serial"].lower()
    assert t["subject"] == "CN=schema.test"
    assert t["issuer"] == "CN=autotls test static intermediate"
    assert t["key"] == {"alg": "ec", "bits": 256}
    assert t["signature"] == "ecdsa-with-SHA256"
    assert t["not_after"] == info["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ")
    assert 88 <= t["days_left"] <= 90


@pytest.mark.parametrize("kind,finding,severity,code", [
    ("expired", "expired", "critical", 2),
    ("not_yet_valid", "not-yet-valid", "critical", 2),
    ("rsa1024", "weak-key", "critical", 2),
    ("sha1", "sha1-signature", "warning", 1),
])
def test_each_finding_and_its_exit_status(cm, serve, kind, finding, severity, code):
    name = f"{kind.replace('_', '-')}.test"
    s = serve(getattr(cm, kind)(name))
    proc, doc = scan_json("--sni", name, s.target)
    assert proc.returncode == code, proc.stdout + proc.stderr
    t = doc["targets"][0]
    assert set(findings_of(t)) == {finding}
    assert findings_of(t)[finding]["severity"] == severity
    assert doc["severity"] == severity


def test_expiring_within_the_window_is_a_warning(cm, serve):
    s = serve(cm.expiring("soon.test", minutes=30))
    proc, doc = scan_json("--sni", "soon.test", s.target)
    assert proc.returncode == 1
    f = findings_of(doc["targets"][0])
    assert set(f) == {"expiring"} and f["expiring"]["detail"].startswith("expires in ")


def test_name_mismatch_wildcard_and_sni(cm, serve):
    s = serve(cm.mismatch("www.mm.test", cert_name="other.invalid"))
    proc, doc = scan_json("--sni", "www.mm.test", s.target)
    assert proc.returncode == 2
    assert findings_of(doc["targets"][0])["name-mismatch"]["detail"] == \
        "www.mm.test not covered"
    # a wildcard covers one label, not two, not the bare domain
    w = serve(cm.leaf("wild", ["*.wild.test"]))
    assert scan("--sni", "a.wild.test", w.target).returncode == 0
    assert scan("--sni", "a.b.wild.test", w.target).returncode == 2
    assert scan("--sni", "wild.test", w.target).returncode == 2


def test_incomplete_chain_vs_self_signed(cm, serve):
    s = serve(cm.no_intermediate("ni.test"), chain=False)
    proc, doc = scan_json("--sni", "ni.test", s.target)
    assert proc.returncode == 1
    t = doc["targets"][0]
    assert set(findings_of(t)) == {"incomplete-chain"}
    assert t["chain"]["length"] == 1 and t["chain"]["complete"] is False
    # a self-signed certificate alone has nothing missing
    ss = serve(cm.self_signed("self.test"), chain=False)
    proc, doc = scan_json("--sni", "self.test", ss.target)
    assert proc.returncode == 0, doc
    assert doc["targets"][0]["chain"]["self_signed"] is True


def test_unreachable_is_critical_with_a_message(cm, serve):
    port = util.free_port()
    proc = scan(f"127.0.0.1:{port}")
    assert proc.returncode == 2
    assert f"127.0.0.1:{port}: unreachable: connect() failed" in proc.stderr
    proc, doc = scan_json(f"127.0.0.1:{port}")
    assert doc["targets"][0]["error"].startswith("connect() failed")


def test_ip_literal_is_checked_against_ip_sans_and_ipv6(cm, serve):
    s = serve(cm.valid("ip.test", "127.0.0.1"))
    proc, doc = scan_json(s.target)
    assert proc.returncode == 0, doc
    assert doc["targets"][0]["sni"] is None
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    s6 = serve(cm.valid("ip6.test", "::1"), host="::1")
    proc, doc = scan_json(s6.target)
    assert proc.returncode == 0, doc
    assert doc["targets"][0]["host"] == "::1"
    other = serve(cm.valid("ip6b.test"), host="::1")
    assert scan(other.target).returncode == 2


def _ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def test_targets_file_worst_status_wins(cm, serve, tmp_path):
    good = serve(cm.valid("t1.test"))
    warn = serve(cm.sha1("t2.test"))
    bad = serve(cm.expired("t3.test"))
    targets = tmp_path / "targets"
    targets.write_text(f"# endpoints\n{good.target} t1.test\n\n{warn.target}  t2.test  # sha1\n")
    proc, doc = scan_json("--targets", str(targets))
    assert proc.returncode == 1
    assert [t["sni"] for t in doc["targets"]] == ["t1.test", "t2.test"]
    assert [t["severity"] for t in doc["targets"]] == ["ok", "warning"]
    targets.write_text(targets.read_text() + f"{bad.target} t3.test\n")
    assert scan("--targets", str(targets)).returncode == 2
    targets.write_text(f"{good.target} t1.test extra\n")
    proc = scan("--targets", str(targets))
    assert proc.returncode == 2 and f"{targets}:1: unexpected 'extra'" in proc.stderr


def test_usage_errors(cm):
    proc = scan()
    assert proc.returncode == 2 and "no target" in proc.stderr
    proc = scan("::1:443")
    assert proc.returncode == 2 and "[ADDRESS]:PORT" in proc.stderr
    proc = scan("host:99999")
    assert proc.returncode == 2 and "is not HOST:PORT" in proc.stderr
    proc = scan("--targets", os.path.join(cm.dir, "missing"))
    assert proc.returncode == 2 and "missing" in proc.stderr


def test_list_all_shows_static_certificates_with_their_worst_finding(tmp_path):
    """autotls list --all reads the inventory the servers keep in the store
    (written here as nginx would: inventory/<id>.json)."""
    store = tmp_path / "store"
    util.run_cli("list", "--store", store)          # creates the store
    plain = util.run_cli("list", "--store", store, "--all")
    assert "no static certificates" in plain.stdout
    inv = store / "inventory"
    inv.mkdir(mode=0o700)
    entry = {
        "id": "static-0123456789abcdef", "source": "static", "path": "/etc/ssl/old.pem",
        "server": "nginx", "used_names": ["old.test", "www.old.test"],
        "used_by": ["/etc/nginx/nginx.conf:12"], "names": ["old.test"],
        "subject": "CN=old.test", "issuer": "CN=x", "serial": "0a",
        "key": {"alg": "rsa", "bits": 1024}, "signature": "sha1WithRSAEncryption",
        "signature_weak": True, "not_before": "2025-01-01T00:00:00Z",
        "not_after": "2026-01-01T00:00:00Z",
        "chain": {"length": 1, "complete": False, "self_signed": False},
        "error": None, "warned_level": 0,
    }
    (inv / "static-0123456789abcdef.json").write_text(json.dumps(entry))
    out = util.run_cli("list", "--store", store, "--all").stdout
    row = [line for line in out.splitlines() if line.startswith("static-0123456789abcdef")]
    assert row, out
    assert "/etc/ssl/old.pem" in row[0] and "rsa1024" in row[0]
    assert "critical: expired: expired " in row[0] and "(+4 more)" in row[0]
    # without --all the static table is not shown
    assert "static-0123456789abcdef" not in util.run_cli("list", "--store", store).stdout
    doc = json.loads(util.run_cli("list", "--store", store, "--json").stdout)
    findings = {f["finding"] for f in doc["static"][0]["findings"]}
    assert findings == {"expired", "name-mismatch", "weak-key", "sha1-signature",
                        "incomplete-chain"}
    # the worker writes the inventory: what it says reaches the terminal escaped
    entry["path"] = "/etc/ssl/\x1b[2Jold.pem"
    entry["names"] = ["old.test\x9b2J"]
    (inv / "static-0123456789abcdef.json").write_text(json.dumps(entry))
    out = util.run_cli("list", "--store", store, "--all").stdout
    assert "\x1b" not in out and "\x9b" not in out
    assert "/etc/ssl/\\x1b[2Jold.pem" in out and "old.test\\xc2\\x9b2J" in out
