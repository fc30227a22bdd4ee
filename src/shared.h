/* Shared objects: C objects (channels, byte buffers) that every Lua state
** of the process may hold at once. Each is refcounted: a Lua userdata holds
** one reference, and so do encoded bytes that name it (lp_buf's refs), so
** an object lives while any state or any value in flight holds it. */
#ifndef LUAPOOL_SHARED_H
#define LUAPOOL_SHARED_H

#include <stdatomic.h>
#include "compat.h"

typedef struct lp_shared lp_shared;

/* What a kind of shared object does; one static instance per kind. */
typedef struct lp_shared_type {
  const char *name;                 /* "channel", "buffer": for messages */
  void (*destroy)(lp_shared *o);    /* the last reference went */
  void (*metatable)(lua_State *L);  /* pushes the kind's metatable, made once a state */
} lp_shared_type;

struct lp_shared {
  const lp_shared_type *type;
  atomic_long refs;
};

static inline void lp_shared_retain(lp_shared *o) {
  atomic_fetch_add_explicit(&o->refs, 1, memory_order_relaxed);
}

static inline void lp_shared_release(lp_shared *o) {
  if (atomic_fetch_sub_explicit(&o->refs, 1, memory_order_acq_rel) == 1) o->type->destroy(o);
}

/* The field of a kind's metatable that marks its userdata as shared. */
#define LP_SHARED_FIELD "__luapool_shared"

/* Pushes the userdata of o in L: the one L has already, if any, so that an
** object decoded twice is the same value; else a new one that takes a
** reference. Raises on memory errors. */
void lp_shared_push(lua_State *L, lp_shared *o);
/* The shared object of the userdata at idx, or NULL when it is none. */
lp_shared *lp_shared_test(lua_State *L, int idx);
/* Sets the __gc and marker fields of a kind's new metatable (on top). */
void lp_shared_init_metatable(lua_State *L, const lp_shared_type *t);
/* Pushes the metatable `name` of a kind, made the first time with its
** methods as __index, __len and __tostring. */
void lp_shared_new_metatable(lua_State *L, const char *name, const lp_shared_type *t,
                             const luaL_Reg *methods, lua_CFunction len,
                             lua_CFunction tostring);

#endif
