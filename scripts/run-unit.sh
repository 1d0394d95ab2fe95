#!/bin/sh
# Runs every unit-test binary; fails if any fails, and says which.
# UNIT_JOBS programs run at once (default: twice the cores): most of their
# time is spent waiting on child processes, sockets and timers, not on the
# CPU.  Each program's output is printed whole, in the order given, after
# all of them ended.  UNIT_JOBS=1 runs them one after another.
set -u
jobs=${UNIT_JOBS:-$(( $(nproc) * 2 ))}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One line per program, "INDEX PATH"; each run writes INDEX.log and INDEX.rc.
i=0
for t in "$@"; do
    i=$((i + 1))
    echo "$i $t"
done | xargs -P "$jobs" -L 1 sh -c '"$2" > "$0/$1.log" 2>&1; echo $? > "$0/$1.rc"' "$out"

failed=""
i=0
for t in "$@"; do
    i=$((i + 1))
    echo "== $t"
    cat "$out/$i.log"
    if [ "$(cat "$out/$i.rc" 2>/dev/null)" != 0 ]; then
        failed="$failed $(basename "$t")"
    fi
done
if [ -n "$failed" ]; then
    echo "autotls: unit tests failed:$failed" >&2
    exit 1
fi
echo "autotls: $# unit-test programs passed"
