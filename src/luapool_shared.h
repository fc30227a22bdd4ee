/* Lua bindings of the shared objects: luapool.channel, luapool.buffer. */
#ifndef LUAPOOL_SHARED_BINDINGS_H
#define LUAPOOL_SHARED_BINDINGS_H

#include "compat.h"

/* Into the table on top (the module luapool.core): channel, buffer and
** error_metatable (which luapool.lua calls with its Error metatable). */
void lp_shared_open(lua_State *L);
/* Into the table on top (a thread worker's `luapool`): channel, buffer. */
void lp_shared_view(lua_State *L);

#endif
