"""nginx + autotls at scale: orders run concurrently on the driver's curl
multi, and one server block can hold one certificate per name."""
import json
import os
import re
import urllib.request

from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued
from util import cert_info, free_port, served_chain, verify_chain


def test_ten_servers_issued_by_concurrent_orders(pebble_factory, test_root):
    # a fresh CA: the first order must create the account alone
    pebble = pebble_factory()
    names = [f"p{i}.example.com" for i in range(10)]
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += "    autotls_max_parallel 4;\n"
    for n in names:
        body += server_block((n,), pebble.http_port, pebble.tls_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        roots = pebble.roots_pem()
        serials = set()
        for n in names:
            chain = until_issued(ngx, pebble, pebble.tls_port, n, timeout=120)
            info = cert_info(chain[0])
            assert info["names"] == [n]
            assert verify_chain(chain, roots), n
            serials.add(info["serial"])
        assert len(serials) == len(names)

        log = ngx.log()
        flight = [int(m) for m in re.findall(r"ordering certificate \"p\d+\.example\.com\" "
                                             r"\(ec256\) from \S+, (\d+) of 4 orders in flight",
                                             log)]
        assert len(flight) >= len(names), log[-3000:]
        # more than one order was running at once, never more than allowed
        assert max(flight) >= 2, flight
        assert max(flight) <= 4, flight
        # one account was created first; Pebble never saw concurrent creation
        assert log.count("creating the account first") >= 1
        assert "serverInternal" not in log
        assert "order failed" not in log


def test_per_name_one_certificate_per_name(pebble, test_root):
    names = ["pn1.example.com", "pn2.example.com", "pn3.example.com", "pn4.example.com"]
    status_port = free_port()
    body = issuer_block(pebble, test_root)
    body += f"    autotls_store {os.path.join(test_root, 'store')};\n"
    body += "    autotls_check_interval 1s;\n"
    body += server_block(names, pebble.http_port, pebble.tls_port,
                         autotls_names="per_name")
    body += status_server(status_port)
    ngx = Nginx(test_root, body)
    with ngx.start():
        roots = pebble.roots_pem()
        serials = {}
        for n in names:
            chain = until_issued(ngx, pebble, pebble.tls_port, n, timeout=120)
            info = cert_info(chain[0])
            # each certificate covers exactly its own name
            assert info["names"] == [n], info
            assert verify_chain(chain, roots), n
            serials[n] = info["serial"]
        assert len(set(serials.values())) == len(names)

        # SNI in another case still finds the name's certificate
        upper = cert_info(served_chain(pebble.tls_port, names[2].upper())[0])
        assert upper["serial"] == serials[names[2]]

        doc = json.loads(urllib.request.urlopen(
            f"http://127.0.0.1:{status_port}/autotls-status", timeout=10).read())
        certs = {c["id"]: c for c in doc["certificates"]}
        assert sorted(certs) == sorted(names)
        for n in names:
            assert certs[n]["names"] == [n]
            assert certs[n]["state"] == "valid"
            assert certs[n]["keys"][0]["serial"].lstrip("0") == serials[n].lstrip("0")
