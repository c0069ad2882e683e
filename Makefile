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
             -I. -I$(CUDA_HOME)/include -pthread -MMD -MP -fPIC
override LDFLAGS += -pthread -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64
STATIC_LIBS := -Wl,-Bstatic -lyaml -lsqlite3 -Wl,-Bdynamic
override LDLIBS += $(STATIC_LIBS) -lnvrtc -ldl -lm

LIB_SRC   := $(wildcard common/*.c codegen/*.c runtime/*.c tuning_db/*.c)
CMD_SRC   := $(wildcard cmd/*.c)
TEST_SRC  := $(wildcard tests/unit/test_*.c)
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
CMD_OBJ   := $(CMD_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BIN  := $(TEST_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test test-unit test-bats asan clean install test-gpu
all: $(BUILD)/spattn $(BUILD)/COMMIT $(BUILD)/libspattn.so

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

# The public library (include/spattn.h, man 3 spattn).  libyaml is linked in
# statically (the GPU host lacks it); SQLite's static archive is not
# position-independent, so the shared library takes libsqlite3.so.0, which
# the GPU host has.  Only the spattn_ symbols are exported.
SONAME := libspattn.so.0
$(BUILD)/libspattn.so: $(BUILD)/libspattn.a spattn.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -Wl,--version-script=spattn.map $(LDFLAGS) -o $@ \
	    -Wl,--whole-archive $(BUILD)/libspattn.a -Wl,--no-whole-archive \
	    -Wl,-Bstatic -lyaml -Wl,-Bdynamic -lsqlite3 -lnvrtc -ldl -lm
	@# export the API only: everything else in the archive is internal
	@nm -D --defined-only $@ | awk '$$2 ~ /[TDBR]/ && $$3 !~ /^spattn_/ {print "exported but not API: " $$3; bad=1} END {exit bad}' \
	    || { rm -f $@; false; }

$(BUILD)/tests/%: tests/unit/%.c tests/check.h $(BUILD)/libspattn.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libspattn.a $(LDLIBS)

# Every test: C unit tests, then the Bats suites; tests/run.sh sums them up.
test: $(BUILD)/spattn $(BUILD)/libspattn.so $(TEST_BIN)
	@BUILD=$(BUILD) sh tests/run.sh

# CPU suite under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) BUILD=build-asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	        LDFLAGS="-fsanitize=address,undefined" test

# bats and jq (with jq's libraries) copied from this machine into build/tools,
# for the GPU host, which has neither: bench/gpu-correctness.sh puts them on
# the PATH there, so the GPU tests of the Bats suites run.
.PHONY: gpu-tools
gpu-tools:
	@mkdir -p $(BUILD)/tools/bin $(BUILD)/tools/lib $(BUILD)/tools/usr/bin $(BUILD)/tools/usr/lib $(BUILD)/tools/usr/libexec
	cp "$$(command -v bats)" $(BUILD)/tools/usr/bin/
	cp -r /usr/lib/bats-core $(BUILD)/tools/usr/lib/ && cp -r /usr/libexec/bats-core $(BUILD)/tools/usr/libexec/
	cp "$$(command -v jq)" $(BUILD)/tools/bin/
	cp $$(ldd "$$(command -v jq)" | awk '/libjq|libonig/ {print $$3}') $(BUILD)/tools/lib/

# GPU checks, a compute-sanitizer pass and the benchmark, in one call on the GPU host.
test-gpu: $(BUILD)/spattn
	sh bench/gpu-suite.sh

# Binary, header, both libraries, a pkg-config file and the man pages.
install: $(BUILD)/spattn $(BUILD)/libspattn.so $(BUILD)/libspattn.a
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man3 $(DESTDIR)$(PREFIX)/share/man/man5
	install -m 755 $(BUILD)/spattn $(DESTDIR)$(PREFIX)/bin/spattn
	install -m 644 include/spattn.h $(DESTDIR)$(PREFIX)/include/spattn.h
	install -m 755 $(BUILD)/libspattn.so $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libspattn.so
	install -m 644 $(BUILD)/libspattn.a $(DESTDIR)$(PREFIX)/lib/libspattn.a
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@CUDA_LIB@|$(CUDA_HOME)/lib64|g' \
	    spattn.pc.in >$(DESTDIR)$(PREFIX)/lib/pkgconfig/spattn.pc
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/
	install -m 644 man/*.3 $(DESTDIR)$(PREFIX)/share/man/man3/
	install -m 644 man/*.5 $(DESTDIR)$(PREFIX)/share/man/man5/

clean:
	rm -rf build build-asan build-clang

-include $(LIB_OBJ:.o=.d) $(CMD_OBJ:.o=.d)
