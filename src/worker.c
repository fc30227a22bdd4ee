/* A worker: one thread and its own Lua state. It takes tasks from the pool,
** runs their handler and posts the encoded results back. */
#include <stdlib.h>
#include <stdio.h>
#include "interrupt.h"
#include "pool.h"

#define WORKER_SPIN_NS 50000
#define TRACEBACK_KEY "luapool.traceback"

#if defined(__x86_64__) || defined(__i386__)
#define cpu_relax() __asm__ __volatile__("pause")
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

static lp_worker *self(lua_State *L) {
  return (lp_worker *)lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- the worker view of `require "luapool"` --------------------------- */

/* os.exit in a worker ends the worker, not the process. */
static int worker_exit(lua_State *L) {
  lp_worker *w = self(L);
  w->exiting = 1;
  if (lua_isnoneornil(L, 1) || lua_type(L, 1) == LUA_TBOOLEAN)
    w->exit_code = lua_isnoneornil(L, 1) || lua_toboolean(L, 1) ? 0 : 1;
  else
    w->exit_code = (int)luaL_checknumber(L, 1);
  /* Should a pcall catch the error, the hook raises it again at once; in
  ** the worker's main coroutine too, when this one is another (PUC Lua
  ** keeps a hook per coroutine). */
  lua_sethook(L, lp_interrupt_hook, LP_HOOK_MASK, 1);
  if (L != w->L) lua_sethook(w->L, lp_interrupt_hook, LP_HOOK_MASK, 1);
  return luaL_error(L, "luapool: worker exited");
}

static int worker_post_message(lua_State *L) {
  lp_worker *w = self(L);
  lp_msg *m = calloc(1, sizeof *m);
  if (!m) return luaL_error(L, "postMessage: out of memory");
  if (lp_encode(&w->enc, L, &m->body, 1, 1, "message")) {
    lua_pushstring(L, w->enc.err);
    lp_buf_free(&m->body);
    free(m);
    return lua_error(L);
  }
  m->kind = LP_MSG_MESSAGE;
  m->worker_id = w->slot + 1;
  lp_pool_post(w->pool, m);
  return 0;
}

static int traceback(lua_State *L) {
#if LUA_VERSION_NUM >= 502 || defined(LUA_JITLIBNAME)
  luaL_traceback(L, L, NULL, 1);
#else
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.debug.traceback");
  lua_call(L, 0, 1);
#endif
  lua_setfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
  lua_settop(L, 1);
  return 1;
}

static void set_field_string(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Runs protected: libraries, paths, os.exit, the worker view. */
static int setup_state(lua_State *L) {
  lp_worker *w = (lp_worker *)lua_touserdata(L, 1);
  lp_config *cfg = &w->pool->cfg;
  luaL_openlibs(L);
#if LUA_VERSION_NUM < 502 && !defined(LUA_JITLIBNAME)
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_setfield(L, LUA_REGISTRYINDEX, "luapool.debug.traceback");
  lua_pop(L, 1);
#endif
  lua_getglobal(L, "package");
  if (cfg->path) set_field_string(L, "path", cfg->path);
  if (cfg->cpath) set_field_string(L, "cpath", cfg->cpath);
  lua_getfield(L, -1, "loaded");
  lua_createtable(L, 0, 8);  /* the worker's `luapool` */
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "isMainThread");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "isWorkerThread");
  lua_pushinteger(L, w->slot + 1);
  lua_setfield(L, -2, "workerId");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, worker_post_message, 1);
  lua_setfield(L, -2, "postMessage");
  if (cfg->worker_data.len) {
    lp_decode(L, cfg->worker_data.data, cfg->worker_data.len);
    lua_setfield(L, -2, "workerData");
  }
  lua_setfield(L, -2, "luapool");
  lua_pop(L, 2);
  lua_getglobal(L, "os");
  lua_pushlightuserdata(L, w);
  lua_pushcclosure(L, worker_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  lua_getglobal(L, "coroutine");
  lp_interrupt_wrap_coroutines(L, w);
  lua_pop(L, 1);
  lua_newtable(L);  /* task files loaded, by name */
  lua_setfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_pushlightuserdata(L, w);
  lua_setfield(L, LUA_REGISTRYINDEX, "luapool.self");
  return 0;
}

static void push_default_handler(lua_State *L, lp_worker *w);
static void post_simple(lp_worker *w, int kind, const char *text);

static size_t heap_size(lp_worker *w) {
  if (w->heap.used) return w->heap.used;  /* metered by our allocator */
  return (size_t)lua_gc(w->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(w->L, LUA_GCCOUNTB, 0);
}

/* Runs protected: loads the pool's task file ahead of the first task. */
static int preload(lua_State *L) {
  lp_worker *w = (lp_worker *)lua_touserdata(L, 1);
  push_default_handler(L, w);
  return 0;
}

static int open_state(lp_worker *w, char *err, size_t errlen) {
  lua_State *L;
  w->heap.used = 0;
  w->heap.enforce = 0;
  w->heap.limit = w->pool->cfg.max_heap;
  /* Our allocator meters and caps a heap and makes states cheap to open
  ** and close; Lua's own is faster for the objects of a long-lived state. */
  L = NULL;
  if (w->pool->cfg.max_heap || w->pool->cfg.isolate)
    L = lua_newstate(lp_heap_alloc, &w->heap);
  if (!L && (L = luaL_newstate()) && w->pool->cfg.max_heap)
    post_simple(w, LP_MSG_ERROR, "resourceLimits.maxHeapBytes cannot be enforced: this "
                "Lua takes no allocator of ours (LuaJIT without GC64); no cap holds");
  if (!L) {
    snprintf(err, errlen, "worker %d: cannot create a Lua state", w->slot + 1);
    return -1;
  }
  lua_pushcfunction(L, setup_state);
  lua_pushlightuserdata(L, w);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "worker %d: cannot set up its Lua state: %s",
             w->slot + 1, lua_tostring(L, -1));
    lua_close(L);
    return -1;
  }
  w->L = L;
  w->default_ref = LUA_NOREF;
  if (w->pool->cfg.filename || w->pool->cfg.handler.len) {
    if (lp_interrupt_enter(w, NULL)) {  /* its top level may loop: stoppable */
      lua_pushcfunction(L, preload);  /* a failure shows again on the task */
      lua_pushlightuserdata(L, w);
      lua_pcall(L, 1, 0, 0);
    }
    lp_interrupt_leave(w);
    lua_settop(L, 0);
  }
  atomic_store_explicit(&w->heap_bytes, heap_size(w), memory_order_relaxed);
  return 0;
}

/* The task file's teardown function, if the pool names one, before the
** state closes; what it raises becomes an "error" event. */

static void teardown(lp_worker *w) {
  lp_config *cfg = &w->pool->cfg;
  lua_State *L = w->L;
  if (!cfg->teardown || !cfg->filename) return;
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_getfield(L, -1, cfg->filename);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, cfg->teardown);
    if (lua_isfunction(L, -1) && lua_pcall(L, 0, 0, 0) != LUA_OK) {
      char text[512];
      snprintf(text, sizeof text, "worker %d: teardown \"%s\" failed: %s", w->slot + 1,
               cfg->teardown, lua_isstring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
      post_simple(w, LP_MSG_ERROR, text);
    }
  }
  lua_settop(L, 0);
}

static void close_state(lp_worker *w) {
  if (!w->L) return;
  lua_sethook(w->L, NULL, 0, 0);
  w->heap.enforce = 0;
  teardown(w);
  lua_close(w->L);
  w->L = NULL;
}

/* ---- running a task ---------------------------------------------------- */

#define CODE_KEY "luapool.code"

/* Raises an error that rejects the task with code load_error. */
static int load_error(lua_State *L, const char *fmt, const char *a, const char *b) {
  lua_pushliteral(L, "load_error");
  lua_setfield(L, LUA_REGISTRYINDEX, CODE_KEY);
  lua_pushfstring(L, fmt, a, b);
  return lua_error(L);
}

static lp_worker *self_of(lua_State *L) {
  lp_worker *w;
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.self");
  w = (lp_worker *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return w;
}

/* Pushes what the task file returns, loading and running it the first time. */
static void push_file(lua_State *L, const char *filename) {
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_getfield(L, -1, filename);
  if (lua_isnil(L, -1)) {
    lp_config *cfg = &self_of(L)->pool->cfg;
    lua_pop(L, 1);
    if (cfg->bytecode.len && cfg->filename && strcmp(filename, cfg->filename) == 0
            ? luaL_loadbuffer(L, cfg->bytecode.data, cfg->bytecode.len, filename) != LUA_OK
            : luaL_loadfile(L, filename) != LUA_OK)
      load_error(L, "Failed to load task file \"%s\": %s", filename, lua_tostring(L, -1));
    lua_pushcfunction(L, traceback);
    lua_insert(L, -2);
    if (lua_pcall(L, 0, 1, -2) != LUA_OK) {
      lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
      lua_pushfstring(L, "%s\n%s", lua_isstring(L, -2) ? lua_tostring(L, -2)
                      : "(error object is not a string)", lua_tostring(L, -1));
      load_error(L, "Failed to run task file \"%s\": %s", filename, lua_tostring(L, -1));
    }
    lua_remove(L, -2);
    if (!lua_istable(L, -1) && !lua_isfunction(L, -1))
      load_error(L, "Task file \"%s\" must return a function or a table of functions, not %s",
                 filename, luaL_typename(L, -1));
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, filename);
  }
  lua_remove(L, -2);
}

/* Tinypool's rule: a file returning a function serves the name "default";
** a table serves its fields. */
static void push_handler_of_file(lua_State *L, const char *filename, const char *name) {
  push_file(L, filename);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
  } else if (strcmp(name, "default") != 0) {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  if (!lua_isfunction(L, -1))
    load_error(L, "No handler function \"%s\" exported from \"%s\"", name, filename);
}

static void push_default_handler(lua_State *L, lp_worker *w) {
  lp_config *cfg = &w->pool->cfg;
  if (w->default_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, w->default_ref);
    return;
  }
  if (cfg->handler.len)
    lp_decode(L, cfg->handler.data, cfg->handler.len);
  else if (cfg->filename)
    push_handler_of_file(L, cfg->filename, cfg->name ? cfg->name : "default");
  else
    load_error(L, "%s%s", "filename must be provided to run() or in options object", "");
  lua_pushvalue(L, -1);
  w->default_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* Pushes a length-prefixed string of the task's header. */
static void push_header_string(lua_State *L, lp_task *t, size_t *pos) {
  const unsigned char *s = (const unsigned char *)t->in.data;
  size_t n = 0;
  int shift = 0;
  for (;;) {
    if (*pos >= t->in.len || shift > 56) luaL_error(L, "luapool: corrupt task");
    n |= (size_t)(s[*pos] & 0x7f) << shift;
    shift += 7;
    if (!(s[(*pos)++] & 0x80)) break;
  }
  if (n > t->in.len - *pos) luaL_error(L, "luapool: corrupt task");
  lua_pushlstring(L, t->in.data + *pos, n);
  *pos += n;
}

/* The message for an error value: strings as they are, tables by their
** `message` field, the rest by their type. */
static void push_message(lua_State *L, int v) {
  if (lua_type(L, v) == LUA_TSTRING || lua_type(L, v) == LUA_TNUMBER) {
    lua_pushvalue(L, v);
    lua_tostring(L, -1);
    return;
  }
  if (lua_istable(L, v)) {
    lua_pushliteral(L, "message");
    lua_rawget(L, v);
    if (lua_type(L, -1) == LUA_TSTRING) return;
    lua_pop(L, 1);
  }
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, v));
}

/* Writes code, message, value and traceback as the task's outcome; msg
** NULL takes the message from the value. A value that cannot cross is
** dropped, and the message says so. */
static void put_error(lp_worker *w, lp_task *t, const char *code, int v,
                      const char *msg, const char *tb) {
  lua_State *L = w->L;
  int top = lua_gettop(L);
  t->failed = 1;
  t->out.len = 0;
  lua_pushstring(L, code);
  if (msg) lua_pushstring(L, msg); else push_message(L, v);
  lua_pushvalue(L, v);
  if (tb) lua_pushstring(L, tb); else lua_pushnil(L);
  if (lp_encode(&w->enc, L, &t->out, top + 1, 4, "error")) {
    lua_pushfstring(L, "%s (the error value could not be copied: %s)",
                    lua_tostring(L, top + 2), w->enc.err);
    lua_replace(L, top + 2);
    lua_pushnil(L);
    lua_replace(L, top + 3);
    if (lp_encode(&w->enc, L, &t->out, top + 1, 4, "error")) t->out.len = 0;
  }
  lua_settop(L, top);
}

/* Runs protected, with the worker and the task as light userdata. Stack:
** 1 traceback, 2 handler, 3.. arguments; then 2.. results. */
static int run_task(lua_State *L) {
  lp_worker *w = (lp_worker *)lua_touserdata(L, 1);
  lp_task *t = (lp_task *)lua_touserdata(L, 2);
  size_t pos = 1;
  int kind = (unsigned char)t->in.data[0], status;
  lua_settop(L, 0);
  lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, CODE_KEY);
  lua_pushcfunction(L, traceback);
  if (kind == LP_RUN_DEFAULT) {
    push_default_handler(L, w);
  } else if (kind == LP_RUN_FILE) {
    push_header_string(L, t, &pos);
    push_header_string(L, t, &pos);
    push_handler_of_file(L, lua_tostring(L, 2), lua_tostring(L, 3));
    lua_replace(L, 2);
    lua_settop(L, 2);
  }
  lp_decode(L, t->in.data + pos, t->in.len - pos);
  lua_pushnil(L);  /* no traceback from an earlier task, should msgh fail */
  lua_setfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
  w->heap.refused = 0;
  w->heap.enforce = 1;
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 1);
  w->heap.enforce = 0;
  if (status == LUA_ERRMEM || w->heap.refused) {
    char msg[128];
    snprintf(msg, sizeof msg, "Out of memory: the task's state reached its heap limit of %zu bytes",
             w->heap.limit);
    lua_pushliteral(L, "out_of_memory");
    lua_setfield(L, LUA_REGISTRYINDEX, CODE_KEY);
    put_error(w, t, "out_of_memory", 2, w->heap.limit ? msg : "Out of memory", NULL);
    return 0;
  }
  if (status != LUA_OK) {
    lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
    put_error(w, t, "task_error", 2, NULL, lua_tostring(L, -1));
    return 0;
  }
  t->out.len = 0;
  if (lp_encode(&w->enc, L, &t->out, 2, lua_gettop(L) - 1, "result")) {
    lua_pushstring(L, w->enc.err);
    put_error(w, t, "serialize", lua_gettop(L), NULL, NULL);
  }
  return 0;
}

/* Runs t on the worker's state; returns 1 when the task was stopped. */
static int run(lp_worker *w, lp_task *t) {
  lua_State *L = w->L;
  int stopped = 0;
  t->failed = 0;
  t->msg.worker_id = w->slot + 1;
  lua_settop(L, 0);
  if (lp_interrupt_enter(w, t)) {
    lua_pushcfunction(L, run_task);
    lua_pushlightuserdata(L, w);
    lua_pushlightuserdata(L, t);
    int status = lua_pcall(L, 2, 0, 0);
    w->heap.enforce = 0;
    if (status == LUA_ERRMEM) {
      lua_pushnil(L);
      put_error(w, t, "out_of_memory", lua_gettop(L), "Out of memory", NULL);
    } else if (status != LUA_OK) {
      const char *code;
      lua_getfield(L, LUA_REGISTRYINDEX, CODE_KEY);
      code = lua_isstring(L, -1) ? lua_tostring(L, -1) : "task_error";
      put_error(w, t, code, 1, NULL, NULL);
    }
    lua_getfield(L, LUA_REGISTRYINDEX, CODE_KEY);
    if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "out_of_memory") == 0)
      stopped = 1;  /* a state that ran out may be inconsistent: replace it */
    lua_pop(L, 1);
  }
  lua_settop(L, 0);
  if (atomic_load(&w->cancel) == t || atomic_load(&w->pool->stop)) {
    lua_pushnil(L);
    put_error(w, t, "aborted", 1, "The task has been aborted", NULL);
    stopped = 1;
  }
  lp_interrupt_leave(w);
  if (w->exiting) {
    char msg[64];
    lua_sethook(L, NULL, 0, 0);
    snprintf(msg, sizeof msg, "Worker exited with code %d", w->exit_code);
    lua_pushinteger(L, w->exit_code);
    put_error(w, t, "worker_exited", lua_gettop(L), msg, NULL);
  }
  lua_settop(L, 0);
  atomic_store_explicit(&w->heap_bytes, heap_size(w), memory_order_relaxed);
  return stopped;
}

/* ---- the thread -------------------------------------------------------- */

/* The next task for w: its slot's mailbox first, then the queue. Lock held. */
static lp_task *take(lp_pool *p, lp_worker *w) {
  lp_slot *sl = &p->slots[w->slot];
  lp_task *t = sl->mine;
  if (t) {
    if (!(sl->mine = t->next)) sl->mine_tail = NULL;
    atomic_fetch_sub(&sl->nmine, 1);
  } else if ((t = p->head)) {
    lp_pool_unlink_queued(p, t);
  } else {
    return NULL;
  }
  t->next = t->prev = NULL;
  atomic_store(&t->state, LP_TASK_RUNNING);
  w->task = t;
  return t;
}

static int has_work(lp_pool *p, lp_worker *w) {
  return atomic_load_explicit(&p->queued, memory_order_relaxed) ||
         atomic_load_explicit(&p->slots[w->slot].nmine, memory_order_relaxed) ||
         atomic_load_explicit(&p->stop, memory_order_relaxed);
}

/* Spins until work may be there, or the spin budget runs out. */
static void spin(lp_pool *p, lp_worker *w) {
  uint64_t start = lp_now_ns();
  unsigned i = 0;
  while (!has_work(p, w)) {
    cpu_relax();
    if ((++i & 63) == 0 && lp_now_ns() - start > WORKER_SPIN_NS) return;
  }
}

static void post_simple(lp_worker *w, int kind, const char *text) {
  lp_msg *m = calloc(1, sizeof *m);
  if (!m) return;  /* an event lost to memory exhaustion */
  m->kind = kind;
  m->worker_id = w->slot + 1;
  if (text && lp_buf_put(&m->body, text, strlen(text) + 1)) {
    free(m);
    return;
  }
  lp_pool_post(w->pool, m);
}

/* Sleeps on the worker's own condition; returns 1 when an idle timeout
** says this worker should end. Lock held. */
static int sleep_until_work(lp_pool *p, lp_worker *w) {
  int timed = p->nlive > p->cfg.min_threads, r = 0;
  w->sleeping = 1;
  p->sleepers[p->nsleepers++] = w;
  if (timed)
    r = lp_cond_timedwait(&w->wake, &p->lock, p->cfg.idle_timeout_ms);
  else
    pthread_cond_wait(&w->wake, &p->lock);
  if (w->sleeping) lp_pool_sleeper_remove(p, w);  /* a timeout, or spurious */
  return timed && r != 0 && !p->head && !p->slots[w->slot].mine &&
         p->nlive > p->cfg.min_threads;
}

/* Runs t; returns 1 when this worker should end after it. Lock held on
** entry and on return, unless the worker was detached meanwhile: then it
** has posted t and freed itself, and returns -1. */
static int serve(lp_pool *p, lp_worker *w, lp_task *t) {
  int stopped;
  p->idle--;
  pthread_mutex_unlock(&p->lock);
  atomic_store_explicit(&w->busy, 1, memory_order_relaxed);
  t->t_start = lp_now_ns();
  stopped = run(w, t);
  t->t_end = lp_now_ns();
  atomic_fetch_add_explicit(&w->ntasks, 1, memory_order_relaxed);
  atomic_store_explicit(&w->busy, 0, memory_order_relaxed);
  pthread_mutex_lock(&p->lock);
  w->task = NULL;
  atomic_store(&w->cancel, NULL);  /* a stop that came as the task ended */
  atomic_store(&t->state, LP_TASK_DONE);
  if (w->detached) {  /* the pool gave up on us while we ran */
    lp_pool_post(p, &t->msg);
    pthread_mutex_unlock(&p->lock);
    close_state(w);
    lp_encoder_free(&w->enc);
    lp_worker_free(w);
    lp_pool_release(p);
    return -1;
  }
  p->idle++;  /* before the result is seen: its sender may submit again */
  lp_pool_post(p, &t->msg);
  if (stopped || w->exiting || w->retire) return 1;
  if (p->cfg.recycle_heap && atomic_load(&w->heap_bytes) > p->cfg.recycle_heap) return 1;
  if (p->cfg.isolate) {  /* the next task's fresh state, made while idle */
    char err[256];
    pthread_mutex_unlock(&p->lock);
    close_state(w);
    if (open_state(w, err, sizeof err)) post_simple(w, LP_MSG_ERROR, err);
    pthread_mutex_lock(&p->lock);
    if (!w->L) return 1;
  }
  return 0;
}

void *lp_worker_main(void *arg) {
  lp_worker *w = (lp_worker *)arg;
  lp_pool *p = w->pool;
  char err[256];
  if (open_state(w, err, sizeof err) == 0) post_simple(w, LP_MSG_START, NULL);
  else post_simple(w, LP_MSG_ERROR, err);
  pthread_mutex_lock(&p->lock);
  while (w->L && !atomic_load(&p->stop) && !w->retire) {
    lp_task *t = take(p, w);
    if (t) {
      int r = serve(p, w, t);
      if (r < 0) return NULL;
      if (r) break;
      continue;
    }
    p->nspinning++;
    pthread_mutex_unlock(&p->lock);
    spin(p, w);
    pthread_mutex_lock(&p->lock);
    p->nspinning--;
    if (has_work(p, w) || w->retire) continue;
    if (sleep_until_work(p, w)) break;
  }
  if (!w->leaving) {
    w->leaving = 1;
    p->idle--;
    p->nlive--;
    lp_pool_requeue_mailbox(p, w->slot);  /* runAll tasks it will not run */
  }
  pthread_mutex_unlock(&p->lock);
  close_state(w);
  lp_encoder_free(&w->enc);
  pthread_mutex_lock(&p->lock);
  if (w->detached) {  /* given up on while it opened or closed its state */
    pthread_mutex_unlock(&p->lock);
    lp_worker_free(w);
    lp_pool_release(p);
    return NULL;
  }
  w->exited = 1;
  lp_pool_post(p, &w->exit_msg);  /* main may free w from here on */
  pthread_mutex_unlock(&p->lock);
  return NULL;
}
