/* The pool and its scheduler: a FIFO of tasks shared by the worker threads,
** per-worker mailboxes for targeted tasks, and the completion stack that
** carries results and events back to the main thread in batches. */
#ifndef LUAPOOL_POOL_H
#define LUAPOOL_POOL_H

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include "buffer.h"
#include "codec.h"
#include "state.h"
#include "stats.h"
#include "wire.h"
#include <sys/types.h>

typedef struct lp_pool lp_pool;

/* One waiting thread's record of whether its spins pay (spin.c). */
typedef struct lp_spinner {
  int score;                  /* decaying share of waits a spin would have ended, x256 */
  unsigned waits;
} lp_spinner;
typedef struct lp_worker lp_worker;
typedef struct lp_task lp_task;

/* What a kind of worker does with the tasks its host thread takes: run
** them on a Lua state of that thread, or hand them to a child process. */
typedef struct lp_runtime {
  const char *name;
  /* On the worker's thread: makes it ready for tasks; 0, or -1 with err. */
  int (*open)(lp_worker *w, char *err, size_t errlen);
  /* Runs t into t->out; returns 1 when the worker is to end after it, or
  ** LP_UNSENT when t never reached it (a process that died while idle): t
  ** goes back to the queue (t->out says why, should it be stopped instead). */
  int (*run)(lp_worker *w, lp_task *t);
  /* Between tasks of an isolating pool: a fresh state; 0 or -1 with err. */
  int (*renew)(lp_worker *w, char *err, size_t errlen);
  void (*close)(lp_worker *w);   /* on the worker's thread, at its end */
  /* From any thread, pool lock held or not: stop the task that w->cancel
  ** names (or any, when the pool stops). */
  void (*interrupt)(lp_worker *w);
  /* Ends the worker's code at once, if this runtime can (NULL if not). */
  void (*kill)(lp_worker *w);
  /* From any thread: task id, sent ahead to w (lp_pool_send_ahead), is not
  ** to start (NULL where nothing is sent ahead). */
  void (*stop_ahead)(lp_worker *w, unsigned id);
  /* On the worker's thread, as it moves to the cores in set (a cpu_set_t of
  ** len bytes; place.c): what runs its tasks goes with it (NULL: nothing to). */
  void (*place)(lp_worker *w, const void *set, size_t len);
} lp_runtime;

enum { LP_RT_THREADS, LP_RT_PROCESS };

/* Tasks shorter than this on average cost less than their hand-offs: a
** process worker sends them to its child ahead of their turn (rt_process.c),
** and its worker chooses its cores by where the main thread runs (place.c). Measured by the thread that runs them, or a process worker's
** child (lp_worker_timed). */
#define LP_SHORT_TASK_NS 100000
#define LP_UNSENT (-1)
extern const lp_runtime lp_rt_thread, lp_rt_process;

/* What workers send to the main thread. */
enum { LP_MSG_TASK, LP_MSG_MESSAGE, LP_MSG_START, LP_MSG_EXIT, LP_MSG_ERROR };

typedef struct lp_msg {
  struct lp_msg *next;
  int kind;
  int worker_id;
  int untrusted;  /* written by a worker process: its functions are not loaded */
  lp_buf body;  /* a message's value, an error's text */
} lp_msg;

/* Task states; a task moves forward only. */
enum { LP_TASK_QUEUED, LP_TASK_RUNNING, LP_TASK_DONE };

struct lp_task {
  lp_msg msg;                  /* first: a finished task is a message */
  struct lp_task *prev, *next; /* queue links */
  atomic_int state;
  int failed;                  /* out holds code, message, value, traceback */
  int target;                  /* worker slot, or -1 for any worker */
  int in_child;                /* written to a process worker's child ahead of its turn */
  int stopped_ahead;           /* stopped while sent ahead: never to run */
  uint64_t sent_at;            /* process: where its frame starts in its child's input */
  unsigned id;                 /* never 0; names it across a process boundary */
  int slot;                    /* its index in the pool's tasks, >= 1: how Lua names it */
  lp_buf in, out;
  struct lp_stream *stream;    /* a large result in parts (lp_task_part) */
  int posted;                  /* threads: posted with the first part, read as written */
  struct lp_stream *in_stream; /* threads: a large value, submitted as it was written */
  int dropped;                 /* its submit failed after a worker took it: not settled */
  uint64_t t_queued, t_start, t_end;  /* monotonic ns */
};

/* A process worker's child, as its host thread sees it (rt_process.c). */
typedef struct lp_proc {
  pthread_mutex_t lock;       /* pid and alive: no signal to a reaped pid */
  pid_t pid;
  int alive;                  /* under lock: spawned, not yet reaped */
  int to, from, life, stops;  /* its input, its output, its lifeline, its stops */
  lp_reader rd;
  lp_buf out;                 /* frames being written */
  int status;                 /* from waitpid, once reaped */
  uint64_t written;           /* bytes written to its input so far */
} lp_proc;

/* A worker: a thread of the host that takes tasks, and what runs them (its
** runtime). The main thread allocates it and, once the thread has said it
** is leaving, joins and frees it; a worker the pool gave up on (detached)
** frees itself when its thread ends. */
struct lp_worker {
  lp_pool *pool;
  const lp_runtime *rt;
  int slot;                   /* workerId - 1 */
  uint64_t thread_id;         /* threadId: unique in the process, never reused */
  pthread_t thread;
  sem_t wake;                 /* posted to wake it from its sleep */
  /* under the pool lock */
  int sleeping;               /* on the sleepers stack */
  int leaving;                /* out of nlive; the thread is ending */
  int detached;               /* given up on: nobody joins it */
  int exited;                 /* has posted its EXIT: about to return */
  int retire;                 /* end after the task it runs (recycling) */
  lp_task *task;              /* the task it runs */
  lp_task *sent, *sent_tail;  /* process: taken to run after it, in its child's pipe */
  int nsent;                  /* (written by the worker's thread only) */
  /* read by other threads */
  atomic_int busy;
  atomic_uint_fast64_t ntasks;
  atomic_size_t heap_bytes;
  atomic_uint cancel;         /* id of a running task to be stopped */
  atomic_uint_fast64_t loading_since;  /* ns; 0 unless it loads the task file */
  /* the worker thread's own */
  int ready;                  /* open, not failed since */
  int draining;               /* to end once the tasks sent ahead are done */
  lp_spinner spinner;
  int placed;                 /* where it is kept (place.c): -1 all its cores */
  int alone;                  /* its last tasks that ran alone, up to a few */
  int64_t task_ns;            /* decaying mean of its tasks' own time (lp_worker_timed) */
  void *home;                 /* a cpu_set_t: the cores it may use; NULL: never moves */
  lp_state_config scfg;       /* threads: the pool's, as its state takes it */
  lp_state st;                /* threads: the Lua state */
  lp_proc proc;               /* process: the child */
  /* the main thread's own */
  int joined;
  uint64_t load_giveup;       /* its load was stopped: when to give up on it */
  lp_msg exit_msg;            /* its last message, so exiting cannot fail */
};

/* A worker's place: its id is the slot's index + 1. Tasks sent to one
** worker (runAll) wait in the slot's mailbox, so a replacement inherits them. */
typedef struct lp_slot {
  lp_worker *w;               /* NULL where none */
  lp_task *mine, *mine_tail;  /* under the pool lock */
  atomic_int nmine;           /* read by the spinning worker */
} lp_slot;

typedef struct lp_config {
  int min_threads, max_threads;
  double idle_timeout_ms;
  long max_queue;             /* -1: unbounded */
  char *filename, *name;      /* defaults, may be NULL */
  lp_buf handler;             /* encoded default handler, empty if none */
  lp_buf worker_data;         /* encoded workerData */
  char *path, *cpath;         /* package.path and package.cpath */
  lp_buf bytecode;            /* the default file, compiled once */
  char *teardown;             /* function of the file run before a state closes */
  int isolate;                /* a fresh state for every task */
  size_t max_heap;            /* resourceLimits.maxHeapBytes, 0: none */
  size_t recycle_heap;        /* maxMemoryLimitBeforeRecycle, 0: none */
  double load_timeout_ms;     /* loadTimeout: a task file's top level, at most */
  double terminate_ms;        /* terminateTimeout */
  atomic_int runtime;         /* LP_RT_*, of workers started from now on */
  char **env;                 /* process workers' environment; NULL: ours */
  char *worker_path;          /* the worker program, beside this module */
  lp_hello hello;             /* what this host tells worker processes */
  lp_spawn_host spawn;        /* what programs thread workers' tasks start get */
} lp_config;

struct lp_pool {
  lp_config cfg;
  atomic_int refs;            /* the main thread's, and detached workers' */
  /* the queue and the workers' bookkeeping, under lock */
  pthread_mutex_t lock;
  lp_task *head, *tail;
  atomic_size_t queued;       /* written under lock, read by spinners */
  int idle;                   /* live workers not running a task */
  int nlive;                  /* threads started, not yet leaving */
  int nspinning;              /* idle workers spinning, not asleep */
  int nsleepers;
  lp_worker **sleepers;       /* stack of workers blocked on their cond */
  lp_slot *slots;             /* max_threads */
  lp_stats run_time, wait_time;  /* of the tasks posted, added as they are */
  atomic_int stop;
  int signo;                  /* the interrupt signal (interrupt.c) */
  int signal_lost;            /* the host took it over; said so once */
  /* the completion stack and the main thread's wake-up */
  _Atomic(lp_msg *) done;
  atomic_int main_sleeping;
  pthread_mutex_t done_lock;
  pthread_cond_t done_cond;
  /* postMessage values the host has not taken yet, bounded */
  atomic_long nmessages;
  atomic_int room_waiters;
  pthread_cond_t room_cond;   /* with done_lock */
  atomic_int pipe_w;          /* made by pollfd(); -1 until then */
  int pipe_r;
  atomic_int fd_armed;
  int timer_fd;               /* pollfd(): readable when a timer of the Lua side is due */
  int poll_fd;                /* pollfd(): an epoll set of pipe_r and timer_fd */
  /* main thread only */
  int initialized;
  lp_msg *backlog;            /* taken but not yet handed to Lua */
  lp_spinner spinner;         /* the main thread's, in take() */
  lp_task *free_tasks;
  int nfree;
  /* Tasks by slot, from 1: Lua names a task by its slot, a small integer
  ** reused once the task is freed (so the Lua side's books are arrays). */
  lp_task **tasks;
  int *free_slots;            /* a stack of slots not in use, below ntasks */
  int ntasks, nfree_slots, tasks_cap;
  lp_encoder enc;
  unsigned next_id;
  /* set once by a process worker that found its program unusable, or
  ** when the task file did not load within loadTimeout (broken_any) */
  _Atomic(char *) broken;
  atomic_int broken_any;      /* broken whatever the runtime */
  atomic_int nloading;        /* workers loading the task file */
  uint64_t load_checked;      /* main thread: when loads were last looked at */
  /* whether waiting threads spin (spin.c); last, away from the hot fields */
  int ncpu;                   /* cores this process may run on */
  atomic_int nawake;          /* workers not asleep on their condition */
  atomic_uint_fast64_t spin_checked;  /* ns: when the load was last looked at */
  atomic_int others_avg;      /* other runnable threads, decaying average, x256 */
  atomic_int spin_ok;
  atomic_int main_cpu;        /* the core of the main thread's last submit (place.c) */
  /* main thread: the task whose value is being written (luapool.c submit) */
  lp_task *writing;
  int write_submitted;        /* it went to the pool with its first part */
  int write_r;                /* lp_pool_submit's refusal then */
};

#define LP_FOREVER_MS 1e12        /* durations this long mean "no limit" */

int lp_cond_init(pthread_cond_t *c);  /* on the monotonic clock */
int lp_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, double ms);
/* Waits for a post on s, up to ms (LP_FOREVER_MS or more: for ever);
** returns 0 when posted, 1 when the time ran out, -1 when a signal handler
** ran first (a spurious wake-up). */
int lp_sem_wait(sem_t *s, double ms);

/* Main thread. */
lp_pool *lp_pool_new(void);                   /* fill cfg, then init */
/* Starts minThreads workers: 0, -1, or LP_ESIGNAL (no signal to be had). */
int lp_pool_init(lp_pool *p);
/* Stops every worker, giving each terminate_ms to end (LP_FOREVER_MS or more:
** waits for ever); detaches those that do not and returns how many. Then
** frees what it can. */
int lp_pool_shutdown(lp_pool *p, double terminate_ms);
void lp_pool_release(lp_pool *p);             /* drops a reference */
lp_task *lp_task_new(lp_pool *p);
void lp_task_free(lp_pool *p, lp_task *t);
lp_task *lp_task_at(lp_pool *p, long slot);   /* NULL where no task is */
/* Makes t's outcome a failure with code and message; code NULL: an empty
** outcome, which reads as out of memory (as does one that fails to encode). */
void lp_task_fail(lp_task *t, const char *code, const char *message);
/* Worker: the next part of t's result, which it takes (leaving part empty);
** with post, the first posts t, so that the main thread reads the result
** while the rest is written (stream.h); lp_pool_post_task ends it (and
** posts t if not posted yet). 0, or -1 out of memory (part then unchanged).
** A process worker's parts are not posted early: a child that stalls after
** one must not hold the main thread in its read. */
int lp_task_part(lp_pool *p, lp_task *t, lp_buf *part, int post);
/* A task's value submitted in parts (t->in_stream), made whole in t->in for
** a runtime that sends it on: 0, or -1 out of memory. */
int lp_task_whole(lp_task *t);
/* Queues t; returns 0, LP_EFULL, LP_ESTOPPED, or LP_ESPAWN (no worker could
** be started and none is live). */
enum { LP_EFULL = 1, LP_ESTOPPED, LP_ESPAWN, LP_EBROKEN, LP_ESIGNAL };
int lp_pool_submit(lp_pool *p, lp_task *t);
/* Stops t: a queued task is unlinked (returns LP_TASK_QUEUED, and the caller
** frees it); a running one is interrupted (LP_TASK_RUNNING); else
** LP_TASK_DONE. With queued_only, a running task is left alone. */
int lp_pool_stop_task(lp_pool *p, lp_task *t, int queued_only);
/* Gives up on the worker still running t: a process is killed (*killed
** set), a thread is detached and its slot freed. Returns its workerId, or 0
** when no worker runs t any more. */
int lp_pool_abandon(lp_pool *p, lp_task *t, int *killed);
/* Every live worker ends after its task (idle ones at once); returns how
** many were marked. */
int lp_pool_retire_all(lp_pool *p);
/* Puts t, which no worker ran, back at the head of the queue. Lock held. */
void lp_pool_requeue(lp_pool *p, lp_task *t);
/* A leaving worker's mailbox goes to the head of the queue. Lock held. */
void lp_pool_requeue_mailbox(lp_pool *p, int slot);
/* Process workers, on w's thread: moves up to max tasks from the queue's
** head to w->sent, to go to its child ahead of their turn; never more than
** a fair share of the queue, nor a task that names shared memory, nor any
** while w's mailbox has tasks or w is to retire. Returns how many, and
** in *first the first of them. */
int lp_pool_send_ahead(lp_worker *w, int max, lp_task **first);
/* w's tasks sent ahead go back to the queue's head, in order. Lock held. */
void lp_pool_requeue_sent(lp_pool *p, lp_worker *w);
/* Takes t out of the queue; takes w off the sleepers' stack. Lock held. */
void lp_pool_unlink_queued(lp_pool *p, lp_task *t);
void lp_pool_sleeper_remove(lp_pool *p, lp_worker *w);
lp_msg *lp_pool_take(lp_pool *p, double timeout_ms);  /* FIFO batch */
void lp_msg_free(lp_pool *p, lp_msg *m);      /* joins and frees on EXIT */
void lp_pool_maintain(lp_pool *p);            /* start workers as needed */
/* An fd readable while take() has work or the timer is due; -1 on failure. */
int lp_pool_pollfd(lp_pool *p);
/* Main thread: the pollfd becomes readable in ms (negative: never); 0 or -1. */
int lp_pool_arm_timer(lp_pool *p, double ms);

/* Whether a waiting thread (a worker, the main thread) should spin before
** it sleeps: only while the machine leaves a core free for it, and while
** its recent waits were short enough for a spin to end them (spin.c). */
void lp_spin_init(lp_pool *p);
void lp_spinner_init(lp_spinner *s);
int lp_spin_allowed(lp_pool *p);
int lp_spin_should(lp_pool *p, lp_spinner *s);
/* After a wait of waited_ns, for a spin budget of budget_ns. */
void lp_spin_learn(lp_spinner *s, uint64_t waited_ns, uint64_t budget_ns);

/* Which cores a worker runs on (place.c), on its own thread: where
** lp_place_wanted says before it sleeps (lock held) and lp_place_busy as it
** starts a task; lp_place_move when that differs from w->placed. */
void lp_place_init(lp_worker *w);
void lp_place_free(lp_worker *w);
int lp_place_wanted(lp_pool *p, lp_worker *w);
int lp_place_busy(lp_pool *p, lp_worker *w, size_t queued, int alone);
void lp_place_move(lp_worker *w, int placed);

/* Worker threads. */
void lp_pool_post(lp_pool *p, lp_msg *m);
/* Posts a finished task, its times added to the pool's statistics; one
** posted while its result was written (t->stream, rt_thread.c) gets the
** rest of it, or its failure, instead. Lock held. */
void lp_pool_post_task(lp_pool *p, lp_task *t);
/* On w's thread: posts a postMessage value once fewer than LP_MESSAGES_MAX
** wait for the host, blocking until then; -1 (m freed, not posted) when the
** task w runs, or the pool, is to stop meanwhile. */
#define LP_MESSAGES_MAX 10000
int lp_pool_post_message(lp_worker *w, lp_msg *m);
/* Posts an event (LP_MSG_ERROR with text, LP_MSG_START) about worker_id,
** from any thread; lp_worker_post does so from worker w. */
void lp_pool_post_event(lp_pool *p, int kind, int worker_id, const char *text);
void lp_worker_post(lp_worker *w, int kind, const char *text);
void lp_worker_timed(lp_worker *w, uint64_t ns);  /* w's thread: a task took ns */
/* A process worker that cannot run at all (its program is missing or
** another build), or (any) a task file that did not load in time: every
** task queued now and later fails with load_error. */
void lp_pool_break(lp_pool *p, lp_worker *w, const char *why, int any);
/* Main thread: whether new workers could not run. */
#define lp_pool_broken(p) \
  (atomic_load(&(p)->broken) && \
   (atomic_load(&(p)->broken_any) || atomic_load(&(p)->cfg.runtime) == LP_RT_PROCESS))
/* Main thread, often: a worker whose task file's top level ran past
** loadTimeout is stopped (the pool breaks), and given up on after
** terminateTimeout more. Cheap while nothing loads. */
void lp_pool_check_loads(lp_pool *p);
void *lp_worker_main(void *arg);
/* The end of a detached worker's thread. */
void lp_worker_free(lp_worker *w);

#endif
