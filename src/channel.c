/* Channels (channel.h): a ring of encoded values under one mutex. */
#define _GNU_SOURCE  /* eventfd */
#include <stdlib.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include "channel.h"
#include "pool.h"  /* lp_cond_init, lp_cond_timedwait, lp_now_ns */

#define SLICE_MS 10   /* how often a wait asks whether to give up */
#define SPIN_MAX_NS 20000 /* a wait first spins up to this long: a handoff between */
#define SPIN_MIN_NS 500   /* threads running on two cores then costs no futex call */
#define FIRST_RING 8

struct lp_channel {
  lp_shared base;
  pthread_mutex_t lock;
  pthread_cond_t nonempty, nonfull;
  lp_buf *ring;            /* values, oldest at head */
  size_t head, size;       /* size: the ring's length, a power of two */
  atomic_size_t n;         /* written under lock; spinners read it without */
  size_t capacity;
  atomic_int closed;
  int npoppers, npushers;  /* waiting */
  int efd, armed;          /* pollfd, and whether it is readable */
  atomic_int spin_ns;      /* how long waits spin: doubled when a spin ends in
                           ** time, halved when not (both ends share one core) */
};

void lp_channel_destroy(lp_shared *o) {
  lp_channel *c = (lp_channel *)o;
  size_t i;
  for (i = 0; i < c->n; i++) lp_buf_free(&c->ring[(c->head + i) & (c->size - 1)]);
  free(c->ring);
  if (c->efd >= 0) close(c->efd);
  pthread_cond_destroy(&c->nonempty);
  pthread_cond_destroy(&c->nonfull);
  pthread_mutex_destroy(&c->lock);
  free(c);
}

lp_channel *lp_channel_new(size_t capacity) {
  lp_channel *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->size = FIRST_RING;
  if (!(c->ring = calloc(c->size, sizeof *c->ring))) {
    free(c);
    return NULL;
  }
  if (pthread_mutex_init(&c->lock, NULL)) goto no_mutex;
  if (lp_cond_init(&c->nonempty)) goto no_nonempty;
  if (lp_cond_init(&c->nonfull)) goto no_nonfull;
  c->base.type = &lp_channel_type;
  atomic_init(&c->base.refs, 1);
  c->capacity = capacity;
  c->efd = -1;
  atomic_init(&c->spin_ns, SPIN_MAX_NS);
  return c;
no_nonfull:
  pthread_cond_destroy(&c->nonempty);
no_nonempty:
  pthread_mutex_destroy(&c->lock);
no_mutex:
  free(c->ring);
  free(c);
  return NULL;
}

/* Lock held: the pollfd readable exactly while there is something to see. */
static void sync_fd(lp_channel *c) {
  int want = c->n > 0 || c->closed;
  uint64_t v = 1;
  if (c->efd < 0 || want == c->armed) return;
  if (want ? write(c->efd, &v, sizeof v) == sizeof v : read(c->efd, &v, sizeof v) == sizeof v)
    c->armed = want;
}

static int ring_grow(lp_channel *c) {
  size_t size = c->size * 2, i;
  lp_buf *r = calloc(size, sizeof *r);
  if (!r) return -1;
  for (i = 0; i < c->n; i++) r[i] = c->ring[(c->head + i) & (c->size - 1)];
  free(c->ring);
  c->ring = r;
  c->head = 0;
  c->size = size;
  return 0;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

/* Lock held: spins unlocked (no longer than the timeout) for ready() to
** hold, so that it may without anyone's futex call; learns how long. */
static void spin(lp_channel *c, int (*ready)(lp_channel *), double timeout_ms, uint64_t start) {
  int ns = atomic_load_explicit(&c->spin_ns, memory_order_relaxed), i, ok;
  uint64_t until = start + (timeout_ms * 1e6 < ns ? (uint64_t)(timeout_ms * 1e6) : (uint64_t)ns);
  pthread_mutex_unlock(&c->lock);
  do {
    for (i = 0; i < 64 && !ready(c); i++) cpu_relax();
  } while (!(ok = ready(c)) && lp_now_ns() < until);
  ns = ok ? (ns * 2 > SPIN_MAX_NS ? SPIN_MAX_NS : ns * 2) : (ns / 2 < SPIN_MIN_NS ? SPIN_MIN_NS : ns / 2);
  atomic_store_explicit(&c->spin_ns, ns, memory_order_relaxed);
  pthread_mutex_lock(&c->lock);
}

/* Lock held: waits on cond one slice at a time until ready() holds, the
** deadline passes, or the check says stop. */
static int wait_for(lp_channel *c, pthread_cond_t *cond, int *nwaiting,
                    int (*ready)(lp_channel *), double timeout_ms, const lp_wait_check *chk) {
  uint64_t start;
  if (ready(c)) return LP_CH_OK;
  start = lp_now_ns();
  if (timeout_ms > 0) spin(c, ready, timeout_ms, start);
  while (!ready(c)) {
    double left = timeout_ms >= LP_FOREVER_MS ? SLICE_MS
                  : timeout_ms - (double)(lp_now_ns() - start) / 1e6;
    if (left <= 0) return LP_CH_TIMEOUT;
    if (chk && chk->stop(chk->ud)) return LP_CH_STOPPED;
    (*nwaiting)++;
    lp_cond_timedwait(cond, &c->lock, left < SLICE_MS ? left : SLICE_MS);
    (*nwaiting)--;
  }
  return LP_CH_OK;
}

static int can_push(lp_channel *c) {
  return atomic_load(&c->closed) || atomic_load(&c->n) < c->capacity;
}

static int can_pop(lp_channel *c) {
  return atomic_load(&c->closed) || atomic_load(&c->n) > 0;
}

int lp_channel_push(lp_channel *c, lp_buf *v, double timeout_ms, const lp_wait_check *chk) {
  int r;
  pthread_mutex_lock(&c->lock);
  r = wait_for(c, &c->nonfull, &c->npushers, can_push, timeout_ms, chk);
  if (r == LP_CH_OK && c->closed) r = LP_CH_CLOSED;
  if (r == LP_CH_OK && c->n == c->size && ring_grow(c)) r = LP_CH_NOMEM;
  if (r == LP_CH_OK) {
    c->ring[(c->head + atomic_fetch_add(&c->n, 1)) & (c->size - 1)] = *v;
    memset(v, 0, sizeof *v);
    if (c->npoppers) pthread_cond_signal(&c->nonempty);
    sync_fd(c);
  }
  pthread_mutex_unlock(&c->lock);
  return r;
}

int lp_channel_pop(lp_channel *c, lp_buf *v, double timeout_ms, const lp_wait_check *chk) {
  int r;
  pthread_mutex_lock(&c->lock);
  r = wait_for(c, &c->nonempty, &c->npoppers, can_pop, timeout_ms, chk);
  if (r == LP_CH_OK && c->n == 0) r = LP_CH_CLOSED;
  if (r == LP_CH_OK) {
    *v = c->ring[c->head];
    memset(&c->ring[c->head], 0, sizeof *v);
    c->head = (c->head + 1) & (c->size - 1);
    atomic_fetch_sub(&c->n, 1);
    if (c->npushers) pthread_cond_signal(&c->nonfull);
    sync_fd(c);
  }
  pthread_mutex_unlock(&c->lock);
  return r;
}

void lp_channel_close(lp_channel *c) {
  pthread_mutex_lock(&c->lock);
  c->closed = 1;
  pthread_cond_broadcast(&c->nonempty);
  pthread_cond_broadcast(&c->nonfull);
  sync_fd(c);
  pthread_mutex_unlock(&c->lock);
}

size_t lp_channel_count(lp_channel *c) { return atomic_load(&c->n); }

size_t lp_channel_capacity(const lp_channel *c) { return c->capacity; }

int lp_channel_closed(lp_channel *c) { return atomic_load(&c->closed); }

int lp_channel_pollfd(lp_channel *c) {
  int fd;
  pthread_mutex_lock(&c->lock);
  if (c->efd < 0 && (c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) >= 0) {
    c->armed = 0;
    sync_fd(c);
  }
  fd = c->efd;
  pthread_mutex_unlock(&c->lock);
  return fd;
}
