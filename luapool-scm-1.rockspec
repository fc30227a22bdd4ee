rockspec_format = "3.0"
package = "luapool"
version = "scm-1"
source = {
  url = "git+file:///luapool",  -- built from a checkout with `luarocks make`
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
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUA_LIBDIR = "$(LIBDIR)",
    LUA_DIR = "$(LUADIR)",
  },
  install = { bin = { luapool = "bin/luapool" } },
}
-- `luarocks test` runs busted (Debian's lua-busted, or the busted rock)
-- through spec/run.lua with the tree's own Lua.
test = {
  type = "command",
  script = "spec/run.lua",
}
