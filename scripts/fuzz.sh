#!/bin/sh
# replay:   run each harness over its checked-in corpus (tests/fuzz/corpus/NAME/).
# run:      fuzz each harness for FUZZ_SECONDS, growing a scratch corpus.
# campaign: fuzz each harness for FUZZ_RUNS executions (one process at a
#           time), a scratch corpus seeded from the checked-in one; prints the
#           executions per harness.  FUZZ_WORK=DIR keeps the grown corpora
#           (DIR/NAME/), logs and any crash artifacts there; FUZZ_MERGE=1 then
#           merges it (-merge=1) into DIR/NAME.min/: the checked-in inputs plus
#           the grown ones that add coverage, ready to replace
#           tests/fuzz/corpus/NAME/.
# UBSan reports are fatal: the harnesses are built with
# -fno-sanitize-recover=undefined, and UBSAN_OPTIONS says so again.
set -eu
mode=$1; shift
: "${UBSAN_OPTIONS:=halt_on_error=1:print_stacktrace=1}"
export UBSAN_OPTIONS
for bin in "$@"; do
    name=$(basename "$bin")
    corpus=tests/fuzz/corpus/$name
    if [ ! -d "$corpus" ] || [ -z "$(ls -A "$corpus")" ]; then
        echo "autotls: no corpus for $name in $corpus" >&2
        exit 1
    fi
    case $mode in
    replay)
        echo "== $name: replaying $(ls "$corpus" | wc -l) inputs"
        "$bin" -runs=0 "$corpus"/* >/dev/null 2>"/tmp/autotls-fuzz-$name.log" || {
            cat "/tmp/autotls-fuzz-$name.log" >&2; exit 1; }
        ;;
    run)
        scratch=$(mktemp -d)
        "$bin" -max_total_time="${FUZZ_SECONDS:-60}" "$scratch" "$corpus"
        rm -rf "$scratch"
        ;;
    campaign)
        if [ -n "${FUZZ_WORK:-}" ]; then
            work=$FUZZ_WORK
            mkdir -p "$work"
        else
            work=$(mktemp -d)
        fi
        mkdir -p "$work/$name"
        log=$work/$name.log
        echo "== $name: ${FUZZ_RUNS:-1000000} executions (log $log)"
        "$bin" -runs="${FUZZ_RUNS:-1000000}" -print_final_stats=1 \
            -artifact_prefix="$work/$name-" "$work/$name" "$corpus" >"$log" 2>&1 || {
            tail -n 60 "$log" >&2; exit 1; }
        runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1 executions in \2 s/p' "$log")
        echo "   $name: ${runs:-? executions}, grown corpus $(ls "$work/$name" | wc -l) files"
        if [ "${FUZZ_MERGE:-0}" = 1 ]; then
            # The hand-written seeds stay (by name); merge adds only the
            # grown inputs that reach new coverage beyond them.
            rm -rf "$work/$name.min"
            mkdir -p "$work/$name.min"
            cp "$corpus"/* "$work/$name.min/"
            "$bin" -merge=1 "$work/$name.min" "$work/$name" \
                >"$work/$name.merge.log" 2>&1 || {
                tail -n 60 "$work/$name.merge.log" >&2; exit 1; }
            echo "   $name: merged into $(ls "$work/$name.min" | wc -l) files in $work/$name.min"
        fi
        if [ -z "${FUZZ_WORK:-}" ]; then
            rm -rf "$work"
        fi
        ;;
    *)
        echo "usage: $0 replay|run|campaign HARNESS..." >&2
        exit 2
        ;;
    esac
done
