#!/bin/sh
# Builds mod_autotls.so with apxs against the installed apache2-dev.
# Called by `make apache` with BUILD=<abs build dir> and SAN=<flags or empty>.
# Sources are copied into $BUILD/apache-build so that libtool's .libs/.lo
# never land in the source tree.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
: "${BUILD:?BUILD must be the absolute build directory}"
SAN=${SAN:-}
APXS=${APXS:-apxs}

command -v "$APXS" >/dev/null 2>&1 || {
    echo "autotls: apxs not found; install apache2-dev (make deps)" >&2; exit 1; }
[ -f "$BUILD/libatls.a" ] || { echo "autotls: $BUILD/libatls.a missing (make lib)" >&2; exit 1; }

work=$BUILD/apache-build
rm -rf "$work"
mkdir -p "$work" "$BUILD/apache"
cp "$here"/mod_autotls*.c "$here"/mod_autotls.h "$work"/

cflags="-std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
-Wformat=2 -Wno-unused-parameter -I$root/common $SAN \
$(pkg-config --cflags openssl libcurl jansson libpsl hiredis)"
wc=""
for f in $cflags; do wc="$wc -Wc,$f"; done
wl=""
for f in $SAN; do wl="$wl -Wl,$f"; done

cd "$work"
# every mod_autotls*.c of the module (one job per file)
# shellcheck disable=SC2086
"$APXS" -c -o mod_autotls.la $wc $wl mod_autotls*.c "$BUILD/libatls.a" \
    $(pkg-config --libs libcurl jansson libpsl openssl hiredis) -lm -lpthread >build.log 2>&1 || {
    cat build.log >&2; exit 1; }
cp .libs/mod_autotls.so "$BUILD/apache/mod_autotls.so"
echo "autotls: built $BUILD/apache/mod_autotls.so"
