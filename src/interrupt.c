/* Interrupting workers: a signal to the worker thread, a hook set there. */
#define _GNU_SOURCE
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include "interrupt.h"

#define INTERRUPT_SIGNAL (SIGRTMIN + 5)
#define WORKER_KEY "luapool.worker"

static int should_stop(lp_worker *w) {
  lp_task *t = atomic_load(&w->current);
  return atomic_load(&w->pool->stop) || w->exiting ||
         (t && atomic_load(&w->cancel) == t);
}

void lp_interrupt_hook(lua_State *L, lua_Debug *ar) {
  lp_worker *w;
  (void)ar;
  lua_getfield(L, LUA_REGISTRYINDEX, WORKER_KEY);
  w = (lp_worker *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (w && !should_stop(w)) {  /* a stale request: carry on */
    lua_sethook(L, NULL, 0, 0);
    if (!should_stop(w)) return;  /* unless a real one came meanwhile */
  }
  if (w && w->exiting) luaL_error(L, "luapool: worker exited");
  luaL_error(L, "luapool: task interrupted");
}

static void on_signal(int sig, siginfo_t *si, void *uc) {
  lp_worker *w;
  lua_State *L;
  (void)sig;
  (void)uc;
  if (si->si_code != SI_QUEUE || !(w = (lp_worker *)si->si_value.sival_ptr)) return;
  L = atomic_load(&w->running);
  if (L) lua_sethook(L, lp_interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

int lp_interrupt_install(void) {
  struct sigaction old, sa;
  if (sigaction(INTERRUPT_SIGNAL, NULL, &old)) return -1;
  if ((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_signal) return 0;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_RESTART;
  sigemptyset(&sa.sa_mask);
  return sigaction(INTERRUPT_SIGNAL, &sa, NULL);
}

void lp_interrupt_thread_init(void) {
  sigset_t s;
  sigemptyset(&s);
  sigaddset(&s, INTERRUPT_SIGNAL);
  pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

int lp_interrupt_enter(lp_worker *w, lp_task *t) {
  lua_State *L = w->L;
  if (lua_gethook(L)) lua_sethook(L, NULL, 0, 0);  /* a request come too late */
  lua_pushlightuserdata(L, w);
  lua_setfield(L, LUA_REGISTRYINDEX, WORKER_KEY);
  atomic_store(&w->current, t);
  atomic_store(&w->running, L);
  return !should_stop(w);  /* a request sent before `running` was set */
}

void lp_interrupt_leave(lp_worker *w) {
  lp_task *t = atomic_load(&w->current);
  atomic_store(&w->running, NULL);
  atomic_compare_exchange_strong(&w->cancel, &t, NULL);
  atomic_store(&w->current, NULL);
  if (lua_gethook(w->L)) lua_sethook(w->L, NULL, 0, 0);
}

void lp_interrupt(lp_worker *w) {
  union sigval v;
  v.sival_ptr = w;
  pthread_sigqueue(w->thread, INTERRUPT_SIGNAL, v);  /* ESRCH: it ended */
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
