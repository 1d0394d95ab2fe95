#!/bin/sh
# 100,000 names on one nginx: start-up, worker RSS and random-SNI handshakes
# with dynamic names (autotls_cache holding all of them, and 10%) against
# 10,000 static server blocks and one name (bench/names_scale.py says how).
# Builds the store seeder (bench/names_seed.c) against the library and
# makes the one key and CA-signed wildcard chain every name shares.
#
#   bench/names_scale.sh ABS_BUILD_DIR     (after `make lib nginx`)
set -eu

BUILD=${1:?usage: bench/names_scale.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
TOP=$(dirname "$HERE")
WORK=$(mktemp -d /tmp/atls-names-scale.XXXXXX)
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT INT TERM

PKG="openssl libcurl jansson"
# shellcheck disable=SC2086
cc -std=gnu11 -O2 $(pkg-config --cflags $PKG) -I"$TOP/common" -o "$WORK/names_seed" \
    "$HERE/names_seed.c" "$HERE/benchio.c" "$BUILD/libatls.a" $(pkg-config --libs $PKG) -lm -lpthread

cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -subj /CN=names-bench-ca -days 200 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
    -out leaf.csr -subj /CN=bench.test 2>/dev/null
printf 'subjectAltName=DNS:*.bench.test\n' >leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 120 \
    -extfile leaf.ext -out leaf.pem 2>/dev/null
cat leaf.pem ca.pem >chain.pem

/usr/bin/python3 "$HERE/names_scale.py" "$BUILD" "$WORK/names_seed" "$WORK/leaf.key" \
    "$WORK/chain.pem" names-bench-ca
