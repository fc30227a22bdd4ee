/* The process runtime: a worker's tasks run in a child process, the worker
** program (worker_main.c), which the worker's thread spawned and talks to
** through two pipes (a third carries stops of tasks sent ahead). A fourth,
** the lifeline, ends the child whenever the host ends, even by SIGKILL. The
** thread reaps only its own child. */
#define _GNU_SOURCE  /* pipe2, sigabbrev_np, sched_setaffinity */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include "pool.h"

extern char **environ;

#define EXIT_GRACE_MS 2000  /* a child whose output ended has this long to go */
/* Tasks that take less than this on average go to the child ahead of their
** turn, up to AHEAD_MAX at a time, so that it never waits for the next one:
** one write carries many, and a task waits behind at most AHEAD_MAX short
** ones (a longer one holds up those sent after it, as it would its worker). */
#define AHEAD_MAX 16

/* ---- starting ---------------------------------------------------------- */

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

/* The child's ends are moved above its fds 3-6, so that placing one cannot
** overwrite another. */
static int move_high(int *fd) {
  int n = fcntl(*fd, F_DUPFD_CLOEXEC, 10);
  close(*fd);
  *fd = n;
  return n < 0 ? -1 : 0;
}

/* The child's pipes: which end is its own, and the fd it has it on. Stops
** of tasks sent ahead (task ids) go through a pipe of their own, which
** the child empties when a signal says there is something in it: signals
** alone may be merged (a sanitizer's runtime merges even queued ones). */
enum { P_IN, P_OUT, P_LIFE, P_STOPS, NPIPES };
static const int child_end[NPIPES] = {0, 1, 0, 0};
static const int child_fd[NPIPES] = {LP_FD_IN, LP_FD_OUT, LP_FD_LIFE, LP_FD_STOPS};

static int spawn_attrs(posix_spawn_file_actions_t *fa, posix_spawnattr_t *at, int p[][2]) {
  sigset_t none, all;
  int i, r = posix_spawn_file_actions_addopen(fa, 0, "/dev/null", O_RDONLY, 0);
  sigemptyset(&none);
  sigfillset(&all);
  for (i = 0; i < NPIPES; i++)
    r = r || posix_spawn_file_actions_adddup2(fa, p[i][child_end[i]], child_fd[i]);
  return r || posix_spawnattr_setsigmask(at, &none) || posix_spawnattr_setsigdefault(at, &all) ||
         posix_spawnattr_setflags(at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
}

static int make_pipes(int p[][2]) {
  int i;
  for (i = 0; i < NPIPES; i++)  /* the child's ends above its fds 3-6 */
    if (pipe2(p[i], O_CLOEXEC | (i == P_STOPS ? O_NONBLOCK : 0)) || move_high(&p[i][child_end[i]]))
      return errno;
  return 0;
}

/* Spawns the worker program; 0, or an errno value. */
static int spawn_child(lp_worker *w) {
  lp_proc *c = &w->proc;
  const lp_config *cfg = &w->pool->cfg;
  int p[NPIPES][2], i, r;
  char *argv[] = {"luapool-worker", NULL};
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  pid_t pid;
  for (i = 0; i < NPIPES; i++) p[i][0] = p[i][1] = -1;
  r = make_pipes(p);
  if (!r && (r = posix_spawn_file_actions_init(&fa)) == 0) {
    if ((r = posix_spawnattr_init(&at)) == 0) {
      if (spawn_attrs(&fa, &at, p)) r = ENOMEM;
      else r = posix_spawn(&pid, cfg->worker_path, &fa, &at, argv,
                           cfg->env ? cfg->env : environ);
      posix_spawnattr_destroy(&at);
    }
    posix_spawn_file_actions_destroy(&fa);
  }
  for (i = 0; i < NPIPES; i++) {
    close_fd(&p[i][child_end[i]]);
    if (r) close_fd(&p[i][!child_end[i]]);
  }
  if (r) return r;
  pthread_mutex_lock(&c->lock);
  c->pid = pid;
  c->alive = 1;
  pthread_mutex_unlock(&c->lock);
  c->to = p[P_IN][1];
  c->rd.fd = c->from = p[P_OUT][0];
  c->life = p[P_LIFE][1];
  c->stops = p[P_STOPS][1];
  return 0;
}

static int send_config(lp_worker *w) {
  const lp_config *cfg = &w->pool->cfg;
  lp_buf b = {NULL, 0, 0, NULL};
  const char *s[] = {cfg->filename, cfg->name, cfg->path, cfg->cpath, cfg->teardown};
  const lp_buf *v[] = {&cfg->bytecode, &cfg->handler, &cfg->worker_data};
  size_t i;
  int r = 0;
  for (i = 0; i < sizeof s / sizeof *s; i++) r = r || lp_field_put(&b, s[i], s[i] ? strlen(s[i]) : 0);
  for (i = 0; i < sizeof v / sizeof *v; i++) r = r || lp_field_put(&b, v[i]->data ? v[i]->data : "", v[i]->len);
  r = r || lp_varint_append(&b, cfg->max_heap) || lp_varint_append(&b, (uint64_t)cfg->isolate) ||
      lp_varint_append(&b, (uint64_t)w->slot + 1) || lp_varint_append(&b, w->thread_id);
  r = r || lp_frame_append(&w->proc.out, LP_FRAME_HELLO, 0, 0, &cfg->hello, sizeof cfg->hello) ||
      lp_frame_append(&w->proc.out, LP_FRAME_CONFIG, 0, 0, b.data, b.len) ||
      lp_write_all(w->proc.to, &w->proc.out);
  lp_buf_free(&b);
  w->proc.out.len = 0;
  return r ? -1 : 0;
}

/* ---- the end of a child ------------------------------------------------ */

static void kill_child(lp_proc *c) {
  pthread_mutex_lock(&c->lock);
  if (c->alive) kill(c->pid, SIGKILL);
  pthread_mutex_unlock(&c->lock);
}

/* Waits, up to ms, for the child to end, without reaping it (its pid stays
** ours for signals). 0 once it has ended. */
static int wait_end(lp_proc *c, int ms, siginfo_t *si) {
  int pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0), r;
  if (pidfd >= 0) {
    struct pollfd pf = {pidfd, POLLIN, 0};
    while ((r = poll(&pf, 1, ms)) < 0 && errno == EINTR) {}
    close(pidfd);
    if (r == 0) return -1;
  }
  memset(si, 0, sizeof *si);
  while ((r = waitid(P_PID, (id_t)c->pid, si, WEXITED | WNOWAIT)) < 0 && errno == EINTR) {}
  return r;
}

/* Reaps the child (killing it if it has not ended within EXIT_GRACE_MS)
** and describes how it ended. */
static void reap(lp_proc *c, char *cause, size_t n) {
  siginfo_t si;
  int st;
  if (!c->alive) return;
  if (wait_end(c, EXIT_GRACE_MS, &si)) {
    kill_child(c);
    wait_end(c, -1, &si);
  }
  pthread_mutex_lock(&c->lock);
  c->alive = 0;  /* from here on nobody signals the pid */
  pthread_mutex_unlock(&c->lock);
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {}
  if (si.si_code == CLD_EXITED)
    snprintf(cause, n, "exited with status %d", si.si_status);
  else
    snprintf(cause, n, "killed by SIG%s", sigabbrev_np(si.si_status) ? sigabbrev_np(si.si_status) : "?");
}

/* Rejects t, whose child ended or broke the protocol, with worker_exited. */
static int fault(lp_worker *w, lp_task *t, int corrupt) {
  char cause[64] = "gone", msg[160];
  if (corrupt) kill_child(&w->proc);
  reap(&w->proc, cause, sizeof cause);
  pthread_mutex_lock(&w->pool->lock);  /* results come in order: the rest never started */
  lp_pool_requeue_sent(w->pool, w);
  pthread_mutex_unlock(&w->pool->lock);
  if (corrupt)
    snprintf(msg, sizeof msg, "Worker exited unexpectedly: it sent a corrupt frame (%s)", cause);
  else
    snprintf(msg, sizeof msg, "Worker exited unexpectedly: %s", cause);
  lp_task_fail(t, "worker_exited", msg);
  return 1;
}

/* ---- frames from the child --------------------------------------------- */

static void forward_message(lp_worker *w, const lp_frame *f) {
  lp_msg *m = calloc(1, sizeof *m);
  if (!m) return;  /* a message lost to memory exhaustion */
  if (f->len && lp_buf_put(&m->body, f->body, f->len)) {
    free(m);
    return;
  }
  m->kind = LP_MSG_MESSAGE;
  m->worker_id = w->slot + 1;
  m->untrusted = 1;
  lp_pool_post_message(w, m);  /* -1: dropped, as the task is being stopped */
}

static void forward_event(lp_worker *w, const lp_frame *f) {
  char text[1024];
  snprintf(text, sizeof text, "%.*s", (int)(f->len < sizeof text ? f->len : sizeof text - 1),
           f->body);
  lp_worker_post(w, LP_MSG_ERROR, text);
}

/* Handles a frame any time may bring; 1 if it was one, 0 if not. */
static int forward(lp_worker *w, const lp_frame *f) {
  if (f->kind == LP_FRAME_MESSAGE) forward_message(w, f);
  else if (f->kind == LP_FRAME_ERROR) forward_event(w, f);
  else return 0;
  return 1;
}

static void heap_seen(lp_worker *w, const lp_frame *f) {
  uint64_t heap;
  memcpy(&heap, f->body, 8);
  atomic_store_explicit(&w->heap_bytes, (size_t)heap, memory_order_relaxed);
}

/* ---- the runtime ------------------------------------------------------- */

/* Reads frames up to the child's READY: its state is open (again). */
static int await_ready(lp_worker *w, char *err, size_t errlen) {
  lp_proc *c = &w->proc;
  lp_frame f;
  int r;
  while ((r = lp_reader_next(&c->rd, &f)) > 0 && forward(w, &f)) {}
  if (r > 0 && f.kind == LP_FRAME_READY && !f.flags && f.len >= 8) {
    heap_seen(w, &f);  /* then what loading the task file told, if it failed */
    snprintf(w->st.load_error, sizeof w->st.load_error, "%.*s",
             (int)(f.len - 8 < sizeof w->st.load_error ? f.len - 8 : sizeof w->st.load_error - 1),
             f.body + 8);
    return 0;
  }
  kill_child(c);
  if (r > 0 && f.kind == LP_FRAME_READY && f.flags)
    snprintf(err, errlen, "%.*s", (int)(f.len < 512 ? f.len : 512), f.body);
  else
    snprintf(err, errlen, "worker %d: its process failed before it was ready", w->slot + 1);
  return -1;
}

/* Reads the child's HELLO and its READY; 0, or -1 with err. */
static int handshake(lp_worker *w, char *err, size_t errlen) {
  lp_proc *c = &w->proc;
  char why[320], cause[64] = "gone";
  lp_frame f;
  int r = lp_reader_next(&c->rd, &f);
  if (r <= 0 || f.kind != LP_FRAME_HELLO) {
    kill_child(c);
    reap(c, cause, sizeof cause);
    snprintf(why, sizeof why, "%s did not start: %s", w->pool->cfg.worker_path,
             r > 0 ? "it sent no hello" : cause);
    lp_pool_break(w->pool, w, why, 0);
    snprintf(err, errlen, "worker %d: %s", w->slot + 1, why);
    return -1;
  }
  if (lp_hello_check(&w->pool->cfg.hello, f.body, f.len, err, errlen)) {
    snprintf(why, sizeof why, "%s cannot serve this host: %s", w->pool->cfg.worker_path, err);
    kill_child(c);
    lp_pool_break(w->pool, w, why, 0);
    snprintf(err, errlen, "worker %d: %s", w->slot + 1, why);
    return -1;
  }
  return await_ready(w, err, errlen);
}

static int pr_open(lp_worker *w, char *err, size_t errlen) {
  lp_proc *c = &w->proc;
  sigset_t pipe;
  int r;
  c->to = c->from = c->life = c->stops = c->rd.fd = -1;
  c->written = 0;
  sigemptyset(&pipe);  /* a child gone: EPIPE, not a signal to the host */
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, NULL);
  if (!w->pool->cfg.worker_path) {
    snprintf(err, errlen, "worker %d: the worker program luapool-worker was not found "
             "beside the module luapool.core", w->slot + 1);
    lp_pool_break(w->pool, w, err, 0);
    return -1;
  }
  if ((r = spawn_child(w)) != 0) {
    char why[320];
    snprintf(why, sizeof why, "cannot start %s: %s", w->pool->cfg.worker_path, strerror(r));
    if (r == ENOENT || r == EACCES || r == ENOEXEC) lp_pool_break(w->pool, w, why, 0);
    snprintf(err, errlen, "worker %d: %s", w->slot + 1, why);
    return -1;
  }
  send_config(w);  /* should the child be gone, the handshake says how */
  return handshake(w, err, errlen);
}

/* A task queued while the pool ran threads may name a channel or buffer,
** which a child cannot reach: it fails as its encoding would have. */
static int refuse_shared(lp_task *t) {
  lp_task_fail(t, "serialize", "task: a channel or buffer cannot cross to a process "
               "worker (it shares no memory with the host)");
  return 0;
}

static int put_task(lp_proc *c, lp_task *t) {
  t->sent_at = c->written + c->out.len;
  if (lp_frame_append(&c->out, LP_FRAME_TASK, 0, t->id, t->in.data, t->in.len)) return -1;
  t->in_child = 1;
  return 0;
}

/* Whether the child, gone, never read t: its frame is still in the pipe. */
static int never_read(lp_proc *c, const lp_task *t) {
  int unread;
  if (ioctl(c->to, FIONREAD, &unread) < 0) return 0;
  return c->written - (uint64_t)unread <= t->sent_at;
}

/* Whether to send tasks ahead now: w's tasks are short, and fewer than
** half of AHEAD_MAX wait in its child. */
static int ahead_wanted(lp_worker *w) {
  return !w->draining && !w->pool->cfg.isolate &&
         w->task_ns < LP_SHORT_TASK_NS && w->nsent < AHEAD_MAX / 2;
}

/* Writes t, unless it went ahead earlier, and the tasks that go ahead of
** their turn now; -1 (errno EPIPE) when the child was gone, -2 when t
** could not be put (out of memory). */
static int send_tasks(lp_worker *w, lp_task *t) {
  lp_proc *c = &w->proc;
  lp_task *next;
  int n = 0, r = 0;
  c->out.len = 0;
  if (!t->in_child && put_task(c, t)) return -2;
  if (ahead_wanted(w)) n = lp_pool_send_ahead(w, AHEAD_MAX - w->nsent, &next);
  for (; n > 0 && put_task(c, next) == 0; n--) next = next->next;  /* the rest go later */
  c->written += c->out.len;  /* (if cut short, never_read errs towards "read") */
  if (c->out.len) r = lp_write_all(c->to, &c->out);
  c->out.len = 0;
  return r;
}

/* The time the child took to run it, as it says. */
static void task_time(lp_worker *w, const lp_frame *f) {
  uint64_t ns;
  memcpy(&ns, f->body + 8, 8);
  lp_worker_timed(w, ns);
}

/* A PART of t's result: read by the main thread as the rest comes. 0, or
** -1 out of memory. */
static int put_part(lp_worker *w, lp_task *t, const lp_frame *f) {
  lp_buf part = {0};
  if (lp_buf_put(&part, f->body, f->len) || lp_task_part(w->pool, t, &part, 0)) {
    lp_buf_free(&part);
    return -1;
  }
  return 0;
}

static int pr_run(lp_worker *w, lp_task *t) {
  lp_proc *c = &w->proc;
  int was_sent = t->in_child, r;
  lp_frame f;
  size_t parts = 0;  /* bytes of t's result in PART frames: at most a frame's worth */
  if (lp_task_whole(t)) {
    lp_task_fail(t, NULL, NULL);
    return 0;
  }
  if (lp_buf_nrefs(&t->in)) return refuse_shared(t);
  if ((r = send_tasks(w, t)) == -2) {
    lp_task_fail(t, NULL, NULL);
    return 0;
  }
  if (r && errno == EPIPE && !was_sent) {  /* the child was gone before t reached it */
    fault(w, t, 0);
    return LP_UNSENT;
  }  /* another failure shows below as the end of its output */
  t->msg.untrusted = 1;
  for (;;) {
    if ((r = lp_reader_next(&c->rd, &f)) <= 0) {
      int corrupt = r < 0 && errno == EPROTO;
      int unsent = !corrupt && !t->stream && never_read(c, t);
      fault(w, t, corrupt);
      return unsent ? LP_UNSENT : 1;  /* one it never read goes back to the queue */
    }
    if (forward(w, &f)) continue;
    if (f.kind == LP_FRAME_PART && f.id == t->id) {  /* never empty: a flush has bytes */
      if (f.len == 0 || (parts += f.len) > LP_FRAME_MAXBODY || put_part(w, t, &f))
        return fault(w, t, 1);
      continue;
    }
    if (f.kind != LP_FRAME_RESULT || f.id != t->id || f.len < 16) return fault(w, t, 1);
    heap_seen(w, &f);
    task_time(w, &f);
    t->out.len = 0;
    t->failed = (f.flags & LP_RESULT_FAILED) != 0;
    if (lp_buf_put(&t->out, f.body + 16, f.len - 16)) lp_task_fail(t, NULL, NULL);
    return (f.flags & LP_RESULT_STOPPED) != 0;  /* then its child runs no more */
  }
}

static void pr_close(lp_worker *w) {
  lp_proc *c = &w->proc;
  char cause[64];
  lp_frame f;
  int r;
  close_fd(&c->to);  /* the end of its input: it runs teardown and leaves */
  if (c->alive) {
    while ((r = lp_reader_next(&c->rd, &f)) > 0 && forward(w, &f)) {}
    if (r != 0) kill_child(c);
    reap(c, cause, sizeof cause);
  }
  close_fd(&c->from);
  close_fd(&c->life);
  close_fd(&c->stops);
  lp_buf_free(&c->rd.buf);
  lp_buf_free(&c->out);
}

static void pr_interrupt(lp_worker *w) {
  lp_proc *c = &w->proc;
  union sigval v;
  unsigned id = atomic_load(&w->pool->stop) ? 0 : atomic_load(&w->cancel);
  if (!id && !atomic_load(&w->pool->stop)) return;
  v.sival_int = (int)id;
  pthread_mutex_lock(&c->lock);
  if (c->alive) sigqueue(c->pid, LP_PROC_SIGNAL, v);
  pthread_mutex_unlock(&c->lock);
}

static void pr_kill(lp_worker *w) {
  kill_child(&w->proc);
}

/* The id goes down the stops pipe (a full pipe, 16k stops unread: it is
** lost, and the task runs), then a signal rings. */
static void pr_stop_ahead(lp_worker *w, unsigned id) {
  lp_proc *c = &w->proc;
  union sigval v;
  v.sival_int = 0;
  pthread_mutex_lock(&c->lock);
  if (c->alive && write(c->stops, &id, sizeof id) == (ssize_t)sizeof id)
    sigqueue(c->pid, LP_PROC_AHEAD_SIGNAL, v);
  pthread_mutex_unlock(&c->lock);
}

/* The child runs on the cores its host thread moves to: the hand-offs
** between them stay on one core too. One that is gone moves nowhere. */
static void pr_place(lp_worker *w, const void *set, size_t len) {
  lp_proc *c = &w->proc;
  pthread_mutex_lock(&c->lock);
  if (c->alive && sched_setaffinity(c->pid, len, (const cpu_set_t *)set) != 0) {}
  pthread_mutex_unlock(&c->lock);
}

/* With isolateWorkers the child makes its next state as soon as it has sent
** a result; this waits for it (and its teardown's events) while idle. */
static int pr_renew(lp_worker *w, char *err, size_t errlen) {
  return await_ready(w, err, errlen);
}

const lp_runtime lp_rt_process = {"process", pr_open, pr_run, pr_renew, pr_close, pr_interrupt,
                                  pr_kill, pr_stop_ahead, pr_place};
