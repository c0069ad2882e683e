# spattn build.  `make` builds build/spattn; `make test` runs every test and
# ends with one line "N passed, N failed[, N skipped]".
#
# The engine (common/, codegen/, runtime/, tuning_db/) is a static library,
# build/libspattn.a; cmd/ is the CLI on top of it.  libyaml and SQLite are
# linked statically so the binary runs on the GPU host (which lacks them);
# libcuda.so.1 and libcublas are opened with dlopen on first GPU use.

CC        ?= cc
CUDA_HOME ?= /usr/local/cuda
PREFIX    ?= /usr/local
BUILD     ?= build
VERSION   := 0.1.0

WARN      := -Wall -Wextra -Wshadow -Wno-unused-parameter
CFLAGS    ?= -O2 -g
override CFLAGS += -std=c11 -D_GNU_SOURCE -DSPATTN_VERSION='"$(VERSION)"' $(WARN) \
             -I. -I$(CUDA_HOME)/include -pthread -MMD -MP
override LDFLAGS += -pthread -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
STATIC_LIBS := -Wl,-Bstatic -lyaml -lsqlite3 -Wl,-Bdynamic
override LDLIBS += $(STATIC_LIBS) -lnvrtc -ldl -lm

LIB_SRC   := $(wildcard common/*.c codegen/*.c runtime/*.c tuning_db/*.c)
CMD_SRC   := $(wildcard cmd/*.c)
TEST_SRC  := $(wildcard tests/unit/test_*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ   := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test test-quick asan clean install test-gpu
all: $(BUILD)/spattn $(BUILD)/COMMIT

# The commit the build was made from, for bench/gpu-suite.sh's logs (the GPU
# host gets a copy of the working tree, not its history).  Rewritten on every
# make; "-dirty" when the tree had uncommitted changes.
.PHONY: $(BUILD)/COMMIT
$(BUILD)/COMMIT:
	@mkdir -p $(BUILD)
	@{ git rev-parse HEAD 2>/dev/null || echo unknown; } | tr -d '\n' >$@.tmp; \
	 git diff --quiet HEAD 2>/dev/null || printf -- '-dirty' >>$@.tmp; echo >>$@.tmp; mv $@.tmp $@

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libspattn.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/spattn: $(CMD_OBJ) $(BUILD)/libspattn.a
	$(CC) $(LDFLAGS) -o $@ $(CMD_OBJ) $(BUILD)/libspattn.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/check.h $(BUILD)/libspattn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libspattn.a $(LDLIBS)

# Every test: each C unit binary and each Bats file is a suite; tests/run.sh
# runs JOBS of them at once (default: the CPUs), prints a line per suite and
# ends with "N passed, N failed, N skipped".  test-quick: a subset under 30 s
# (no NVRTC compiles but one per compiling suite).
JOBS ?=
test: $(BUILD)/spattn $(TEST_BIN)
	@BUILD=$(BUILD) JOBS=$(JOBS) sh tests/run.sh

test-quick: $(BUILD)/spattn $(TEST_BIN)
	@BUILD=$(BUILD) JOBS=$(JOBS) QUICK=1 sh tests/run.sh

# CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined" test

# GPU checks, a compute-sanitizer pass and the benchmark, in one call on the GPU host.
test-gpu: $(BUILD)/spattn
	sh bench/gpu-suite.sh

install: $(BUILD)/spattn
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(BUILD)/spattn $(DESTDIR)$(PREFIX)/bin/spattn
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	rm -rf build build-asan build-clang

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)
