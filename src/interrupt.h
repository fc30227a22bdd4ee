/* Stopping the Lua code a worker state runs, from another thread or
** process. The stopper marks what is to stop and sends the thread running
** the state a signal; the handler, on that thread, sets a hook on the state
** it is running (as lua.c and luajit.c do for Ctrl-C), and the hook raises.
** Code that LuaJIT compiled into a loop that never leaves its trace does
** not run hooks and cannot be stopped this way. */
#ifndef LUAPOOL_INTERRUPT_H
#define LUAPOOL_INTERRUPT_H

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include "compat.h"

/* What a state's interrupt looks at. Task ids are never 0. */
typedef struct lp_intr {
  _Atomic(lua_State *) running;   /* the state (coroutine) running task code */
  atomic_uint current;            /* id of the task it runs; 0: none */
  const atomic_uint *cancel;      /* id of a task to stop */
  const atomic_int *stop;         /* everything is to stop */
  int exiting;                    /* os.exit was called */
} lp_intr;

/* Finds or installs the process's interrupt signal: a real-time signal
** from SIGRTMIN+5 up that has our handler, else the first that has none.
** Returns its number, or -1 when every one is taken. */
int lp_interrupt_install(void);
/* Whether sig still has our handler: a host may have taken it over. */
int lp_interrupt_is_ours(int sig);
/* Blocks every signal but sig and faults in the calling thread, so that a
** thread it creates starts so (the host's signals go to its own threads);
** old receives the mask to restore. 0 or -1. */
int lp_interrupt_block_signals(int sig, sigset_t *old);
/* Once, as the state is set up: i is the interrupt of state L. */
void lp_interrupt_attach(lp_intr *i, lua_State *L);
/* Around each task's Lua code, on the state's thread; enter returns 0 when
** the task is to stop before it starts. */
int lp_interrupt_enter(lp_intr *i, lua_State *L, unsigned id);
void lp_interrupt_leave(lp_intr *i, lua_State *L);
/* The interrupt of the worker state L belongs to, or NULL (the host's). A
** wait in C code asks lp_interrupt_pending between short slices. */
lp_intr *lp_interrupt_get(lua_State *L);
/* Whether the task i runs (or everything) is to stop. */
int lp_interrupt_pending(lp_intr *i);
/* In a signal handler on the state's thread: hooks the running state. */
void lp_interrupt_signalled(lp_intr *i);
/* PUC Lua keeps a hook per coroutine: in worker states, coroutine.resume
** and coroutine.wrap are replaced so that an interrupt reaches the
** coroutine running. Pushes nothing; expects the `coroutine` table on top. */
void lp_interrupt_wrap_coroutines(lua_State *L, lp_intr *i);
#define LP_HOOK_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
/* The hook itself, also used by os.exit in workers. */
void lp_interrupt_hook(lua_State *L, lua_Debug *ar);
/* Asks the thread running i's state to look at it (thread runtime), with
** the process's interrupt signal sig. */
void lp_interrupt_thread(pthread_t thread, lp_intr *i, int sig);
/* Joins a thread unless the monotonic clock passes deadline_ns first;
** returns 0 once joined. */
int lp_join_until(pthread_t thread, uint64_t deadline_ns);
uint64_t lp_now_ns(void);

#endif
