#!/bin/sh
# The rock suite, the README's install section step by step: `make rock`
# (from the work tree's tracked files), then `luarocks install` of the
# .src.rock with no network into throwaway trees, for LuaJIT (its own
# LuaRocks configuration, as the README shows) and for Lua 5.4; in each, the
# installed copy is the one `require` finds after `eval "$(luarocks path)"`,
# `luarocks test` runs the specs against it with no other path set, and the
# annotations match the code. Last, `luarocks make` builds the checkout.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "test-rock: $*" >&2; exit 1; }
quiet() {  # quiet LOG COMMAND...: the command's output only if it fails
  log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log"; fail "failed: $*"; }
}

# Tracked files as they are now, committed or not (HEAD when nothing changed).
new=$(git ls-files --others --exclude-standard -- lua src CMakeLists.txt docs LICENSE)
[ -z "$new" ] || echo "test-rock: not in the rock until git add: $new" >&2
ref=$(git stash create)
quiet "$tmp/rock.log" make --no-print-directory rock ROCK_REF="${ref:-HEAD}"
rockspec=$(ls luapool-*-*.rockspec)
version=${rockspec#luapool-}
version=${version%.rockspec}
rock="$top/build/rock/luapool-$version.src.rock"
[ -f "$rock" ] || fail "make rock did not make $rock"
[ -f LICENSE ] || fail "no LICENSE"
grep -q '^  license = "MIT"' "$rockspec" && grep -q '^MIT License' LICENSE ||
  fail "LICENSE and the rockspec's license differ"

# Users' builds have no -Werror; the project's own (LUAPOOL_WERROR=ON) do.
for werror in OFF ON; do
  cmake -S . -B "$tmp/cmake-$werror" -DLUAPOOL_LUA=lua5.4 -DLUAPOOL_WERROR=$werror >/dev/null ||
    fail "cmake failed"
  for f in "$tmp/cmake-$werror"/CMakeFiles/*.dir/flags.make; do  # each target
    case "$werror:$(cat "$f")" in
      OFF:*-Werror*) fail "a build without LUAPOOL_WERROR has -Werror: $f" ;;
      ON:*-Werror*|OFF:*) ;;
      *) fail "LUAPOOL_WERROR=ON gives no -Werror: $f" ;;
    esac
  done
done
grep -q "LUAPOOL_WERROR *=" "$rockspec" && fail "the rockspec must leave LUAPOOL_WERROR off"
echo "-Werror: dev builds only"

# The README points at the reference in the repository, and nowhere else.
grep -q '](docs/API.md)' README.md || fail "README does not link docs/API.md"
grep -q 'shared/' README.md docs/API.md && fail "README or docs/API.md points outside the repository"

# Without a network namespace to cut it, offline still holds: --deps-mode=none
# and a source archive inside the rock leave LuaRocks nothing to download.
nonet=""
if unshare -n true 2>/dev/null; then nonet="unshare -n"; fi

# check NAME INTERPRETER [LUAROCKS FLAGS...]: install, require, test, meta.
check() {
  name=$1 lua=$2
  shift 2
  tree="$tmp/$name"
  (cd "$tmp" && quiet "$tmp/install-$name.log" \
     $nonet luarocks "$@" install --deps-mode=none "$rock")
  (
    eval "$(luarocks "$@" path)"
    found=$("$lua" -e 'local l = require "luapool"
      io.write(package.searchpath("luapool.core", package.cpath), " ", l._VERSION)')
    case "$found" in
      "$tree/"*" ${version%-*}") echo "$name: $found" ;;
      *) fail "$name: require found '$found', not the rock in $tree" ;;
    esac
    # the specs run with luarocks' interpreter for this tree, which must
    # be $lua (LuaJIT's module does not load in lua5.1); spec/cli_spec.lua
    # runs the command the rock installed in the tree's bin/
    [ -x "$tree/bin/luapool" ] || fail "$name: the rock installed no bin/luapool"
    LUAPOOL_BIN="$tree/bin/luapool" luarocks "$@" test "$rockspec"
    "$lua" scripts/check-meta.lua "$(ls "$tree"/share/lua/*/luapool/meta.lua)" docs/API.md
  )
}

# LuaJIT: the README's configuration file, with this tree.
cat >"$tmp/luajit-config.lua" <<EOF
lua_interpreter = "luajit"
variables = { LUA_BINDIR = "/usr/bin", LUA_INCDIR = "/usr/include/luajit-2.1" }
rocks_trees = { { name = "luajit", root = "$tmp/luajit" } }
EOF
export LUAROCKS_CONFIG_5_1="$tmp/luajit-config.lua"
check luajit luajit
check lua54 lua5.4 --lua-version 5.4 --tree "$tmp/lua54"

# PUC 5.1's interpreter with LuaJIT's headers is refused with the way out.
unset LUAROCKS_CONFIG_5_1
if (cd "$tmp" && $nonet luarocks --lua-version 5.1 --tree "$tmp/mixed" install \
      --deps-mode=none "$rock" LUA_INCDIR=/usr/include/luajit-2.1) >"$tmp/mixed.log" 2>&1; then
  fail "lua5.1 with LuaJIT's headers installed a rock that cannot load"
fi
grep -q 'has LuaJIT.s headers' "$tmp/mixed.log" || { cat "$tmp/mixed.log"; fail "no clear error"; }

# `luarocks make` from the checkout, as the README shows for development.
quiet "$tmp/make.log" luarocks --lua-version 5.4 --tree "$tmp/make" make --deps-mode=none "$rockspec"
(eval "$(luarocks --lua-version 5.4 --tree "$tmp/make" path)" &&
 lua5.4 -e 'assert(require("luapool")._VERSION)') || fail "luarocks make: no luapool"
echo "luarocks make: ok"
