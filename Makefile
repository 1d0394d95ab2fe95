# autotls: one core (common/), the CLI, an nginx module and an Apache module.
#
#   make            build the core, the CLI and both modules
#   make test       deps + build + unit + integration + fuzz-corpus replay
#   make demo       Pebble + nginx on loopback issuing two demo certificates
#   make asan       ASan+UBSan build, then unit and integration tests on it
#   make fuzz       run every libFuzzer harness for FUZZ_SECONDS each
#   make fuzz-campaign  every harness for FUZZ_RUNS executions (scripts/fuzz.sh)
#   make bench      handshake, memory, start-up, issuance and cluster benchmarks
#   make deb        the Debian packages (build/deb/*.deb; scripts/deb.sh)

BUILD    ?= build
CC       ?= cc
PKGS     := openssl libcurl jansson hiredis libpsl
OPT      ?= -O2
SAN      ?=
# The hardening Debian builds nginx and Apache with, now that the core is
# compiled here for every host (FORTIFY is left to ASan in sanitizer builds).
HARDEN   := $(if $(SAN),,-D_FORTIFY_SOURCE=2) -fstack-protector-strong
CFLAGS   := -std=gnu11 $(OPT) -g -fPIC -Wall -Wextra -Werror -Wshadow \
            -Wno-unused-parameter -Wstrict-prototypes -Wformat=2 $(HARDEN) \
            -Icommon $(SAN) $(EXTRA_CFLAGS) $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm -lpthread
LDFLAGS  := $(SAN)

CORE_SRC := $(wildcard common/*.c)
CORE_OBJ := $(CORE_SRC:%.c=$(BUILD)/obj/%.o)
CORE_LIB := $(BUILD)/libatls.a
CLI_SRC  := $(wildcard tools/autotls/*.c)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
CLI      := $(BUILD)/autotls
# the CLI's challenge responders, linked into their own unit test and harness
RESPONDER_SRC := tools/autotls/cli_util.c tools/autotls/standalone.c \
                 tools/autotls/standalone_http.c tools/autotls/standalone_tls.c

UNIT_SRC := $(wildcard tests/unit/test_*.c)
UNIT_SUP := $(wildcard tests/unit/support/*.c)
UNIT_OBJ := $(UNIT_SRC:%.c=$(BUILD)/obj/%.o)
UNIT_SUP_OBJ := $(UNIT_SUP:%.c=$(BUILD)/obj/%.o)
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

# header dependencies, written by the compiler next to each object
DEPS     := $(patsubst %.o,%.d,$(CORE_OBJ) $(CLI_OBJ) $(UNIT_OBJ) $(UNIT_SUP_OBJ))

FUZZ_SRC := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BIN := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?= 1000000

NGINX_MOD  := $(BUILD)/nginx/ngx_http_autotls_module.so
APACHE_MOD := $(BUILD)/apache/mod_autotls.so

PYTEST   := /usr/bin/python3 -m pytest
PYTEST_ARGS ?=
# Integration test files run in parallel (pytest-xdist), each file on one
# worker so that its module fixtures and order hold; every test has its own
# ports, directories and servers.  Two workers on two cores: three were
# faster (the tests mostly wait) but made timing-sensitive tests fail under
# the extra load.  TEST_JOBS=1 runs them one after another.
TEST_JOBS ?= 2

.PHONY: all lib cli modules nginx apache deps deb test unit integration \
        fuzz-build fuzz-replay fuzz fuzz-campaign asan demo bench clean

all: lib cli modules

lib: $(CORE_LIB)
cli: $(CLI)
modules: nginx apache

# -MMD -MP: each object depends on the headers it includes (the .d files
# below); on the Makefile too, since the flags live here.
$(BUILD)/obj/%.o: %.c Makefile | deps-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/unit/%.o: CFLAGS += -Itests/unit

-include $(DEPS)

$(CORE_LIB): $(CORE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@
	ar rcs $@ $^

$(CLI): $(CLI_OBJ) $(CORE_LIB)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(CORE_LIB) $(LDLIBS)

# Both modules link the one core library (no server build compiles common/).
# '+': nginx's own make shares our job slots.
nginx: $(CORE_LIB)
	+BUILD=$(abspath $(BUILD)) SAN="$(SAN)" AUTOTLS_LIB=$(abspath $(CORE_LIB)) \
	    nginx-module/build.sh

apache: $(CORE_LIB)
	BUILD=$(abspath $(BUILD)) SAN="$(SAN)" apache-module/build.sh

# ---- Debian packages ------------------------------------------------------

deb:
	BUILD=$(abspath $(BUILD)) scripts/deb.sh

# ---- dependencies ----------------------------------------------------------

deps:
	@scripts/deps.sh

# Fails early with a clear message instead of a cascade of missing headers.
.PHONY: deps-check
deps-check:
	@pkg-config --exists $(PKGS) || { echo "autotls: missing development packages; run 'make deps' (as root)" >&2; exit 1; }

# ---- tests -----------------------------------------------------------------

# kept after the link: they carry the header dependencies of the tests
.SECONDARY: $(UNIT_OBJ) $(UNIT_SUP_OBJ)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(UNIT_SUP_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_SUP_OBJ) $(CORE_LIB) $(LDLIBS) -lcmocka

# test_standalone_tls drives the CLI's tls-alpn-01 responder, so it links it.
RESPONDER_OBJ := $(RESPONDER_SRC:%.c=$(BUILD)/obj/%.o)

$(BUILD)/obj/tests/unit/test_standalone_tls.o: CFLAGS += -Itools/autotls

$(BUILD)/tests/test_standalone_tls: $(BUILD)/obj/tests/unit/test_standalone_tls.o \
                                    $(RESPONDER_OBJ) $(UNIT_SUP_OBJ) $(CORE_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $< $(RESPONDER_OBJ) $(UNIT_SUP_OBJ) $(CORE_LIB) $(LDLIBS) -lcmocka

unit: $(UNIT_BIN)
	@scripts/run-unit.sh $(UNIT_BIN)

integration: all
	ATLS_BUILD=$(abspath $(BUILD)) $(PYTEST) -p no:cacheprovider -ra \
	    $(if $(filter-out 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile) \
	    $(PYTEST_ARGS) tests/integration

comma := ,
FUZZ_CFLAGS := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined \
               -fno-sanitize-recover=undefined -Icommon \
               $(shell pkg-config --cflags $(PKGS) 2>/dev/null)

# The core is compiled once with the sanitizers and coverage (no fuzzer
# main: -fsanitize=fuzzer-no-link) and every harness links that archive.
FUZZ_OBJ_CFLAGS := $(subst -fsanitize=fuzzer$(comma),-fsanitize=fuzzer-no-link$(comma),$(FUZZ_CFLAGS))
FUZZ_CORE_OBJ   := $(CORE_SRC:common/%.c=$(BUILD)/fuzz/obj/%.o)
FUZZ_CORE_LIB   := $(BUILD)/fuzz/libatls-fuzz.a

$(BUILD)/fuzz/obj/%.o: common/%.c $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_OBJ_CFLAGS) -c -o $@ $<

$(FUZZ_CORE_LIB): $(FUZZ_CORE_OBJ)
	rm -f $@
	ar rcs $@ $(FUZZ_CORE_OBJ)

$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_CORE_LIB) $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_CORE_LIB) $(LDLIBS)

# fuzz_standalone drives the CLI's challenge responders, so it links them too.
$(BUILD)/fuzz/fuzz_standalone: tests/fuzz/fuzz_standalone.c $(FUZZ_CORE_LIB) $(RESPONDER_SRC) \
                               $(wildcard common/*.h) tools/autotls/cli.h
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -Itools/autotls -o $@ $< $(RESPONDER_SRC) $(FUZZ_CORE_LIB) $(LDLIBS)

fuzz-build: $(FUZZ_BIN)

fuzz-replay: fuzz-build
	@scripts/fuzz.sh replay $(FUZZ_BIN)

fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh run $(FUZZ_BIN)

# One harness at a time, FUZZ_RUNS executions each; FUZZ_WORK=DIR keeps the
# grown corpora, FUZZ_MERGE=1 minimises them (see scripts/fuzz.sh).
fuzz-campaign: fuzz-build
	@FUZZ_RUNS=$(FUZZ_RUNS) scripts/fuzz.sh campaign $(FUZZ_BIN)

# The builds inside `make test` use every core unless make was given -j
# itself (then its jobserver decides, -j1 included).
TEST_BUILD_JOBS = $(if $(findstring -j,$(MAKEFLAGS)),,-j$(shell nproc))

test: deps
	$(MAKE) $(TEST_BUILD_JOBS) all
	$(MAKE) $(TEST_BUILD_JOBS) unit
	$(MAKE) integration
	$(MAKE) $(TEST_BUILD_JOBS) fuzz-replay
	@echo "autotls: make test passed"

asan:
	$(MAKE) BUILD=build-asan OPT=-O1 SAN="-fsanitize=address,undefined -fno-omit-frame-pointer" unit integration

demo: deps
	$(MAKE) all
	@scripts/demo.sh $(abspath $(BUILD))

bench: all
	@bench/run.sh $(abspath $(BUILD))

clean:
	rm -rf build build-asan
