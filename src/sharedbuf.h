/* Shared byte buffers: a fixed-size, zero-filled block of memory that every
** state of the process may hold (a shared object, shared.h). Nothing orders
** concurrent writers: they coordinate themselves (channels, tasks). */
#ifndef LUAPOOL_SHAREDBUF_H
#define LUAPOOL_SHAREDBUF_H

#include <stddef.h>
#include "shared.h"

typedef struct lp_sharedbuf {
  lp_shared base;
  size_t len;
  unsigned char *data;
} lp_sharedbuf;

extern const lp_shared_type lp_sharedbuf_type;  /* the bindings' (luapool_shared.c) */

/* n zero bytes, with one reference (the caller's); NULL without memory. */
lp_sharedbuf *lp_sharedbuf_new(size_t n);
void lp_sharedbuf_destroy(lp_shared *o);

#endif
