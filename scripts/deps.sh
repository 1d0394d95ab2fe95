#!/bin/sh
# The Debian packages autotls builds and tests with.  `make test` and
# `make demo` run this first, so the common case (everything installed) is
# one dpkg-query call that prints nothing; apt runs only when something is
# missing, and then only as root.
set -eu

PKGS="pebble nginx nginx-dev apache2 apache2-dev libssl-dev libcurl4-openssl-dev
libjansson-dev libpsl-dev publicsuffix libhiredis-dev redis-server libcmocka-dev python3-pytest
python3-pytest-xdist python3-cryptography python3-requests clang libclang-rt-14-dev pkg-config
openssl curl make gcc debhelper dpkg-dev man-db"

# One query for all of them: "ii <name>" per installed package; names dpkg
# does not know at all are simply absent from the answer.
# shellcheck disable=SC2086
installed=" $(dpkg-query -W -f='${db:Status-Abbrev}${Package}\n' $PKGS 2>/dev/null \
              | sed -n 's/^ii *//p' | tr '\n' ' ') "

missing=""
for p in $PKGS; do
    case "$installed" in
        *" $p "*) ;;
        *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "autotls: missing Debian packages:$missing" >&2
    echo "autotls: run 'make deps' as root, or: apt-get install$missing" >&2
    exit 1
fi

echo "autotls: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Services must not start on install: tests run their own on loopback.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
