#!/bin/sh
# Runs every unit-test binary; fails if any fails, and says which.
failed=""
for t in "$@"; do
    echo "== $t"
    if ! "$t"; then
        failed="$failed $(basename "$t")"
    fi
done
if [ -n "$failed" ]; then
    echo "autotls: unit tests failed:$failed" >&2
    exit 1
fi
echo "autotls: $# unit-test programs passed"
