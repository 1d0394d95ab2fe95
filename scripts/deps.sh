#!/bin/sh
# Installs the Debian packages autotls builds and tests with, when run as
# root and something is missing; quick when everything is present.
set -eu

PKGS="pebble nginx nginx-dev apache2 apache2-dev libssl-dev libcurl4-openssl-dev
libjansson-dev libhiredis-dev redis-server libcmocka-dev python3-pytest
python3-cryptography python3-requests clang libclang-rt-14-dev pkg-config
openssl curl make gcc"

missing=""
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
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
apt-get install -y -q --no-install-recommends $missing
