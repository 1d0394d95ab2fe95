"""nginx + autotls: the shared zone does not grow with reloads, and the
status page reports its use ("shm" in the JSON, autotls_shm_* gauges)."""
import json
import os
import urllib.request

from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued
from util import free_port, wait_until

SERVERS = (("a.shm.example.com",), ("b.shm.example.com",), ("c.shm.example.com",))
RELOADS = 50


def _body(pebble, root, status_port):
    body = issuer_block(pebble, root)
    body += f"    autotls_store {os.path.join(root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    for names in SERVERS:
        body += server_block(names, pebble.http_port, pebble.tls_port)
    return body + status_server(status_port)


def _shm(status_port):
    url = f"http://127.0.0.1:{status_port}/autotls-status"
    return json.loads(urllib.request.urlopen(url, timeout=10).read())["shm"]


def test_reloads_do_not_grow_the_zone(pebble, test_root):
    status_port = free_port()
    ngx = Nginx(test_root, _body(pebble, test_root, status_port))
    with ngx.start():
        # no order in flight (its challenges live in the zone)
        for names in SERVERS:
            until_issued(ngx, pebble, pebble.tls_port, names[0])
        before = _shm(status_port)
        assert before["size_bytes"] > 0 and before["pages"] > before["pages_free"] > 0
        assert before["slots_used"] > 0 and before["slot_bytes_used"] > 0

        for _ in range(RELOADS):
            ngx.reload()      # returns once the old workers have exited

        # a fresh worker renders the page (each caches it for up to 1 s)
        after = wait_until(lambda: _shm(status_port), timeout=10, what="status after reloads")
        # no growth (a challenge the last order withdrew after its
        # certificate was served may even have been freed meanwhile)
        assert after["pages_free"] >= before["pages_free"], (before, after)
        for key in ("slots_used", "slot_bytes_used"):
            assert after[key] <= before[key], (key, before, after)

        prom = urllib.request.urlopen(
            f"http://127.0.0.1:{status_port}/autotls-status?format=prometheus",
            timeout=10).read().decode()
        assert f"autotls_shm_slots_used {after['slots_used']}" in prom
