# Developer entry points. `./dev.sh` installs what is missing, then calls these.
#   make            build the module for LuaJIT into build/luajit
#   make test       every suite (scripts/test.sh): LuaJIT, Lua 5.1-5.4, ASan+UBSan,
#                   TSan, the rock, valgrind, the soak, luacheck
#   make example    the parallel speed-up example
#   make bench      benchmarks against Tinypool, Piscina and luv
#   make rock       build/rock/luapool-<version>.src.rock, from git archive of HEAD

BUSTED   ?= /usr/bin/busted
LUAJIT   ?= luajit
CMAKE    ?= cmake
JOBS     ?= 2

luapool_env = LUA_PATH="$(CURDIR)/lua/?.lua;;" LUA_CPATH="$(CURDIR)/build/$(1)/?.so;;"
LUAPOOL_ENV := $(call luapool_env,luajit)

# One build directory per configuration, build/<name>, made by build-<name>:
# pc_<name> is the pkg-config module of the Lua it builds against, san_<name>
# its sanitizer, type_<name> its CMake build type (Release when not given);
# lua_<name> is the interpreter test-<name> runs busted with.
LUAS := luajit lua51 lua52 lua53 lua54
pc_luajit   := luajit
pc_lua51    := lua5.1
pc_lua52    := lua5.2
pc_lua53    := lua5.3
pc_lua54    := lua5.4
pc_asan     := luajit
pc_tsan     := luajit
pc_valgrind := luajit
san_asan    := address
san_tsan    := thread
type_valgrind := RelWithDebInfo
lua_luajit  := $(LUAJIT)
lua_lua51   := lua5.1
lua_lua52   := lua5.2
lua_lua53   := lua5.3
lua_lua54   := lua5.4

.PHONY: all build test $(LUAS:%=test-%) test-asan test-tsan test-rock test-valgrind test-luacheck \
	soak test-soak-asan test-soak-tsan test-process test-process-lua51 test-process-lua54 \
	test-process-asan test-process-tsan fuzz example clean rock

all: build
build: build-luajit

build/luajit/luapool/core.so: build-luajit
build-%: FORCE
	@$(CMAKE) -S . -B build/$* -DLUAPOOL_WERROR=ON -DLUAPOOL_LUA=$(pc_$*) -DLUAPOOL_SANITIZE=$(san_$*) \
	  -DCMAKE_BUILD_TYPE=$(or $(type_$*),Release) >/dev/null
	@$(CMAKE) --build build/$* -j $(JOBS) >/dev/null
FORCE:

# Each suite prints busted's summary; scripts/test.sh adds them up.
$(LUAS:%=test-%): test-%: build-%
	$(call luapool_env,$*) $(lua_$*) $(BUSTED) spec

# The sanitizer builds run under the interpreter with the runtimes preloaded
# (TSan would sleep a second at every exit, each worker process's included).
asan_env = ASAN_OPTIONS=detect_leaks=$(1):abort_on_error=1 \
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libubsan.so)" \
	$(call luapool_env,asan)
tsan_env = TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:atexit_sleep_ms=0 \
	LD_PRELOAD="$$($(CC) -print-file-name=libtsan.so)" \
	$(call luapool_env,tsan)

test-asan: build-asan
	$(call asan_env,0) $(LUAJIT) $(BUSTED) spec
test-tsan: build-tsan
	$(call tsan_env) $(LUAJIT) $(BUSTED) spec

# Memcheck over the core specs, on a plain build with debug info: no error
# and no definite leak. Not here: the specs that give up on a worker stuck in
# a LuaJIT trace (their detached threads keep memory on purpose, and under
# valgrind the interrupt may land before the loop is compiled), those that
# run this interpreter again as a child (under valgrind, valgrind's tool),
# the command's (child processes) and imap's (5 minutes under valgrind).
VALGRIND ?= valgrind
VALGRIND_OPTS ?= --error-exitcode=99 --leak-check=full --show-leak-kinds=definite \
	--errors-for-leak-kinds=definite --fair-sched=yes -q
VALGRIND_SPECS := codec pool lifecycle robustness reliability tinypool_idle_timeout \
	tinypool_isolation tinypool_resource_limits tinypool_simple tinypool_task_queue \
	tinypool_teardown tinypool_uncaught_exception
VALGRIND_SKIP := --filter-out="takes no interrupt" --filter-out="never hangs on such a worker" \
	--filter-out="leave the host's signals" --filter-out="Ctrl%-C while the host waits"
test-valgrind: build-valgrind
	$(call luapool_env,valgrind) $(VALGRIND) $(VALGRIND_OPTS) $(LUAJIT) $(BUSTED) \
	  $(VALGRIND_SKIP) $(VALGRIND_SPECS:%=spec/%_spec.lua)

# The mixed-operation soak (scripts/soak.lua): SOAK_TASKS tasks through about a
# hundred pools; SOAK_SEED replays a run's choices. The suites run a short one
# under each sanitizer (LeakSanitizer on: the soak destroys every pool).
SOAK_TASKS ?= 1000000
SOAK_SHORT ?= 50000
soak_args = $(if $(SOAK_SEED),--seed $(SOAK_SEED))
soak: build-luajit
	$(LUAPOOL_ENV) $(LUAJIT) scripts/soak.lua --tasks $(SOAK_TASKS) $(soak_args)
test-soak-asan: build-asan
	$(call asan_env,1) $(LUAJIT) scripts/soak.lua --tasks $(SOAK_SHORT) $(soak_args)
test-soak-tsan: build-tsan
	$(call tsan_env) $(LUAJIT) scripts/soak.lua --tasks $(SOAK_SHORT) $(soak_args)
# The whole suite again with the process runtime as every pool's default:
# on LuaJIT (test-process), on 5.4, 5.1 and under each sanitizer.
process_busted = LUAPOOL_TEST_RUNTIME=process $(1) $(BUSTED) --helper=spec/support/runtime.lua spec
test-process: build-luajit
	$(call process_busted,$(call luapool_env,luajit) $(LUAJIT))
test-process-lua51 test-process-lua54: test-process-%: build-%
	$(call process_busted,$(call luapool_env,$*) $(lua_$*))
test-process-asan: build-asan
	$(call process_busted,$(call asan_env,0) $(LUAJIT))
test-process-tsan: build-tsan
	$(call process_busted,$(call tsan_env) $(LUAJIT))

# libFuzzer over what hosts read from worker processes (clang); FUZZ_SECONDS long.
FUZZ_SECONDS ?= 60
fuzz test-fuzz:
	sh scripts/fuzz.sh $(FUZZ_SECONDS)

test-rock:
	sh scripts/test-rock.sh

# Lint with the settings of .luacheckrc (Debian's lua-check).
LUACHECK ?= luacheck
test-luacheck:
	$(LUACHECK) --no-color -q lua spec bench examples scripts bin/luapool

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
