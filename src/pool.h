/* The pool and its scheduler: a FIFO of tasks shared by the worker threads,
** per-worker mailboxes for targeted tasks, and the completion stack that
** carries results and events back to the main thread in batches. */
#ifndef LUAPOOL_POOL_H
#define LUAPOOL_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include "buffer.h"
#include "codec.h"
#include "stats.h"

typedef struct lp_pool lp_pool;
typedef struct lp_worker lp_worker;

/* What workers send to the main thread. */
enum { LP_MSG_TASK, LP_MSG_MESSAGE, LP_MSG_START, LP_MSG_EXIT, LP_MSG_ERROR };

typedef struct lp_msg {
  struct lp_msg *next;
  int kind;
  int worker_id;
  unsigned gen;  /* which run of that worker slot */
  lp_buf body;  /* a message's value, an error's text */
} lp_msg;

/* Task states; a task moves forward only. */
enum { LP_TASK_QUEUED, LP_TASK_RUNNING, LP_TASK_DONE };

/* How a task names its handler (first byte of its input). */
enum { LP_RUN_DEFAULT, LP_RUN_FILE, LP_RUN_HANDLER };

typedef struct lp_task {
  lp_msg msg;                  /* first: a finished task is a message */
  struct lp_task *prev, *next; /* queue links */
  atomic_int state;
  int failed;                  /* out holds code, message, value, traceback */
  int target;                  /* worker slot, or -1 for any worker */
  lp_buf in, out;
  uint64_t t_queued, t_start, t_end;  /* monotonic ns */
} lp_task;

struct lp_worker {
  lp_pool *pool;
  int slot;                   /* workerId - 1 */
  int started;                /* thread not yet joined (main thread only) */
  unsigned gen;               /* counts the threads this slot has had */
  atomic_int leaving;         /* left nlive; the thread is ending */
  pthread_t thread;
  pthread_cond_t wake;
  int sleeping;               /* on the sleepers stack (pool lock) */
  lp_task *mine, *mine_tail;  /* tasks for this worker only (pool lock) */
  atomic_int nmine;
  atomic_int busy;
  atomic_uint_fast64_t ntasks;
  atomic_size_t heap_bytes;
  _Atomic(lua_State *) running;  /* the state while it runs a task's code */
  _Atomic(lp_task *) current;    /* the task it runs */
  _Atomic(lp_task *) cancel;     /* a running task to be stopped */
  /* owned by the worker thread */
  lua_State *L;
  lp_encoder enc;
  int default_ref;            /* the pool's default handler, once resolved */
  int exiting, exit_code;     /* os.exit was called */
  lp_msg *exit_msg;           /* preallocated: exiting must not fail */
};

typedef struct lp_config {
  int min_threads, max_threads;
  double idle_timeout_ms;
  long max_queue;             /* -1: unbounded */
  char *filename, *name;      /* defaults, may be NULL */
  lp_buf handler;             /* encoded default handler, empty if none */
  lp_buf worker_data;         /* encoded workerData */
  char *path, *cpath;         /* package.path and package.cpath */
} lp_config;

struct lp_pool {
  lp_config cfg;
  /* the queue and the workers' bookkeeping, under lock */
  pthread_mutex_t lock;
  lp_task *head, *tail;
  atomic_size_t queued;       /* written under lock, read by spinners */
  int idle;                   /* live workers not running a task */
  int nlive;                  /* threads started, not yet exited */
  int nsleepers;
  lp_worker **sleepers;       /* stack of workers blocked on their cond */
  atomic_int stop;
  lp_worker *workers;         /* max_threads slots */
  /* the completion stack and the main thread's wake-up */
  _Atomic(lp_msg *) done;
  atomic_int main_sleeping;
  pthread_mutex_t done_lock;
  pthread_cond_t done_cond;
  int pipefd[2];              /* made by pollfd(); -1 until then */
  atomic_int fd_armed;
  /* main thread only */
  lp_msg *backlog;            /* taken but not yet handed to Lua */
  lp_task *free_tasks;
  int nfree;
  lp_encoder enc;
  uint64_t created_ns, completed;
  lp_stats run_time, wait_time;
};

uint64_t lp_now_ns(void);
int lp_cond_init(pthread_cond_t *c);  /* on the monotonic clock */
int lp_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, double ms);

/* Main thread. */
int lp_pool_init(lp_pool *p);                 /* after cfg is filled */
void lp_pool_shutdown(lp_pool *p);            /* stop, join, free all */
lp_task *lp_task_new(lp_pool *p);
void lp_task_free(lp_pool *p, lp_task *t);
/* Queues t; returns 0, LP_EFULL, LP_ESTOPPED, or LP_ESPAWN (no worker could
** be started and none is live). */
enum { LP_EFULL = 1, LP_ESTOPPED, LP_ESPAWN };
int lp_pool_submit(lp_pool *p, lp_task *t);
int lp_pool_cancel(lp_pool *p, lp_task *t);   /* 1 if it was still queued */
lp_msg *lp_pool_take(lp_pool *p, double timeout_ms);  /* FIFO batch */
void lp_pool_reap(lp_pool *p, lp_msg *exit);  /* joins the thread it names */
void lp_msg_free(lp_pool *p, lp_msg *m);
void lp_pool_maintain(lp_pool *p);            /* start workers as needed */
int lp_pool_pollfd(lp_pool *p);

/* Worker threads. */
void lp_pool_post(lp_pool *p, lp_msg *m);
void *lp_worker_main(void *arg);

#endif
