/* A worker's Lua state: opening it (libraries, paths, the worker view of
** `require "luapool"`), loading task files, running one task's encoded input
** into an encoded outcome, teardown and closing. No threads, no pool: the
** thread runtime and the worker program (worker_main.c) both drive it. */
#ifndef LUAPOOL_STATE_H
#define LUAPOOL_STATE_H

#include "buffer.h"
#include "codec.h"
#include "heap.h"
#include "interrupt.h"
#include "spawn.h"

/* Where a failing task's error code waits in its state's registry (a
** string; none: task_error). Code that raises for a task sets it. */
#define LP_CODE_KEY "luapool.code"

/* The id a task file's top level runs under while it loads: stopping it
** is cancelling that id. Never a task's. */
#define LP_LOAD_ID 0xffffffffu

/* How a task names its handler (first byte of its input). */
enum { LP_RUN_DEFAULT, LP_RUN_FILE, LP_RUN_HANDLER };

/* What every state of a pool is made from; not owned. */
typedef struct lp_state_config {
  const char *filename, *name;  /* defaults, may be NULL */
  const char *path, *cpath;     /* package.path and package.cpath */
  const char *teardown;         /* function of the file run before closing */
  const char *runtime;          /* luapool.runtime in the worker */
  lp_buf bytecode;              /* the default file, compiled once */
  lp_buf handler;               /* encoded default handler, empty if none */
  lp_buf worker_data;           /* encoded workerData */
  size_t max_heap;              /* resourceLimits.maxHeapBytes, 0: none */
  int isolate;                  /* a fresh state for every task */
  void (*view)(lua_State *L);   /* adds to the worker view on top; may be NULL */
  const lp_spawn_host *spawn;   /* os.execute and io.popen of spawn.c; NULL: Lua's */
} lp_state_config;

/* Where a state's messages and events go. */
typedef struct lp_state_host {
  void *ud;
  /* A postMessage value; takes *body (leaves it empty) or returns -1. */
  int (*message)(void *ud, lp_buf *body);
  /* An "error" event about the worker, tied to no task. */
  void (*event)(void *ud, const char *text);
  /* Takes the bytes of a large result written so far (the encoder's flush,
  ** every result_chunk bytes); NULL: a result is written whole first. */
  int (*result)(void *ud, lp_buf *out);
  size_t result_chunk;
} lp_state_host;

typedef struct lp_state {
  const lp_state_config *cfg;
  lp_state_host host;
  int worker_id;
  lua_Integer thread_id;        /* 0: not known (shown as nil) */
  lp_intr intr;                 /* cancel and stop set by the runtime */
  lua_State *L;
  lp_heap heap;
  lp_encoder enc;
  int default_ref;              /* the default handler, once resolved */
  int run_ref;                  /* run_task's closure, made once (state.c) */
  struct task_io *io;           /* the task it runs, while it does */
  lua_Number exit_code;         /* after os.exit (intr.exiting), as given */
  char load_error[512];         /* the task file's load_error when it opened, or "" */
} lp_state;

/* Opens s->L and loads the default task file ahead of the first task; 0, or
** -1 with the reason in err. */
int lp_state_open(lp_state *s, char *err, size_t errlen);
/* Runs task `id` (in: kind byte, header, encoded value, the value's rest
** from refill when it comes in parts) and writes its outcome to out: the
** results, or when *failed code, message, value and traceback. Returns 1
** when the state is to be replaced (the task was stopped, ran out of
** memory, or called os.exit). */
int lp_state_run(lp_state *s, unsigned id, const char *in, size_t len, lp_refill refill,
                 void *refill_ud, lp_buf *out, int *failed);
/* Runs teardown, then closes the state; idempotent. */
void lp_state_close(lp_state *s);
/* Closes the state and frees the encoder: the end of s. */
void lp_state_free(lp_state *s);
size_t lp_state_heap(lp_state *s);

#endif
