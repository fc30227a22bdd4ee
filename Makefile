# Developer entry points. `./dev.sh` installs what is missing, then calls these.
#   make            build the module for LuaJIT into build/luajit
#   make test       every spec under LuaJIT, Lua 5.4, 5.1, ASan+UBSan, TSan, the rock
#   make example    the parallel speed-up example
#   make bench      benchmarks against Tinypool, Piscina and luv

BUSTED   ?= /usr/bin/busted
LUAJIT   ?= luajit
LUA54    ?= lua5.4
CMAKE    ?= cmake
JOBS     ?= 2

luapool_env = LUA_PATH="$(CURDIR)/lua/?.lua;;" LUA_CPATH="$(CURDIR)/build/$(1)/?.so;;"
LUAPOOL_ENV := $(call luapool_env,luajit)

.PHONY: all build build-% test test-luajit test-lua54 test-lua51 test-asan test-tsan test-rock test-process fuzz example clean

all: build
build: build-luajit

build/luajit/luapool/core.so build-luajit: FORCE
	@$(CMAKE) -S . -B build/luajit -DLUAPOOL_LUA=luajit >/dev/null
	@$(CMAKE) --build build/luajit -j $(JOBS) >/dev/null
build-lua54: FORCE
	@$(CMAKE) -S . -B build/lua54 -DLUAPOOL_LUA=lua5.4 >/dev/null
	@$(CMAKE) --build build/lua54 -j $(JOBS) >/dev/null
build-lua51: FORCE
	@$(CMAKE) -S . -B build/lua51 -DLUAPOOL_LUA=lua5.1 >/dev/null
	@$(CMAKE) --build build/lua51 -j $(JOBS) >/dev/null
build-asan: FORCE
	@$(CMAKE) -S . -B build/asan -DLUAPOOL_LUA=luajit -DLUAPOOL_SANITIZE=address >/dev/null
	@$(CMAKE) --build build/asan -j $(JOBS) >/dev/null
build-tsan: FORCE
	@$(CMAKE) -S . -B build/tsan -DLUAPOOL_LUA=luajit -DLUAPOOL_SANITIZE=thread >/dev/null
	@$(CMAKE) --build build/tsan -j $(JOBS) >/dev/null
FORCE:

# Each suite prints busted's summary; scripts/test.sh adds them up.
test-luajit: build-luajit
	$(call luapool_env,luajit) $(LUAJIT) $(BUSTED) spec
# The whole suite again with the process runtime as every pool's default.
test-process: build-luajit
	LUAPOOL_TEST_RUNTIME=process $(call luapool_env,luajit) $(LUAJIT) $(BUSTED) --helper=spec/support/runtime.lua spec
test-lua54: build-lua54
	$(call luapool_env,lua54) $(LUA54) $(BUSTED) spec
test-lua51: build-lua51
	$(call luapool_env,lua51) lua5.1 $(BUSTED) spec
test-asan: build-asan
	ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	$(call luapool_env,asan) $(LUAJIT) $(BUSTED) spec
test-tsan: build-tsan
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	$(call luapool_env,tsan) $(LUAJIT) $(BUSTED) spec
test-rock:
	sh scripts/test-rock.sh

test:
	sh scripts/test.sh

# libFuzzer over what hosts read from worker processes (clang); FUZZ_SECONDS long.
FUZZ_SECONDS ?= 60
fuzz:
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

example: build-luajit
	$(LUAPOOL_ENV) $(LUAJIT) examples/primes.lua

clean:
	rm -rf build

-include bench/Makefile.inc
