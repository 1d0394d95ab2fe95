#!/usr/bin/python3
"""make demo: nginx with autotls obtains and serves its own certificates.

Starts a private Pebble ACME CA and nginx (with the built module) on
loopback, with one server for two demo names, waits until both names are
served with Pebble-issued certificates, prints them as a client sees them,
prints the status JSON, and stops everything it started.
"""
import json
import os
import shutil
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests", "integration"))

from nginxctl import Nginx, issuer_block, server_block, status_server, until_issued  # noqa: E402
from pebblectl import Pebble  # noqa: E402
from util import cert_info, free_port, make_test_root, served_chain, verify_chain  # noqa: E402

NAMES = ("demo.autotls.test", "www.demo.autotls.test")


def main():
    root = make_test_root()
    pebble = Pebble()
    ngx = None
    try:
        print("demo: starting Pebble (ACME CA) and challtestsrv (DNS) on loopback")
        pebble.start()
        status_port = free_port()
        body = issuer_block(pebble, root)
        body += f"    autotls_store {root}/store;\n    autotls_check_interval 1s;\n"
        body += server_block(NAMES, pebble.http_port, pebble.tls_port)
        body += status_server(status_port)
        ngx = Nginx(root, body, workers=2)
        print(f"demo: starting nginx with autotls: http 127.0.0.1:{pebble.http_port}, "
              f"https 127.0.0.1:{pebble.tls_port} (config: {ngx.conf})")
        started = time.monotonic()
        ngx.start()
        first = served_chain(pebble.tls_port, NAMES[0])
        print(f"demo: before issuance nginx serves: {cert_info(first[0])['issuer']} "
              f"(self-signed fallback)")
        roots = pebble.roots_pem()
        for name in NAMES:
            chain = until_issued(ngx, pebble, pebble.tls_port, name, timeout=120)
            info = cert_info(chain[0])
            print(f"\n{name} (after {time.monotonic() - started:.1f} s, no reload):")
            print(f"  subject    {info['subject']}")
            print(f"  names      {', '.join(info['names'])}")
            print(f"  issuer     {info['issuer']}")
            print(f"  serial     {info['serial']}")
            print(f"  not before {info['not_before']:%Y-%m-%d %H:%M:%S} UTC")
            print(f"  not after  {info['not_after']:%Y-%m-%d %H:%M:%S} UTC")
            print(f"  key        {info['key_type']}, chain of {len(chain)}, "
                  f"verifies against Pebble's root: {verify_chain(chain, roots)}")
        url = f"http://127.0.0.1:{status_port}/autotls-status"
        doc = json.loads(urllib.request.urlopen(url, timeout=10).read())
        print(f"\ndemo: status page {url}:")
        print(json.dumps(doc, indent=2))
        print("\ndemo: done")
        return 0
    except Exception as e:  # noqa: BLE001 - a demo explains and exits
        print(f"demo: failed: {e}", file=sys.stderr)
        return 1
    finally:
        if ngx is not None:
            ngx.stop()
        pebble.close()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
