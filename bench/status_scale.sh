#!/bin/sh
# Status page cost at scale: a store of BENCH_STATUS_CERTS (10000)
# certificates, then the JSON status rendered with the current code and with
# the key-parsing baseline (common/status.c as it was before the chain-only
# loader, taken from git history and compiled in under another name), in
# the same run, alternating, BENCH_STATUS_ROUNDS (5) times each.
#
#   bench/status_scale.sh ABS_BUILD_DIR      (after `make lib`)
set -eu

BUILD=${1:?usage: bench/status_scale.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/seedkit.sh"
N=${BENCH_STATUS_CERTS:-10000}
ROUNDS=${BENCH_STATUS_ROUNDS:-5}
seedkit_work status-scale

# the last status.c that loaded key + chain for every certificate
REV=$(git -C "$TOP" log --format=%H -S "atls_store_load_cert(st, c->id" -- common/status.c | head -1)
if [ -z "$REV" ]; then
    echo "status_scale: needs the git history (the baseline is an older common/status.c)" >&2
    exit 1
fi
git -C "$TOP" show "$REV^:common/status.c" >"$WORK/status_before.c"

seedkit_flags
CFLAGS="$CFLAGS -I$TOP/common"
# shellcheck disable=SC2086
cc $CFLAGS -Datls_status_json=old_atls_status_json \
   -Datls_status_prometheus=old_atls_status_prometheus \
   -c "$WORK/status_before.c" -o "$WORK/status_before.o"
# shellcheck disable=SC2086
cc $CFLAGS -o "$WORK/status_scale" "$HERE/status_scale.c" "$HERE/benchio.c" "$WORK/status_before.o" \
   "$BUILD/libatls.a" $LIBS

# one CA and one leaf, reused by every certificate of the store
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 90 \
    -subj "/CN=bench CA" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -subj "/CN=bench.example" -keyout "$WORK/leaf.key" -out "$WORK/leaf.csr" 2>/dev/null
openssl x509 -req -in "$WORK/leaf.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -CAcreateserial -days 90 -out "$WORK/leaf.pem" 2>/dev/null
cat "$WORK/leaf.pem" "$WORK/ca.pem" >"$WORK/chain.pem"

start=$(date +%s.%N)
"$WORK/status_scale" make "$WORK/store" "$N" "$WORK/leaf.key" "$WORK/chain.pem"
end=$(date +%s.%N)
echo "store of $N certificates made in $(echo "$end - $start" | bc) s"
"$WORK/status_scale" time "$WORK/store" "$ROUNDS"
