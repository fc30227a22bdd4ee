/* os.execute and io.popen for thread workers' states. glibc's system() and
** popen() give the program they start the calling thread's signal mask: a
** worker thread's, which blocks all but the interrupt signal and the faults
** (interrupt.c), so a task's `exec sleep 100` could be ended by SIGKILL
** alone, not by Ctrl-C, kill or timeout (dash clears the mask of the
** commands it forks, not of those it execs; other shells keep it). Ours start `sh -c cmd` as system()
** does, with the mask of the thread that made the pool instead: a task's
** commands start as the host's own would. Results are those of the running
** Lua's os.execute and io.popen. Process workers keep Lua's own: their
** program's main thread blocks nothing.
**
** What system() does besides: it ignores SIGINT and SIGQUIT in the whole
** process while the command runs, so that Ctrl-C ends the command and not
** the program waiting for it. Here the waiting thread blocks both already,
** and the host must keep its own Ctrl-C: we leave the process's handlers
** alone, and give the child SIGINT and SIGQUIT at their defaults unless the
** host ignored them (as system() does). It blocks SIGCHLD while it waits:
** so does the worker thread; a host thread whose SIGCHLD handler reaps
** every child can still take our child's status (waitpid: ECHILD), and
** os.execute then fails as system() does. Unlike system(), the wait ends
** when the task is stopped, and ends the command (wait_for). */
#define _GNU_SOURCE  /* pipe2, environ */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "interrupt.h"
#include "spawn.h"

#define SHELL "/bin/sh"

void lp_spawn_record(lp_spawn_host *h) {
  static const int reset[] = {SIGINT, SIGQUIT};
  struct sigaction sa;
  size_t i;
  pthread_sigmask(SIG_SETMASK, NULL, &h->mask);  /* cannot fail: no change asked */
  sigemptyset(&h->dfl);
  for (i = 0; i < sizeof reset / sizeof *reset; i++)
    if (sigaction(reset[i], NULL, &sa) || (sa.sa_flags & SA_SIGINFO) || sa.sa_handler != SIG_IGN)
      sigaddset(&h->dfl, reset[i]);
}

/* ---- starting and waiting ---------------------------------------------- */

/* Starts `sh -c cmd` with the host's mask; fa: the child's stdio, or NULL.
** 0, or an errno value. */
static int start(const lp_spawn_host *h, const char *cmd, const posix_spawn_file_actions_t *fa,
                 pid_t *pid) {
  /* "--": a cmd beginning with '-' is a command (POSIX.1-2024's system()) */
  char *argv[] = {"sh", "-c", "--", (char *)cmd, NULL};
  posix_spawnattr_t at;
  int r = posix_spawnattr_init(&at);
  if (r) return r;
  if (posix_spawnattr_setsigmask(&at, &h->mask) || posix_spawnattr_setsigdefault(&at, &h->dfl) ||
      posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
    r = EINVAL;
  else
    r = posix_spawn(pid, SHELL, fa, &at, argv, environ);
  posix_spawnattr_destroy(&at);
  return r;
}

/* A stopped task's command gets SIGTERM, then SIGKILL after this long. */
#define GRACE_MS 200
/* The longest pause between looks at the child and the task: with a pidfd
** its end wakes the wait, and so does the interrupt signal (this bounds the
** wait should the host have taken the signal over); without, it is polled. */
#define PAUSE_MS(fd) ((fd) >= 0 ? 100 : 10)

/* Waits at most ms (-1: PAUSE_MS) for the child, through its pidfd fd (or,
** fd < 0, a timer), unless i, the task's interrupt, asks to stop: 1 then,
** else 0. The thread takes its signals (the interrupt) only within ppoll,
** so a request comes before the check or wakes the wait. */
static int pause_for(int fd, lp_intr *i, int ms) {
  struct pollfd p;
  struct timespec ts;
  sigset_t all, mine;
  int stop;
  if (ms < 0 || ms > PAUSE_MS(fd)) ms = PAUSE_MS(fd);
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  p.fd = fd;
  p.events = POLLIN;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &mine);  /* cannot fail: a valid set */
  if (!(stop = i && lp_interrupt_pending(i)))
    ppoll(&p, fd >= 0, &ts, &mine);  /* any answer: the caller looks again */
  pthread_sigmask(SIG_SETMASK, &mine, NULL);
  return stop;
}

/* waitpid(pid) with WNOHANG when !block: pid, 0, or -1 with errno. */
static pid_t reap(pid_t pid, int *stat, int block) {
  pid_t r;
  do r = waitpid(pid, stat, block ? 0 : WNOHANG);
  while (r < 0 && errno == EINTR);
  return r;
}

/* Signals the child; through its pidfd, if any, so that a pid a host's
** SIGCHLD handler reaped and the system gave to another is not hit. Errors
** are for a child reaped so, which reap then reports (ECHILD). */
static void send(pid_t pid, int fd, int sig) {
#ifdef SYS_pidfd_send_signal
  if (fd >= 0) {
    syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0);
    return;
  }
#endif
  kill(pid, sig);
}

/* Ends a child that has not ended: SIGTERM, SIGKILL after GRACE_MS. */
static pid_t end_child(pid_t pid, int fd, int *stat) {
  uint64_t until = lp_now_ns() + GRACE_MS * 1000000ull, now;
  pid_t r;
  send(pid, fd, SIGTERM);
  while (!(r = reap(pid, stat, 0)) && (now = lp_now_ns()) < until)
    pause_for(fd, NULL, (int)((until - now) / 1000000u) + 1);
  if (r) return r;
  send(pid, fd, SIGKILL);
  return reap(pid, stat, 1);
}

/* The child's wait status, or -1 with errno. When the task running in L is
** stopped meanwhile (cancel, timeout, abort, destroy), the child is ended
** and reaped, and the interrupt raises as its hook would. The signals go
** to the shell alone: it shares the host's process group (see README). */
static int wait_for(lua_State *L, pid_t pid) {
  lp_intr *i = lp_interrupt_get(L);
#ifdef SYS_pidfd_open  /* Linux 5.3; without it, slices */
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
#else
  int fd = -1;
#endif
  int stat = 0, stopped = 0, en;
  pid_t r;
  while (!(r = reap(pid, &stat, 0)))
    if ((stopped = pause_for(fd, i, -1))) {
      r = end_child(pid, fd, &stat);
      break;
    }
  en = errno;
  if (fd >= 0) close(fd);
  if (stopped) lp_interrupt_hook(L, NULL);  /* raises: the task is to stop */
  errno = en;
  return r < 0 ? -1 : stat;
}

/* system(cmd): the wait status; one the shell could not be started gives
** W_EXITCODE(127, 0) with errno set, as glibc's does. */
static int run(lua_State *L, const lp_spawn_host *h, const char *cmd) {
  pid_t pid;
  int r = start(h, cmd, NULL, &pid);
  if (r) {
    errno = r;
    return 127 << 8;
  }
  return wait_for(L, pid);
}

/* ---- os.execute -------------------------------------------------------- */

/* Results from a wait status: 5.2's (true|nil, "exit"|"signal", code), or
** 5.1's (the status as it is). */
static int push_status(lua_State *L, int v52, int stat) {
#if LUA_VERSION_NUM >= 502 || defined(LUA_JITLIBNAME)
  if (v52) return luaL_execresult(L, stat);
#else
  (void)v52;
#endif
  lua_pushinteger(L, stat);
  return 1;
}

/* os.execute([cmd]), with upvalues the host's record and whether this Lua
** gives 5.2's results. Without cmd: whether there is a shell, as
** system(NULL) finds out (running one). */
static int execute(lua_State *L) {
  const lp_spawn_host *h = (const lp_spawn_host *)lua_touserdata(L, lua_upvalueindex(1));
  int v52 = lua_toboolean(L, lua_upvalueindex(2));
  const char *cmd = luaL_optstring(L, 1, NULL);
  int stat;
  errno = 0;  /* as Lua's: 5.4 takes errno to tell a failure from a status */
  stat = run(L, h, cmd ? cmd : "exit 0");
  if (cmd) return push_status(L, v52, stat);
  if (v52) lua_pushboolean(L, stat == 0);
  else lua_pushinteger(L, stat == 0);
  return 1;
}

/* Whether os.execute gives 5.2's results. LuaJIT does when built with 5.2
** compatibility, which its headers do not tell and its library shows:
** table.pack is there only then. */
static int gives_52(lua_State *L) {
#if LUA_VERSION_NUM >= 502
  (void)L;
  return 1;
#elif defined(LUA_JITLIBNAME)
  int r;
  lua_getglobal(L, "table");
  lua_getfield(L, -1, "pack");
  r = !lua_isnil(L, -1);
  lua_pop(L, 2);
  return r;
#else
  (void)L;
  return 0;
#endif
}

/* ---- io.popen ---------------------------------------------------------- */

#if defined(LUA_JITLIBNAME)
/* io.popen(...), with upvalues the host's record and LuaJIT's io.popen.
** LuaJIT's file objects are its own (a private layout, a type no API
** sets), so its popen makes them, with this thread's mask set to the
** host's for the call: popen gives the child the caller's. For that moment
** (a pipe and a spawn; the thread blocks until the child has exec'd) this
** thread takes the signals the host's thread takes: a signal sent to the
** process may run the host's handler here rather than there, as on any
** thread the host starts; none that the host blocks (to take it with
** sigwait or signalfd, say) can land here, which is what the worker's mask
** is for. */
static int popen_masked(lua_State *L) {
  const lp_spawn_host *h = (const lp_spawn_host *)lua_touserdata(L, lua_upvalueindex(1));
  sigset_t old;
  int r;
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  if (pthread_sigmask(SIG_SETMASK, &h->mask, &old)) return luaL_error(L, "io.popen: bad signal mask");
  r = lua_pcall(L, lua_gettop(L) - 1, LUA_MULTRET, 0);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (r != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

static void push_popen(lua_State *L, const lp_spawn_host *h) {
  lua_pushlightuserdata(L, (void *)h);
  lua_getfield(L, -2, "popen");
  lua_pushcclosure(L, popen_masked, 2);
}
#else
/* Starts cmd with its stdout (stdin when w) on a pipe; our end as a stream,
** or NULL with errno, as popen(). Our end is close-on-exec: no other
** program started in this process holds it (popen closes its own streams
** in its children). */
static FILE *open_child(const lp_spawn_host *h, const char *cmd, int w, pid_t *pid) {
  posix_spawn_file_actions_t fa;
  FILE *f = NULL;
  int p[2], theirs, r = 0;
  if (pipe2(p, O_CLOEXEC)) return NULL;
  /* theirs away from 0-2: a dup2 onto itself would leave it close-on-exec */
  if ((theirs = fcntl(p[!w], F_DUPFD_CLOEXEC, 3)) < 0) r = errno;
  close(p[!w]);
  if (!r && !(f = fdopen(p[w], w ? "w" : "r"))) r = errno;
  if (!r && !(r = posix_spawn_file_actions_init(&fa))) {
    if (!(r = posix_spawn_file_actions_adddup2(&fa, theirs, !w))) r = start(h, cmd, &fa, pid);
    posix_spawn_file_actions_destroy(&fa);
  }
  if (theirs >= 0) close(theirs);
  if (!r) return f;
  if (f) fclose(f);
  else close(p[w]);
  errno = r;
  return NULL;
}

/* pclose(): the child's wait status, or -1 with errno; raises when the
** task is stopped meanwhile (f is closed by then). */
static int close_child(lua_State *L, FILE *f, pid_t pid) {
  fclose(f);  /* the child reads end of file, or its writes fail */
  return wait_for(L, pid);
}

/* A file object of the io library on our child: the io library sees a
** luaL_Stream (5.2+: documented) or a FILE * (5.1: its layout, frozen
** since 5.1.5) at its start. */
typedef struct child_file {
#if LUA_VERSION_NUM >= 502
  luaL_Stream s;
#define c_file(c) ((c)->s.f)
#else
  FILE *f;
#define c_file(c) ((c)->f)
#endif
  pid_t pid;
} child_file;

#if LUA_VERSION_NUM >= 502
/* The stream's closef: 5.2+'s io_pclose, on our child. */
static int close_file(lua_State *L) {
  child_file *c = (child_file *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  int stat;
  errno = 0;
  stat = close_child(L, c->s.f, c->pid);  /* io's aux_close marked it closed */
  return luaL_execresult(L, stat);
}

/* A closed file (what __gc ignores), until the child runs. */
static child_file *new_file(lua_State *L) {
  child_file *c = (child_file *)lua_newuserdata(L, sizeof *c);
  c->s.f = NULL;
  c->s.closef = NULL;
  luaL_setmetatable(L, LUA_FILEHANDLE);
  return c;
}

static void opened(child_file *c) {
  c->s.closef = close_file;
}

static int failed(lua_State *L, const char *cmd) {
  return luaL_fileresult(L, 0, cmd);
}
#else
/* 5.1's results: true, or nil, message, errno. */
static int pushresult(lua_State *L, int ok, const char *cmd) {
  int en = errno;
  if (ok) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  if (cmd) lua_pushfstring(L, "%s: %s", cmd, strerror(en));
  else lua_pushstring(L, strerror(en));
  lua_pushinteger(L, en);
  return 3;
}

/* The __close of the file's environment (5.1's io library closes a file
** with it): 5.1's io_pclose, on our child. */
static int close_file(lua_State *L) {
  child_file *c = (child_file *)luaL_checkudata(L, 1, LUA_FILEHANDLE);
  FILE *f = c->f;
  int ok;
  c->f = NULL;  /* first: close_child may raise */
  ok = close_child(L, f, c->pid) != -1;
  return pushresult(L, ok, NULL);
}

/* A closed file (what __gc ignores), until the child runs; upvalue 2 of
** the caller is its environment. */
static child_file *new_file(lua_State *L) {
  child_file *c = (child_file *)lua_newuserdata(L, sizeof *c);
  c->f = NULL;
  luaL_getmetatable(L, LUA_FILEHANDLE);
  lua_setmetatable(L, -2);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_setfenv(L, -2);
  return c;
}

static void opened(child_file *c) {
  (void)c;
}

static int failed(lua_State *L, const char *cmd) {
  return pushresult(L, 0, cmd);
}
#endif

/* 5.3+ check the mode; 5.1 and 5.2 leave it to popen(), which takes an 'e'. */
static int good_mode(lua_State *L, const char *m) {
  int rw = m[0] == 'r' || m[0] == 'w';
#if LUA_VERSION_NUM >= 503
  luaL_argcheck(L, rw && m[1] == '\0', 2, "invalid mode");
#else
  (void)L;
  if (rw && m[1] == 'e') m++;
#endif
  return rw && m[1] == '\0';
}

/* io.popen(cmd [, mode]), with upvalue the host's record (and in 5.1 the
** files' environment). */
static int popen_child(lua_State *L) {
  const lp_spawn_host *h = (const lp_spawn_host *)lua_touserdata(L, lua_upvalueindex(1));
  const char *cmd = luaL_checkstring(L, 1), *mode = luaL_optstring(L, 2, "r");
  child_file *c;
  if (!good_mode(L, mode)) {
    errno = EINVAL;  /* popen()'s answer, which 5.1 and 5.2 pass on */
    return failed(L, cmd);
  }
  c = new_file(L);  /* first: nothing raises once the child runs */
  if (!(c_file(c) = open_child(h, cmd, mode[0] == 'w', &c->pid))) return failed(L, cmd);
  opened(c);
  return 1;
}

static void push_popen(lua_State *L, const lp_spawn_host *h) {
  lua_pushlightuserdata(L, (void *)h);
#if LUA_VERSION_NUM >= 502
  lua_pushcclosure(L, popen_child, 1);
#else
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, close_file);
  lua_setfield(L, -2, "__close");
  lua_pushcclosure(L, popen_child, 2);
#endif
}
#endif

void lp_spawn_open(lua_State *L, const lp_spawn_host *h) {
  lua_getglobal(L, "os");
  lua_pushlightuserdata(L, (void *)h);
  lua_pushboolean(L, gives_52(L));
  lua_pushcclosure(L, execute, 2);
  lua_setfield(L, -2, "execute");
  lua_getglobal(L, "io");
  push_popen(L, h);
  lua_setfield(L, -2, "popen");
  lua_pop(L, 2);
}
