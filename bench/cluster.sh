#!/bin/sh
# The cluster benchmarks (issue 12): nginx nodes on one Redis store
# (bench/cluster.py says what is measured).  Builds the store seeder and
# the one key and chain the 10,000 seeded certificates share
# (bench/seedkit.sh).
#
#   bench/cluster.sh ABS_BUILD_DIR     (after `make all`: the CLI migrates
#                                       and renews, the nginx module serves)
set -eu

BUILD=${1:?usage: bench/cluster.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/seedkit.sh"
seedkit_main cluster cluster.py cluster-bench-ca
