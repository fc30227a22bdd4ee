/* Stopping the Lua code a worker runs, from the main thread. The main
** thread marks what is to stop and sends the worker thread a signal; the
** handler, on the worker's own thread, sets a hook on the state it is
** running (as lua.c and luajit.c do for Ctrl-C), and the hook raises.
** Code that LuaJIT compiled into a loop that never leaves its trace does
** not run hooks and cannot be stopped this way. */
#ifndef LUAPOOL_INTERRUPT_H
#define LUAPOOL_INTERRUPT_H

#include <signal.h>
#include "pool.h"

/* Finds or installs the process's interrupt signal: a real-time signal
** from SIGRTMIN+5 up that has our handler, else the first that has none.
** Returns its number, or -1 when every one is taken. */
int lp_interrupt_install(void);
/* Blocks every signal but sig and faults in the calling thread, so that a
** thread it creates starts so (the host's signals go to its own threads);
** old receives the mask to restore. 0 or -1. */
int lp_interrupt_block_signals(int sig, sigset_t *old);
/* Around each task's Lua code, on the worker thread; enter returns 0 when
** the task is to stop before it starts. */
int lp_interrupt_enter(lp_worker *w, lp_task *t);
void lp_interrupt_leave(lp_worker *w);
/* Whether the task w runs (or the pool) is to stop. */
int lp_interrupt_pending(lp_worker *w);
/* PUC Lua keeps a hook per coroutine: in worker states, coroutine.resume
** and coroutine.wrap are replaced so that an interrupt reaches the
** coroutine running. Pushes nothing; expects the `coroutine` table on top. */
void lp_interrupt_wrap_coroutines(lua_State *L, lp_worker *w);
#define LP_HOOK_MASK (LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT)
/* The hook itself, also used by os.exit in workers. */
void lp_interrupt_hook(lua_State *L, lua_Debug *ar);
/* Main thread: asks w to stop the task it runs (or any, when the pool
** stops). -1 when the host has taken the pool's signal over since. */
int lp_interrupt(lp_worker *w);
/* Joins a thread unless the monotonic clock passes deadline_ns first;
** returns 0 once joined. */
int lp_join_until(pthread_t thread, uint64_t deadline_ns);

#endif
