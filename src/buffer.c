/* Growable byte buffer, and the references its bytes hold. */
#include <stdlib.h>
#include "buffer.h"
#include "shared.h"

struct lp_refs {
  size_t n, cap;
  lp_shared *o[];
};

int lp_buf_grow(lp_buf *b, size_t n) {
  size_t cap = b->cap ? b->cap : 64;
  char *p;
  if (n > (size_t)-1 / 2 - b->len) return -1;
  while (cap - b->len < n) cap *= 2;
  p = realloc(b->data, cap);
  if (!p) return -1;
  b->data = p;
  b->cap = cap;
  return 0;
}

void lp_buf_free(lp_buf *b) {
  lp_buf_drop_refs(b, 0);
  free(b->refs);
  b->refs = NULL;
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int lp_buf_hold(lp_buf *b, void *o) {
  lp_refs *r = b->refs;
  if (!r || r->n == r->cap) {
    size_t cap = r ? r->cap * 2 : 4;
    lp_refs *n = realloc(r, sizeof *n + cap * sizeof n->o[0]);
    if (!n) return -1;
    if (!r) n->n = 0;
    n->cap = cap;
    b->refs = r = n;
  }
  lp_shared_retain((lp_shared *)o);
  r->o[r->n++] = (lp_shared *)o;
  return 0;
}

int lp_buf_append(lp_buf *b, const lp_buf *src) {
  size_t i, len = b->len, held = lp_buf_nrefs(b), n = lp_buf_nrefs(src);
  if (lp_buf_put(b, src->data, src->len)) return -1;
  for (i = 0; i < n; i++) {
    if (lp_buf_hold(b, src->refs->o[i])) {
      b->len = len;
      lp_buf_drop_refs(b, held);
      return -1;
    }
  }
  return 0;
}

size_t lp_buf_nrefs(const lp_buf *b) {
  return b->refs ? b->refs->n : 0;
}

void lp_buf_drop_refs(lp_buf *b, size_t n) {
  lp_refs *r = b->refs;
  while (r && r->n > n) lp_shared_release(r->o[--r->n]);
}
