#!/bin/sh
# scripts/demo_cli.sh BUILD_DIR: a private Pebble ACME CA on loopback, one certificate for two
# demo names obtained with the autotls CLI over http-01, then `autotls list`.
# Everything it starts is stopped on exit; set DEMO_KEEP=1 to keep the store.
set -eu

BUILD=${1:?usage: scripts/demo.sh BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
CLI="$BUILD/autotls"
PY=/usr/bin/python3

[ -x "$CLI" ] || { echo "demo: $CLI is missing; run 'make cli'" >&2; exit 1; }
for bin in /usr/bin/pebble /usr/bin/pebble-challtestsrv "$PY"; do
    [ -x "$bin" ] || { echo "demo: $bin is missing; run 'make deps'" >&2; exit 1; }
done

WORK=$(mktemp -d /tmp/autotls-demo.XXXXXX)
PEBBLE_PID=""

cleanup() {
    status=$?
    trap - EXIT INT TERM
    if [ -n "$PEBBLE_PID" ] && kill -0 "$PEBBLE_PID" 2>/dev/null; then
        kill "$PEBBLE_PID" 2>/dev/null || true
        wait "$PEBBLE_PID" 2>/dev/null || true
    fi
    if [ "${DEMO_KEEP:-0}" = 1 ]; then
        echo "demo: store kept in $WORK/store"
    else
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "demo: starting Pebble and challtestsrv on loopback"
"$PY" "$HERE/demo_pebble.py" "$WORK/pebble.env" >"$WORK/pebble-helper.log" 2>&1 &
PEBBLE_PID=$!

i=0
while [ ! -f "$WORK/pebble.env" ]; do
    if ! kill -0 "$PEBBLE_PID" 2>/dev/null; then
        echo "demo: Pebble did not start:" >&2
        cat "$WORK/pebble-helper.log" >&2
        exit 1
    fi
    i=$((i + 1))
    if [ "$i" -gt 300 ]; then
        echo "demo: Pebble did not answer within 30 s" >&2
        exit 1
    fi
    sleep 0.1
done
# shellcheck source=/dev/null
. "$WORK/pebble.env"
echo "demo: ACME directory $DIRECTORY"

STORE="$WORK/store"
echo "demo: autotls issue demo.autotls.test www.demo.autotls.test (http-01 on 127.0.0.1:$HTTP_PORT)"
"$CLI" issue --directory "$DIRECTORY" --ca-file "$CA_FILE" --store "$STORE" \
    --contact admin@demo.autotls.test --agree-tos \
    --challenge http-01 --http-port "$HTTP_PORT" --listen-address 127.0.0.1 \
    demo.autotls.test www.demo.autotls.test

echo
echo "demo: autotls list --store $STORE"
"$CLI" list --store "$STORE"
echo
echo "demo: done"
