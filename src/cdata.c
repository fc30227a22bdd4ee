/* LuaJIT cdata by value (cdata.h). */
#include <stdio.h>
#include <string.h>
#include "cdata.h"
#include "state.h"  /* LP_CODE_KEY */

#define HELPER_KEY "luapool.cdata"

/* Returns {encode, decode}. Whether a type holds pointers is read from
** LuaJIT's own type table through ffi.typeinfo (LuaJIT 2.1): each entry's
** info has its kind in the top 4 bits and the type it refers to (element,
** field type, typedef target) in the low 16. Without typeinfo, structs and
** unions are refused, as they cannot be checked. */
static const char helper[] =
  "local ffi, bit = require 'ffi', require 'bit'\n"
  "local typeinfo, band, rshift = ffi.typeinfo, bit.band, bit.rshift\n"
  "local NUM, STRUCT, ARRAY, ENUM, TYPEDEF, ATTRIB, FIELD, BITFIELD = 0, 1, 3, 5, 7, 8, 9, 10\n"
  "local function plain(id, depth)\n"
  "  local t = depth < 64 and typeinfo(id)\n"
  "  if not t then return false end\n"
  "  local kind, ref = rshift(t.info, 28), band(t.info, 0xffff)\n"
  "  if kind == NUM or kind == ENUM or kind == BITFIELD then return true end\n"
  "  if kind == ARRAY or kind == TYPEDEF or kind == ATTRIB or kind == FIELD then\n"
  "    return plain(ref, depth + 1)\n"
  "  end\n"
  "  if kind ~= STRUCT then return false end\n"
  "  local f = t.sib\n"
  "  while f do\n"
  "    local ft = typeinfo(f)\n"
  "    local fk = rshift(ft.info, 28)\n"
  "    if fk ~= ATTRIB and not ((fk == FIELD or fk == BITFIELD) and plain(f, depth + 1)) then\n"
  "      return false\n"
  "    end\n"
  "    f = ft.sib\n"
  "  end\n"
  "  return true\n"
  "end\n"
  "local function aggregate(name) return name:find('struct ') or name:find('union ') or name:find('%[') end\n"
  "local function encode(x)\n"
  "  local ct = ffi.typeof(x)\n"
  "  local name = tostring(ct):match('^ctype<(.*)>$')\n"
  "  if name:find('[*&(]') then\n"
  "    return nil, ': a cdata<' .. name .. '> cannot cross: it is or holds a pointer, meaningless in another Lua state'\n"
  "  end\n"
  "  if name:find('struct %d') or name:find('union %d') or name:find('enum %d') then\n"
  "    return nil, ': a cdata<' .. name .. '> cannot cross: its C type has no name to find it by (declare it as struct NAME {...})'\n"
  "  end\n"
  "  if name:find('struct ') or name:find('union ') then\n"
  "    if not typeinfo then return nil, ': a cdata<' .. name .. '> cannot cross: this LuaJIT cannot check a struct for pointers (no ffi.typeinfo)' end\n"
  "    if not plain(tonumber(ct), 0) then\n"
  "      return nil, ': a cdata<' .. name .. '> cannot cross: it holds a pointer or a function, meaningless in another Lua state'\n"
  "    end\n"
  "  end\n"
  "  local size = ffi.sizeof(x)\n"
  "  if not size or (not name:find('%[%?%]') and not ffi.sizeof(ct)) then\n"
  "    return nil, ': a cdata<' .. name .. '> cannot cross: its size is not fixed'\n"
  "  end\n"
  "  if aggregate(name) then return name, ffi.string(ffi.cast('const char *', x), size) end\n"
  "  return name, ffi.string(ffi.new(ffi.typeof('$[1]', ct), x), size)\n"
  "end\n"
  "local function decode(name, bytes)\n"
  "  local ok, ct = pcall(ffi.typeof, name)\n"
  "  if not ok then\n"
  "    error('cdata<' .. name .. '> cannot be made here: its C type is not declared in this Lua state (ffi.cdef it here too)', 0)\n"
  "  end\n"
  "  local n, obj = #bytes\n"
  "  if name:find('%[%?%]') then\n"
  "    local e = ffi.sizeof(ct, 1) - ffi.sizeof(ct, 0)\n"
  "    obj = ffi.new(ct, e > 0 and math.floor(n / e) or 0)\n"
  "  elseif ffi.sizeof(ct) ~= n then\n"
  "    error(('cdata<%s> cannot be made here: the type has %s bytes here, %d where it was made'):format(name, tostring(ffi.sizeof(ct)), n), 0)\n"
  "  elseif aggregate(name) then\n"
  "    obj = ffi.new(ct)\n"
  "  else\n"
  "    local box = ffi.new(ffi.typeof('$[1]', ct))\n"
  "    ffi.copy(ffi.cast('char *', box), bytes, n)\n"
  "    return ffi.new(ct, box[0])\n"
  "  end\n"
  "  if ffi.sizeof(obj) ~= n then error('cdata<' .. name .. '> cannot be made here: its size differs', 0) end\n"
  "  ffi.copy(ffi.cast('char *', obj), bytes, n)\n"
  "  return obj\n"
  "end\n"
  "return {encode, decode}\n";

int lp_cdata_is(lua_State *L, int idx) {
  return strcmp(luaL_typename(L, idx), "cdata") == 0;
}

/* Pushes helper function i (1 encode, 2 decode), loading it the first time. */
static void push_helper(lua_State *L, int i) {
  lua_getfield(L, LUA_REGISTRYINDEX, HELPER_KEY);
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, helper, sizeof helper - 1, "=luapool.cdata") != LUA_OK)
      lua_error(L);
    lua_call(L, 0, 1);
    lua_pushvalue(L, -1);
    lua_setfield(L, LUA_REGISTRYINDEX, HELPER_KEY);
  }
  lua_rawgeti(L, -1, i);
  lua_remove(L, -2);
}

/* Protected: (value) -> name, bytes | nil, why */
static int encode(lua_State *L) {
  push_helper(L, 1);
  lua_insert(L, 1);
  lua_call(L, 1, 2);
  return 2;
}

int lp_cdata_encode(lua_State *L, int idx, char *err, size_t errlen) {
  if (!lua_checkstack(L, 6)) {
    snprintf(err, errlen, ": nested too deep");
    return -1;
  }
  lua_pushcfunction(L, encode);
  lua_pushvalue(L, idx);
  if (lua_pcall(L, 1, 2, 0) != LUA_OK) {
    snprintf(err, errlen, ": a cdata cannot cross: %s",
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "(no message)");
    lua_pop(L, 1);
    return -1;
  }
  if (lua_isnil(L, -2)) {
    snprintf(err, errlen, "%s", lua_isstring(L, -1) ? lua_tostring(L, -1) : ": cannot cross");
    lua_pop(L, 2);
    return -1;
  }
  return 0;
}

void lp_cdata_decode(lua_State *L, const char *name, size_t nn, const char *bytes,
                     size_t nb) {
  luaL_checkstack(L, 6, "luapool: value nested too deep");
  push_helper(L, 2);
  lua_pushlstring(L, name, nn);
  lua_pushlstring(L, bytes, nb);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    lua_pushliteral(L, "serialize");
    lua_setfield(L, LUA_REGISTRYINDEX, LP_CODE_KEY);
    lua_error(L);
  }
}
