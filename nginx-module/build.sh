#!/bin/bash
# Builds ngx_http_autotls_module.so against Debian's nginx source
# (/usr/share/nginx/src, package nginx-dev) without writing into that tree.
#   BUILD=/abs/build/dir SAN="-fsanitize=..." nginx-module/build.sh
# An already configured builddir is reused (fast rebuilds) unless the set of
# sources or the sanitizer flags changed.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
BUILD=${BUILD:-$here/../build}
SAN=${SAN:-}
src=${NGINX_SRC:-/usr/share/nginx/src}
bdir=$BUILD/nginx-build
out=$BUILD/nginx

if [ ! -x "$src/configure" ]; then
    echo "autotls: $src/configure not found; install nginx-dev (make deps)" >&2
    exit 1
fi

# Anything that changes the generated Makefile must trigger a reconfigure.
stamp=$( (printf '%s\n' "$SAN" "${AUTOTLS_LIB:-}" "$here"/*.c; cat "$here/config") \
        | md5sum | cut -d' ' -f1)

if [ ! -f "$bdir/Makefile" ] || [ "$(cat "$bdir/.autotls-stamp" 2>/dev/null)" != "$stamp" ]; then
    mkdir -p "$bdir"
    (
        cd "$src"
        . ./conf_flags
        ./configure \
            --with-cc-opt="$(dpkg-buildflags --get CFLAGS) -fPIC $(dpkg-buildflags --get CPPFLAGS) $SAN" \
            --with-ld-opt="$(dpkg-buildflags --get LDFLAGS) -fPIC $SAN" \
            "${NGX_CONF_FLAGS[@]}" \
            --add-dynamic-module="$here" \
            --builddir="$bdir"
    ) > "$bdir/configure.log" 2>&1 || { cat "$bdir/configure.log" >&2; exit 1; }
    echo "$stamp" > "$bdir/.autotls-stamp"
fi

make -s -f "$bdir/Makefile" -C "$src" modules
mkdir -p "$out"
cp "$bdir/ngx_http_autotls_module.so" "$out/ngx_http_autotls_module.so.tmp"
mv "$out/ngx_http_autotls_module.so.tmp" "$out/ngx_http_autotls_module.so"
echo "autotls: built $out/ngx_http_autotls_module.so"
