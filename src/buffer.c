/* Growable byte buffer. */
#include <stdlib.h>
#include "buffer.h"

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
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
