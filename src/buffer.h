/* A growable byte buffer; the codec writes into it, tasks carry it. Bytes
** that name shared objects (shared.h) hold a reference to each, in refs. */
#ifndef LUAPOOL_BUFFER_H
#define LUAPOOL_BUFFER_H

#include <stddef.h>
#include <string.h>

typedef struct lp_refs lp_refs;

typedef struct lp_buf {
  char *data;
  size_t len, cap;
  lp_refs *refs;  /* shared objects the bytes name; NULL: none */
} lp_buf;

/* Makes room for n more bytes; returns 0, or -1 when memory is exhausted. */
int lp_buf_grow(lp_buf *b, size_t n);
void lp_buf_free(lp_buf *b);  /* and drops its references */
/* Adds a reference to shared object o (an lp_shared *); 0, or -1 when
** memory is exhausted. */
int lp_buf_hold(lp_buf *b, void *o);
/* Appends src's bytes to b, with a reference of b's own to each object
** src's name; 0, or -1 out of memory (b then unchanged). */
int lp_buf_append(lp_buf *b, const lp_buf *src);
/* How many references b holds; drops those past the first n. */
size_t lp_buf_nrefs(const lp_buf *b);
void lp_buf_drop_refs(lp_buf *b, size_t n);

static inline int lp_buf_reserve(lp_buf *b, size_t n) {
  return (b->cap - b->len >= n) ? 0 : lp_buf_grow(b, n);
}

static inline int lp_buf_put(lp_buf *b, const void *p, size_t n) {
  if (lp_buf_reserve(b, n)) return -1;
  if (n) memcpy(b->data + b->len, p, n);  /* an empty b may have no data */
  b->len += n;
  return 0;
}

#endif
