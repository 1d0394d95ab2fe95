#!/bin/sh
# make bench: builds the handshake client and runs every benchmark part in
# sequence.  A part that fails prints why and the next one still runs; the
# exit status is non-zero when any part failed.  See docs/bench.md.
#
#   bench/run.sh ABS_BUILD_DIR
#   BENCH_PARTS="nginx apache issuance stapling ondemand names cluster"   which parts
#                (default: all)
#   other knobs: BENCH_CYCLES BENCH_SLICE BENCH_CONC BENCH_NAMES
#                BENCH_APACHE_NAMES BENCH_ISSUE_NAMES BENCH_A2_BIG BENCH_KEEP
set -u

BUILD=${1:?usage: bench/run.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
PARTS=${BENCH_PARTS:-nginx apache issuance stapling ondemand names cluster}
LOGDIR="$BUILD/bench"
mkdir -p "$LOGDIR"

if [ "$(nproc)" -lt 2 ]; then
    echo "bench: needs at least 2 CPU cores (server on one, client on another)" >&2
    exit 1
fi

echo "== building hsclient"
if ! cc -std=gnu11 -O2 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wformat=2 \
        -o "$BUILD/hsclient" "$HERE/hsclient.c" -lssl -lcrypto; then
    echo "bench: hsclient does not build" >&2
    exit 1
fi

failed=""
summary=""
for part in $PARTS; do
    case $part in
        nginx)    script=nginx_handshake.py ;;
        apache)   script=apache_handshake.py ;;
        issuance) script=issuance.py ;;
        stapling) script=nginx_stapling.py ;;
        ondemand) script=nginx_ondemand.py ;;
        names)    script=names_scale.sh ;;
        cluster)  script=cluster.sh ;;
        *) echo "bench: unknown part $part" >&2; failed="$failed $part"; continue ;;
    esac
    echo
    echo "== $part ($script), log $LOGDIR/$part.log"
    start=$(date +%s)
    rm -f "$LOGDIR/$part.rc"
    # the Python part stops its own servers (finally + SIGTERM handler)
    run=$PY
    case $script in *.sh) run=sh ;; esac
    { $run "$HERE/$script" "$BUILD"; echo $? >"$LOGDIR/$part.rc"; } 2>&1 | tee "$LOGDIR/$part.log"
    rc=$(cat "$LOGDIR/$part.rc" 2>/dev/null || echo 1)
    end=$(date +%s)
    if [ "$rc" != 0 ]; then
        failed="$failed $part"
        summary="$summary
$part: FAILED (exit $rc) after $((end - start))s; see $LOGDIR/$part.log"
    else
        summary="$summary
$part: ran in $((end - start))s"
    fi
    summary="$summary
$(grep -E '^  .*(target|MET)' "$LOGDIR/$part.log" | sed 's/^/  /')"
done

echo
echo "== summary"
echo "$summary"
if [ -n "$failed" ]; then
    echo
    echo "bench: failed parts:$failed"
    exit 1
fi
exit 0
