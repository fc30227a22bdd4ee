/* Lua 5.1 / LuaJIT / 5.2-5.4 differences, in one place. */
#ifndef LUAPOOL_COMPAT_H
#define LUAPOOL_COMPAT_H

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef LUA_OK
#define LUA_OK 0
#endif

#if LUA_VERSION_NUM >= 502
#define lp_rawlen(L, i) lua_rawlen(L, i)
#define lp_pushglobals(L) lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS)
#define lp_load(L, r, d, name) lua_load(L, r, d, name, "bt")
#else
#define lp_rawlen(L, i) lua_objlen(L, i)
#define lp_pushglobals(L) lua_pushvalue(L, LUA_GLOBALSINDEX)
#define lp_load(L, r, d, name) lua_load(L, r, d, name)
#ifndef luaL_newlib  /* PUC 5.1; LuaJIT 2.1 has both */
#define luaL_setfuncs(L, l, n) lp_setfuncs(L, l, n)
#define luaL_newlib(L, l) (lua_newtable(L), luaL_setfuncs(L, l, 0))
static inline void lp_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  for (; l->name; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
#endif
#endif

#if LUA_VERSION_NUM >= 503
#define LP_HAS_INTEGERS 1
#define lp_dump(L, w, d) lua_dump(L, w, d, 0)
#else
#define LP_HAS_INTEGERS 0
#define lp_dump(L, w, d) lua_dump(L, w, d)
#endif

#endif
