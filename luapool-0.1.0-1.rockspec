rockspec_format = "3.0"
package = "luapool"
version = "0.1.0-1"
-- The release archive is `git archive` of the tagged commit; `make rock`
-- builds it and packs it with this file into luapool-0.1.0-1.src.rock,
-- which installs with no network (`luarocks install ./luapool-0.1.0-1.src.rock`).
-- Only the file name counts there: LuaRocks takes the archive of that name
-- from inside the .src.rock. `luarocks make` builds the checkout instead.
source = {
  url = "luapool-0.1.0.tar.gz",
  dir = "luapool-0.1.0",
}
description = {
  summary = "A worker pool for Lua: run Lua functions in parallel on threads",
  detailed = [[
luapool keeps one isolated Lua state per worker thread and runs task files
(Lua scripts returning a function or a table of functions) on them. Its API
follows Node's Tinypool and Piscina name for name, with Task objects in
place of promises. Values cross between states through a C codec that keeps
cycles, shared references and functions with their upvalues.]],
  license = "MIT",
  labels = { "thread", "pool", "parallel", "worker" },
}
dependencies = {
  "lua >= 5.1, < 5.5",
}
-- Needs CMake (3.13 or newer) and a C11 compiler; warnings are not errors
-- here (LUAPOOL_WERROR stays off), unlike the project's own builds.
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LIBDIR)",
    LUALIB = "$(LUALIB)",
    LUA_LIBRARY_DIR = "$(LUA_LIBDIR)",
    LUA_DIR = "$(LUADIR)",
    LUAPOOL_INTERPRETER = "$(LUA)",
  },
  install = { bin = { luapool = "bin/luapool" } },
}
-- `luarocks test` runs busted (Debian's lua-busted, or the busted rock)
-- through spec/run.lua with the tree's own Lua, against the luapool that
-- `require` finds: eval "$(luarocks path)" first, with the same flags.
test = {
  type = "command",
  script = "spec/run.lua",
}
