/* The allocator of worker states: it meters each state's heap, so that
** pool.threads[i].heapBytes is exact, and can cap it (resourceLimits). */
#ifndef LUAPOOL_HEAP_H
#define LUAPOOL_HEAP_H

#include <stddef.h>

typedef struct lp_heap {
  size_t used;
  size_t limit;   /* 0: none */
  int enforce;    /* the cap holds only while a task's own code runs */
  int refused;    /* an allocation was refused: the task fails even if it
                  ** caught the error */
} lp_heap;

/* A lua_Alloc; ud is the state's lp_heap. */
void *lp_heap_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

#endif
