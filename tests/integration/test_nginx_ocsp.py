"""OCSP stapling and revocation on nginx, live: a real Pebble writing an OCSP
URL into what it issues, a real `openssl ocsp` responder signing with
Pebble's intermediate key, a real CRL server, real nginx with the module.

What a client sees is checked with `openssl s_client -status`; what the
server knows, with its status page."""
import pytest

from nginxctl import Nginx

# ---- configuration (nginx -t) ----------------------------------------------

ISSUER = """
    autotls_issuer pebble {{
        directory    https://127.0.0.1:14000/dir;
        contact      admin@example.com;
        accept_terms on;
        {extra}
    }}
"""


def tls_server(names, extra, port=18443, default=""):
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl {default};
        server_name {names};
        {extra}
    }}
"""


CONF_REJECTS = [
    ("ssl_stapling on an autotls server",
     ISSUER.format(extra="") + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling on;"),
     "autotls pebble;",
     "autotls staples its certificates itself; remove ssl_stapling from this server "
     "or set stapling off in autotls_issuer pebble"),
    ("ssl_stapling inherited from http{}",
     "    ssl_stapling on;\n" + ISSUER.format(extra="")
     + tls_server("a.example.com", "autotls pebble;"),
     "autotls pebble;",
     "autotls staples its certificates itself"),
    ("must_staple without stapling",
     ISSUER.format(extra="stapling off;\n        must_staple on;")
     + tls_server("a.example.com", "autotls pebble;"),
     "autotls_issuer pebble {", "autotls_issuer \"pebble\": "),
    ("stapling neither on nor off",
     ISSUER.format(extra="stapling yes;") + tls_server("a.example.com", "autotls pebble;"),
     "stapling yes;", 'invalid value "yes" in "stapling"'),
    ("must_staple neither on nor off",
     ISSUER.format(extra="must_staple 1;") + tls_server("a.example.com", "autotls pebble;"),
     "must_staple 1;", 'invalid value "1" in "must_staple"'),
]


@pytest.mark.parametrize("case,body,needle,message", CONF_REJECTS,
                         ids=[c[0] for c in CONF_REJECTS])
def test_nginx_t_rejects(test_root, case, body, needle, message):
    ngx = Nginx(test_root, body)
    proc = ngx.test_config()
    out = proc.stderr + ngx.log()
    assert proc.returncode != 0, out
    assert message in out, out
    assert f"in {ngx.conf}:{ngx.conf_line(needle)}" in out, out


CONF_ACCEPTS = [
    ("stapling off with ssl_stapling on",
     ISSUER.format(extra="stapling off;")
     + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling on;")),
    ("must_staple with stapling",
     ISSUER.format(extra="stapling on;\n        must_staple on;")
     + tls_server("a.example.com", "autotls pebble;")),
    ("ssl_stapling on http{}, off in the autotls server",
     "    ssl_stapling on;\n" + ISSUER.format(extra="")
     + tls_server("a.example.com", "autotls pebble;\n        ssl_stapling off;")),
]


@pytest.mark.parametrize("case,body", CONF_ACCEPTS, ids=[c[0] for c in CONF_ACCEPTS])
def test_nginx_t_accepts(test_root, case, body):
    ngx = Nginx(test_root, body)
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()
    assert "test is successful" in proc.stderr
