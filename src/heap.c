/* Metering allocator for worker states. */
#include <stdlib.h>
#include "heap.h"

void *lp_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lp_heap *h = (lp_heap *)ud;
  size_t old = ptr ? osize : 0;  /* without ptr, osize tells a type (5.4) */
  void *p;
  if (nsize == 0) {
    free(ptr);
    h->used -= old;
    return NULL;
  }
  if (nsize > old && h->enforce && h->limit && h->used + (nsize - old) > h->limit) {
    h->refused = 1;
    return NULL;  /* Lua raises "not enough memory" */
  }
  p = realloc(ptr, nsize);
  if (p) h->used = h->used - old + nsize;
  return p;
}
