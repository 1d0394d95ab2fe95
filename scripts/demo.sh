#!/bin/sh
# make demo: nginx with the autotls module obtains certificates for two demo
# names from a private Pebble CA on loopback and serves them with no reload.
# scripts/demo_cli.sh shows the same with the CLI alone.
set -eu
BUILD=${1:?usage: scripts/demo.sh BUILD_DIR}
[ -f "$BUILD/nginx/ngx_http_autotls_module.so" ] || {
    echo "demo: $BUILD/nginx/ngx_http_autotls_module.so is missing; run 'make nginx'" >&2; exit 1; }
ATLS_BUILD=$BUILD exec /usr/bin/python3 "$(dirname "$0")/demo_nginx.py"
