/* LuaJIT cdata by value: a cdata of a plain C type (numbers, and arrays and
** structs of them) crosses as its type's name and its bytes, and is made
** again with ffi.typeof on the other side. The checks and copies are Lua
** code over the ffi library, loaded into a state the first time it meets
** a cdata. Elsewhere (PUC Lua) there is no cdata, and these do nothing. */
#ifndef LUAPOOL_CDATA_H
#define LUAPOOL_CDATA_H

#include <stddef.h>
#include "compat.h"

/* Whether the value at idx is a cdata. */
int lp_cdata_is(lua_State *L, int idx);
/* Pushes the C type name and the bytes of the cdata at idx; 0, or -1 with
** why it cannot cross in err (", a pointer ..."), pushing nothing. */
int lp_cdata_encode(lua_State *L, int idx, char *err, size_t errlen);
/* Pushes the cdata of type name made from bytes; raises when this state
** cannot make it (the type is not declared here, or differs), and then the
** error's code is serialize. */
void lp_cdata_decode(lua_State *L, const char *name, size_t nn, const char *bytes,
                     size_t nb);

#endif
