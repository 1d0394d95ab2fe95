# Sourced by the benches that seed a store of many names with names_seed
# (bench/names_seed.c): builds the seeder against the library, makes the one
# P-256 key and CA-signed wildcard chain (*.bench.test) every name shares,
# and runs the Python part with them.  Needs BUILD and HERE (bench/) set.
#
#   seedkit_main TAG SCRIPT.py CA_CN
#     -> /usr/bin/python3 SCRIPT.py BUILD WORK/names_seed WORK/leaf.key
#                                   WORK/chain.pem CA_CN
#   WORK: a temp dir /tmp/atls-TAG.XXXXXX, removed at exit unless BENCH_KEEP.

seedkit_build() {
    _pkg="openssl libcurl jansson"
    # shellcheck disable=SC2086
    cc -std=gnu11 -O2 $(pkg-config --cflags $_pkg) -I"$HERE/../common" -o "$1/names_seed" \
        "$HERE/names_seed.c" "$HERE/benchio.c" "$BUILD/libatls.a" $(pkg-config --libs $_pkg) \
        -lm -lpthread
}

seedkit_chain() {
    (
        cd "$1"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key \
            -out ca.pem -subj "/CN=$2" -days 200 2>/dev/null
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout leaf.key \
            -out leaf.csr -subj /CN=bench.test 2>/dev/null
        printf 'subjectAltName=DNS:*.bench.test\n' >leaf.ext
        openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 120 \
            -extfile leaf.ext -out leaf.pem 2>/dev/null
        cat leaf.pem ca.pem >chain.pem
    )
}

seedkit_main() {
    WORK=$(mktemp -d "/tmp/atls-$1.XXXXXX")
    [ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT INT TERM
    seedkit_build "$WORK"
    seedkit_chain "$WORK" "$3"
    /usr/bin/python3 "$HERE/$2" "$BUILD" "$WORK/names_seed" "$WORK/leaf.key" \
        "$WORK/chain.pem" "$3"
}
