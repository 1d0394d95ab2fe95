#!/bin/sh
# Scheduler start-up at scale: a store of BENCH_SCHED_CERTS (10000) valid
# certificates, then two scheduler starts in a row ("first start": the
# store as seeded; "restart": what the first left behind) with the current
# library and with the baseline (the core as it was before the directory's
# renewal information record, common/ from git history, built in a
# scratch directory), in the same run.  Two stores: leaves without an
# authority key identifier (the bench CA's: ARI cannot name them) and leaves
# with one at a CA whose directory offers no renewalInfo (Pebble's case).
#
#   bench/sched_start.sh ABS_BUILD_DIR      (after `make lib`)
set -eu

BUILD=${1:?usage: bench/sched_start.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/seedkit.sh"
N=${BENCH_SCHED_CERTS:-10000}
seedkit_work sched-start
DIRECTORY=https://ca.bench.test/dir

# the last core without common/store_ari.c
REV=$(git -C "$TOP" log --format=%H --diff-filter=A -- common/store_ari.c | tail -1)
seedkit_baseline sched_start "$REV"
seedkit_pair sched_start.c

# one P-256 key and chain for every certificate, with and without AKI
cd "$WORK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
    -out ca.pem -subj /CN=bench-ca -days 30 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
    -out leaf.csr -subj /CN=bench 2>/dev/null
printf 'subjectAltName=DNS:*.bench.test\nauthorityKeyIdentifier=none\nsubjectKeyIdentifier=none\n' >noaki.ext
printf 'subjectAltName=DNS:*.bench.test\nauthorityKeyIdentifier=keyid\n' >aki.ext
for v in noaki aki; do
    openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 20 \
        -extfile $v.ext -out leaf-$v.pem 2>/dev/null
    cat leaf-$v.pem ca.pem >chain-$v.pem
done
echo "== $N certificates per store"
for v in noaki aki; do
    for lib in base now; do
        bin=$WORK/now
        [ $lib = base ] && bin=$WORK/base.bin
        store=$WORK/store-$v-$lib
        "$WORK/now" make "$store" "$N" leaf.key chain-$v.pem "$DIRECTORY" 2>/dev/null || \
            { echo "sched_start: cannot seed $store" >&2; exit 1; }
        first=$("$bin" run "$store" "$N" "$DIRECTORY" 2>/dev/null)
        again=$("$bin" run "$store" "$N" "$DIRECTORY" 2>/dev/null)
        echo "  leaves $v, $lib: first start: $first"
        echo "  leaves $v, $lib: restart:     $again"
        rm -rf "$store"
    done
done
