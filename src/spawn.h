/* The programs a thread worker's tasks start (os.execute, io.popen): started
** with the host's signal mask, not the worker thread's, which blocks nearly
** every signal (interrupt.c) and which glibc's system() and popen() would
** hand on to them. */
#ifndef LUAPOOL_SPAWN_H
#define LUAPOOL_SPAWN_H

#include <signal.h>
#include "compat.h"

/* What a started program gets of the host; recorded when a pool is made. */
typedef struct lp_spawn_host {
  sigset_t mask;  /* the signal mask of the thread that made the pool */
  sigset_t dfl;   /* SIGINT and SIGQUIT, but those that thread's process ignored */
} lp_spawn_host;

/* In the thread that makes the pool. */
void lp_spawn_record(lp_spawn_host *h);
/* Replaces os.execute and io.popen of a worker's state with ours; h lives
** as long as the state. May raise (memory). */
void lp_spawn_open(lua_State *L, const lp_spawn_host *h);

#endif
