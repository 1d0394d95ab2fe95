"""nginx + autotls against Pebble: issuance over http-01 and tls-alpn-01,
served live, chains that verify, status page, permissions."""
import glob
import json
import os
import stat
import urllib.error
import urllib.request

from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued
from util import cert_info, free_port, run_cli, served_chain, verify_chain, wait_until

SERVERS = [("a1.example.com", "a2.example.com"),
           ("b1.example.com", "b2.example.com"),
           ("c1.example.com", "c2.example.com")]


def three_servers(pebble, root, challenge, status_port=None, store=None):
    body = issuer_block(pebble, root, challenge=challenge)
    body += f"    autotls_store {store or os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    for names in SERVERS:
        body += server_block(names, pebble.http_port, pebble.tls_port)
    if status_port:
        body += status_server(status_port)
    return body


def check_all_served(ngx, pebble):
    roots = pebble.roots_pem()
    serials = {}
    for names in SERVERS:
        for name in names:
            chain = until_issued(ngx, pebble, pebble.tls_port, name)
            info = cert_info(chain[0])
            assert sorted(info["names"]) == sorted(names)
            assert verify_chain(chain, roots), f"chain for {name} does not verify"
            serials[name] = info["serial"]
        # both names of a server share one certificate
        assert serials[names[0]] == serials[names[1]]
    assert len(set(serials.values())) == len(SERVERS)
    return serials


def get_status(url):
    """(status code, body) of a status request, 4xx included."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def check_status_query(url):
    """?name=, ?state=, ?limit=&offset= select certificates, the total
    counts the matches, Prometheus takes the same filters, and a bad value
    is a 400 naming its parameter."""
    code, body = get_status(url + "?name=B2.example.com")
    doc = json.loads(body)
    assert code == 200 and doc["total"] == 1
    assert [c["id"] for c in doc["certificates"]] == ["b1.example.com"]
    doc = json.loads(get_status(url + "?state=valid&limit=2&offset=1")[1])
    assert doc["total"] == 3 and doc["limit"] == 2 and doc["offset"] == 1
    assert [c["id"] for c in doc["certificates"]] == ["b1.example.com", "c1.example.com"]
    assert json.loads(get_status(url + "?state=failed")[1])["total"] == 0
    code, prom = get_status(url + "?format=prometheus&name=c1.example.com")
    assert code == 200 and "\nautotls_certificates_selected 1\n" in prom
    assert '"c1.example.com"' in prom and '"a1.example.com"' not in prom
    for query, param in (("limit=0", "limit"), ("offset=x", "offset"),
                         ("state=nope", "state"), ("name=a/b", "name")):
        code, body = get_status(url + "?" + query)
        assert code == 400 and body.startswith(param + ":"), (query, code, body)


def test_http01_three_servers(pebble, test_root):
    status_port = free_port()
    ngx = Nginx(test_root, three_servers(pebble, test_root, "http-01", status_port))
    with ngx.start():
        check_all_served(ngx, pebble)

        # status JSON lists every certificate as valid, with no key material
        url = f"http://127.0.0.1:{status_port}/autotls-status"
        raw = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "PRIVATE KEY" not in raw
        doc = json.loads(raw)
        certs = {c["id"]: c for c in doc["certificates"]}
        for names in SERVERS:
            c = certs[names[0]]
            assert sorted(c["names"]) == sorted(names)
            assert c["state"] == "valid"
            assert c["failures"] == 0
            assert c["keys"][0]["type"] == "ec256"
            served = cert_info(served_chain(pebble.tls_port, names[0])[0])["serial"]
            assert c["keys"][0]["serial"].lstrip("0") == served.lstrip("0")

        prom = urllib.request.urlopen(url + "?format=prometheus", timeout=10).read().decode()
        assert "autotls_certificate" in prom
        for names in SERVERS:
            assert f'"{names[0]}"' in prom
        assert "PRIVATE KEY" not in prom

        check_status_query(url)

        # the driver then asked the CA for renewal information (RFC 9773):
        # Pebble has none, which is recorded once for the directory
        # (accounts/<ca-id>/ari.json, next check in ~24 h), not in each
        # certificate's meta.json
        def ari_checked():
            found = glob.glob(os.path.join(test_root, "store", "accounts", "*", "ari.json"))
            if len(found) != 1:
                return False
            with open(found[0]) as f:
                return bool(json.load(f).get("no_ari_until"))
        wait_until(ari_checked, timeout=30, what="renewal information checks")
        for names in SERVERS:
            with open(os.path.join(test_root, "store", "certs", names[0], "meta.json")) as f:
                assert not json.load(f).get("ari_next_check")

        # the CLI reads the server's store and agrees with the page
        listed = json.loads(run_cli("list", "--store", os.path.join(test_root, "store"),
                                    "--json").stdout)
        assert sorted(c["id"] for c in listed["certificates"]) == sorted(certs)
        assert "PRIVATE KEY" not in run_cli("list", "--store",
                                            os.path.join(test_root, "store")).stdout

        # store: created by the master for the worker user, 0700, keys 0600
        store = os.path.join(test_root, "store")
        st = os.stat(store)
        assert stat.S_IMODE(st.st_mode) == 0o700
        if os.geteuid() == 0:
            import pwd
            assert st.st_uid == pwd.getpwnam("nobody").pw_uid
        for dirpath, dirnames, filenames in os.walk(store):
            for d in dirnames:
                assert stat.S_IMODE(os.stat(os.path.join(dirpath, d)).st_mode) == 0o700
            for f in filenames:
                p = os.path.join(dirpath, f)
                with open(p, errors="replace") as fh:
                    if "PRIVATE KEY" in fh.read():
                        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600, p


def test_tlsalpn01_three_servers(pebble, test_root):
    ngx = Nginx(test_root, three_servers(pebble, test_root, "tls-alpn-01"))
    with ngx.start():
        check_all_served(ngx, pebble)
        assert "tls-alpn-01 challenge for" in ngx.log()


def test_autotls_next_to_a_static_default_server(pebble, test_root):
    """The listener's default server has its own ssl_certificate; the
    autotls server on the same listener still gets its ACME certificate
    and the static server keeps its own."""
    import subprocess
    crt, key = os.path.join(test_root, "static.crt"), os.path.join(test_root, "static.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj",
                    "/CN=static.example.com", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    os.chmod(key, 0o644)
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.tls_port} ssl default_server;
        server_name static.example.com;
        ssl_certificate {crt};
        ssl_certificate_key {key};
    }}
"""
    body += server_block(("auto.example.com",), pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        chain = until_issued(ngx, pebble, pebble.tls_port, "auto.example.com")
        assert verify_chain(chain, pebble.roots_pem())
        static = cert_info(served_chain(pebble.tls_port, "static.example.com")[0])
        assert static["subject"] == "CN=static.example.com"
        # an unknown name falls to the static default server
        other = cert_info(served_chain(pebble.tls_port, "unknown.example.org")[0])
        assert other["subject"] == "CN=static.example.com"
