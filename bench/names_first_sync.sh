#!/bin/sh
# The scheduler's first sync of BENCH_NAMES (100000) registered names: the
# longest single call of atls_sched_names_sync / atls_sched_timer while the
# names are being taken in (a worker serves no handshake meanwhile), with
# the current library (sliced, BENCH_SLICE_MS, 3 as nginx runs it) and the
# baseline (common/ before the sliced first sync: the whole registry read in
# one call), on the same seeded store.
#
#   bench/names_first_sync.sh ABS_BUILD_DIR      (after `make lib`)
set -eu

BUILD=${1:?usage: bench/names_first_sync.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/seedkit.sh"
N=${BENCH_NAMES:-100000}
SLICE=${BENCH_SLICE_MS:-3}
seedkit_work names-first

# the last core whose first sync read the registry in one call
REV=$(git -C "$TOP" log --format=%H -S names_first_slice -- common/sched_names.c | tail -1)
seedkit_baseline names_first_sync "$REV"
seedkit_pair names_first_sync.c

echo "== $N names, slice_ms $SLICE"
"$WORK/now" make "$WORK/store" "$N" 2>/dev/null || {
    echo "names_first_sync: cannot seed $WORK/store" >&2; exit 1; }
# each run starts from the same store: the CA never answers, nothing is written
for lib in base now; do
    bin=$WORK/now
    [ $lib = base ] && bin=$WORK/base.bin
    echo "  $lib: $("$bin" run "$WORK/store" "$N" "$SLICE" 2>/dev/null)"
done
