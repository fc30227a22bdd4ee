/* A worker's thread: it takes tasks from the pool (its slot's mailbox
** first, then the queue), spins briefly and then sleeps when there are none,
** and hands each task to its runtime (rt_thread.c, rt_process.c). */
#include <stdlib.h>
#include <stdio.h>
#include "pool.h"

#define WORKER_SPIN_NS 50000

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __asm__ __volatile__("pause")
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* ---- the thread -------------------------------------------------------- */

/* The next task for w: those sent ahead to its child first, then its
** slot's mailbox, then the queue. Lock held. */
static lp_task *take(lp_pool *p, lp_worker *w) {
  lp_slot *sl = &p->slots[w->slot];
  lp_task *t;
  if ((t = w->sent)) {  /* already in its child's pipe */
    if (!(w->sent = t->next)) w->sent_tail = NULL;
    w->nsent--;
  } else if ((t = sl->mine)) {
    if (!(sl->mine = t->next)) sl->mine_tail = NULL;
    atomic_fetch_sub(&sl->nmine, 1);
  } else if ((t = p->head)) {
    lp_pool_unlink_queued(p, t);
  } else {
    return NULL;
  }
  t->next = t->prev = NULL;
  atomic_store(&t->state, LP_TASK_RUNNING);
  w->task = t;
  return t;
}

static int has_work(lp_pool *p, lp_worker *w) {
  return atomic_load_explicit(&p->queued, memory_order_relaxed) ||
         atomic_load_explicit(&p->slots[w->slot].nmine, memory_order_relaxed) ||
         atomic_load_explicit(&p->stop, memory_order_relaxed);
}

/* Spins until work may be there, or the spin budget runs out, or the
** machine has no core to spare for spinning (spin.c). */
static void spin(lp_pool *p, lp_worker *w) {
  uint64_t start = lp_now_ns();
  unsigned i = 0;
  while (!has_work(p, w)) {
    cpu_relax();
    if ((++i & 63) == 0 && (lp_now_ns() - start > WORKER_SPIN_NS || !lp_spin_allowed(p)))
      return;
  }
}

/* A task of w ran for ns: it joins the decaying mean of w's task times. */
void lp_worker_timed(lp_worker *w, uint64_t ns) {
  if (ns > (uint64_t)1e12) ns = (uint64_t)1e12;
  w->task_ns += ((int64_t)ns - w->task_ns) / 8;
}

void lp_worker_post(lp_worker *w, int kind, const char *text) {
  lp_pool_post_event(w->pool, kind, w->slot + 1, text);
}

/* Opens (or renews) what runs w's tasks, loading the task file: timed by
** the main thread against loadTimeout (lp_pool_check_loads). */
static int load(lp_worker *w, int (*open)(lp_worker *, char *, size_t), char *err, size_t n) {
  int r;
  atomic_store(&w->loading_since, lp_now_ns());
  atomic_fetch_add(&w->pool->nloading, 1);
  r = open(w, err, n);
  atomic_fetch_sub(&w->pool->nloading, 1);
  atomic_store(&w->loading_since, 0);
  return r;
}

/* Sleeps on the worker's own semaphore, the lock released; returns 1 when
** an idle timeout says this worker should end. Lock held. A semaphore, not
** a condition on the pool's lock: glibc takes a mutex back after a wait as
** contended, so that the next unlock of the pool's lock made a system call
** (one a wake-up) that nobody waited for. A post that comes after the
** worker stopped waiting (a timeout, a signal) wakes its next sleep at once:
** spurious, and harmless. */
static int sleep_until_work(lp_pool *p, lp_worker *w) {
  int timed = p->nlive > p->cfg.min_threads, r;
  w->sleeping = 1;
  p->sleepers[p->nsleepers++] = w;
  atomic_fetch_sub_explicit(&p->nawake, 1, memory_order_relaxed);
  pthread_mutex_unlock(&p->lock);
  r = lp_sem_wait(&w->wake, timed ? p->cfg.idle_timeout_ms : LP_FOREVER_MS);
  pthread_mutex_lock(&p->lock);
  atomic_fetch_add_explicit(&p->nawake, 1, memory_order_relaxed);
  if (w->sleeping) lp_pool_sleeper_remove(p, w);  /* a timeout, or spurious */
  return timed && r == 1 && !p->head && !p->slots[w->slot].mine &&
         p->nlive > p->cfg.min_threads;
}

/* Runs t; returns 1 when this worker should end after it. Lock held on
** entry and on return, unless the worker was detached meanwhile: then it
** has posted t and freed itself, and returns -1. */
static int serve(lp_pool *p, lp_worker *w, lp_task *t) {
  size_t queued = atomic_load_explicit(&p->queued, memory_order_relaxed);
  int stopped, placed, alone;
  p->idle--;
  alone = !queued && p->nlive - p->idle == 1;
  pthread_mutex_unlock(&p->lock);
  if ((placed = lp_place_busy(p, w, queued, alone)) != w->placed) lp_place_move(w, placed);
  atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
  t->t_start = lp_now_ns();
  t->failed = 0;
  t->msg.worker_id = w->slot + 1;
  t->msg.untrusted = 0;  /* rt_process sets it */
  stopped = w->rt->run(w, t);
  t->t_end = lp_now_ns();
  if (w->rt == &lp_rt_thread) lp_worker_timed(w, t->t_end - t->t_start);
  if (stopped != LP_UNSENT) atomic_fetch_add_explicit(&w->ntasks, 1, memory_order_relaxed);
  atomic_store_explicit(&w->busy, 0, memory_order_relaxed);
  pthread_mutex_lock(&p->lock);
  w->task = NULL;
  if (stopped == LP_UNSENT && atomic_load(&w->cancel) != t->id && !atomic_load(&p->stop)) {
    p->idle++;
    lp_pool_requeue(p, t);  /* for another worker; this one ends */
    return 1;
  }
  {  /* a stop that came as the task ended; one for a task sent ahead stays */
    unsigned id = t->id;
    atomic_compare_exchange_strong(&w->cancel, &id, 0);
  }
  atomic_store(&t->state, LP_TASK_DONE);
  if (w->detached) {  /* the pool gave up on us while we ran */
    atomic_fetch_sub_explicit(&p->nawake, 1, memory_order_relaxed);
    lp_pool_post_task(p, t);
    pthread_mutex_unlock(&p->lock);
    w->rt->close(w);
    lp_worker_free(w);
    lp_pool_release(p);
    return -1;
  }
  p->idle++;  /* before the result is seen: its sender may submit again */
  lp_pool_post_task(p, t);
  if (stopped) {  /* its state ran its last task: those sent ahead never start */
    lp_pool_requeue_sent(p, w);
    return 1;
  }
  if (w->retire) return 1;  /* after those sent ahead */
  if (p->cfg.recycle_heap && atomic_load(&w->heap_bytes) > p->cfg.recycle_heap) return 1;
  if (p->cfg.isolate && w->rt->renew) {  /* the next task's fresh state, made while idle */
    char err[256];
    int failed;
    pthread_mutex_unlock(&p->lock);
    if ((failed = load(w, w->rt->renew, err, sizeof err))) lp_worker_post(w, LP_MSG_ERROR, err);
    pthread_mutex_lock(&p->lock);
    if (failed) return 1;
  }
  return 0;
}

void *lp_worker_main(void *arg) {
  lp_worker *w = (lp_worker *)arg;
  lp_pool *p = w->pool;
  char err[256];
  uint64_t idle_since;
  int placed;
  w->task_ns = 2 * LP_SHORT_TASK_NS;  /* nothing is short until proven so */
  if (load(w, w->rt->open, err, sizeof err) == 0) {
    w->ready = 1;  /* START says what was wrong with the task file, if anything */
    lp_worker_post(w, LP_MSG_START, w->st.load_error[0] ? w->st.load_error : NULL);
  } else {
    lp_worker_post(w, LP_MSG_ERROR, err);
  }
  lp_spinner_init(&w->spinner);
  lp_place_init(w);
  atomic_fetch_add_explicit(&p->nawake, 1, memory_order_relaxed);
  pthread_mutex_lock(&p->lock);
  while (w->ready && !w->detached && !atomic_load(&p->stop) && (w->sent || !w->retire)) {
    lp_task *t = take(p, w);
    if (t) {
      int r = serve(p, w, t);
      if (r < 0) return NULL;
      if (r || w->draining) {  /* those sent ahead are run first */
        if (!w->sent) break;
        w->draining = 1;
      }
      continue;
    }
    idle_since = lp_now_ns();
    if ((placed = lp_place_wanted(p, w)) != w->placed) {
      pthread_mutex_unlock(&p->lock);
      lp_place_move(w, placed);
      pthread_mutex_lock(&p->lock);
      continue;  /* a task may have come meanwhile */
    }
    if (lp_spin_should(p, &w->spinner)) {
      p->nspinning++;
      pthread_mutex_unlock(&p->lock);
      spin(p, w);
      pthread_mutex_lock(&p->lock);
      p->nspinning--;
      if (has_work(p, w) || w->retire) {
        lp_spin_learn(&w->spinner, lp_now_ns() - idle_since, WORKER_SPIN_NS);
        continue;
      }
    }
    if (sleep_until_work(p, w)) break;
    lp_spin_learn(&w->spinner, lp_now_ns() - idle_since, WORKER_SPIN_NS);
  }
  atomic_fetch_sub_explicit(&p->nawake, 1, memory_order_relaxed);
  if (!w->leaving) {
    w->leaving = 1;
    p->idle--;
    p->nlive--;
    lp_pool_requeue_sent(p, w);  /* the pool stops: to be freed with the queue */
    lp_pool_requeue_mailbox(p, w->slot);  /* runAll tasks it will not run */
  }
  pthread_mutex_unlock(&p->lock);
  w->rt->close(w);
  pthread_mutex_lock(&p->lock);
  if (w->detached) {  /* given up on while it opened or closed its state */
    pthread_mutex_unlock(&p->lock);
    lp_worker_free(w);
    lp_pool_release(p);
    return NULL;
  }
  w->exited = 1;
  lp_pool_post(p, &w->exit_msg);  /* main may free w from here on */
  pthread_mutex_unlock(&p->lock);
  return NULL;
}
