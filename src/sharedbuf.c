/* Shared byte buffers (sharedbuf.h). */
#include <stdlib.h>
#include "sharedbuf.h"

lp_sharedbuf *lp_sharedbuf_new(size_t n) {
  lp_sharedbuf *b = malloc(sizeof *b);
  if (!b) return NULL;
  /* calloc: large blocks come zeroed from the system, untouched until used */
  if (!(b->data = calloc(n ? n : 1, 1))) {
    free(b);
    return NULL;
  }
  b->base.type = &lp_sharedbuf_type;
  atomic_init(&b->base.refs, 1);
  b->len = n;
  return b;
}

void lp_sharedbuf_destroy(lp_shared *o) {
  lp_sharedbuf *b = (lp_sharedbuf *)o;
  free(b->data);
  free(b);
}
