/* The pool and its scheduler.
**
** One mutex guards the task queue, the workers' mailboxes and the count of
** idle workers. A submit wakes at most one sleeping worker, and only when no
** spinning worker will take the task; workers spin briefly before they sleep
** on a condition variable of their own, so a busy pool passes tasks without
** system calls. Results come back on a lock-free stack that the main thread
** empties whole: one wake-up per batch, not per task. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include "interrupt.h"
#include "pool.h"

#define MAIN_SPIN_NS 50000
#define FREE_TASKS_MAX 256
#define FREE_BUF_MAX 65536

uint64_t lp_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void deadline_after(struct timespec *ts, double ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6);
  if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

int lp_cond_init(pthread_cond_t *c) {
  pthread_condattr_t a;
  int r;
  if (pthread_condattr_init(&a)) return -1;
  r = pthread_condattr_setclock(&a, CLOCK_MONOTONIC) || pthread_cond_init(c, &a);
  pthread_condattr_destroy(&a);
  return r ? -1 : 0;
}

int lp_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, double ms) {
  struct timespec ts;
  deadline_after(&ts, ms);
  return pthread_cond_timedwait(c, m, &ts);
}

/* ---- tasks ------------------------------------------------------------- */

lp_task *lp_task_new(lp_pool *p) {
  lp_task *t = p->free_tasks;
  if (t) {
    p->free_tasks = (lp_task *)t->msg.next;
    p->nfree--;
  } else if (!(t = calloc(1, sizeof *t))) {
    return NULL;
  }
  t->msg.next = NULL;
  t->msg.kind = LP_MSG_TASK;
  t->msg.worker_id = 0;
  t->prev = t->next = NULL;
  atomic_init(&t->state, LP_TASK_QUEUED);
  t->failed = 0;
  t->target = -1;
  t->in.len = t->out.len = 0;
  return t;
}

void lp_task_free(lp_pool *p, lp_task *t) {
  if (p->nfree >= FREE_TASKS_MAX) {
    lp_buf_free(&t->in);
    lp_buf_free(&t->out);
    free(t);
    return;
  }
  if (t->in.cap > FREE_BUF_MAX) lp_buf_free(&t->in);
  if (t->out.cap > FREE_BUF_MAX) lp_buf_free(&t->out);
  t->msg.next = (lp_msg *)p->free_tasks;
  p->free_tasks = t;
  p->nfree++;
}

static void msg_free(lp_pool *p, lp_msg *m) {
  if (m->kind == LP_MSG_TASK) {
    lp_task_free(p, (lp_task *)m);
  } else {
    lp_buf_free(&m->body);
    free(m);
  }
}

/* ---- workers ----------------------------------------------------------- */

/* Starts a worker in a free slot; the caller has counted it in nlive and
** idle already. Returns 0 or -1. */
static void join_worker(lp_worker *w) {
  pthread_join(w->thread, NULL);
  w->started = 0;
}

static int start_worker(lp_pool *p) {
  lp_worker *w = NULL;
  int i;
  for (i = 0; i < p->cfg.max_threads && !w; i++)
    if (!p->workers[i].started) w = &p->workers[i];
  for (i = 0; i < p->cfg.max_threads && !w; i++)
    if (p->workers[i].started && atomic_load(&p->workers[i].leaving)) {
      w = &p->workers[i];
      join_worker(w);
    }
  if (!w) return -1;
  w->exit_msg = calloc(1, sizeof *w->exit_msg);
  if (!w->exit_msg) return -1;
  w->mine = w->mine_tail = NULL;
  atomic_store(&w->nmine, 0);
  atomic_store(&w->busy, 0);
  atomic_store(&w->ntasks, 0);
  atomic_store(&w->heap_bytes, 0);
  w->L = NULL;
  w->exiting = w->exit_code = 0;
  w->sleeping = 0;
  w->gen++;
  atomic_store(&w->leaving, 0);
  if (pthread_create(&w->thread, NULL, lp_worker_main, w)) {
    free(w->exit_msg);
    w->exit_msg = NULL;
    return -1;
  }
  w->started = 1;
  return 0;
}

/* Starts n workers reserved in nlive and idle; gives back those that fail. */
static int start_workers(lp_pool *p, int n) {
  int failed = 0;
  while (n-- > 0)
    if (start_worker(p)) failed++;
  if (failed) {
    pthread_mutex_lock(&p->lock);
    p->nlive -= failed;
    p->idle -= failed;
    pthread_mutex_unlock(&p->lock);
  }
  return failed;
}

/* Workers the queue and minThreads call for now; reserves them (lock held). */
static int workers_needed(lp_pool *p) {
  long n = p->cfg.min_threads - p->nlive;
  long waiting = (long)atomic_load_explicit(&p->queued, memory_order_relaxed) - p->idle;
  if (n < waiting) n = waiting;
  if (n > p->cfg.max_threads - p->nlive) n = p->cfg.max_threads - p->nlive;
  if (n < 0) n = 0;
  p->nlive += (int)n;
  p->idle += (int)n;
  return (int)n;
}

void lp_pool_maintain(lp_pool *p) {
  int n;
  pthread_mutex_lock(&p->lock);
  n = atomic_load(&p->stop) ? 0 : workers_needed(p);
  pthread_mutex_unlock(&p->lock);
  start_workers(p, n);
}

void lp_pool_reap(lp_pool *p, lp_msg *exit) {
  lp_worker *w = &p->workers[exit->worker_id - 1];
  if (w->started && w->gen == exit->gen) join_worker(w);
}

int lp_pool_init(lp_pool *p) {
  int i, n, made = 0;
  p->pipefd[0] = p->pipefd[1] = -1;
  if (lp_interrupt_install()) return -1;
  p->created_ns = lp_now_ns();
  p->workers = calloc((size_t)p->cfg.max_threads, sizeof *p->workers);
  p->sleepers = calloc((size_t)p->cfg.max_threads, sizeof *p->sleepers);
  if (!p->workers || !p->sleepers) goto fail;
  for (made = 0; made < p->cfg.max_threads; made++) {
    lp_worker *w = &p->workers[made];
    w->pool = p;
    w->slot = made;
    if (lp_cond_init(&w->wake)) goto fail;
  }
  if (pthread_mutex_init(&p->lock, NULL)) goto fail;
  if (pthread_mutex_init(&p->done_lock, NULL)) {
    pthread_mutex_destroy(&p->lock);
    goto fail;
  }
  if (lp_cond_init(&p->done_cond)) {
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    goto fail;
  }
  pthread_mutex_lock(&p->lock);
  n = workers_needed(p);
  pthread_mutex_unlock(&p->lock);
  if (start_workers(p, n) == n && n > 0) {
    lp_pool_shutdown(p);
    return -1;
  }
  return 0;
fail:
  for (i = 0; i < made; i++) pthread_cond_destroy(&p->workers[i].wake);
  free(p->workers);
  free(p->sleepers);
  p->workers = NULL;
  p->sleepers = NULL;
  return -1;
}

/* ---- the queue --------------------------------------------------------- */

static void sleeper_remove(lp_pool *p, lp_worker *w) {
  int i;
  for (i = 0; i < p->nsleepers; i++)
    if (p->sleepers[i] == w) {
      p->sleepers[i] = p->sleepers[--p->nsleepers];
      break;
    }
  w->sleeping = 0;
}

int lp_pool_submit(lp_pool *p, lp_task *t) {
  lp_worker *wake = NULL;
  int spawn = 0;
  size_t q;
  pthread_mutex_lock(&p->lock);
  if (atomic_load(&p->stop)) {
    pthread_mutex_unlock(&p->lock);
    return LP_ESTOPPED;
  }
  q = atomic_load_explicit(&p->queued, memory_order_relaxed);
  if (t->target >= 0) {
    lp_worker *w = &p->workers[t->target];
    if (w->mine_tail) w->mine_tail->next = t; else w->mine = t;
    w->mine_tail = t;
    atomic_fetch_add(&w->nmine, 1);
    if (w->sleeping) { sleeper_remove(p, w); wake = w; }
  } else {
    long room = (long)p->idle + (p->cfg.max_threads - p->nlive);
    if (p->cfg.max_queue >= 0 && (long)q >= p->cfg.max_queue + room) {
      pthread_mutex_unlock(&p->lock);
      return LP_EFULL;
    }
    t->prev = p->tail;
    if (p->tail) p->tail->next = t; else p->head = t;
    p->tail = t;
    atomic_store_explicit(&p->queued, ++q, memory_order_relaxed);
    if (p->nsleepers > 0 && q > (size_t)(p->idle - p->nsleepers)) {
      wake = p->sleepers[--p->nsleepers];
      wake->sleeping = 0;
    }
    spawn = workers_needed(p);
  }
  pthread_mutex_unlock(&p->lock);
  if (wake) pthread_cond_signal(&wake->wake);
  if (spawn && start_workers(p, spawn) == spawn) {
    int none;
    pthread_mutex_lock(&p->lock);
    none = p->nlive == 0;
    pthread_mutex_unlock(&p->lock);
    if (none && lp_pool_cancel(p, t)) return LP_ESPAWN;
  }
  return 0;
}

int lp_pool_cancel(lp_pool *p, lp_task *t) {
  int ok = 0;
  pthread_mutex_lock(&p->lock);
  if (atomic_load(&t->state) == LP_TASK_QUEUED && t->target < 0) {
    if (t->prev) t->prev->next = t->next; else p->head = t->next;
    if (t->next) t->next->prev = t->prev; else p->tail = t->prev;
    t->prev = t->next = NULL;
    atomic_store_explicit(&p->queued,
                          atomic_load_explicit(&p->queued, memory_order_relaxed) - 1,
                          memory_order_relaxed);
    atomic_store(&t->state, LP_TASK_DONE);
    ok = 1;
  }
  pthread_mutex_unlock(&p->lock);
  return ok;
}

/* ---- completions ------------------------------------------------------- */

void lp_pool_post(lp_pool *p, lp_msg *m) {
  lp_msg *old = atomic_load_explicit(&p->done, memory_order_relaxed);
  do m->next = old;
  while (!atomic_compare_exchange_weak(&p->done, &old, m));
  if (atomic_load(&p->main_sleeping)) {
    pthread_mutex_lock(&p->done_lock);
    pthread_cond_signal(&p->done_cond);
    pthread_mutex_unlock(&p->done_lock);
  }
  if (atomic_load(&p->fd_armed) == 0 && !atomic_exchange(&p->fd_armed, 1)) {
    int fd = atomic_load((atomic_int *)&p->pipefd[1]);
    if (fd >= 0) {
      ssize_t r = write(fd, "", 1);
      (void)r;  /* a full pipe is readable already */
    }
  }
}

static lp_msg *take_all(lp_pool *p) {
  lp_msg *m = atomic_exchange(&p->done, NULL), *fifo = NULL;
  while (m) {  /* the stack is newest first: reverse it */
    lp_msg *next = m->next;
    m->next = fifo;
    fifo = m;
    m = next;
  }
  return fifo;
}

lp_msg *lp_pool_take(lp_pool *p, double timeout_ms) {
  uint64_t start;
  if (p->pipefd[0] >= 0) {
    char sink[64];
    atomic_store(&p->fd_armed, 0);
    while (read(p->pipefd[0], sink, sizeof sink) > 0) {}
  }
  if (timeout_ms == 0 || atomic_load(&p->done)) return take_all(p);
  start = lp_now_ns();
  for (;;) {  /* spin a little: results often follow within microseconds */
    uint64_t spent = lp_now_ns() - start;
    if (atomic_load_explicit(&p->done, memory_order_acquire)) return take_all(p);
    if (spent > MAIN_SPIN_NS || (timeout_ms > 0 && spent > timeout_ms * 1e6)) break;
  }
  pthread_mutex_lock(&p->done_lock);
  atomic_store(&p->main_sleeping, 1);
  while (!atomic_load(&p->done)) {
    if (timeout_ms < 0) {
      pthread_cond_wait(&p->done_cond, &p->done_lock);
    } else {
      double left = timeout_ms - (double)(lp_now_ns() - start) / 1e6;
      if (left <= 0) break;
      lp_cond_timedwait(&p->done_cond, &p->done_lock, left);
    }
  }
  atomic_store(&p->main_sleeping, 0);
  pthread_mutex_unlock(&p->done_lock);
  return take_all(p);
}

int lp_pool_pollfd(lp_pool *p) {
  if (p->pipefd[0] < 0) {
    int fd[2], i;
    if (pipe(fd)) return -1;
    for (i = 0; i < 2; i++) {
      int fl = fcntl(fd[i], F_GETFL);
      if (fl < 0 || fcntl(fd[i], F_SETFL, fl | O_NONBLOCK) < 0 ||
          fcntl(fd[i], F_SETFD, FD_CLOEXEC) < 0) {
        close(fd[0]);
        close(fd[1]);
        return -1;
      }
    }
    p->pipefd[0] = fd[0];
    atomic_store(&p->fd_armed, 0);
    atomic_store((atomic_int *)&p->pipefd[1], fd[1]);
    if (atomic_load(&p->done)) {  /* results already waiting: readable now */
      atomic_store(&p->fd_armed, 1);
      if (write(fd[1], "", 1) < 0) return -1;
    }
  }
  return p->pipefd[0];
}

/* ---- shutdown ---------------------------------------------------------- */

void lp_pool_shutdown(lp_pool *p) {
  int i;
  lp_msg *m;
  if (!p->workers) return;
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->stop, 1);
  p->nsleepers = 0;
  for (i = 0; i < p->cfg.max_threads; i++) p->workers[i].sleeping = 0;
  pthread_mutex_unlock(&p->lock);
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = &p->workers[i];
    pthread_mutex_lock(&p->lock);
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&p->lock);
    if (w->started && !atomic_load(&w->leaving)) lp_interrupt(w);
  }
  for (i = 0; i < p->cfg.max_threads; i++)
    if (p->workers[i].started) join_worker(&p->workers[i]);
  for (m = p->backlog; m;) {
    lp_msg *next = m->next;
    msg_free(p, m);
    m = next;
  }
  p->backlog = NULL;
  for (m = take_all(p); m;) {
    lp_msg *next = m->next;
    msg_free(p, m);
    m = next;
  }
  while (p->head) {
    lp_task *t = p->head;
    p->head = t->next;
    lp_task_free(p, t);
  }
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = &p->workers[i];
    while (w->mine) {
      lp_task *t = w->mine;
      w->mine = t->next;
      lp_task_free(p, t);
    }
    pthread_cond_destroy(&w->wake);
  }
  while (p->free_tasks) {
    lp_task *t = p->free_tasks;
    p->free_tasks = (lp_task *)t->msg.next;
    lp_buf_free(&t->in);
    lp_buf_free(&t->out);
    free(t);
  }
  if (p->pipefd[0] >= 0) { close(p->pipefd[0]); close(p->pipefd[1]); }
  pthread_mutex_destroy(&p->lock);
  pthread_mutex_destroy(&p->done_lock);
  pthread_cond_destroy(&p->done_cond);
  lp_encoder_free(&p->enc);
  free(p->workers);
  free(p->sleepers);
  p->workers = NULL;
  p->sleepers = NULL;
}

void lp_msg_free(lp_pool *p, lp_msg *m) { msg_free(p, m); }
