/* Lua bindings: the module `luapool.core`, used by lua/luapool.lua. It
** gives the main state a pool object that submits encoded tasks and hands
** results and worker events back to one Lua callback. */
#define _GNU_SOURCE  /* dladdr, RTLD_NODELETE */
#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <unistd.h>
#include "luapool_shared.h"
#include "pool.h"
#include "stream.h"
#include "wire.h"

#define POOL_MT "luapool.core.pool"
#define HOOK_CHECK_MS 50  /* how often a long wait looks for Ctrl-C and slow loads */

#define DEFAULT_TERMINATE_MS 1000

/* terminate_ms: what __gc gives the workers to stop (terminateTimeout). */
typedef struct pool_box { lp_pool *p; double terminate_ms; } pool_box;

/* Argument 1 as a pool box. Every method has the pool metatable as upvalue
** 1: comparing with it spares the registry lookup of luaL_checkudata on
** each call (a task's submit is one). */
static pool_box *check_box(lua_State *L) {
  pool_box *b = (pool_box *)lua_touserdata(L, 1);
  if (b && lua_getmetatable(L, 1)) {
    int ours = lua_rawequal(L, -1, lua_upvalueindex(1));
    lua_pop(L, 1);
    if (ours) return b;
  }
  return (pool_box *)luaL_checkudata(L, 1, POOL_MT);  /* raises */
}

static lp_pool *check_pool(lua_State *L) {
  pool_box *b = check_box(L);
  if (!b->p) luaL_error(L, "luapool: pool is destroyed");
  return b->p;
}

static int fail(lua_State *L, const char *code, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, code);
  lua_pushstring(L, msg);
  return 3;
}

/* ---- creating ---------------------------------------------------------- */

static char *opt_strdup(lua_State *L, int t, const char *k) {
  char *s = NULL;
  lua_getfield(L, t, k);
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *v = lua_tolstring(L, -1, &n);
    if ((s = malloc(n + 1))) memcpy(s, v, n + 1);
    else luaL_error(L, "luapool: out of memory");
  }
  lua_pop(L, 1);
  return s;
}

static double opt_number(lua_State *L, int t, const char *k, double d) {
  double v;
  lua_getfield(L, t, k);
  v = lua_isnumber(L, -1) ? (double)lua_tonumber(L, -1) : d;
  lua_pop(L, 1);
  return v;
}

/* Encodes cfg[k] into b when present; 0, or -1 with the encoder's error. */
static int opt_value(lua_State *L, lp_encoder *e, lp_buf *b, const char *k) {
  int r = 0;
  lua_getfield(L, 1, k);
  if (!lua_isnil(L, -1)) r = lp_encode(e, L, b, -1, 1, k);
  lua_pop(L, 1);
  return r;
}

/* The worker program: beside this module (dladdr tells where that is). */
static char *worker_path(void) {
  Dl_info info;
  const char *slash;
  char *path;
  size_t n;
  if (!dladdr((void *)worker_path, &info) || !info.dli_fname ||
      !(slash = strrchr(info.dli_fname, '/')))
    return NULL;
  n = (size_t)(slash - info.dli_fname);
  if (!(path = malloc(n + sizeof "/luapool-worker"))) return NULL;
  memcpy(path, info.dli_fname, n);
  memcpy(path + n, "/luapool-worker", sizeof "/luapool-worker");
  if (access(path, X_OK) != 0) {
    free(path);
    return NULL;
  }
  return path;
}

/* cfg.env: a table of names to values, as a NULL-ended "name=value" list. */
static int opt_env(lua_State *L, lp_config *c) {
  size_t n = 0, i = 0;
  lua_getfield(L, 1, "env");
  if (!lua_istable(L, -1)) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, -2)) { n++; lua_pop(L, 1); }
  if (!(c->env = calloc(n + 1, sizeof *c->env))) return -1;
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    const char *k = lua_tostring(L, -2), *v = lua_tostring(L, -1);  /* checked in Lua */
    size_t kn = strlen(k), vn = strlen(v);
    if (!(c->env[i] = malloc(kn + vn + 2))) {
      lua_pop(L, 3);
      return -1;
    }
    memcpy(c->env[i], k, kn);
    c->env[i][kn] = '=';
    memcpy(c->env[i] + kn + 1, v, vn + 1);
    i++;
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

static int runtime_of(const char *name) {
  return name && strcmp(name, "process") == 0 ? LP_RT_PROCESS : LP_RT_THREADS;
}

/* core.new(cfg): cfg holds validated options and the package paths. */
static int core_new(lua_State *L) {
  pool_box *b;
  lp_pool *p;
  int r;
  luaL_checktype(L, 1, LUA_TTABLE);
  b = (pool_box *)lua_newuserdata(L, sizeof *b);
  b->p = NULL;
  b->terminate_ms = opt_number(L, 1, "terminateTimeout", DEFAULT_TERMINATE_MS);
  luaL_getmetatable(L, POOL_MT);
  lua_setmetatable(L, -2);
  if (!(p = lp_pool_new())) return luaL_error(L, "luapool: out of memory");
  b->p = p;  /* from here __gc frees whatever was filled in */
  p->cfg.min_threads = (int)opt_number(L, 1, "minThreads", 1);
  p->cfg.max_threads = (int)opt_number(L, 1, "maxThreads", 1);
  p->cfg.idle_timeout_ms = opt_number(L, 1, "idleTimeout", 0);
  p->cfg.max_queue = (long)opt_number(L, 1, "maxQueue", -1);
  p->cfg.filename = opt_strdup(L, 1, "filename");
  p->cfg.name = opt_strdup(L, 1, "name");
  p->cfg.path = opt_strdup(L, 1, "path");
  p->cfg.cpath = opt_strdup(L, 1, "cpath");
  p->cfg.teardown = opt_strdup(L, 1, "teardown");
  p->cfg.isolate = (int)opt_number(L, 1, "isolate", 0);
  p->cfg.max_heap = (size_t)opt_number(L, 1, "maxHeapBytes", 0);
  p->cfg.recycle_heap = (size_t)opt_number(L, 1, "maxMemoryLimitBeforeRecycle", 0);
  p->cfg.load_timeout_ms = opt_number(L, 1, "loadTimeout", LP_FOREVER_MS);
  p->cfg.terminate_ms = b->terminate_ms;
  lua_getfield(L, 1, "bytecode");
  if (lua_type(L, -1) == LUA_TSTRING) {
    size_t n;
    const char *bc = lua_tolstring(L, -1, &n);
    if (lp_buf_put(&p->cfg.bytecode, bc, n)) return luaL_error(L, "luapool: out of memory");
  }
  lua_pop(L, 1);
  lua_getfield(L, 1, "runtime");
  atomic_init(&p->cfg.runtime, runtime_of(lua_tostring(L, -1)));
  lua_pop(L, 1);
  if (opt_env(L, &p->cfg)) return luaL_error(L, "luapool: out of memory");
  p->cfg.worker_path = worker_path();
  lp_hello_make(&p->cfg.hello);
  lua_getglobal(L, "jit");  /* built for PUC Lua, loaded by LuaJIT: its bytecode is LuaJIT's */
  if (lua_istable(L, -1)) p->cfg.hello.luajit = 1;
  lua_pop(L, 1);
  p->enc.no_shared = atomic_load(&p->cfg.runtime) == LP_RT_PROCESS;
  if (opt_value(L, &p->enc, &p->cfg.handler, "handler") ||
      opt_value(L, &p->enc, &p->cfg.worker_data, "workerData"))
    return fail(L, "serialize", p->enc.err);
  if ((r = lp_pool_init(p)) != 0) {
    b->p = NULL;
    lp_pool_shutdown(p, LP_FOREVER_MS);
    lp_pool_release(p);
    return fail(L, "worker_exited", r == LP_ESIGNAL
                ? "no real-time signal is free for interrupting workers: every one from "
                  "SIGRTMIN+5 to SIGRTMAX has a handler or is ignored"
                : "no worker thread could be started");
  }
  return 1;
}

/* pool:destroy([terminate_ms]) -> how many workers did not stop in time
** (they are detached and left running). Also the __gc metamethod. */
static int pool_destroy(lua_State *L) {
  pool_box *b = (pool_box *)luaL_checkudata(L, 1, POOL_MT);
  double ms = luaL_optnumber(L, 2, b->terminate_ms);
  int stuck = 0;
  if (b->p) {
    lp_pool *p = b->p;
    b->p = NULL;
    stuck = lp_pool_shutdown(p, ms);
    lp_pool_release(p);
  }
  lua_pushinteger(L, stuck);
  return 1;
}

/* ---- submitting -------------------------------------------------------- */

static int put_header_string(lp_buf *b, lua_State *L, int idx) {
  size_t n;
  const char *s = luaL_checklstring(L, idx, &n);
  return lp_varint_append(b, n) || lp_buf_put(b, s, n);
}

/* The handler (at h) and the task value (at v), sharing references; with
** loaded modules by name when that is what it takes (lp_encoder_modules). */
static int encode_pair(lua_State *L, lp_encoder *e, lp_buf *in, int h, int v) {
  size_t mark = in->len;
  int r = lp_encode(e, L, in, h, 1, "handler") || lp_encode_more(e, L, in, v, 1, "task");
  lp_encoder_end_list(e, L);
  if (r == 0 || e->flushed) return r ? -1 : 0;  /* once parts have gone, no second pass */
  in->len = mark;
  if (lp_encoder_modules(e, L)) return -1;
  r = lp_encode(e, L, in, h, 1, "handler") || lp_encode_more(e, L, in, v, 1, "task");
  lp_encoder_no_modules(e, L);
  return r ? -1 : 0;
}

/* A task whose value is a long list goes to the pool with its first part,
** and a worker reads it while the rest is written (stream.h): the
** encoder's flush, for the task p->writing. */
static int submit_part(void *ud, lp_buf *in) {
  lp_pool *p = (lp_pool *)ud;
  lp_task *t = p->writing;
  if (t->in_stream) return lp_stream_publish(t->in_stream, in);
  if (!(t->in_stream = lp_stream_new()) || lp_stream_publish(t->in_stream, in)) return -1;
  t->t_queued = lp_now_ns();
  if ((p->write_r = lp_pool_submit(p, t)) != 0) return -1;
  p->write_submitted = 1;
  return 0;
}

/* After the encoding of p->writing (failed: it did not finish): the rest
** and the end of a value that went in parts go to its reader. Returns 1
** when the task is the caller's to free (not in the pool), -1 when a worker
** has it (its encoding failed: the worker finds the value cut short, and
** the task is dropped when it comes back, push_msg), 0 when the pool has
** it whole or does not have it yet. */
static int end_write(lp_pool *p, int failed) {
  lp_task *t = p->writing;
  p->writing = NULL;
  if (!t->in_stream) return failed;
  if (!failed && t->in.len && lp_stream_publish(t->in_stream, &t->in)) failed = 1;
  lp_stream_end(t->in_stream, failed);
  if (!p->write_submitted) return 1;
  if (!failed) return 0;
  if (lp_pool_stop_task(p, t, 1) == LP_TASK_QUEUED) return 1;
  t->dropped = 1;
  return -1;
}

typedef struct encode_job {
  lp_pool *p;
  lp_task *t;
  int kind, failed;
} encode_job;

/* encode_task(job, handler, value): protected, for a value that may go in
** parts, so that end_write runs whatever the Lua state raises. */
static int encode_task(lua_State *L) {
  encode_job *j = (encode_job *)lua_touserdata(L, 1);
  lp_encoder *e = &j->p->enc;
  j->failed = j->kind == LP_RUN_HANDLER ? encode_pair(L, e, &j->t->in, 2, 3) < 0
                                        : lp_encode(e, L, &j->t->in, 3, 1, "task") != 0;
  return 0;
}

/* The task value (4) and handler (2) into t->in; 0, or -1 with p->enc.err.
** A long list goes to the pool as it is written: 1 then, the task taken. */
static int encode_into(lua_State *L, lp_pool *p, lp_task *t, int kind) {
  encode_job j;
  int r;
  j.p = p;
  j.t = t;
  j.kind = kind;
  j.failed = 0;
  p->enc.no_shared = atomic_load(&p->cfg.runtime) == LP_RT_PROCESS;
  if (p->enc.no_shared || !lp_codec_streams(L, 4))
    return (kind == LP_RUN_HANDLER ? encode_pair(L, &p->enc, &t->in, 2, 4) < 0
                                   : lp_encode(&p->enc, L, &t->in, 4, 1, "task") != 0) ? -1 : 0;
  p->enc.flush = submit_part;
  p->enc.flush_ud = p;
  p->enc.flush_at = LP_PART_BYTES;
  p->writing = t;
  p->write_submitted = p->write_r = 0;
  lua_pushcfunction(L, encode_task);
  lua_pushlightuserdata(L, &j);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  r = lua_pcall(L, 3, 0, 0);
  p->enc.flush = NULL;
  if (r != LUA_OK) {  /* memory, or a finalizer: the error goes on, t does not */
    lp_encoder_end_list(&p->enc, L);
    if (end_write(p, 1) > 0) lp_task_free(p, t);
    return lua_error(L);
  }
  if ((r = end_write(p, j.failed)) == 0) return p->write_submitted;
  if (r > 0 && p->write_r) return -2;  /* the pool refused it: p->write_r says why */
  if (!p->enc.err[0]) snprintf(p->enc.err, sizeof p->enc.err, "task: out of memory");
  if (r > 0) return -1;
  return -3;  /* a worker has it: dropped when it comes back */
}

/* submit(kind, a, b, value [, workerId]) -> the task's slot | nil, code, message
** kind 0: the pool's default handler; 1: file a, function name b;
** 2: handler function a. A closure that holds its pool (pool:submitter()):
** it runs for every task, and so checks no argument for a pool. */
static int submit(lua_State *L) {
  pool_box *b = (pool_box *)lua_touserdata(L, lua_upvalueindex(1));
  lp_pool *p = b->p;
  int kind, r;
  lp_task *t;
  char k;
  if (!p) return luaL_error(L, "luapool: pool is destroyed");
  kind = (int)luaL_checkinteger(L, 1);
  k = (char)kind;
  t = lp_task_new(p);
  if (!t) return luaL_error(L, "luapool: out of memory");
  if (lua_isnumber(L, 5)) {
    t->target = (int)lua_tointeger(L, 5) - 1;
    if (t->target < 0 || t->target >= p->cfg.max_threads) t->target = -1;
  }
  if (lp_buf_put(&t->in, &k, 1) ||
      (kind == LP_RUN_FILE &&
       (put_header_string(&t->in, L, 2) || put_header_string(&t->in, L, 3)))) {
    lp_task_free(p, t);
    return luaL_error(L, "luapool: out of memory");
  }
  switch (encode_into(L, p, t, kind)) {
    case 0:
      t->t_queued = lp_now_ns();
      r = lp_pool_submit(p, t);
      break;
    case 1: r = 0; break;  /* taken with its first part */
    case -2: r = p->write_r; break;
    case -3: return fail(L, "serialize", p->enc.err);
    default:
      lp_task_free(p, t);
      return fail(L, "serialize", p->enc.err);
  }
  if (r == 0) {
    lua_pushinteger(L, t->slot);
    return 1;
  }
  lp_task_free(p, t);
  if (r == LP_EFULL)
    return fail(L, "queue_full", p->cfg.max_queue == 0
                ? "No task queue available and all Workers are busy"
                : "Task queue is at limit");
  if (r == LP_ESTOPPED) return fail(L, "destroyed", "The pool is destroyed");
  if (r == LP_EBROKEN) return fail(L, "load_error", atomic_load(&p->broken));
  return fail(L, "worker_exited", "no worker thread could be started");
}

/* pool:submitter() -> submit, bound to this pool */
static int pool_submitter(lua_State *L) {
  check_pool(L);
  lua_settop(L, 1);
  lua_pushcclosure(L, submit, 1);
  return 1;
}

/* Argument i: the slot of a task of p's (what submit returned). */
static lp_task *check_task(lua_State *L, lp_pool *p, int i) {
  lp_task *t = lp_task_at(p, (long)luaL_checkinteger(L, i));
  if (!t) luaL_argerror(L, i, "no such task");
  return t;
}

/* pool:stop(task [, queuedonly]) -> "queued" (it is then gone), "running"
** (its worker is being interrupted) or "done" */
static int pool_stop(lua_State *L) {
  lp_pool *p = check_pool(L);
  lp_task *t = check_task(L, p, 2);
  int r = lp_pool_stop_task(p, t, lua_toboolean(L, 3));
  if (r == LP_TASK_QUEUED) lp_task_free(p, t);
  lua_pushstring(L, r == LP_TASK_QUEUED ? "queued" : r == LP_TASK_RUNNING ? "running" : "done");
  return 1;
}

static int pool_maintain(lua_State *L) {
  lp_pool_maintain(check_pool(L));
  return 0;
}

/* pool:abandon(task) -> workerId of the worker given up on, and whether it
** was killed (a process) rather than detached (a thread); or nil */
static int pool_abandon(lua_State *L) {
  lp_pool *p = check_pool(L);
  int killed, id = lp_pool_abandon(p, check_task(L, p, 2), &killed);
  if (!id) return 0;
  lua_pushinteger(L, id);
  lua_pushboolean(L, killed);
  return 2;
}

/* pool:retire([runtime]) -> how many workers will end after their task;
** those that replace them are of that runtime ("threads", "process").
** Or nil, code, message: workerData names a channel, and runtime is process. */
static int pool_retire(lua_State *L) {
  lp_pool *p = check_pool(L);
  if (lua_isstring(L, 2) && runtime_of(lua_tostring(L, 2)) == LP_RT_PROCESS &&
      (lp_buf_nrefs(&p->cfg.worker_data) || lp_buf_nrefs(&p->cfg.handler)))
    return fail(L, "serialize", "workerData: a channel or buffer cannot cross to a process "
                "worker (it shares no memory with the host)");
  if (lua_isstring(L, 2)) atomic_store(&p->cfg.runtime, runtime_of(lua_tostring(L, 2)));
  lua_pushinteger(L, lp_pool_retire_all(p));
  return 1;
}

/* pool:backlog() -> true when a batch was left half done (a callback raised) */
static int pool_backlog(lua_State *L) {
  lua_pushboolean(L, check_pool(L)->backlog != NULL);
  return 1;
}

static int pool_status(lua_State *L) {
  static const char *const names[] = {"pending", "running", "done"};
  lp_pool *p = check_pool(L);
  lua_pushstring(L, names[atomic_load(&check_task(L, p, 2)->state)]);
  return 1;
}

/* ---- results and events ------------------------------------------------ */

#define SMALL_RESULT 256  /* bytes: decoded on the stack, not into a table */

/* decode(data, len, packed, untrusted [, stream]) -> the values; packed:
** their count n and one value: nil (n = 0), the value itself (n = 1), or a
** table of them. With a stream, the rest comes from it (stream.h). */
static int decode(lua_State *L) {
  const char *data = (const char *)lua_touserdata(L, 1);
  size_t len = (size_t)lua_tonumber(L, 2);
  int packed = lua_toboolean(L, 3), n, i;
  int flags = lua_toboolean(L, 4) ? LP_DECODE_NOFUNC : 0;
  void *stream = lua_touserdata(L, 5);
  lp_refill refill = stream ? lp_stream_next : NULL;
  lua_settop(L, 0);
  if (!packed) return lp_decode_refill(L, data, len, refill, stream, flags);
  if (len > SMALL_RESULT || stream) {  /* any number of values, a few stack slots */
    n = lp_decode_refill(L, data, len, refill, stream, flags | LP_DECODE_TABLE);
    if (n == 1) {
      lua_rawgeti(L, 1, 1);
      lua_replace(L, 1);
    }
  } else {
    n = lp_decode_flags(L, data, len, flags);
    if (n > 1) {
      lua_createtable(L, n, 0);
      lua_insert(L, 1);
      for (i = n; i >= 1; i--) lua_rawseti(L, 1, i);
    } else if (n == 0) {
      lua_pushnil(L);
    }
  }
  lua_pushinteger(L, n);
  lua_insert(L, 1);
  return 2;
}

/* Calls decode, protected: a buffer that cannot be decoded here (memory,
** nesting) must not lose the message. Returns the count of values pushed,
** or -1 with the reason pushed. */
static int call_decode(lua_State *L, const char *data, size_t len, int astable,
                       int untrusted, lp_stream *stream) {
  int top = lua_gettop(L);
  lua_pushvalue(L, lua_upvalueindex(2));
  lua_pushlightuserdata(L, (void *)data);
  lua_pushnumber(L, (lua_Number)len);
  lua_pushboolean(L, astable);
  lua_pushboolean(L, untrusted);
  lua_pushlightuserdata(L, stream);
  if (lua_pcall(L, 5, LUA_MULTRET, 0) != LUA_OK) return -1;
  return lua_gettop(L) - top;
}

/* Pushes what b decodes to (see call_decode). */
static int push_decoded(lua_State *L, const lp_buf *b, int astable, int untrusted) {
  int n;
  if (astable && b->len == 0) {  /* no values: the empty result */
    lua_pushinteger(L, 0);
    lua_pushnil(L);
    return 2;
  }
  if ((n = lp_decode_scalar(L, b->data, b->len)) >= 0) {  /* a scalar: no call needed */
    if (!astable) return n;
    lua_pushinteger(L, 1);
    lua_insert(L, -2);
    return 2;
  }
  return call_decode(L, b->data, b->len, astable, untrusted, NULL);
}

/* Pushes the callback's arguments for m and frees m; returns their count
** (-1: none, and no call, for a task dropped by its submit):
** callback(task, true, workerId, n, v) (v: nil, the one value, or a table) or
** callback(task, false, workerId, code, message, value, traceback) or
** callback(event, nil, workerId [, value or text]): four values at most after
** workerId (the Lua side names them). */
static int push_msg(lua_State *L, lp_pool *p, lp_msg *m) {
  static const char *const events[] = {NULL, "message", "workerCreate",
                                       "workerDestroy", "error"};
  int n = 3, k;
  if (m->kind == LP_MSG_TASK && ((lp_task *)m)->dropped) {  /* its submit failed */
    lp_task_free(p, (lp_task *)m);
    return -1;
  }
  lua_pushvalue(L, 3);
  if (m->kind == LP_MSG_TASK) {
    lp_task *t = (lp_task *)m;
    lua_pushinteger(L, t->slot);
    lua_pushboolean(L, 1);
    lua_pushinteger(L, m->worker_id);
    k = 0;
    if (t->stream) {  /* read as it is written: whether it failed shows at its end */
      int top = lua_gettop(L);
      k = call_decode(L, NULL, 0, 1, t->msg.untrusted, t->stream);
      lp_stream_wait_end(t->stream);  /* t is the main thread's again */
      if (t->failed) lua_settop(L, top);
    }
    if (t->failed) {
      lua_pushboolean(L, 0);
      lua_replace(L, -3);
    }
    if (t->failed && t->out.len == 0) {
      lua_pushliteral(L, "out_of_memory");
      lua_pushliteral(L, "the worker ran out of memory writing the result");
      k = 2;
    } else if (!t->stream || t->failed) {
      k = push_decoded(L, &t->out, !t->failed, t->msg.untrusted);
    }
    if (k < 0) {
      const char *why = lua_tostring(L, -1);
      lua_pushfstring(L, "the result could not be copied into the main state: %s",
                      why ? why : "?");
      lua_remove(L, -2);       /* cb task true id message */
      lua_pushboolean(L, 0);
      lua_replace(L, -4);      /* cb task false id message */
      lua_pushliteral(L, "serialize");
      lua_insert(L, -2);       /* cb task false id code message */
      k = 2;
    }
    lp_task_free(p, t);
    return n + k;
  }
  lua_pushstring(L, events[m->kind]);
  lua_pushnil(L);
  lua_pushinteger(L, m->worker_id);
  if (m->kind == LP_MSG_MESSAGE) {
    if ((k = push_decoded(L, &m->body, 0, m->untrusted)) < 0) {
      lua_pop(L, 4);  /* a message that cannot arrive: an error event */
      lua_pushstring(L, events[LP_MSG_ERROR]);
      lua_pushnil(L);
      lua_pushinteger(L, m->worker_id);
      lua_pushfstring(L, "a message could not be copied into the main state");
      k = 1;
    }
    n += k;
  } else if (m->kind == LP_MSG_ERROR || (m->kind == LP_MSG_START && m->body.len)) {
    lua_pushstring(L, m->body.data);
    n++;
  }
  lp_msg_free(p, m);  /* joins the thread of an EXIT */
  return n;
}

/* pool:loaded(ms) -> nil, or the load_error the first worker met loading
** the task file. Waits up to ms for a worker to have opened (or failed to);
** what it takes stays in the backlog, for poll to hand over as usual. */
static int pool_loaded(lua_State *L) {
  lp_pool *p = check_pool(L);
  double ms = luaL_checknumber(L, 2);
  uint64_t deadline = lp_now_ns() + (uint64_t)(ms < LP_FOREVER_MS ? ms * 1e6 : 1e18);
  lp_msg *m, **tail = &p->backlog;
  for (;;) {
    for (m = *tail; m; tail = &m->next, m = m->next) {
      if (m->kind == LP_MSG_ERROR) return 0;
      if (m->kind == LP_MSG_START) {
        if (!m->body.len) return 0;
        lua_pushstring(L, m->body.data);
        return 1;
      }
    }
    if (lp_now_ns() >= deadline || lua_gethook(L)) return 0;
    lp_pool_check_loads(p);
    *tail = lp_pool_take(p, HOOK_CHECK_MS);
  }
}

/* Waits up to timeout_ms (negative: for ever) for a batch. A hook set
** meanwhile is the interpreter's Ctrl-C (lua.c, luajit.c): looks for one
** every HOOK_CHECK_MS, and returns at once so that it can fire; looks at
** workers loading their task file as often. */
static void take_batch(lua_State *L, lp_pool *p, double timeout_ms) {
  uint64_t start = lp_now_ns();
  for (;;) {
    double left = timeout_ms < 0 ? HOOK_CHECK_MS
                                 : timeout_ms - (double)(lp_now_ns() - start) / 1e6;
    p->backlog = lp_pool_take(p, left > HOOK_CHECK_MS ? HOOK_CHECK_MS : left > 0 ? left : 0);
    if (p->backlog || left <= HOOK_CHECK_MS || lua_gethook(L)) return;
    lp_pool_check_loads(p);
  }
}

/* pool:poll(timeout_ms, callback) -> count. Waits up to timeout_ms (0: not
** at all, negative: for ever) for a batch, then calls the callback once for
** each result and worker event (see push_msg). A callback may destroy the
** pool; what it raises leaves the rest of the batch for the next poll.
** Results decode with the caller's hook off, so that an interrupt of the
** host is not taken for a value that failed to decode; a hook set while
** it works (Ctrl-C) stops it, and fires once it returns. */
static int pool_poll(lua_State *L) {
  pool_box *b = check_box(L);
  lp_pool *p = check_pool(L);
  double timeout = luaL_optnumber(L, 2, 0);
  int count = 0, mask = lua_gethookmask(L), hookcount = lua_gethookcount(L);
  lua_Hook hook = lua_gethook(L);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  if (hook) lua_sethook(L, NULL, 0, 0);
  lp_pool_check_loads(p);
  if (!p->backlog) take_batch(L, p, timeout);
  while (b->p && p->backlog && !lua_gethook(L)) {
    lp_msg *m = p->backlog;
    int exited = m->kind == LP_MSG_EXIT;
    p->backlog = m->next;
    int nargs;
    if ((nargs = push_msg(L, p, m)) < 0) continue;
    if (exited) lp_pool_maintain(p);  /* before a callback that may raise */
    if (hook && !lua_gethook(L)) lua_sethook(L, hook, mask, hookcount);
    lua_call(L, nargs, 0);  /* the callback runs with the caller's hook */
    if (hook && lua_gethook(L) == hook) lua_sethook(L, NULL, 0, 0);
    count++;
  }
  if (hook && !lua_gethook(L)) lua_sethook(L, hook, mask, hookcount);
  lua_pushinteger(L, count);
  return 1;
}

/* ---- state ------------------------------------------------------------- */

/* pool:signal() -> the real-time signal that interrupts its workers */
static int pool_signal(lua_State *L) {
  lua_pushinteger(L, check_pool(L)->signo);
  return 1;
}

static int pool_queue_size(lua_State *L) {
  lp_pool *p = check_pool(L);
  lua_pushinteger(L, (lua_Integer)atomic_load(&p->queued));
  return 1;
}

/* pool:threads() -> { {id, busy, tasks, heapBytes}, ... } of live workers */
static int pool_threads(lua_State *L) {
  typedef struct { int id, busy; lua_Integer tasks, heap, thread_id; } row;
  lp_pool *p = check_pool(L);
  row *rows = (row *)lua_newuserdata(L, (size_t)p->cfg.max_threads * sizeof *rows);
  int i, n = 0;
  pthread_mutex_lock(&p->lock);  /* copy, then build tables unlocked */
  for (i = 0; i < p->cfg.max_threads; i++) {
    lp_worker *w = p->slots[i].w;
    if (!w || w->leaving) continue;
    rows[n].id = i + 1;
    rows[n].thread_id = (lua_Integer)w->thread_id;
    rows[n].busy = atomic_load_explicit(&w->busy, memory_order_relaxed);
    rows[n].tasks = (lua_Integer)atomic_load_explicit(&w->ntasks, memory_order_relaxed);
    rows[n].heap = (lua_Integer)atomic_load_explicit(&w->heap_bytes, memory_order_relaxed);
    n++;
  }
  pthread_mutex_unlock(&p->lock);
  lua_createtable(L, n, 0);
  for (i = 0; i < n; i++) {
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, rows[i].id);
    lua_setfield(L, -2, "id");
    lua_pushinteger(L, rows[i].thread_id);
    lua_setfield(L, -2, "threadId");
    lua_pushboolean(L, rows[i].busy);
    lua_setfield(L, -2, "busy");
    lua_pushinteger(L, rows[i].tasks);
    lua_setfield(L, -2, "tasks");
    lua_pushinteger(L, rows[i].heap);
    lua_setfield(L, -2, "heapBytes");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

/* pool:stats("run" | "wait") -> {min, max, mean, stddev, p50, p90, p99} */
static int pool_stats(lua_State *L) {
  lp_pool *p = check_pool(L);
  int run = strcmp(luaL_checkstring(L, 2), "run") == 0;
  lp_stats s;
  double n, mean, var;
  pthread_mutex_lock(&p->lock);  /* workers add to them */
  s = run ? p->run_time : p->wait_time;
  pthread_mutex_unlock(&p->lock);
  n = (double)s.count;
  mean = n ? s.sum / n : 0;
  var = n ? s.sumsq / n - mean * mean : 0;
  lua_createtable(L, 0, 8);
  set_number(L, "count", n);
  set_number(L, "min", s.min);
  set_number(L, "max", s.max);
  set_number(L, "mean", mean);
  set_number(L, "stddev", var > 0 ? sqrt(var) : 0);
  set_number(L, "p50", lp_stats_percentile(&s, 0.50));
  set_number(L, "p90", lp_stats_percentile(&s, 0.90));
  set_number(L, "p99", lp_stats_percentile(&s, 0.99));
  return 1;
}

/* pool:arm(ms): the pollfd becomes readable in ms (negative: never) */
static int pool_arm(lua_State *L) {
  if (lp_pool_arm_timer(check_pool(L), luaL_checknumber(L, 2)))
    return luaL_error(L, "luapool: cannot arm the pollfd's timer");
  return 0;
}

static int pool_pollfd(lua_State *L) {
  int fd = lp_pool_pollfd(check_pool(L));
  if (fd < 0) return luaL_error(L, "luapool: pollfd: cannot make a pipe");
  lua_pushinteger(L, fd);
  return 1;
}

static int core_cpus(lua_State *L) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  lua_pushinteger(L, n > 0 ? n : 1);
  return 1;
}

static int core_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)lp_now_ns() / 1e6);
  return 1;
}

/* A worker the pool gave up on may run on after the Lua state that loaded
** this module is closed; closing it unloads C modules. So the module pins
** itself: it stays mapped until the process ends. */
static void pin_module(void) {
  Dl_info info;
  if (dladdr((void *)pin_module, &info) && info.dli_fname)
    (void)dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
}

__attribute__((visibility("default"))) int luaopen_luapool_core(lua_State *L) {
  static const luaL_Reg pool_methods[] = {
    {"submitter", pool_submitter}, {"stop", pool_stop}, {"abandon", pool_abandon},
    {"retire", pool_retire}, {"maintain", pool_maintain}, {"status", pool_status},
    {"backlog", pool_backlog}, {"signal", pool_signal},
    {"queueSize", pool_queue_size},
    {"threads", pool_threads}, {"stats", pool_stats}, {"pollfd", pool_pollfd}, {"arm", pool_arm}, {"loaded", pool_loaded},
    {"destroy", pool_destroy}, {NULL, NULL}};
  static const luaL_Reg funcs[] = {{"new", core_new}, {"now", core_now}, {"cpus", core_cpus}, {NULL, NULL}};
  pin_module();
  if (luaL_newmetatable(L, POOL_MT)) {
    lua_pushcfunction(L, pool_destroy);
    lua_setfield(L, -2, "__gc");
    lua_newtable(L);
    lua_pushvalue(L, -2);  /* each method's upvalue 1: check_box */
    luaL_setfuncs(L, pool_methods, 1);
    lua_pushvalue(L, -2);
    lua_pushcfunction(L, decode);  /* poll's upvalue 2, made once */
    lua_pushcclosure(L, pool_poll, 2);
    lua_setfield(L, -2, "poll");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, funcs);
  lp_shared_open(L);
  return 1;
}
