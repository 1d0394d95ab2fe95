#!/bin/sh
# `make deb`: the three Debian packages (libnginx-mod-http-autotls,
# libapache2-mod-autotls, autotls) with dpkg-buildpackage, built in a copy
# of the tree under $BUILD/deb so nothing is written outside the build dir.
#   BUILD=/abs/build/dir scripts/deb.sh   -> $BUILD/deb/*.deb
# The package version is common/atls.h's ATLS_VERSION (what `autotls
# --version` and the status page print): debian/changelog is written here
# from it, never kept by hand.
set -eu

root=$(cd "$(dirname "$0")/.." && pwd)
: "${BUILD:?BUILD must be the absolute build directory}"

version=$(sed -n 's/^#define ATLS_VERSION *"\(.*\)"$/\1/p' "$root/common/atls.h")
[ -n "$version" ] || { echo "autotls: ATLS_VERSION not found in common/atls.h" >&2; exit 1; }

out=$BUILD/deb
src=$out/autotls-$version
rm -rf "$out"
mkdir -p "$src"

# The source as a fresh clone has it: no build output, no VCS data.
(cd "$root" && tar -cf - --exclude=./build --exclude='./build-*' --exclude=./.git \
    --exclude=__pycache__ --exclude=.pytest_cache .) | (cd "$src" && tar -xf -)

# The changelog's date is the last commit's, so that rebuilding a commit
# gives the same packages.
when=$(cd "$root" && git log -1 --format=%cD 2>/dev/null || date -R)
maint=$(sed -n 's/^Maintainer: //p' "$src/debian/control")
cat > "$src/debian/changelog" <<END
autotls ($version) bookworm; urgency=medium

  * autotls $version (common/atls.h ATLS_VERSION).

 -- $maint  $when
END

cd "$src"
dpkg-buildpackage -b -us -uc -j"$(nproc)" > "$out/build.log" 2>&1 || {
    tail -40 "$out/build.log" >&2
    echo "autotls: package build failed; full log: $out/build.log" >&2
    exit 1; }
ls "$out"/*.deb
