/* Shared objects in a Lua state: one userdata per object and state, found
** again through a weak table, so that equality and table keys behave. */
#include "shared.h"

#define CACHE_KEY "luapool.shared"

typedef struct box { lp_shared *o; } box;

static int box_gc(lua_State *L) {
  box *b = (box *)lua_touserdata(L, 1);
  if (b && b->o) {
    lp_shared_release(b->o);
    b->o = NULL;
  }
  return 0;
}

/* Pushes the table of this state's userdata, by object address; weak values. */
static void push_cache(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, CACHE_KEY);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushliteral(L, "v");
  lua_setfield(L, -2, "__mode");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, CACHE_KEY);
}

void lp_shared_push(lua_State *L, lp_shared *o) {
  box *b;
  luaL_checkstack(L, 4, "luapool: out of stack");
  push_cache(L);
  lua_pushlightuserdata(L, o);
  lua_rawget(L, -2);
  if (!lua_isnil(L, -1)) {
    lua_remove(L, -2);
    return;
  }
  lua_pop(L, 1);
  b = (box *)lua_newuserdata(L, sizeof *b);
  b->o = NULL;
  o->type->metatable(L);
  lua_setmetatable(L, -2);
  b->o = o;  /* set only once the metatable's __gc will drop it */
  lp_shared_retain(o);
  lua_pushlightuserdata(L, o);
  lua_pushvalue(L, -2);
  lua_rawset(L, -4);
  lua_remove(L, -2);
}

lp_shared *lp_shared_test(lua_State *L, int idx) {
  lp_shared *o = NULL;
  if (lua_type(L, idx) != LUA_TUSERDATA || !lua_getmetatable(L, idx)) return NULL;
  lua_getfield(L, -1, LP_SHARED_FIELD);
  if (lua_touserdata(L, -1)) {
    box *b = (box *)lua_touserdata(L, idx);
    if (b->o && b->o->type == (const lp_shared_type *)lua_touserdata(L, -1)) o = b->o;
  }
  lua_pop(L, 2);
  return o;
}

void lp_shared_init_metatable(lua_State *L, const lp_shared_type *t) {
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushlightuserdata(L, (void *)t);
  lua_setfield(L, -2, LP_SHARED_FIELD);
}

void lp_shared_new_metatable(lua_State *L, const char *name, const lp_shared_type *t,
                             const luaL_Reg *methods, lua_CFunction len,
                             lua_CFunction tostring) {
  if (!luaL_newmetatable(L, name)) return;
  lp_shared_init_metatable(L, t);
  lua_pushcfunction(L, len);
  lua_setfield(L, -2, "__len");
  lua_pushcfunction(L, tostring);
  lua_setfield(L, -2, "__tostring");
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
}
