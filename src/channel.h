/* Channels: FIFOs of encoded values shared by every state of the process
** (a shared object, shared.h). Any thread may push and pop; a wait runs in
** short slices and asks its caller, between them, whether to give up, so
** that a worker blocked on a channel can still be interrupted. */
#ifndef LUAPOOL_CHANNEL_H
#define LUAPOOL_CHANNEL_H

#include "buffer.h"
#include "shared.h"

typedef struct lp_channel lp_channel;

extern const lp_shared_type lp_channel_type;  /* the bindings' (luapool_shared.c) */
void lp_channel_destroy(lp_shared *o);

/* What a push or pop came to. */
enum { LP_CH_OK, LP_CH_TIMEOUT, LP_CH_CLOSED, LP_CH_STOPPED, LP_CH_NOMEM };

/* Asked between slices of a wait: nonzero stops it (LP_CH_STOPPED). */
typedef struct lp_wait_check {
  int (*stop)(void *ud);
  void *ud;
} lp_wait_check;

/* A channel holding at most capacity values (>= 1), with one reference
** (the caller's); NULL when memory or the system refuses. */
lp_channel *lp_channel_new(size_t capacity);
/* Appends *v, waiting up to timeout_ms (LP_FOREVER_MS: for ever) while the
** channel is full. On LP_CH_OK the channel has taken *v (left empty). */
int lp_channel_push(lp_channel *c, lp_buf *v, double timeout_ms, const lp_wait_check *chk);
/* Takes the oldest value into *v (empty before), waiting up to timeout_ms
** while the channel is empty and open; LP_CH_CLOSED: closed and empty. */
int lp_channel_pop(lp_channel *c, lp_buf *v, double timeout_ms, const lp_wait_check *chk);
/* No more pushes; pops take what is left. Wakes every waiter. */
void lp_channel_close(lp_channel *c);
size_t lp_channel_count(lp_channel *c);
size_t lp_channel_capacity(const lp_channel *c);
int lp_channel_closed(lp_channel *c);
/* An fd readable while the channel holds values or is closed, made on the
** first call; -1 when it cannot be made. */
int lp_channel_pollfd(lp_channel *c);

#endif
