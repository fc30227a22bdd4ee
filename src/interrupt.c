/* Interrupting workers: a signal to the worker thread, a hook set there. */
#define _GNU_SOURCE
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include "interrupt.h"

#define FIRST_SIGNAL (SIGRTMIN + 5)  /* glibc and common libraries use the lowest */
#define INTR_KEY "luapool.intr"

int lp_interrupt_pending(lp_intr *i) {
  unsigned id = atomic_load(&i->current);
  return atomic_load(i->stop) || i->exiting || (id && atomic_load(i->cancel) == id);
}

lp_intr *lp_interrupt_get(lua_State *L) {
  lp_intr *i;
  lua_getfield(L, LUA_REGISTRYINDEX, INTR_KEY);
  i = (lp_intr *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return i;
}

void lp_interrupt_hook(lua_State *L, lua_Debug *ar) {
  lp_intr *i = lp_interrupt_get(L);
  (void)ar;
  if (i && !lp_interrupt_pending(i)) {  /* a stale request: carry on */
    lua_sethook(L, NULL, 0, 0);
    if (!lp_interrupt_pending(i)) return;  /* unless a real one came meanwhile */
  }
  if (i && i->exiting) luaL_error(L, "luapool: worker exited");
  luaL_error(L, "luapool: task interrupted");
}

void lp_interrupt_signalled(lp_intr *i) {
  lua_State *L = atomic_load(&i->running);
  if (L) lua_sethook(L, lp_interrupt_hook, LP_HOOK_MASK, 1);
}

static void on_signal(int sig, siginfo_t *si, void *uc) {
  lp_intr *i;
  (void)sig;
  (void)uc;
  if (si->si_code != SI_QUEUE || !(i = (lp_intr *)si->si_value.sival_ptr)) return;
  lp_interrupt_signalled(i);
}

static int is_ours(const struct sigaction *sa) {
  return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_signal;
}

static int is_free(const struct sigaction *sa) {
  return !(sa->sa_flags & SA_SIGINFO) && sa->sa_handler == SIG_DFL;
}

/* The process's signal table is the only record: a signal that has our
** handler is ours; else the first real-time signal nobody handles or
** ignores becomes ours. A host's handler is never replaced. */
int lp_interrupt_install(void) {
  struct sigaction old, sa;
  int sig;
  for (sig = FIRST_SIGNAL; sig <= SIGRTMAX; sig++)
    if (sigaction(sig, NULL, &old) == 0 && is_ours(&old)) return sig;
  for (sig = FIRST_SIGNAL; sig <= SIGRTMAX; sig++)
    if (sigaction(sig, NULL, &old) == 0 && is_free(&old)) break;
  if (sig > SIGRTMAX) return -1;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL) ? -1 : sig;
}

int lp_interrupt_block_signals(int sig, sigset_t *old) {
  static const int faults[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP, SIGSYS, SIGABRT};
  sigset_t s;
  size_t i;
  sigfillset(&s);
  for (i = 0; i < sizeof faults / sizeof *faults; i++) sigdelset(&s, faults[i]);
  sigdelset(&s, sig);
  return pthread_sigmask(SIG_SETMASK, &s, old) ? -1 : 0;
}

void lp_interrupt_attach(lp_intr *i, lua_State *L) {
  lua_pushlightuserdata(L, i);
  lua_setfield(L, LUA_REGISTRYINDEX, INTR_KEY);
}

int lp_interrupt_enter(lp_intr *i, lua_State *L, unsigned id) {
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);  /* a request come too late */
  atomic_store(&i->current, id);
  atomic_store(&i->running, L);
  return !lp_interrupt_pending(i);  /* a request sent before `running` was set */
}

void lp_interrupt_leave(lp_intr *i, lua_State *L) {
  atomic_store(&i->running, NULL);
  atomic_store(&i->current, 0);
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);
}

int lp_interrupt_is_ours(int sig) {
  struct sigaction sa;
  return sigaction(sig, NULL, &sa) == 0 && is_ours(&sa);
}

void lp_interrupt_thread(pthread_t thread, lp_intr *i, int sig) {
  union sigval v;
  v.sival_ptr = i;
  pthread_sigqueue(thread, sig, v);  /* ESRCH: it ended */
}

uint64_t lp_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int lp_join_until(pthread_t thread, uint64_t deadline_ns) {
  /* pthread_timedjoin_np counts on the realtime clock: convert. */
  uint64_t now = lp_now_ns(), left = deadline_ns > now ? deadline_ns - now : 0;
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  ts.tv_sec += (time_t)(left / 1000000000u);
  ts.tv_nsec += (long)(left % 1000000000u);
  if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
  return pthread_timedjoin_np(thread, NULL, &ts) == 0 ? 0 : -1;
}

/* ---- coroutines, for PUC Lua ------------------------------------------- */

#if !defined(LUA_JITLIBNAME)  /* LuaJIT's hook is one for all coroutines */
static lp_intr *upintr(lua_State *L) {
  return (lp_intr *)lua_touserdata(L, lua_upvalueindex(1));
}

/* resume(co, ...), with upvalues worker and the original resume: while co
** runs it is the state that an interrupt hooks. */
static int co_resume(lua_State *L) {
  lp_intr *w = upintr(L);
  lua_State *co = lua_tothread(L, 1), *prev = NULL;
  int n = lua_gettop(L), r;
  if (co && (prev = atomic_load(&w->running)) != NULL) {
    atomic_store(&w->running, co);
    if (lp_interrupt_pending(w)) lua_sethook(co, lp_interrupt_hook, LP_HOOK_MASK, 1);
  }
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_insert(L, 1);
  r = lua_pcall(L, n, LUA_MULTRET, 0);
  if (prev) {
    atomic_store(&w->running, prev);
    if (lp_interrupt_pending(w)) lua_sethook(L, lp_interrupt_hook, LP_HOOK_MASK, 1);
  }
  if (r != LUA_OK) return lua_error(L);
  return lua_gettop(L);
}

/* The function coroutine.wrap returns; upvalues: the coroutine, resume. */
static int co_wrapped(lua_State *L) {
  int n = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_insert(L, 1);
  lua_call(L, n + 1, LUA_MULTRET);
  if (!lua_toboolean(L, 1)) {  /* the error, as wrap propagates it */
    lua_settop(L, 2);
    return lua_error(L);
  }
  return lua_gettop(L) - 1;
}

/* wrap(f), with upvalue our resume. */
static int co_wrap(lua_State *L) {
  lua_State *co;
  luaL_checktype(L, 1, LUA_TFUNCTION);
  co = lua_newthread(L);
  lua_pushvalue(L, 1);
  lua_xmove(L, co, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_pushcclosure(L, co_wrapped, 2);
  return 1;
}

void lp_interrupt_wrap_coroutines(lua_State *L, lp_intr *w) {
  lua_pushlightuserdata(L, w);
  lua_getfield(L, -2, "resume");
  lua_pushcclosure(L, co_resume, 2);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "resume");
  lua_pushcclosure(L, co_wrap, 1);
  lua_setfield(L, -2, "wrap");
}
#else
void lp_interrupt_wrap_coroutines(lua_State *L, lp_intr *w) {
  (void)L;
  (void)w;
}
#endif
