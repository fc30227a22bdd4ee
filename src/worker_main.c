/* luapool-worker: the program each worker of the process runtime runs. It
** reads frames from its host on fd 3 and answers on fd 4 (wire.h): a hello
** each way, then the configuration, then tasks, each run on its Lua state
** (state.c) into a result. The end of its input ends it after teardown; the
** end of its lifeline (fd 5: the host is gone) ends it at once. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "state.h"
#include "wire.h"

enum { EXIT_HOST_GONE = 70, EXIT_PROTOCOL = 71, EXIT_NOMEM = 72 };
#define STOPPED_MAX 32

typedef struct worker {
  lp_state st;
  lp_state_config cfg;
  lp_buf config;            /* the CONFIG body; cfg's buffers point into it */
  char *strs[5];            /* cfg's strings */
  lp_reader rd;
  lp_buf out;               /* frames to write */
  lp_buf outcome;           /* a task's */
  atomic_uint cancel;       /* set by the host's signal */
  uint32_t task;            /* the id of the task it runs */
  atomic_int stop;
  atomic_int stops;          /* set by a signal: LP_FD_STOPS has ids */
  unsigned stopped[STOPPED_MAX];  /* the ids of tasks sent ahead it stopped last */
  unsigned nstopped;
} worker;

static worker *the_worker;  /* the signal handler's way to it */

/* ---- talking to the host ----------------------------------------------- */

static void send_frame(worker *wk, int kind, int flags, uint32_t id, const void *b, size_t n) {
  if (lp_frame_append(&wk->out, kind, flags, id, b, n)) _exit(EXIT_NOMEM);
  if (lp_write_all(LP_FD_OUT, &wk->out)) _exit(EXIT_HOST_GONE);
}

static int host_message(void *ud, lp_buf *body) {
  worker *wk = (worker *)ud;
  send_frame(wk, LP_FRAME_MESSAGE, 0, 0, body->data, body->len);
  lp_buf_free(body);
  return 0;
}

static void host_event(void *ud, const char *text) {
  send_frame((worker *)ud, LP_FRAME_ERROR, 0, 0, text, strlen(text));
}

/* The next frame from the host; the end of its input ends the worker. */
static void next_frame(worker *wk, lp_frame *f) {
  int r = lp_reader_next(&wk->rd, f);
  if (r > 0) return;
  lp_state_free(&wk->st);  /* teardown; the host reads its events */
  exit(r == 0 ? 0 : EXIT_PROTOCOL);  /* stdio flushed: what tasks printed */
}

/* ---- starting ---------------------------------------------------------- */

/* Only fds 0-6 are ours; what else the exec let through is closed. */
static void close_others(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, LP_FD_STOPS + 1, ~0U, 0) == 0) return;
#endif
  DIR *d = opendir("/proc/self/fd");
  struct dirent *e;
  if (!d) return;
  while ((e = readdir(d))) {
    int fd = atoi(e->d_name);
    if (fd > LP_FD_STOPS && fd != dirfd(d)) close(fd);
  }
  closedir(d);
}

/* Our fds 3-6 are not for the programs a task may start (os.execute,
** io.popen): one holding fd 4 would keep the host from seeing us end. */
static void keep_fds_to_self(void) {
  int fd;
  for (fd = LP_FD_IN; fd <= LP_FD_STOPS; fd++) fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* Blocks on the lifeline, whose write end only the host holds: it reads
** end of file once the host has gone, however it went. */
static void *watchdog(void *arg) {
  char c;
  ssize_t r;
  (void)arg;
  do r = read(LP_FD_LIFE, &c, 1);
  while (r < 0 && errno == EINTR);
  _exit(EXIT_HOST_GONE);
  return NULL;
}

static void on_signal(int sig, siginfo_t *si, void *uc) {
  worker *wk = the_worker;
  unsigned id;
  (void)uc;
  if (!wk || si->si_code != SI_QUEUE || si->si_pid != getppid()) return;
  id = (unsigned)si->si_value.sival_int;
  if (sig != LP_PROC_SIGNAL) {  /* tasks sent ahead: serve will not start them */
    atomic_store(&wk->stops, 1);
    return;
  }
  if (id) atomic_store(&wk->cancel, id);
  else atomic_store(&wk->stop, 1);
  lp_interrupt_signalled(&wk->st.intr);
}

/* Whether the host stopped task id, sent ahead, before it started. */
static int stopped_ahead(worker *wk, unsigned id) {
  unsigned ids[64];
  ssize_t n;
  int i;
  if (atomic_exchange(&wk->stops, 0))
    while ((n = read(LP_FD_STOPS, ids, sizeof ids)) > 0)
      for (i = 0; i < (int)(n / sizeof *ids); i++) wk->stopped[wk->nstopped++ % STOPPED_MAX] = ids[i];
  for (i = 0; wk->nstopped && i < STOPPED_MAX; i++)
    if (wk->stopped[i] == id) return 1;
  return 0;
}

/* The watchdog with every signal blocked, so the host's go to the main thread. */
static int start_watchdog(void) {
  sigset_t all, old;
  pthread_t t;
  struct sigaction sa;
  int r;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  if (sigaction(LP_PROC_SIGNAL, &sa, NULL) || sigaction(LP_PROC_AHEAD_SIGNAL, &sa, NULL))
    return -1;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  r = pthread_create(&t, NULL, watchdog, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return r || pthread_detach(t) ? -1 : 0;
}

static void hello(worker *wk) {
  lp_hello mine;
  lp_frame f;
  char err[256];
  const char *fake = getenv("LUAPOOL_WORKER_FAKE_LUA");  /* a test hook (spec) */
  lp_hello_make(&mine);
  if (fake) mine.lua = (uint32_t)atoi(fake);
  send_frame(wk, LP_FRAME_HELLO, 0, 0, &mine, sizeof mine);
  next_frame(wk, &f);
  if (f.kind != LP_FRAME_HELLO || lp_hello_check(&mine, f.body, f.len, err, sizeof err))
    _exit(EXIT_PROTOCOL);  /* the host found the same mismatch and says why */
}

static int get_string(const unsigned char **p, const unsigned char *end, char **out) {
  const char *s;
  size_t n;
  if (lp_field_get(p, end, &s, &n)) return -1;
  if (s && !(*out = strndup(s, n))) _exit(EXIT_NOMEM);
  return 0;
}

/* A large result's bytes so far (the encoder's flush, state.h): a PART frame
** now, so that the host reads it while the rest is written. */
static int put_part(void *ud, lp_buf *part) {
  worker *wk = (worker *)ud;
  if (lp_frame_append(&wk->out, LP_FRAME_PART, 0, wk->task, part->data, part->len)) return -1;
  if (lp_write_all(LP_FD_OUT, &wk->out)) _exit(EXIT_HOST_GONE);
  part->len = 0;
  return 0;
}

static int get_bytes(const unsigned char **p, const unsigned char *end, lp_buf *b) {
  const char *s;
  size_t n;
  if (lp_field_get(p, end, &s, &n)) return -1;
  b->data = (char *)s;
  b->len = n;
  b->cap = 0;  /* not owned */
  return 0;
}

static void configure(worker *wk) {
  lp_state_config *c = &wk->cfg;
  const unsigned char *p, *end;
  uint64_t heap, isolate, id, thread_id;
  lp_frame f;
  int i, bad = 0;
  next_frame(wk, &f);
  if (f.kind != LP_FRAME_CONFIG) _exit(EXIT_PROTOCOL);
  if (lp_buf_put(&wk->config, f.body, f.len)) _exit(EXIT_NOMEM);
  p = (const unsigned char *)wk->config.data;
  end = p + wk->config.len;
  for (i = 0; i < 5; i++) bad = bad || get_string(&p, end, &wk->strs[i]);
  bad = bad || get_bytes(&p, end, &c->bytecode) || get_bytes(&p, end, &c->handler) ||
        get_bytes(&p, end, &c->worker_data) || lp_varint_get(&p, end, &heap) ||
        lp_varint_get(&p, end, &isolate) || lp_varint_get(&p, end, &id) ||
        lp_varint_get(&p, end, &thread_id);
  if (bad) _exit(EXIT_PROTOCOL);
  c->filename = wk->strs[0];
  c->name = wk->strs[1];
  c->path = wk->strs[2];
  c->cpath = wk->strs[3];
  c->teardown = wk->strs[4];
  c->runtime = "process";
  c->max_heap = (size_t)heap;
  c->isolate = isolate != 0;
  wk->st.cfg = c;
  wk->st.worker_id = (int)id;
  wk->st.thread_id = (lua_Integer)thread_id;  /* the host's threadId of this worker */
  wk->st.host.ud = wk;
  wk->st.host.message = host_message;
  wk->st.host.event = host_event;
  wk->st.host.result = put_part;
  wk->st.host.result_chunk = LP_PART_BYTES;
  wk->st.intr.cancel = &wk->cancel;
  wk->st.intr.stop = &wk->stop;
}

/* Opens the state and says READY (flags 1 and why, when it could not). */
static int open_state(worker *wk) {
  char err[256];
  uint64_t heap;
  if (lp_state_open(&wk->st, err, sizeof err)) {
    send_frame(wk, LP_FRAME_READY, 1, 0, err, strlen(err));
    return -1;
  }
  heap = lp_state_heap(&wk->st);  /* then what loading the task file told, if it failed */
  if (lp_frame_header(&wk->out, LP_FRAME_READY, 0, 0, sizeof heap + strlen(wk->st.load_error)))
    _exit(EXIT_NOMEM);
  lp_buf_put(&wk->out, &heap, sizeof heap);  /* room was made */
  lp_buf_put(&wk->out, wk->st.load_error, strlen(wk->st.load_error));
  if (lp_write_all(LP_FD_OUT, &wk->out)) _exit(EXIT_HOST_GONE);
  return 0;
}

/* ---- serving ----------------------------------------------------------- */

/* Runs a task and sends its result; 1 when it was this state's last (it
** was stopped, or called os.exit). */
static int serve(worker *wk, const lp_frame *f) {
  int failed, stopped;
  uint64_t head[2];  /* heap bytes, then the task's time in ns */
  head[1] = lp_now_ns();
  if (stopped_ahead(wk, f->id)) {  /* its state is untouched */
    static const char *const err[4] = {"aborted", "The task has been aborted", NULL, NULL};
    if (lp_encode_strings(&wk->outcome, err, 4)) _exit(EXIT_NOMEM);
    failed = 1;
    stopped = 0;
  } else {
    wk->task = f->id;
    stopped = lp_state_run(&wk->st, f->id, f->body, f->len, NULL, NULL, &wk->outcome, &failed);
  }
  head[1] = lp_now_ns() - head[1];
  head[0] = lp_state_heap(&wk->st);
  if (lp_frame_header(&wk->out, LP_FRAME_RESULT,
                      (failed ? LP_RESULT_FAILED : 0) | (stopped ? LP_RESULT_STOPPED : 0),
                      f->id, sizeof head + wk->outcome.len))
    _exit(EXIT_NOMEM);
  lp_buf_put(&wk->out, head, sizeof head);  /* room was made */
  if (wk->outcome.len) lp_buf_put(&wk->out, wk->outcome.data, wk->outcome.len);
  wk->outcome.len = 0;
  if (lp_write_all(LP_FD_OUT, &wk->out)) _exit(EXIT_HOST_GONE);
  if (!stopped && wk->cfg.isolate) {  /* the next task's fresh state, made now */
    lp_state_close(&wk->st);
    open_state(wk);  /* the host waits for its READY while idle */
  }
  return stopped;
}

int main(void) {
  static worker wk;
  lp_frame f;
  close_others();
  keep_fds_to_self();
  wk.rd.fd = LP_FD_IN;
  the_worker = &wk;
  if (start_watchdog()) return EXIT_NOMEM;
  hello(&wk);
  configure(&wk);
  if (open_state(&wk)) return 1;
  do {
    next_frame(&wk, &f);
    if (f.kind != LP_FRAME_TASK) _exit(EXIT_PROTOCOL);
  } while (!serve(&wk, &f));
  for (;;) next_frame(&wk, &f);  /* tasks sent ahead go to another worker */
}
