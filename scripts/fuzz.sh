#!/bin/sh
# replay: run each harness over its checked-in corpus (tests/fuzz/corpus/NAME/).
# run:    fuzz each harness for FUZZ_SECONDS, growing a scratch corpus.
set -eu
mode=$1; shift
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
    esac
done
