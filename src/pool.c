/* The pool and its scheduler.
**
** One mutex guards the task queue, the workers' mailboxes and the count of
** idle workers. A submit wakes at most one sleeping worker, and only when no
** spinning worker will take the task; workers spin briefly before they sleep
** on a semaphore of their own, so a busy pool passes tasks without
** system calls. Results come back on a lock-free stack that the main thread
** empties whole: one wake-up per batch, not per task. */
#define _GNU_SOURCE  /* PTHREAD_MUTEX_ADAPTIVE_NP, pthread_setname_np, sched_getcpu */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>
#include "interrupt.h"
#include "pool.h"
#include "stream.h"

#define MAIN_SPIN_NS 50000
#define IDLE_GRACE_MS 1000
#define FREE_TASKS_MAX 256
#define FREE_BUF_MAX 65536

static void deadline_after(struct timespec *ts, double ms) {
  clock_gettime(CLOCK_MONOTONIC, ts);
  ts->tv_sec += (time_t)(ms / 1000);
  ts->tv_nsec += (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6);
  if (ts->tv_nsec >= 1000000000L) { ts->tv_sec++; ts->tv_nsec -= 1000000000L; }
}

/* The queue's lock is held for a few instructions at a time: waiters spin a
** little before they sleep, where the system offers that. */
static int lp_mutex_init(pthread_mutex_t *m) {
#ifdef PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP
  pthread_mutexattr_t a;
  int r;
  if (pthread_mutexattr_init(&a)) return -1;
  r = pthread_mutexattr_settype(&a, PTHREAD_MUTEX_ADAPTIVE_NP) || pthread_mutex_init(m, &a);
  pthread_mutexattr_destroy(&a);
  return r ? -1 : 0;
#else
  return pthread_mutex_init(m, NULL) ? -1 : 0;
#endif
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
  if (ms >= LP_FOREVER_MS) return pthread_cond_wait(c, m);
  deadline_after(&ts, ms);
  return pthread_cond_timedwait(c, m, &ts);
}

int lp_sem_wait(sem_t *s, double ms) {
  struct timespec ts;
  int r;
  if (ms >= LP_FOREVER_MS) {
    r = sem_wait(s);
  } else {
    deadline_after(&ts, ms);
    r = sem_clockwait(s, CLOCK_MONOTONIC, &ts);
  }
  if (r == 0) return 0;
  return errno == ETIMEDOUT ? 1 : -1;
}

/* ---- tasks ------------------------------------------------------------- */

/* A free slot for a new task; 0 out of memory. */
static int take_slot(lp_pool *p) {
  if (p->nfree_slots) return p->free_slots[--p->nfree_slots];
  if (p->ntasks + 1 >= p->tasks_cap) {
    int cap = p->tasks_cap ? p->tasks_cap * 2 : 64;
    lp_task **tasks;
    int *free_slots;
    if (cap > INT_MAX / 2) return 0;
    if (!(tasks = realloc(p->tasks, (size_t)cap * sizeof *tasks))) return 0;
    p->tasks = tasks;
    if (!(free_slots = realloc(p->free_slots, (size_t)cap * sizeof *free_slots))) return 0;
    p->free_slots = free_slots;
    p->tasks_cap = cap;
  }
  return ++p->ntasks;
}

lp_task *lp_task_at(lp_pool *p, long slot) {
  return slot >= 1 && slot <= p->ntasks ? p->tasks[slot] : NULL;
}

lp_task *lp_task_new(lp_pool *p) {
  lp_task *t = p->free_tasks;
  int slot = take_slot(p);
  if (!slot) return NULL;
  if (t) {
    p->free_tasks = (lp_task *)t->msg.next;
    p->nfree--;
  } else if (!(t = calloc(1, sizeof *t))) {
    p->free_slots[p->nfree_slots++] = slot;
    return NULL;
  }
  t->slot = slot;
  p->tasks[slot] = t;
  t->msg.next = NULL;
  t->msg.kind = LP_MSG_TASK;
  t->msg.worker_id = 0;
  t->msg.untrusted = 0;
  t->prev = t->next = NULL;
  atomic_init(&t->state, LP_TASK_QUEUED);
  t->failed = 0;
  t->target = -1;
  t->in_child = t->stopped_ahead = t->posted = 0;
  t->in.len = t->out.len = 0;
  return t;
}

static void task_destroy(lp_task *t) {
  lp_stream_free(t->stream);
  lp_stream_free(t->in_stream);
  lp_buf_free(&t->in);
  lp_buf_free(&t->out);
  free(t);
}

void lp_task_free(lp_pool *p, lp_task *t) {
  if (t->stream) {  /* its worker may still be writing it: never for long */
    lp_stream_wait_end(t->stream);
    lp_stream_free(t->stream);
    t->stream = NULL;
  }
  lp_stream_free(t->in_stream);  /* written by the main thread, read by now */
  t->in_stream = NULL;
  t->dropped = 0;
  p->tasks[t->slot] = NULL;
  p->free_slots[p->nfree_slots++] = t->slot;
  if (p->nfree >= FREE_TASKS_MAX) {
    task_destroy(t);
    return;
  }
  lp_buf_drop_refs(&t->in, 0);  /* bytes kept for reuse; the objects they named not */
  lp_buf_drop_refs(&t->out, 0);
  if (t->in.cap > FREE_BUF_MAX) lp_buf_free(&t->in);
  if (t->out.cap > FREE_BUF_MAX) lp_buf_free(&t->out);
  t->msg.next = (lp_msg *)p->free_tasks;
  p->free_tasks = t;
  p->nfree++;
}

/* ---- workers ----------------------------------------------------------- */

#define EXIT_WORKER(m) ((lp_worker *)((char *)(m) - offsetof(lp_worker, exit_msg)))

static void join_worker(lp_worker *w) {
  if (!w->joined) pthread_join(w->thread, NULL);
  w->joined = 1;
}

void lp_worker_free(lp_worker *w) {
  lp_place_free(w);
  lp_buf_free(&w->exit_msg.body);
  pthread_mutex_destroy(&w->proc.lock);
  sem_destroy(&w->wake);
  free(w);
}

/* ---- messages --------------------------------------------------------- */

/* One fewer message waits for the host; at half the bound, posters that
** wait for room are woken. */
static void message_taken(lp_pool *p) {
  long n = atomic_fetch_sub(&p->nmessages, 1) - 1;
  if (n <= LP_MESSAGES_MAX / 2 && atomic_load(&p->room_waiters)) {
    pthread_mutex_lock(&p->done_lock);
    pthread_cond_broadcast(&p->room_cond);
    pthread_mutex_unlock(&p->done_lock);
  }
}

/* Whether the task w runs, or the pool, is to stop (w's own thread). */
static int worker_stopping(lp_worker *w) {
  lp_task *t = w->task;
  return atomic_load(&w->pool->stop) || (t && atomic_load(&w->cancel) == t->id);
}

int lp_pool_post_message(lp_worker *w, lp_msg *m) {
  lp_pool *p = w->pool;
  while (atomic_load(&p->nmessages) >= LP_MESSAGES_MAX) {
    if (worker_stopping(w)) {
      lp_buf_free(&m->body);
      free(m);
      return -1;
    }
    pthread_mutex_lock(&p->done_lock);
    atomic_fetch_add(&p->room_waiters, 1);
    if (atomic_load(&p->nmessages) >= LP_MESSAGES_MAX)  /* slices: stops arrive by signal */
      lp_cond_timedwait(&p->room_cond, &p->done_lock, 10);
    atomic_fetch_sub(&p->room_waiters, 1);
    pthread_mutex_unlock(&p->done_lock);
  }
  atomic_fetch_add(&p->nmessages, 1);
  lp_pool_post(p, m);
  return 0;
}

void lp_msg_free(lp_pool *p, lp_msg *m) {
  if (m->kind == LP_MSG_TASK) {
    lp_task_free(p, (lp_task *)m);
  } else if (m->kind == LP_MSG_EXIT) {  /* the worker's last word */
    lp_worker *w = EXIT_WORKER(m);
    join_worker(w);
    if (p->slots[w->slot].w == w) p->slots[w->slot].w = NULL;
    lp_worker_free(w);
  } else {
    if (m->kind == LP_MSG_MESSAGE) message_taken(p);
    lp_buf_free(&m->body);
    free(m);
  }
}

/* The worker's thread starts with every signal blocked but the pool's
** interrupt and faults: the host's signals are for the host's threads. */
static int create_thread(lp_pool *p, lp_worker *w) {
  sigset_t old;
  int r;
  if (lp_interrupt_block_signals(p->signo, &old)) return -1;
  r = pthread_create(&w->thread, NULL, lp_worker_main, w);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r ? -1 : 0;
}

/* Starts a worker in a free slot; the caller has counted it in nlive and
** idle already. Returns 0, -1 when memory or threads ran out, or 1 when no
** slot is free yet: a leaving worker holds it until the main thread has
** its EXIT, which starts the workers then needed (never wait for a thread
** here: it may be running a teardown). */
/* threadId: unique for the life of the process, across its pools, as
** Node's is. The one counter luapool keeps outside a pool: no pool can own
** a process-wide sequence, and an atomic add is all it needs. */
static atomic_uint_fast64_t thread_ids;

static int start_worker(lp_pool *p) {
  int slot;
  lp_worker *w;
  for (slot = 0; slot < p->cfg.max_threads && p->slots[slot].w; slot++) {}
  if (slot == p->cfg.max_threads) return 1;
  if (!(w = calloc(1, sizeof *w))) return -1;
  w->pool = p;
  w->rt = atomic_load(&p->cfg.runtime) == LP_RT_PROCESS ? &lp_rt_process : &lp_rt_thread;
  w->slot = slot;
  w->thread_id = atomic_fetch_add(&thread_ids, 1) + 1;
  w->exit_msg.kind = LP_MSG_EXIT;
  w->exit_msg.worker_id = slot + 1;
  if (sem_init(&w->wake, 0, 0)) {
    free(w);
    return -1;
  }
  if (pthread_mutex_init(&w->proc.lock, NULL)) {
    sem_destroy(&w->wake);
    free(w);
    return -1;
  }
  pthread_mutex_lock(&p->lock);
  p->slots[slot].w = w;  /* before it runs: it may be woken at once */
  pthread_mutex_unlock(&p->lock);
  if (create_thread(p, w)) {
    pthread_mutex_lock(&p->lock);
    p->slots[slot].w = NULL;
    pthread_mutex_unlock(&p->lock);
    lp_worker_free(w);
    return -1;
  }
  pthread_setname_np(w->thread, "luapool");  /* as `top -H` shows it */
  return 0;
}

/* Starts n workers reserved in nlive and idle, and gives back those that
** did not start. Returns how many failed for lack of memory or threads. */
static int start_workers(lp_pool *p, int n) {
  int unstarted = 0, failed = 0, r;
  while (n-- > 0) {
    if ((r = start_worker(p)) == 0) continue;
    unstarted++;
    if (r < 0) failed++;
  }
  if (unstarted) {
    pthread_mutex_lock(&p->lock);
    p->nlive -= unstarted;
    p->idle -= unstarted;
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
  n = atomic_load(&p->stop) || lp_pool_broken(p) ? 0 : workers_needed(p);
  pthread_mutex_unlock(&p->lock);
  start_workers(p, n);
}

lp_pool *lp_pool_new(void) {
  lp_pool *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  atomic_init(&p->refs, 1);
  atomic_init(&p->pipe_w, -1);
  p->pipe_r = p->timer_fd = p->poll_fd = -1;
  lp_spin_init(p);
  lp_spawn_record(&p->cfg.spawn);  /* the host's thread: the one making the pool */
  return p;
}

int lp_pool_init(lp_pool *p) {
  int n;
  if ((p->signo = lp_interrupt_install()) < 0) return LP_ESIGNAL;
  p->slots = calloc((size_t)p->cfg.max_threads, sizeof *p->slots);
  p->sleepers = calloc((size_t)p->cfg.max_threads, sizeof *p->sleepers);
  if (!p->slots || !p->sleepers) return -1;
  if (lp_mutex_init(&p->lock)) return -1;
  if (pthread_mutex_init(&p->done_lock, NULL)) {
    pthread_mutex_destroy(&p->lock);
    return -1;
  }
  if (lp_cond_init(&p->done_cond)) {
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    return -1;
  }
  if (lp_cond_init(&p->room_cond)) {
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    pthread_cond_destroy(&p->done_cond);
    return -1;
  }
  p->initialized = 1;
  pthread_mutex_lock(&p->lock);
  n = workers_needed(p);
  pthread_mutex_unlock(&p->lock);
  if (n > 0 && start_workers(p, n) == n) return -1;
  return 0;
}

/* ---- the queue --------------------------------------------------------- */

/* queued is written under the lock only; spinning workers read it bare. */
static void queued_add(lp_pool *p, long n) {
  atomic_store_explicit(&p->queued,
                        (size_t)((long)atomic_load_explicit(&p->queued, memory_order_relaxed) + n),
                        memory_order_relaxed);
}

void lp_pool_sleeper_remove(lp_pool *p, lp_worker *w) {
  int i;
  for (i = 0; i < p->nsleepers; i++)
    if (p->sleepers[i] == w) {
      p->sleepers[i] = p->sleepers[--p->nsleepers];
      break;
    }
  w->sleeping = 0;
}

void lp_pool_unlink_queued(lp_pool *p, lp_task *t) {
  if (t->prev) t->prev->next = t->next; else p->head = t->next;
  if (t->next) t->next->prev = t->prev; else p->tail = t->prev;
  t->prev = t->next = NULL;
  queued_add(p, -1);
}

int lp_pool_submit(lp_pool *p, lp_task *t) {
  lp_worker *wake = NULL;
  int spawn = 0;
  size_t q;
  if (lp_pool_broken(p)) return LP_EBROKEN;
  if (++p->next_id == 0 || p->next_id == LP_LOAD_ID) p->next_id = 1;
  t->id = p->next_id;
  atomic_store_explicit(&p->main_cpu, sched_getcpu(), memory_order_relaxed);
  pthread_mutex_lock(&p->lock);
  if (atomic_load(&p->stop)) {
    pthread_mutex_unlock(&p->lock);
    return LP_ESTOPPED;
  }
  q = atomic_load_explicit(&p->queued, memory_order_relaxed);
  if (t->target >= 0 && (!p->slots[t->target].w || p->slots[t->target].w->leaving ||
                         p->slots[t->target].w->retire))
    t->target = -1;  /* that worker is going: anyone's, as its mailbox will be */
  if (t->target >= 0) {
    lp_slot *sl = &p->slots[t->target];
    lp_worker *w = sl->w;
    if (sl->mine_tail) sl->mine_tail->next = t; else sl->mine = t;
    sl->mine_tail = t;
    atomic_fetch_add(&sl->nmine, 1);
    if (w->sleeping) { lp_pool_sleeper_remove(p, w); wake = w; }
  } else {
    long room = (long)p->idle + (p->cfg.max_threads - p->nlive);
    if (p->cfg.max_queue >= 0 && (long)q >= p->cfg.max_queue + room) {
      pthread_mutex_unlock(&p->lock);
      return LP_EFULL;
    }
    t->prev = p->tail;
    if (p->tail) p->tail->next = t; else p->head = t;
    p->tail = t;
    queued_add(p, 1);
    if (p->nsleepers > 0 && ++q > (size_t)p->nspinning) {
      wake = p->sleepers[--p->nsleepers];
      wake->sleeping = 0;
    }
    spawn = workers_needed(p);
  }
  pthread_mutex_unlock(&p->lock);
  if (wake) sem_post(&wake->wake);
  if (spawn && start_workers(p, spawn) == spawn) {
    int none;
    pthread_mutex_lock(&p->lock);
    none = p->nlive == 0;
    pthread_mutex_unlock(&p->lock);
    if (none && lp_pool_stop_task(p, t, 1) == LP_TASK_QUEUED) return LP_ESPAWN;
  }
  return 0;
}

/* The worker that runs t, or has it among the tasks sent ahead to its
** child (*ahead set then). Lock held. */
static lp_worker *worker_running(lp_pool *p, lp_task *t, int *ahead) {
  int i;
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = p->slots[i].w;
    lp_task *s;
    if (!w) continue;
    *ahead = 0;
    if (w->task == t) return w;
    *ahead = 1;
    for (s = w->sent; s; s = s->next)
      if (s == t) return w;
  }
  return NULL;
}

void lp_task_fail(lp_task *t, const char *code, const char *message) {
  const char *err[4] = {code, message, NULL, NULL};
  t->failed = 1;
  t->out.len = 0;
  if (code) lp_encode_strings(&t->out, err, 4);  /* empty on failure: out_of_memory */
}

int lp_task_part(lp_pool *p, lp_task *t, lp_buf *part, int post) {
  if (t->stream) return lp_stream_publish(t->stream, part);
  if (!(t->stream = lp_stream_new())) return -1;
  if (lp_stream_publish(t->stream, part)) {
    lp_stream_free(t->stream);
    t->stream = NULL;
    return -1;
  }
  if (post) {
    t->posted = 1;
    lp_pool_post(p, &t->msg);
  }
  return 0;
}

int lp_task_whole(lp_task *t) {
  if (!t->in_stream) return 0;
  if (lp_stream_gather(t->in_stream, &t->in)) return -1;
  lp_stream_free(t->in_stream);
  t->in_stream = NULL;
  return 0;
}

/* Settles t, which no worker will run, as failed with code and message. Lock held. */
static void post_failed(lp_pool *p, lp_worker *w, lp_task *t, const char *code,
                        const char *message) {
  atomic_store(&t->state, LP_TASK_DONE);
  lp_task_fail(t, code, message);
  t->msg.worker_id = w->slot + 1;
  t->t_start = t->t_end = lp_now_ns();
  lp_pool_post_task(p, t);
}

int lp_pool_send_ahead(lp_worker *w, int max, lp_task **first) {
  lp_pool *p = w->pool;
  long share;
  int n = 0;
  *first = NULL;
  pthread_mutex_lock(&p->lock);
  share = (long)atomic_load_explicit(&p->queued, memory_order_relaxed) / (p->nlive > 1 ? p->nlive : 1);
  if (max > share) max = (int)share;
  if (w->retire) max = 0;  /* it is to end after the task it runs */
  while (n < max && p->head && !p->slots[w->slot].mine &&
         !p->head->in_stream && !lp_buf_nrefs(&p->head->in)) {  /* pr_run checks those */
    lp_task *t = p->head;
    lp_pool_unlink_queued(p, t);
    atomic_store(&t->state, LP_TASK_RUNNING);
    if (w->sent_tail) w->sent_tail->next = t; else w->sent = t;
    w->sent_tail = t;
    w->nsent++;
    if (!*first) *first = t;
    n++;
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}

void lp_pool_requeue_sent(lp_pool *p, lp_worker *w) {
  lp_task *t = w->sent, *rev = NULL, *next;
  for (; t; t = next) {  /* reversed, then each pushed on the head */
    next = t->next;
    t->next = rev;
    rev = t;
  }
  w->sent = w->sent_tail = NULL;
  w->nsent = 0;
  for (t = rev; t; t = next) {
    next = t->next;
    t->next = NULL;
    if (t->stopped_ahead)  /* settled already: only to be freed */
      post_failed(p, w, t, "aborted", "The task has been aborted");
    else
      lp_pool_requeue(p, t);
  }
}

void lp_pool_post_event(lp_pool *p, int kind, int worker_id, const char *text) {
  lp_msg *m = calloc(1, sizeof *m);
  if (!m) return;  /* an event lost to memory exhaustion */
  m->kind = kind;
  m->worker_id = worker_id;
  if (text && lp_buf_put(&m->body, text, strlen(text) + 1)) {
    free(m);
    return;
  }
  lp_pool_post(p, m);
}

/* Main thread. A host that took the interrupt signal over hears of it
** once, through the "error" event; tasks then stop at terminateTimeout. */
static void interrupt(lp_pool *p, lp_worker *w) {
  static const char fmt[] = "luapool's interrupt signal (SIGRTMIN+%d) has been given "
      "another handler by the host: running tasks can no longer be interrupted, and "
      "are given up on after terminateTimeout";
  char text[sizeof fmt + 16];
  if (w->rt != &lp_rt_thread || lp_interrupt_is_ours(p->signo)) {
    w->rt->interrupt(w);
    return;
  }
  if (p->signal_lost) return;
  p->signal_lost = 1;
  snprintf(text, sizeof text, fmt, p->signo - SIGRTMIN);
  lp_pool_post_event(p, LP_MSG_ERROR, w->slot + 1, text);
}

int lp_pool_stop_task(lp_pool *p, lp_task *t, int queued_only) {
  int r = LP_TASK_DONE, ahead;
  lp_worker *w = NULL;
  pthread_mutex_lock(&p->lock);
  if (atomic_load(&t->state) == LP_TASK_QUEUED) {
    if (t->target < 0) {
      lp_pool_unlink_queued(p, t);
    } else {  /* in a worker's mailbox */
      lp_slot *sl = &p->slots[t->target];
      lp_task **pp = &sl->mine, *prev = NULL;
      while (*pp != t) { prev = *pp; pp = &(*pp)->next; }
      *pp = t->next;
      if (sl->mine_tail == t) sl->mine_tail = prev;
      t->next = NULL;
      atomic_fetch_sub(&sl->nmine, 1);
    }
    atomic_store(&t->state, LP_TASK_DONE);
    r = LP_TASK_QUEUED;
  } else if ((w = worker_running(p, t, &ahead))) {
    r = LP_TASK_RUNNING;
    if (queued_only) w = NULL;
    else if (ahead) {  /* it will not start */
      t->stopped_ahead = 1;
      w->rt->stop_ahead(w, t->id);
    }
    else atomic_store(&w->cancel, t->id);
  }
  pthread_mutex_unlock(&p->lock);
  if (w && !ahead) interrupt(p, w);
  return r;
}

void lp_pool_requeue(lp_pool *p, lp_task *t) {
  t->target = -1;
  t->in_child = 0;
  t->prev = NULL;
  t->next = p->head;
  if (p->head) p->head->prev = t; else p->tail = t;
  p->head = t;
  atomic_store(&t->state, LP_TASK_QUEUED);
  queued_add(p, 1);
  if (p->nsleepers > 0) {
    lp_worker *w = p->sleepers[--p->nsleepers];
    w->sleeping = 0;
    sem_post(&w->wake);
  }
}

void lp_pool_requeue_mailbox(lp_pool *p, int slot) {
  lp_slot *sl = &p->slots[slot];
  lp_task *t = sl->mine, *last = NULL;
  long n = 0;
  if (!t) return;
  for (; t; t = t->next) {  /* they become anyone's, at the queue's head */
    t->target = -1;
    t->prev = last;
    last = t;
    n++;
  }
  last->next = p->head;
  if (p->head) p->head->prev = last; else p->tail = last;
  p->head = sl->mine;
  sl->mine = sl->mine_tail = NULL;
  atomic_store(&sl->nmine, 0);
  queued_add(p, n);
  if (p->nsleepers > 0) {
    lp_worker *w = p->sleepers[--p->nsleepers];
    w->sleeping = 0;
    sem_post(&w->wake);
  }
}

/* Lock held. The worker will free itself; the pool lives until it has. */
static void detach(lp_pool *p, lp_worker *w) {
  w->detached = 1;
  if (!w->leaving) {
    w->leaving = 1;
    p->nlive--;
    if (!w->task) p->idle--;
  }
  if (w->sleeping) lp_pool_sleeper_remove(p, w);
  p->slots[w->slot].w = NULL;
  lp_pool_requeue_mailbox(p, w->slot);
  atomic_fetch_add(&p->refs, 1);
  pthread_setname_np(w->thread, "luapool-stuck");
  pthread_detach(w->thread);
}

int lp_pool_abandon(lp_pool *p, lp_task *t, int *killed) {
  lp_worker *w;
  int id = 0, ahead;
  *killed = 0;
  pthread_mutex_lock(&p->lock);
  if ((w = worker_running(p, t, &ahead)) && !ahead) {  /* not one waiting its turn */
    id = w->slot + 1;
    if (w->rt->kill) {  /* its thread sees the end and leaves as usual */
      w->rt->kill(w);
      *killed = 1;
    } else {
      detach(p, w);
    }
  }
  pthread_mutex_unlock(&p->lock);
  return id;
}


void lp_pool_break(lp_pool *p, lp_worker *w, const char *why, int any) {
  char *s = strdup(why), *none = NULL;
  int i;
  if (s && !atomic_compare_exchange_strong(&p->broken, &none, s)) free(s);
  if (any) atomic_store(&p->broken_any, 1);
  pthread_mutex_lock(&p->lock);
  if (any || atomic_load(&p->cfg.runtime) == LP_RT_PROCESS) {  /* else others will run them */
    for (i = 0; i < p->cfg.max_threads; i++) lp_pool_requeue_mailbox(p, i);
    while (p->head) {
      lp_task *t = p->head;
      lp_pool_unlink_queued(p, t);
      post_failed(p, w, t, "load_error", why);
    }
  }
  pthread_mutex_unlock(&p->lock);
}

#define LOAD_CHECK_NS 20000000

/* Lock held. Stops w's load (the pool breaks), or gives up on it when it
** did not stop; returns 1 when it did either. */
static int check_load(lp_pool *p, lp_worker *w, uint64_t now, char *why, size_t n) {
  uint64_t since = atomic_load(&w->loading_since);
  if (!since) return 0;
  if (!w->load_giveup) {
    /* since may be later than now, read before the loop: no wrap-around */
    if (since >= now || (double)(now - since) / 1e6 <= p->cfg.load_timeout_ms) return 0;
    snprintf(why, n, "Task file \"%s\" did not finish loading within %g ms (loadTimeout)",
             p->cfg.filename ? p->cfg.filename : "(handler)", p->cfg.load_timeout_ms);
    w->load_giveup = now + (uint64_t)(p->cfg.terminate_ms < LP_FOREVER_MS
                                          ? p->cfg.terminate_ms * 1e6 : 1e18);
    atomic_store(&w->cancel, LP_LOAD_ID);
    interrupt(p, w);
    return 1;
  }
  if (now < w->load_giveup) return 0;
  snprintf(why, n, "Failed to stop worker %d loading its task file within %g ms "
           "(terminateTimeout)%s", w->slot + 1, p->cfg.terminate_ms,
           w->rt->kill ? ": its process is killed" : ": its thread is detached and left running");
  if (w->rt->kill) w->rt->kill(w); else detach(p, w);
  return 1;
}

void lp_pool_check_loads(lp_pool *p) {
  uint64_t now;
  int i;
  if (!atomic_load_explicit(&p->nloading, memory_order_relaxed)) return;
  now = lp_now_ns();
  if (now - p->load_checked < LOAD_CHECK_NS) return;
  p->load_checked = now;
  for (i = 0; i < p->cfg.max_threads; i++) {
    char why[512];
    lp_worker *w;
    int acted, broke = 0;
    pthread_mutex_lock(&p->lock);
    acted = (w = p->slots[i].w) && !w->detached && check_load(p, w, now, why, sizeof why);
    if (acted && !w->detached && !atomic_load(&p->broken)) broke = 1;
    pthread_mutex_unlock(&p->lock);
    if (broke) lp_pool_break(p, w, why, 1);  /* w is not detached: still the main's */
    if (acted) lp_pool_post_event(p, LP_MSG_ERROR, i + 1, why);
  }
}

int lp_pool_retire_all(lp_pool *p) {
  int i, n = 0;
  pthread_mutex_lock(&p->lock);
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = p->slots[i].w;
    if (!w || w->leaving || w->retire) continue;
    w->retire = 1;
    n++;
    if (w->sleeping) {
      lp_pool_sleeper_remove(p, w);
      sem_post(&w->wake);
    }
  }
  pthread_mutex_unlock(&p->lock);
  return n;
}

/* ---- completions ------------------------------------------------------- */

void lp_pool_post(lp_pool *p, lp_msg *m) {
  lp_msg *old = atomic_load_explicit(&p->done, memory_order_relaxed);
  do m->next = old;
  while (!atomic_compare_exchange_weak(&p->done, &old, m));
  if (atomic_load(&p->main_sleeping)) {  /* the lock orders the push before its wait */
    pthread_mutex_lock(&p->done_lock);
    pthread_mutex_unlock(&p->done_lock);
    pthread_cond_signal(&p->done_cond);  /* after: it wakes to a free lock */
  }
  if (atomic_load(&p->fd_armed) == 0 && !atomic_exchange(&p->fd_armed, 1)) {
    int fd = atomic_load(&p->pipe_w);
    if (fd >= 0) {
      ssize_t r = write(fd, "", 1);
      (void)r;  /* a full pipe is readable already */
    }
  }
}

void lp_pool_post_task(lp_pool *p, lp_task *t) {
  int posted;
  lp_stats_add(&p->wait_time, t->t_start - t->t_queued);
  lp_stats_add(&p->run_time, t->t_end - t->t_start);
  if (!t->stream) {
    lp_pool_post(p, &t->msg);
    return;
  }
  posted = t->posted;
  if (!t->failed && t->out.len && lp_stream_publish(t->stream, &t->out))
    lp_task_fail(t, NULL, NULL);  /* out of memory */
  lp_stream_end(t->stream, t->failed);  /* the main thread may free t now, if posted */
  if (!posted) lp_pool_post(p, &t->msg);
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
  if (timeout_ms >= LP_FOREVER_MS) timeout_ms = -1;
  if (p->pipe_r >= 0) {  /* drain, then re-arm: a post after this writes */
    char sink[64];
    uint64_t expired;
    while (read(p->pipe_r, sink, sizeof sink) > 0) {}
    atomic_store(&p->fd_armed, 0);
    if (read(p->timer_fd, &expired, sizeof expired) < 0) {}  /* EAGAIN: not due */
  }
  if (timeout_ms == 0 || atomic_load(&p->done)) return take_all(p);
  start = lp_now_ns();
  /* spin a little where it pays: results often follow within microseconds */
  if (lp_spin_should(p, &p->spinner)) {
    unsigned i = 0;
    for (;;) {
      uint64_t spent = lp_now_ns() - start;
      if (atomic_load_explicit(&p->done, memory_order_acquire)) {
        lp_spin_learn(&p->spinner, spent, MAIN_SPIN_NS);
        return take_all(p);
      }
      if (spent > MAIN_SPIN_NS || (timeout_ms > 0 && spent > timeout_ms * 1e6)) break;
      if ((++i & 63) == 0 && !lp_spin_allowed(p)) break;
    }
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
  lp_spin_learn(&p->spinner, lp_now_ns() - start, MAIN_SPIN_NS);
  return take_all(p);
}

/* The epoll set of the pipe workers write to and a timerfd, so that an
** event loop wakes for results and for the Lua side's timers alike. */
static int make_poll_fd(lp_pool *p, int *fd) {
  struct epoll_event ev;
  int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), efd = -1;
  if (tfd < 0 || (efd = epoll_create1(EPOLL_CLOEXEC)) < 0) goto fail;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  if (epoll_ctl(efd, EPOLL_CTL_ADD, fd[0], &ev) || epoll_ctl(efd, EPOLL_CTL_ADD, tfd, &ev))
    goto fail;
  p->timer_fd = tfd;
  p->poll_fd = efd;
  return 0;
fail:
  if (tfd >= 0) close(tfd);
  if (efd >= 0) close(efd);
  return -1;
}

int lp_pool_pollfd(lp_pool *p) {
  if (p->pipe_r < 0) {
    int fd[2];
    if (pipe2(fd, O_NONBLOCK | O_CLOEXEC)) return -1;
    if (make_poll_fd(p, fd)) {
      close(fd[0]);
      close(fd[1]);
      return -1;
    }
    p->pipe_r = fd[0];
    atomic_store(&p->fd_armed, 0);
    atomic_store(&p->pipe_w, fd[1]);
    if (atomic_load(&p->done) || p->backlog) {  /* work waiting: readable now */
      atomic_store(&p->fd_armed, 1);
      if (write(fd[1], "", 1) < 0) return -1;
    }
  }
  return p->poll_fd;
}

int lp_pool_arm_timer(lp_pool *p, double ms) {
  struct itimerspec it;
  memset(&it, 0, sizeof it);
  if (p->timer_fd < 0) return 0;
  if (ms >= 0 && ms < LP_FOREVER_MS) {
    double ns = ms > 0 ? ms * 1e6 : 1;  /* 0 would disarm */
    it.it_value.tv_sec = (time_t)(ns / 1e9);
    it.it_value.tv_nsec = (long)(ns - (double)it.it_value.tv_sec * 1e9);
    if (!it.it_value.tv_sec && !it.it_value.tv_nsec) it.it_value.tv_nsec = 1;
  }
  return timerfd_settime(p->timer_fd, 0, &it, NULL) ? -1 : 0;
}

/* ---- the end ----------------------------------------------------------- */

static void free_msgs(lp_pool *p, lp_msg *m) {
  while (m) {
    lp_msg *next = m->next;
    lp_msg_free(p, m);
    m = next;
  }
}

int lp_pool_shutdown(lp_pool *p, double terminate_ms) {
  int i, stuck = 0, forever;
  uint64_t deadline = 0, idle_deadline = 0;
  if (!p->initialized || atomic_load(&p->stop)) return 0;  /* once */
  pthread_mutex_lock(&p->lock);
  atomic_store(&p->stop, 1);
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = p->slots[i].w;
    if (!w) continue;
    if (w->sleeping) lp_pool_sleeper_remove(p, w);
    sem_post(&w->wake);
    interrupt(p, w);  /* a task, or a task file's top level, may be running */
  }
  pthread_mutex_unlock(&p->lock);
  forever = !(terminate_ms < LP_FOREVER_MS);  /* NaN too */
  /* An idle worker is not stuck: it closes its state (and runs teardown)
  ** on its way out; it gets at least IDLE_GRACE_MS for that. */
  if (!forever) {
    if (terminate_ms < 0) terminate_ms = 0;
    deadline = lp_now_ns() + (uint64_t)(terminate_ms * 1e6);
    idle_deadline = lp_now_ns() + (uint64_t)((terminate_ms > IDLE_GRACE_MS ? terminate_ms
                                                                            : IDLE_GRACE_MS) * 1e6);
  }
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = p->slots[i].w;
    int busy;
    if (!w || w->joined) continue;
    if (forever) {  /* no limit: wait for it, however long it takes */
      join_worker(w);
      continue;
    }
    pthread_mutex_lock(&p->lock);
    busy = w->task != NULL;
    pthread_mutex_unlock(&p->lock);
    if (lp_join_until(w->thread, busy ? deadline : idle_deadline) == 0) {
      w->joined = 1;
      continue;
    }
    if (w->rt->kill) {  /* a process: its thread ends once the child is gone */
      w->rt->kill(w);
      join_worker(w);
      continue;
    }
    pthread_mutex_lock(&p->lock);  /* stuck in code that runs no hooks */
    if (w->exited) {  /* it ended just now after all */
      pthread_mutex_unlock(&p->lock);
      join_worker(w);
      continue;
    }
    detach(p, w);
    pthread_mutex_unlock(&p->lock);
    stuck++;
  }
  free_msgs(p, p->backlog);
  p->backlog = NULL;
  free_msgs(p, take_all(p));  /* with the EXIT of every joined worker */
  while (p->head) {
    lp_task *t = p->head;
    p->head = t->next;
    task_destroy(t);
  }
  return stuck;
}

void lp_pool_release(lp_pool *p) {
  if (atomic_fetch_sub(&p->refs, 1) != 1) return;
  if (p->initialized) {
    int i;
    free_msgs(p, take_all(p));  /* what detached workers posted at the end */
    for (i = 0; i < p->cfg.max_threads; i++) {
      lp_slot *sl = &p->slots[i];
      while (sl->mine) {
        lp_task *t = sl->mine;
        sl->mine = t->next;
        task_destroy(t);
      }
    }
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->done_lock);
    pthread_cond_destroy(&p->done_cond);
    pthread_cond_destroy(&p->room_cond);
  }
  while (p->free_tasks) {
    lp_task *t = p->free_tasks;
    p->free_tasks = (lp_task *)t->msg.next;
    task_destroy(t);
  }
  if (p->pipe_r >= 0) {
    close(p->pipe_r);
    close(atomic_load(&p->pipe_w));
    close(p->timer_fd);
    close(p->poll_fd);
  }
  free(p->cfg.filename);
  free(p->cfg.name);
  free(p->cfg.path);
  free(p->cfg.cpath);
  free(p->cfg.teardown);
  free(p->cfg.worker_path);
  free(atomic_load(&p->broken));
  if (p->cfg.env) {
    char **e;
    for (e = p->cfg.env; *e; e++) free(*e);
    free(p->cfg.env);
  }
  lp_buf_free(&p->cfg.bytecode);
  lp_buf_free(&p->cfg.handler);
  lp_buf_free(&p->cfg.worker_data);
  lp_encoder_free(&p->enc);
  free(p->slots);
  free(p->sleepers);
  free(p->tasks);
  free(p->free_slots);
  free(p);
}
