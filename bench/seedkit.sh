# Sourced by the benches (needs BUILD and HERE, bench/, set):
#
#   seedkit_main TAG SCRIPT.py CA_CN     the benches that seed a store of
#       many names with names_seed (bench/names_seed.c): builds the seeder
#       against the library, makes the one P-256 key and CA-signed wildcard
#       chain (*.bench.test) every name shares, and runs the Python part:
#     -> /usr/bin/python3 SCRIPT.py BUILD WORK/names_seed WORK/leaf.key
#                                   WORK/chain.pem CA_CN
#   seedkit_work TAG                     WORK: a temp dir /tmp/atls-TAG.XXXXXX,
#                                        removed at exit unless BENCH_KEEP
#   seedkit_flags                        CFLAGS and LIBS of a bench program
#                                        on libatls.a (add -I for its common/)
#   seedkit_baseline BENCH REV           common/ (and the Makefile) of REV^
#                                        built in WORK/base: the C benches'
#                                        baseline from git history
#   seedkit_pair PROG.c                  bench/PROG.c built twice: WORK/now
#                                        on this library, WORK/base.bin on
#                                        the baseline's

TOP=$(dirname "$HERE")

seedkit_work() {
    WORK=$(mktemp -d "/tmp/atls-$1.XXXXXX")
    [ -n "${BENCH_KEEP:-}" ] || trap 'rm -rf "$WORK"' EXIT INT TERM
}

# shellcheck disable=SC2086
seedkit_flags() {
    _pkg="openssl libcurl jansson libpsl"
    CFLAGS="-std=gnu11 -O2 $(pkg-config --cflags $_pkg)"
    LIBS="$(pkg-config --libs $_pkg) -lm -lpthread"
    if [ -n "$(pkg-config --libs hiredis 2>/dev/null)" ]; then
        LIBS="$LIBS $(pkg-config --libs hiredis)"
    fi
}

seedkit_baseline() {
    if [ -z "$2" ]; then
        echo "$1: needs the git history (the baseline is an older common/)" >&2
        exit 1
    fi
    mkdir -p "$WORK/base"
    git -C "$TOP" archive "$2^" Makefile common | tar -x -C "$WORK/base"
    echo "== baseline: common/ at ${2%"${2#???????}"}^, building"
    nice make -s -C "$WORK/base" BUILD="$WORK/base/build" lib >"$WORK/base.log" 2>&1 || {
        cat "$WORK/base.log" >&2; exit 1; }
}

seedkit_pair() {
    seedkit_flags
    # shellcheck disable=SC2086
    cc $CFLAGS -I"$TOP/common" -o "$WORK/now" "$HERE/$1" "$HERE/benchio.c" \
        "$BUILD/libatls.a" $LIBS
    # shellcheck disable=SC2086
    cc $CFLAGS -I"$WORK/base/common" -o "$WORK/base.bin" "$HERE/$1" "$HERE/benchio.c" \
        "$WORK/base/build/libatls.a" $LIBS
}

seedkit_build() {
    seedkit_flags
    # shellcheck disable=SC2086
    cc $CFLAGS -I"$TOP/common" -o "$1/names_seed" "$HERE/names_seed.c" "$HERE/benchio.c" \
        "$BUILD/libatls.a" $LIBS
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
    seedkit_work "$1"
    seedkit_build "$WORK"
    seedkit_chain "$WORK" "$3"
    /usr/bin/python3 "$HERE/$2" "$BUILD" "$WORK/names_seed" "$WORK/leaf.key" \
        "$WORK/chain.pem" "$3"
}
