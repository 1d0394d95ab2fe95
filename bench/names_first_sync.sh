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
TOP=$(dirname "$HERE")
N=${BENCH_NAMES:-100000}
SLICE=${BENCH_SLICE_MS:-3}
WORK=$(mktemp -d /tmp/atls-names-first.XXXXXX)
[ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT INT TERM

# the last core whose first sync read the registry in one call
REV=$(git -C "$TOP" log --format=%H -S names_first_slice -- common/sched_names.c | tail -1)
if [ -z "$REV" ]; then
    echo "names_first_sync: needs the git history (the baseline is an older common/)" >&2
    exit 1
fi
mkdir -p "$WORK/base"
git -C "$TOP" archive "$REV^" Makefile common | tar -x -C "$WORK/base"
echo "== baseline: common/ at ${REV%"${REV#???????}"}^, building"
nice make -s -C "$WORK/base" BUILD="$WORK/base/build" lib >"$WORK/base.log" 2>&1 || {
    cat "$WORK/base.log" >&2; exit 1; }

PKG="openssl libcurl jansson libpsl"
CFLAGS="-std=gnu11 -O2 $(pkg-config --cflags $PKG)"
LIBS="$(pkg-config --libs $PKG) -lm -lpthread"
[ -n "$(pkg-config --libs hiredis 2>/dev/null)" ] && LIBS="$LIBS $(pkg-config --libs hiredis)"
# shellcheck disable=SC2086
cc $CFLAGS -I"$TOP/common" -o "$WORK/now" "$HERE/names_first_sync.c" "$HERE/benchio.c" "$BUILD/libatls.a" $LIBS
# shellcheck disable=SC2086
cc $CFLAGS -I"$WORK/base/common" -o "$WORK/base.bin" "$HERE/names_first_sync.c" "$HERE/benchio.c" \
   "$WORK/base/build/libatls.a" $LIBS

echo "== $N names, slice_ms $SLICE"
"$WORK/now" make "$WORK/store" "$N" 2>/dev/null || {
    echo "names_first_sync: cannot seed $WORK/store" >&2; exit 1; }
# each run starts from the same store: the CA never answers, nothing is written
for lib in base now; do
    bin=$WORK/now
    [ $lib = base ] && bin=$WORK/base.bin
    echo "  $lib: $("$bin" run "$WORK/store" "$N" "$SLICE" 2>/dev/null)"
done
