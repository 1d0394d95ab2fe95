#!/bin/sh
# 100,000 names on one nginx: start-up, worker RSS and random-SNI handshakes
# with dynamic names (autotls_cache holding all of them, and 10%) against
# 10,000 static server blocks and one name (bench/names_scale.py says how).
# Builds the store seeder and the one key and chain every name shares
# (bench/seedkit.sh).
#
#   bench/names_scale.sh ABS_BUILD_DIR     (after `make lib nginx`)
set -eu

BUILD=${1:?usage: bench/names_scale.sh ABS_BUILD_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/seedkit.sh"
seedkit_main names-scale names_scale.py names-bench-ca
