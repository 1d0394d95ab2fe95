"""`nginx -t` rejects broken autotls configurations, naming file and line."""
import os

import pytest

from nginxctl import Nginx

ISSUER = """
    autotls_issuer pebble {
        directory    https://127.0.0.1:14000/dir;
        contact      admin@example.com;
        accept_terms on;
    }
"""


def server(extra="autotls pebble;", names="a.example.com", listen="listen 127.0.0.1:18443 ssl;"):
    return f"""
    server {{
        listen 127.0.0.1:18080;
        {listen}
        server_name {names};
        {extra}
    }}
"""


CASES = [
    ("unknown issuer",
     ISSUER + server(extra="autotls nosuch;"),
     "autotls nosuch;", 'unknown autotls_issuer "nosuch"'),
    ("issuer without directory",
     "    autotls_issuer pebble {\n        contact a@example.com;\n"
     "        accept_terms on;\n    }\n" + server(),
     "autotls_issuer pebble {", 'autotls_issuer "pebble" has no "directory"'),
    ("accept_terms missing",
     "    autotls_issuer pebble {\n        directory https://127.0.0.1:14000/dir;\n    }\n"
     + server(),
     "autotls_issuer pebble {", '"accept_terms on"'),
    ("no ssl listener",
     ISSUER + server(listen=""),
     "autotls pebble;", 'needs a "listen ... ssl"'),
    ("unknown key type",
     ISSUER.replace("accept_terms on;", "accept_terms on;\n        key ec999;") + server(),
     "key ec999;", 'unknown key type "ec999"'),
    ("regex server name",
     ISSUER + server(names="~^www\\d+\\.example\\.com$"),
     "autotls pebble;", "regular expression server name"),
    ("wildcard without dns-01",
     ISSUER + server(names="*.example.com"),
     "autotls pebble;", 'wildcard name "*.example.com" needs'),
    ("regex server name with per_name",
     ISSUER + server(extra="autotls pebble per_name;", names="a.example.com ~^www\\d+$"),
     "autotls pebble per_name;", "regular expression server name"),
    ("per_name certificate managed twice",
     ISSUER + server(extra="autotls pebble per_name;", names="a.example.com b.example.com")
     + server(names="b.example.com").replace("18080", "18081").replace("18443", "18444"),
     "autotls pebble;", 'certificate "b.example.com" is already managed'),
    ("unknown challenge",
     ISSUER.replace("accept_terms on;", "accept_terms on;\n        challenge smtp-01;") + server(),
     "challenge smtp-01;", 'unknown challenge type "smtp-01"'),
    # messages that name the keyword of the issuer block at fault
    ("directory not a URL",
     ISSUER.replace("https://127.0.0.1:14000/dir", "ftp://127.0.0.1/dir") + server(),
     "directory    ftp://", 'invalid ACME directory URL "ftp://127.0.0.1/dir" in "directory"'),
    ("profile flag misspelt",
     ISSUER.replace("accept_terms on;", "accept_terms on;\n        profile short requird;")
     + server(),
     "profile short requird;", 'invalid parameter "requird" in "profile"'),
    # names at runtime (test_nginx_dynamic.py runs them)
    ("dynamic_unknown value",
     ISSUER + server(extra="autotls pebble dynamic;\n        autotls_dynamic_unknown maybe;"),
     "autotls_dynamic_unknown maybe;", 'invalid value "maybe" in "autotls_dynamic_unknown"'),
    ("dynamic_unknown without a dynamic home",
     ISSUER + server(extra="autotls pebble;\n        autotls_dynamic_unknown reject;"),
     "autotls_dynamic_unknown reject;", '"autotls_dynamic_unknown" needs "autotls ISSUER dynamic;"'),
    ("names with dynamic",
     ISSUER + server(extra="autotls pebble a.example.com dynamic;"),
     "autotls pebble a.example.com dynamic;", "takes no names"),
    ("autotls_cache max=0",
     ISSUER + "    autotls_cache max=0;\n" + server(extra="autotls pebble dynamic;"),
     "autotls_cache", 'invalid value "max=0" in "autotls_cache"'),
    ("two dynamic homes for one issuer",
     ISSUER + server(extra="autotls pebble dynamic;")
     + server(extra="autotls pebble on_demand;").replace("18080", "18081").replace("18443", "18444"),
     "autotls pebble dynamic;", 'is already the home of issuer "pebble"'),
]


@pytest.mark.parametrize("case,body,needle,message", CASES, ids=[c[0] for c in CASES])
def test_nginx_t_rejects(test_root, case, body, needle, message):
    ngx = Nginx(test_root, body)
    proc = ngx.test_config()
    out = proc.stderr + ngx.log()
    assert proc.returncode != 0, out
    assert message in out, out
    assert f"in {ngx.conf}:{ngx.conf_line(needle)}" in out, out


def test_nginx_t_accepts_autotls_without_ssl_certificate(test_root):
    ngx = Nginx(test_root, ISSUER + server(names="a.example.com www.example.com")
                + server(extra="autotls pebble b.example.com c.example.com;", names="b.example.com")
                .replace("18080", "18081").replace("18443", "18444"))
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()
    assert "test is successful" in proc.stderr


def test_nginx_t_accepts_a_dynamic_home(test_root):
    # a store of its own: sizing the zone for a dynamic home opens the
    # store, which would otherwise be the default /var/lib/nginx/autotls
    store = os.path.join(str(test_root), "store")
    ngx = Nginx(test_root, ISSUER + f"    autotls_store {store};\n    autotls_cache max=100;\n"
                + server(extra="autotls pebble dynamic;\n        autotls_dynamic_unknown reject;",
                         names="_"))
    proc = ngx.test_config()
    assert proc.returncode == 0, proc.stderr + ngx.log()
