#!/bin/sh
# One entry point for a fresh Debian machine: installs what is missing, then
# runs the make target you name.
#   ./dev.sh example   build, then run examples/primes.lua on a pool
#   ./dev.sh test      every suite: luacheck; the specs on LuaJIT, Lua 5.1-5.4,
#                      ASan+UBSan, TSan, valgrind, the rock; a short soak under
#                      ASan and TSan
#   ./dev.sh bench     benchmarks against Tinypool, Piscina and luv
set -eu
cd "$(dirname "$0")"
target=${1:-test}

packages="make gcc libc6-dev cmake pkg-config luajit libluajit-5.1-dev lua5.1 liblua5.1-0-dev lua5.2 liblua5.2-dev lua5.3 liblua5.3-dev lua5.4 liblua5.4-dev lua-cjson lua-busted lua-luv lua-check luarocks valgrind parallel tmux time lua-cqueues clang"
case "$target" in
  bench|bench-quick) packages="$packages nodejs npm" ;;
esac

missing=""
for p in $packages; do
  if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" != "installed" ]; then
    missing="$missing $p"
  fi
done
# Node may come from outside Debian's packages: an npm on PATH is enough.
case "$missing" in *nodejs*|*npm*)
  if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    missing=$(echo "$missing" | sed 's/ nodejs//; s/ npm//')
  fi ;;
esac

if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "dev.sh: installing$missing" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "dev.sh: missing packages; run this, then again ./dev.sh $target:" >&2
    echo "  sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

# The test summary must be the last line printed, so no make around it.
if [ "$target" = test ]; then exec sh scripts/test.sh; fi
exec make --no-print-directory "$target"
