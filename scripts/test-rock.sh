#!/bin/sh
# Builds the rock with `luarocks make` into throwaway trees, for LuaJIT and
# Lua 5.4, and runs the whole spec suite against what got installed there.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() {  # run LUAVERSION INTERPRETER [VAR=VALUE...]
  ver=$1 lua=$2
  shift 2
  tree="$tmp/$ver"
  luarocks --lua-version "$ver" --tree "$tree" make --deps-mode=none \
    luapool-scm-1.rockspec "$@" >"$tmp/make-$ver.log" 2>&1 || { cat "$tmp/make-$ver.log"; exit 1; }
  # spec/cli_spec.lua runs the command the rock installed in the tree's bin/
  export LUAPOOL_BIN="$tree/bin/luapool"
  # Only the tree's copy of luapool may be found: no lua/ or build/ paths.
  (cd "$tmp" && cp -r "$top/spec" . &&
   LUA_PATH="$tree/share/lua/$ver/?.lua;;" LUA_CPATH="$tree/lib/lua/$ver/?.so;;" \
   "$lua" -e 'require "luapool"; print("rock: " .. package.searchpath("luapool.core", package.cpath))' &&
   LUA_PATH="$tree/share/lua/$ver/?.lua;;" LUA_CPATH="$tree/lib/lua/$ver/?.so;;" \
   "$lua" /usr/bin/busted spec)
}
# `luarocks test`: the rockspec's test section, with the 5.4 tree (luarocks
# runs its configured interpreter, lua5.4, there).
luarocks_test() {
  tree="$tmp/5.4"
  LUA_PATH="$tree/share/lua/5.4/?.lua;;" LUA_CPATH="$tree/lib/lua/5.4/?.so;;" \
    luarocks --lua-version 5.4 --tree "$tree" test luapool-scm-1.rockspec
}
# For LuaJIT, a config naming its interpreter: the tree's bin/luapool runs it.
printf 'lua_interpreter = "luajit"\nvariables = { LUA_INCDIR = "/usr/include/luajit-2.1", LUA_BINDIR = "/usr/bin" }\n' >"$tmp/luajit.lua"
LUAROCKS_CONFIG="$tmp/luajit.lua" run 5.1 luajit
unset LUAROCKS_CONFIG
run 5.4 lua5.4
luarocks_test
