# Developer entry points. `./dev.sh` installs what is missing, then calls these.
#   make            build the module for LuaJIT into build/luajit
#   make test       every spec under LuaJIT, Lua 5.4, 5.1, ASan+UBSan, TSan, the rock
#   make example    the parallel speed-up example
#   make bench      benchmarks against Tinypool, Piscina and luv
#   make rock       build/rock/luapool-<version>.src.rock, from git archive of HEAD

BUSTED   ?= /usr/bin/busted
LUAJIT   ?= luajit
LUA54    ?= lua5.4
CMAKE    ?= cmake
JOBS     ?= 2

luapool_env = LUA_PATH="$(CURDIR)/lua/?.lua;;" LUA_CPATH="$(CURDIR)/build/$(1)/?.so;;"
LUAPOOL_ENV := $(call luapool_env,luajit)

.PHONY: all build build-% test test-luajit test-lua54 test-lua51 test-asan test-tsan test-rock example clean rock

all: build
build: build-luajit

build/luajit/luapool/core.so build-luajit: FORCE
	@$(CMAKE) -S . -B build/luajit -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=luajit >/dev/null
	@$(CMAKE) --build build/luajit -j $(JOBS) >/dev/null
build-lua54: FORCE
	@$(CMAKE) -S . -B build/lua54 -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=lua5.4 >/dev/null
	@$(CMAKE) --build build/lua54 -j $(JOBS) >/dev/null
build-lua51: FORCE
	@$(CMAKE) -S . -B build/lua51 -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=lua5.1 >/dev/null
	@$(CMAKE) --build build/lua51 -j $(JOBS) >/dev/null
build-asan: FORCE
	@$(CMAKE) -S . -B build/asan -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=luajit -DLUAPOOL_SANITIZE=address >/dev/null
	@$(CMAKE) --build build/asan -j $(JOBS) >/dev/null
build-tsan: FORCE
	@$(CMAKE) -S . -B build/tsan -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=luajit -DLUAPOOL_SANITIZE=thread >/dev/null
	@$(CMAKE) --build build/tsan -j $(JOBS) >/dev/null
FORCE:

# Each suite prints busted's summary; scripts/test.sh adds them up.
test-luajit: build-luajit
	$(call luapool_env,luajit) $(LUAJIT) $(BUSTED) spec
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

example: build-luajit
	$(LUAPOOL_ENV) $(LUAJIT) examples/primes.lua

clean:
	rm -rf build

# The release rock: the rockspec beside `git archive` of ROCK_REF (HEAD; the
# rock suite passes a snapshot of the work tree), zipped as `luarocks pack`
# zips them (pack itself would fetch the archive from the rockspec's URL).
# `luarocks install build/rock/luapool-<version>.src.rock` needs no network.
ROCKSPEC     := $(firstword $(wildcard luapool-*-*.rockspec))
ROCK_VERSION := $(patsubst luapool-%.rockspec,%,$(ROCKSPEC))
ROCK_SOURCE  := luapool-$(firstword $(subst -, ,$(ROCK_VERSION)))
ROCK_REF     ?= HEAD
rock:
	@rm -rf build/rock && mkdir -p build/rock
	git archive --format=tar.gz --prefix=$(ROCK_SOURCE)/ -o build/rock/$(ROCK_SOURCE).tar.gz $(ROCK_REF)
	cp $(ROCKSPEC) build/rock/
	cd build/rock && zip -q luapool-$(ROCK_VERSION).src.rock $(ROCKSPEC) $(ROCK_SOURCE).tar.gz
	@echo "build/rock/luapool-$(ROCK_VERSION).src.rock"

-include bench/Makefile.inc
