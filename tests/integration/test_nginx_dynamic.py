"""nginx + autotls: names registered at runtime (issue 11).

A server block with `autotls pebble dynamic;` is the home of the names
registered through the admin API (autotls_api) or the CLI (`autotls add`):
each is issued by Pebble and served with no reload, the same master and
workers throughout; a removed name stops being served."""
import http.client
import json
import os
import re
import subprocess
import time

from nginxctl import Nginx, issuer_block, until_issued
from util import cert_info, free_port, run_cli, served_chain, verify_chain, wait_until

TOKEN = "s3cret-token-for-the-test"


def dynamic_conf(pebble, root, api_port, unknown="fallback", extra_http="", token_file=None):
    token = f"autotls_api_token {token_file};" if token_file else ""
    body = issuer_block(pebble, root)
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += extra_http
    body += f"""
    server {{
        listen 127.0.0.1:{pebble.http_port};
        listen 127.0.0.1:{pebble.tls_port} ssl default_server;
        server_name _;
        autotls pebble dynamic;
        autotls_dynamic_unknown {unknown};
        location / {{ return 200 "dynamic $host\\n"; }}
    }}

    server {{
        listen 127.0.0.1:{api_port};
        listen 127.0.0.3:{api_port};
        location /autotls/ {{
            allow 127.0.0.1;
            deny all;
            autotls_api;
            {token}
        }}
        location /closed/ {{
            deny all;
            autotls_api;
        }}
    }}
"""
    return body


def api(port, method, path, token=None, body=None, host="127.0.0.1", source=None):
    conn = http.client.HTTPConnection(host, port, timeout=15,
                                      source_address=(source, 0) if source else None)
    headers = {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        headers["Content-Type"] = "application/json"
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode(errors="replace")
    finally:
        conn.close()


def handshake(port, name):
    """openssl s_client's outcome for name: (returncode, stdout + stderr)."""
    proc = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                           "-servername", name], input="", capture_output=True,
                          text=True, timeout=15)
    return proc.returncode, proc.stdout + proc.stderr


def refused(port, name):
    rc, out = handshake(port, name)
    return rc != 0 and "BEGIN CERTIFICATE" not in out and "unrecognized name" in out


def served_name(port, name):
    info = cert_info(served_chain(port, name)[0])
    return info


def write_token(root):
    path = os.path.join(root, "api.token")
    with open(path, "w") as f:
        f.write(TOKEN + "\n")
    # readable by the workers (nobody:nogroup when the test runs as root)
    # and by no one else: the API refuses a token file others can read
    if os.geteuid() == 0:
        import grp
        os.chown(path, 0, grp.getgrnam("nogroup").gr_gid)
    os.chmod(path, 0o640)
    return path


def add_six(ngx, pebble, api_port, token, prefix):
    """3 names through the API, 3 through the CLI, to the running server."""
    api_names = [f"{prefix}-api{i}.example.com" for i in range(3)]
    cli_names = [f"{prefix}-cli{i}.example.com" for i in range(3)]
    for n in api_names:
        status, text = api(api_port, "PUT", f"/autotls/names/{n}", token=token)
        assert status in (200, 201), (status, text)
    run_cli("add", "--store", ngx.store, *cli_names)
    return api_names + cli_names


def test_names_added_at_runtime_are_served_without_reload(pebble, test_root):
    api_port = free_port()
    token_file = write_token(test_root)
    ngx = Nginx(test_root, dynamic_conf(pebble, test_root, api_port, token_file=token_file))
    with ngx.start():
        master, workers = ngx.master, ngx.worker_pids()

        # nothing registered: the home's fallback, never a Pebble certificate
        info = served_name(pebble.tls_port, "nobody.example.com")
        assert info["self_signed"], info

        names = add_six(ngx, pebble, api_port, TOKEN, "rt")
        roots = pebble.roots_pem()
        serials = set()
        for n in names:
            chain = until_issued(ngx, pebble, pebble.tls_port, n, timeout=120)
            info = cert_info(chain[0])
            assert info["names"] == [n], info
            assert verify_chain(chain, roots), n
            serials.add(info["serial"])
        assert len(serials) == len(names)

        # no reload, no restart: the same master and the same workers
        assert ngx.master == master
        assert ngx.worker_pids() == workers
        assert "reconfiguring" not in ngx.log()

        # the registry through the API: every name, with its source
        status, text = api(api_port, "GET", "/autotls/names", token=TOKEN)
        assert status == 200, text
        listed = {e["name"]: e for e in json.loads(text)}
        assert sorted(listed) == sorted(names)
        assert listed[names[0]]["source"] == "api"
        assert listed[names[3]]["source"] == "cli"

        # removed: no longer served with its certificate (the fallback now)
        gone = names[1]
        status, text = api(api_port, "DELETE", f"/autotls/names/{gone}", token=TOKEN)
        assert status in (200, 204), (status, text)
        wait_until(lambda: served_name(pebble.tls_port, gone)["self_signed"], timeout=60,
                   what=f"{gone} no longer served with its certificate")
        # the others still are
        for n in names[:1] + names[2:]:
            assert not served_name(pebble.tls_port, n)["self_signed"], n

        # a CLI removal works the same way
        run_cli("remove", "--store", ngx.store, names[4])
        wait_until(lambda: served_name(pebble.tls_port, names[4])["self_signed"], timeout=60,
                   what=f"{names[4]} no longer served")
        assert ngx.master == master and ngx.worker_pids() == workers
        serial0 = served_name(pebble.tls_port, names[0])["serial"]

    # a restart serves the stored certificates (mirrored from the registry),
    # and not the removed names
    with ngx.start():
        wait_until(lambda: served_name(pebble.tls_port, names[0])["serial"] == serial0,
                   timeout=60, what=f"{names[0]} served from the store after a restart")
        assert served_name(pebble.tls_port, gone)["self_signed"]
        assert served_name(pebble.tls_port, names[4])["self_signed"]


def test_api_token_and_access_rules(pebble, test_root):
    api_port = free_port()
    token_file = write_token(test_root)
    ngx = Nginx(test_root, dynamic_conf(pebble, test_root, api_port, token_file=token_file))
    with ngx.start():
        # the token is required: none or a wrong one is 401, the right one 200
        status, _ = api(api_port, "GET", "/autotls/names")
        assert status == 401
        status, _ = api(api_port, "PUT", "/autotls/names/tok.example.com", token="wrong")
        assert status == 401
        status, text = api(api_port, "GET", "/autotls/names", token=TOKEN)
        assert status == 200, text
        assert json.loads(text) == []
        # nothing was registered by the refused PUT
        assert "tok.example.com" not in run_cli("list", "--store", ngx.store).stdout

        # a rotated token file is read at the next request, no reload
        with open(token_file, "w") as f:
            f.write("rotated-token\n")
        status, _ = api(api_port, "GET", "/autotls/names", token=TOKEN)
        assert status == 401
        status, _ = api(api_port, "GET", "/autotls/names", token="rotated-token")
        assert status == 200

        # allow/deny apply before the token: 127.0.0.3 is denied, so is /closed/
        status, _ = api(api_port, "GET", "/autotls/names", token="rotated-token",
                        host="127.0.0.3", source="127.0.0.3")
        assert status == 403
        status, _ = api(api_port, "GET", "/closed/names")
        assert status == 403

        # the API's own refusals: a name that is no host name
        status, text = api(api_port, "PUT", "/autotls/names/bad_name..example",
                           token="rotated-token")
        assert status == 400, text
        assert "error" in json.loads(text)


def test_reject_unknown_and_bounded_cache(pebble, test_root):
    api_port = free_port()
    ngx = Nginx(test_root, dynamic_conf(pebble, test_root, api_port, unknown="reject",
                                        extra_http="    autotls_cache max=2;\n"),
                workers=1)
    with ngx.start():
        master, workers = ngx.master, ngx.worker_pids()

        # a name never registered: the handshake is refused (unrecognized_name)
        assert refused(pebble.tls_port, "stranger.example.com")

        names = add_six(ngx, pebble, api_port, None, "lru")
        serials = {}
        for n in names:
            # refused until the driver mirrored the registry change (~0.5 s)
            wait_until(lambda: not refused(pebble.tls_port, n), timeout=60,
                       what=f"{n} no longer refused")
            chain = until_issued(ngx, pebble, pebble.tls_port, n, timeout=120)
            serials[n] = cert_info(chain[0])["serial"]

        # a cache of 2 for 6 names: every name still gets its own certificate,
        # round after round (each handshake evicts and reloads)
        for _ in range(2):
            for n in names:
                info = served_name(pebble.tls_port, n)
                assert info["names"] == [n], info
                assert info["serial"] == serials[n]
        # and the bound was what served them: entries were dropped
        assert "the certificate cache is full (autotls_cache max=2)" in ngx.log()

        # removed: the handshake is refused from then on
        gone = names[2]
        status, text = api(api_port, "DELETE", f"/autotls/names/{gone}")
        assert status in (200, 204), (status, text)
        wait_until(lambda: refused(pebble.tls_port, gone), timeout=60,
                   what=f"{gone} refused after its removal")
        assert served_name(pebble.tls_port, names[0])["serial"] == serials[names[0]]
        assert ngx.master == master and ngx.worker_pids() == workers

        # a reload keeps the zone's mirror: new workers serve every name at once
        ngx.reload()
        for n in names:
            if n == gone:
                assert refused(pebble.tls_port, n)
            else:
                assert served_name(pebble.tls_port, n)["serial"] == serials[n], n


def seed_registry(store, names, state="removed"):
    """Registry entries written as autotls add/remove write them
    (names/<id>.json, names-generation), without 2 x N store writes with
    fsync through the CLI."""
    import storeseed
    d = os.path.join(store, "names")
    os.makedirs(d, mode=0o700, exist_ok=True)
    # removed now: within the grace period, so the driver does not purge them
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for n in names:
        entry = {"added": now, "by": "test", "name": n, "source": "cli", "state": state}
        if state == "removed":
            entry["removed"] = now
        with open(os.path.join(d, n + ".json"), "w") as f:
            json.dump(entry, f)
    with open(os.path.join(store, "names-generation"), "w") as f:
        f.write(f"{len(names)}\n")
    owner = storeseed.worker_owner("nginx")
    if owner:
        storeseed.chown_tree(store, owner)


def test_zone_full_names_the_directive(pebble, test_root):
    """A registry larger than the zone: the names that do not fit are not
    served and the log names the directive to raise."""
    api_port = free_port()
    body = dynamic_conf(pebble, test_root, api_port,
                        extra_http="    autotls_shared_zone 32k;\n")
    ngx = Nginx(test_root, body, workers=1)
    # removed names: mirrored (as removed), never ordered
    run_cli("add", "--store", ngx.store, "first.example.com")
    seed_registry(ngx.store, [f"z{i}.example.com" for i in range(600)])
    with ngx.start():
        wait_until(lambda: "dynamic names in the zone" in ngx.log(), timeout=60,
                   what="the first mirror")
        log = ngx.log()
        assert "the shared zone is full with" in log, log[-3000:]
        assert 'increase "autotls_shared_zone"' in log
        # said once per table size, not once per name
        assert log.count("the shared zone is full with") < 5
        # never a real certificate: the registry is listed in the store's
        # order (pages of a directory), so first.example.com either fit
        # (registered: its own name on its fallback, the full zone leaving
        # no room for its challenge) or is one of the names not served
        info = served_name(pebble.tls_port, "first.example.com")
        assert info["self_signed"], info


def test_registry_mirrored_in_slices_names_served_from_the_start(pebble, test_root):
    """A large registry is mirrored into the zone in pages and slices
    between handshakes, not read whole before the first one: a registered
    name with a stored certificate gets it in the first handshake after a
    restart, whether or not the mirror has reached it yet (the worker looks
    up a name the mirror has not reached; what the store holds is served
    through the cache), and the mirror reports its slices and pages."""
    api_port = free_port()
    ngx = Nginx(test_root, dynamic_conf(pebble, test_root, api_port), workers=1)
    name = "early.example.com"
    run_cli("add", "--store", ngx.store, name)
    with ngx.start():
        chain = until_issued(ngx, pebble, pebble.tls_port, name, timeout=120)
        serial = cert_info(chain[0])["serial"]
        wait_until(lambda: "dynamic names in the zone" in ngx.log(), timeout=60,
                   what="the first mirror")

    # 3,000 more names (removed: mirrored, never ordered), listed in pages
    # of 128 around the one with a certificate
    seed_registry(ngx.store, [f"m{i}.example.com" for i in range(3000)])
    with open(os.path.join(ngx.store, "names", name + ".json")) as f:
        assert json.load(f)["state"] == "active"
    with ngx.start():
        # the very first handshake: the real certificate, never the fallback
        info = served_name(pebble.tls_port, name)
        assert not info["self_signed"], info
        assert info["serial"] == serial
        wait_until(lambda: "3001 dynamic names in the zone" in ngx.log(), timeout=120,
                   what="the mirror of 3,001 names")
        log = ngx.log()
        m = re.search(r"3001 dynamic names in the zone \(registry generation \d+\) in \d+ ms, "
                      r"(\d+) slices, (\d+) pages", log)
        assert m, log[-3000:]
        # in slices between network events, the listing in pages
        assert int(m.group(1)) > 1 and int(m.group(2)) >= 3001 // 128, m.group(0)
        # the driver checked the names not seen before against the store
        wait_until(lambda: "dynamic names checked against the store" in ngx.log(),
                   timeout=120, what="the check pass")
        assert served_name(pebble.tls_port, name)["serial"] == serial
        assert served_name(pebble.tls_port, "m7.example.com")["self_signed"]
