/* A worker's Lua state, apart from whatever thread or process drives it. */
#include <ctype.h>
#include <stdio.h>
#include <limits.h>
#include <stdlib.h>
#include "state.h"
#include "wire.h"

#define TRACEBACK_KEY "luapool.traceback"
#define CODE_KEY LP_CODE_KEY
#define SELF_KEY "luapool.self"

static lp_state *self(lua_State *L) {
  return (lp_state *)lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- the worker view of `require "luapool"` --------------------------- */

/* os.exit in a worker ends the worker, not the process that hosts it. */
static int worker_exit(lua_State *L) {
  lp_state *s = self(L);
  s->intr.exiting = 1;
  if (lua_isnoneornil(L, 1) || lua_type(L, 1) == LUA_TBOOLEAN)
    s->exit_code = lua_isnoneornil(L, 1) || lua_toboolean(L, 1) ? 0 : 1;
  else
    s->exit_code = luaL_checknumber(L, 1);
  /* Should a pcall catch the error, the hook raises it again at once; in
  ** the worker's main coroutine too, when this one is another (PUC Lua
  ** keeps a hook per coroutine). */
  lua_sethook(L, lp_interrupt_hook, LP_HOOK_MASK, 1);
  if (L != s->L) lua_sethook(s->L, lp_interrupt_hook, LP_HOOK_MASK, 1);
  return luaL_error(L, "luapool: worker exited");
}

static int worker_post_message(lua_State *L) {
  lp_state *s = self(L);
  lp_buf body = {NULL, 0, 0, NULL};
  if (lp_encode(&s->enc, L, &body, 1, 1, "message")) {
    lua_pushstring(L, s->enc.err);
    lp_buf_free(&body);
    return lua_error(L);
  }
  if (s->host.message(s->host.ud, &body)) {
    lp_buf_free(&body);
    return luaL_error(L, "postMessage: out of memory");
  }
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

static void push_view(lua_State *L, lp_state *s) {
  lua_createtable(L, 0, 8);  /* the worker's `luapool` */
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "isMainThread");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "isWorkerThread");
  lua_pushinteger(L, s->worker_id);
  lua_setfield(L, -2, "workerId");
  if (s->thread_id) {
    lua_pushinteger(L, s->thread_id);
    lua_setfield(L, -2, "threadId");
  }
  set_field_string(L, "runtime", s->cfg->runtime ? s->cfg->runtime : "threads");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, worker_post_message, 1);
  lua_setfield(L, -2, "postMessage");
  if (s->cfg->view) s->cfg->view(L);
  if (s->cfg->worker_data.len) {
    lp_decode(L, s->cfg->worker_data.data, s->cfg->worker_data.len);
    lua_setfield(L, -2, "workerData");
  }
}

/* Room on the Lua stack, made before code runs. LuaJIT compiles a
** recursion that grows the stack as it runs into slower traces than one
** that finds room: fib(27) took 7% more instructions in a new state (40
** slots) than in a host's main state, whose stack had grown long before.
** 200 slots hold fib's and cost an idle worker no page (1000 cost 16 KiB
** of RSS); deeper recursions grow the stack as in any state. The GC
** halves an idle stack, so each task asks again (a compare when the room
** is there). PUC Lua's code does not depend on it. */
#ifdef LUA_JITLIBNAME
#define STACK_ROOM 200
#define make_room(L) lua_checkstack((L), STACK_ROOM)
#else
#define make_room(L) ((void)(L))
#endif

static void push_run_task(lua_State *L, lp_state *s);

/* Runs protected: libraries, paths, os.exit, the worker view, run_task. */
static int setup_state(lua_State *L) {
  lp_state *s = (lp_state *)lua_touserdata(L, 1);
  make_room(L);
  luaL_openlibs(L);
#if LUA_VERSION_NUM < 502 && !defined(LUA_JITLIBNAME)
  lua_getglobal(L, "debug");
  lua_getfield(L, -1, "traceback");
  lua_setfield(L, LUA_REGISTRYINDEX, "luapool.debug.traceback");
  lua_pop(L, 1);
#endif
  lua_getglobal(L, "package");
  if (s->cfg->path) set_field_string(L, "path", s->cfg->path);
  if (s->cfg->cpath) set_field_string(L, "cpath", s->cfg->cpath);
  lua_getfield(L, -1, "loaded");
  push_view(L, s);
  lua_setfield(L, -2, "luapool");
  lua_pop(L, 2);
  lua_getglobal(L, "os");
  lua_pushlightuserdata(L, s);
  lua_pushcclosure(L, worker_exit, 1);
  lua_setfield(L, -2, "exit");
  lua_pop(L, 1);
  if (s->cfg->spawn) lp_spawn_open(L, s->cfg->spawn);
  lua_getglobal(L, "coroutine");
  lp_interrupt_wrap_coroutines(L, &s->intr);
  lua_pop(L, 1);
  lua_newtable(L);  /* task files loaded, by name */
  lua_setfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_pushlightuserdata(L, s);
  lua_setfield(L, LUA_REGISTRYINDEX, SELF_KEY);
  lp_interrupt_attach(&s->intr, L);
  push_run_task(L, s);
  s->run_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

static void push_default_handler(lua_State *L, lp_state *s);

/* Clears a registry field with false: a field set to nil leaves the
** registry at its next rehash, after which setting it again rehashes the
** registry; run_task's two fields did so twice a task: 3k of the 7k
** instructions a worker spent on an empty task. */
static void clear_field(lua_State *L, const char *k) {
  lua_pushboolean(L, 0);
  lua_setfield(L, LUA_REGISTRYINDEX, k);
}

size_t lp_state_heap(lp_state *s) {
  if (s->heap.used) return s->heap.used;  /* metered by our allocator */
  return (size_t)lua_gc(s->L, LUA_GCCOUNT, 0) * 1024 + (size_t)lua_gc(s->L, LUA_GCCOUNTB, 0);
}

/* Runs protected: loads the pool's task file ahead of the first task. */
static void push_file(lua_State *L, const char *filename);
static int load_error(lua_State *L, const char *fmt, const char *a, const char *b);

/* Runs protected: loads the pool's task file ahead of the first task, and
** checks that it has the pool's teardown function. */
static int preload(lua_State *L) {
  lp_state *s = (lp_state *)lua_touserdata(L, 1);
  const lp_state_config *cfg = s->cfg;
  clear_field(L, CODE_KEY);
  if (cfg->filename && !cfg->handler.len && !cfg->name) {
    /* no name given: runs may name theirs, so a table without "default"
    ** is fine; what is neither function nor table raises here */
    push_file(L, cfg->filename);
    if (lua_istable(L, -1)) lua_getfield(L, -1, "default");
    if (lua_isfunction(L, -1)) push_default_handler(L, s);
  } else {
    push_default_handler(L, s);
  }
  if (cfg->teardown && cfg->filename) {
    push_file(L, cfg->filename);
    if (lua_istable(L, -1)) lua_getfield(L, -1, cfg->teardown); else lua_pushnil(L);
    if (!lua_isfunction(L, -1))
      load_error(L, "No teardown function \"%s\" exported from \"%s\"", cfg->teardown,
                 cfg->filename);
  }
  return 0;
}

int lp_state_open(lp_state *s, char *err, size_t errlen) {
  const lp_state_config *cfg = s->cfg;
  lua_State *L = NULL;
  s->heap.used = 0;
  s->heap.enforce = 0;
  s->heap.limit = cfg->max_heap;
  s->intr.exiting = 0;
  s->load_error[0] = '\0';
  /* Our allocator meters and caps a heap and makes states cheap to open
  ** and close; Lua's own is faster for the objects of a long-lived state. */
  if (cfg->max_heap || cfg->isolate) L = lua_newstate(lp_heap_alloc, &s->heap);
  if (!L && (L = luaL_newstate()) && cfg->max_heap)
    s->host.event(s->host.ud, "resourceLimits.maxHeapBytes cannot be enforced: this "
                  "Lua takes no allocator of ours (LuaJIT without GC64); no cap holds");
  if (!L) {
    snprintf(err, errlen, "worker %d: cannot create a Lua state", s->worker_id);
    return -1;
  }
  lua_pushcfunction(L, setup_state);
  lua_pushlightuserdata(L, s);
  if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
    snprintf(err, errlen, "worker %d: cannot set up its Lua state: %s",
             s->worker_id, lua_tostring(L, -1));
    lua_close(L);
    return -1;
  }
  s->L = L;
  s->default_ref = LUA_NOREF;
  if (cfg->filename || cfg->handler.len) {
    if (lp_interrupt_enter(&s->intr, L, LP_LOAD_ID)) {  /* its top level may loop: stoppable */
      lua_pushcfunction(L, preload);  /* a failure shows again on the task */
      lua_pushlightuserdata(L, s);
      if (lua_pcall(L, 1, 0, 0) != LUA_OK) {  /* said once, for luapool.new to raise */
        lua_getfield(L, LUA_REGISTRYINDEX, CODE_KEY);
        if (lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "load_error") == 0)
          snprintf(s->load_error, sizeof s->load_error, "%s", lua_tostring(L, -2));
      }
    }
    lp_interrupt_leave(&s->intr, L);
    lua_settop(L, 0);
  }
  return 0;
}

/* The task file's teardown function, if the pool names one, before the
** state closes; what it raises becomes an "error" event. */
static void teardown(lp_state *s) {
  const lp_state_config *cfg = s->cfg;
  lua_State *L = s->L;
  if (!cfg->teardown || !cfg->filename) return;
  lua_settop(L, 0);
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_getfield(L, -1, cfg->filename);
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, cfg->teardown);
    if (lua_isfunction(L, -1) && lua_pcall(L, 0, 0, 0) != LUA_OK) {
      char text[512];
      snprintf(text, sizeof text, "worker %d: teardown \"%s\" failed: %s", s->worker_id,
               cfg->teardown, lua_isstring(L, -1) ? lua_tostring(L, -1) : "(not a string)");
      s->host.event(s->host.ud, text);
    }
  }
  lua_settop(L, 0);
}

void lp_state_close(lp_state *s) {
  if (!s->L) return;
  lua_sethook(s->L, NULL, 0, 0);
  s->heap.enforce = 0;
  teardown(s);
  lua_close(s->L);
  s->L = NULL;
}

void lp_state_free(lp_state *s) {
  lp_state_close(s);
  lp_encoder_free(&s->enc);
}

/* ---- running a task ---------------------------------------------------- */

/* Raises an error that rejects the task with code load_error. */
static int load_error(lua_State *L, const char *fmt, const char *a, const char *b) {
  lua_pushliteral(L, "load_error");
  lua_setfield(L, LUA_REGISTRYINDEX, CODE_KEY);
  lua_pushfstring(L, fmt, a, b);
  return lua_error(L);
}

static lp_state *self_of(lua_State *L) {
  lp_state *s;
  lua_getfield(L, LUA_REGISTRYINDEX, SELF_KEY);
  s = (lp_state *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  return s;
}

/* Pushes what the task file returns, loading and running it the first time. */
static void push_file(lua_State *L, const char *filename) {
  lua_getfield(L, LUA_REGISTRYINDEX, "luapool.files");
  lua_getfield(L, -1, filename);
  if (lua_isnil(L, -1)) {
    const lp_state_config *cfg = self_of(L)->cfg;
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

static void push_default_handler(lua_State *L, lp_state *s) {
  const lp_state_config *cfg = s->cfg;
  if (s->default_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->default_ref);
    return;
  }
  if (cfg->handler.len)
    lp_decode(L, cfg->handler.data, cfg->handler.len);
  else if (cfg->filename)
    push_handler_of_file(L, cfg->filename, cfg->name ? cfg->name : "default");
  else
    load_error(L, "%s%s", "filename must be provided to run() or in options object", "");
  lua_pushvalue(L, -1);
  s->default_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

/* The task being run, as run_task sees it. */
typedef struct task_io {
  const char *in;
  size_t len;
  lp_refill refill;  /* the rest of in, when it comes in parts; NULL: none */
  void *refill_ud;
  lp_buf *out;
  int failed;
  int oom;  /* the state ran out of memory: it may be inconsistent */
} task_io;

/* Pushes a length-prefixed string of the task's header. */
static void push_header_string(lua_State *L, task_io *t, size_t *pos) {
  const unsigned char *p = (const unsigned char *)t->in + *pos;
  const unsigned char *end = (const unsigned char *)t->in + t->len;
  uint64_t n;
  if (lp_varint_get(&p, end, &n) || n > (uint64_t)(end - p))
    luaL_error(L, "luapool: corrupt task");
  lua_pushlstring(L, (const char *)p, (size_t)n);
  *pos = (size_t)(p - (const unsigned char *)t->in) + (size_t)n;
}

#define BRIEF_FIELDS 6
#define BRIEF_CHARS 40

/* Pushes a key or value of a table raised as an error, briefly. */
static void push_brief(lua_State *L, int i, int iskey) {
  int t = lua_type(L, i);
  if (t == LUA_TSTRING) {
    size_t n, k;
    const char *s = lua_tolstring(L, i, &n);
    int name = iskey && n > 0 && n <= BRIEF_CHARS && (isalpha((unsigned char)*s) || *s == '_');
    for (k = 0; name && k < n; k++) name = isalnum((unsigned char)s[k]) || s[k] == '_';
    lua_pushlstring(L, s, n < BRIEF_CHARS ? n : BRIEF_CHARS);
    if (name) return;
    lua_pushfstring(L, iskey ? "[\"%s%s\"]" : "\"%s%s\"", lua_tostring(L, -1),
                    n > BRIEF_CHARS ? "..." : "");
  } else if (t == LUA_TNUMBER) {
    lua_pushvalue(L, i);
    lua_pushfstring(L, iskey ? "[%s]" : "%s", lua_tostring(L, -1));
  } else if (t == LUA_TBOOLEAN) {
    lua_pushstring(L, lua_toboolean(L, i) ? "true" : "false");
    lua_pushfstring(L, iskey ? "[%s]" : "%s", lua_tostring(L, -1));
  } else {
    lua_pushstring(L, luaL_typename(L, i));
    lua_pushfstring(L, iskey ? "[%s]" : "%s", lua_tostring(L, -1));
  }
  lua_remove(L, -2);
}

/* A table raised with no message: "{reason = "bad input", n = 42}", its
** first BRIEF_FIELDS fields in table order. v is absolute. */
static void push_brief_table(lua_State *L, int v) {
  int n = 0, parts = 1;
  luaL_checkstack(L, 4 * BRIEF_FIELDS + 8, "error message");
  lua_pushliteral(L, "{");
  lua_pushnil(L);
  while (lua_next(L, v)) {     /* pieces, key, value */
    if (n++ == BRIEF_FIELDS) {
      lua_pop(L, 2);
      lua_pushliteral(L, ", ...");
      parts++;
      break;
    }
    if (n > 1) {
      lua_pushliteral(L, ", ");
      lua_insert(L, -3);
      parts++;
    }
    push_brief(L, -2, 1);
    lua_pushliteral(L, " = ");
    push_brief(L, -3, 0);      /* pieces, key, value, k, " = ", v */
    lua_remove(L, -4);
    lua_pushvalue(L, -4);
    lua_remove(L, -5);         /* pieces, k, " = ", v, key */
    parts += 3;
  }
  lua_pushliteral(L, "}");
  lua_concat(L, parts + 1);
}

/* The message for an error value: strings as they are, tables by their
** `message` field or else briefly, the rest by their type. */
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
    push_brief_table(L, v > 0 ? v : lua_gettop(L) + v + 1);
    return;
  }
  lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, v));
}

/* Writes code, message, value and traceback as the task's outcome; msg
** NULL takes the message from the value. A value that cannot cross is
** dropped, and the message says so. */
static void put_error(lp_state *s, task_io *t, const char *code, int v,
                      const char *msg, const char *tb) {
  lua_State *L = s->L;
  int top = lua_gettop(L);
  t->failed = 1;
  t->out->len = 0;
  lua_pushstring(L, code);
  if (msg) lua_pushstring(L, msg); else push_message(L, v);
  lua_pushvalue(L, v);
  if (tb) lua_pushstring(L, tb); else lua_pushnil(L);
  if (lp_encode(&s->enc, L, t->out, top + 1, 4, "error")) {
    lua_pushfstring(L, "%s (the error value could not be copied: %s)",
                    lua_tostring(L, top + 2), s->enc.err);
    lua_replace(L, top + 2);
    lua_pushnil(L);
    lua_replace(L, top + 3);
    if (lp_encode(&s->enc, L, t->out, top + 1, 4, "error")) t->out->len = 0;
  }
  lua_settop(L, top);
}

/* run_task's upvalues: made once a state, so that a task allocates no
** closure and interns no registry key. */
enum { UP_STATE = 1, UP_CODE_KEY, UP_TRACEBACK_KEY, UP_TRACEBACK };

/* clear_field, for the key string in upvalue up. */
static void clear_key(lua_State *L, int up) {
  lua_pushvalue(L, lua_upvalueindex(up));
  lua_pushboolean(L, 0);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Runs protected, on s->io. Stack: 1 traceback, 2 handler, 3.. arguments;
** then 2.. results. */
static int run_task(lua_State *L) {
  lp_state *s = (lp_state *)lua_touserdata(L, lua_upvalueindex(UP_STATE));
  task_io *t = s->io;
  size_t pos = 1;
  int kind = t->len ? (unsigned char)t->in[0] : -1, status;
  lua_settop(L, 0);
  clear_key(L, UP_CODE_KEY);
  lua_pushvalue(L, lua_upvalueindex(UP_TRACEBACK));
  if (kind == LP_RUN_DEFAULT) {
    push_default_handler(L, s);
  } else if (kind == LP_RUN_FILE) {
    push_header_string(L, t, &pos);
    push_header_string(L, t, &pos);
    push_handler_of_file(L, lua_tostring(L, 2), lua_tostring(L, 3));
    lua_replace(L, 2);
    lua_settop(L, 2);
  } else if (kind != LP_RUN_HANDLER) {
    return luaL_error(L, "luapool: corrupt task");
  }
  if (t->refill)
    lp_decode_refill(L, t->in + pos, t->len - pos, t->refill, t->refill_ud, 0);
  else if (lp_decode_scalar(L, t->in + pos, t->len - pos) < 0)  /* else a scalar, pushed */
    lp_decode(L, t->in + pos, t->len - pos);
  clear_key(L, UP_TRACEBACK_KEY);  /* none from an earlier task, should msgh fail */
  make_room(L);
  s->heap.refused = 0;
  s->heap.enforce = 1;
  status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 1);
  s->heap.enforce = 0;
  if (status == LUA_ERRMEM || s->heap.refused) {
    char msg[128];
    snprintf(msg, sizeof msg, "Out of memory: the task's state reached its heap limit of %zu bytes",
             s->heap.limit);
    t->oom = 1;
    put_error(s, t, "out_of_memory", 2, s->heap.limit ? msg : "Out of memory", NULL);
    return 0;
  }
  if (status != LUA_OK) {
    lua_getfield(L, LUA_REGISTRYINDEX, TRACEBACK_KEY);
    put_error(s, t, "task_error", 2, NULL, lua_tostring(L, -1));
    return 0;
  }
  t->out->len = 0;
  s->enc.flush = s->host.result;  /* lp_state_run takes it back, whatever happens */
  s->enc.flush_ud = s->host.ud;
  s->enc.flush_at = s->host.result_chunk;
  if (lp_encode(&s->enc, L, t->out, 2, lua_gettop(L) - 1, "result")) {
    lua_pushstring(L, s->enc.err);
    put_error(s, t, "serialize", lua_gettop(L), NULL, NULL);
  }
  return 0;
}

static void push_run_task(lua_State *L, lp_state *s) {
  lua_pushlightuserdata(L, s);
  lua_pushliteral(L, CODE_KEY);
  lua_pushliteral(L, TRACEBACK_KEY);
  lua_pushcfunction(L, traceback);
  lua_pushcclosure(L, run_task, 4);
}

int lp_state_run(lp_state *s, unsigned id, const char *in, size_t len, lp_refill refill,
                 void *refill_ud, lp_buf *out, int *failed) {
  lua_State *L = s->L;
  task_io t;
  int stopped = 0;
  t.in = in;
  t.len = len;
  t.refill = refill;
  t.refill_ud = refill_ud;
  t.out = out;
  t.failed = t.oom = 0;
  lua_settop(L, 0);
  if (lp_interrupt_enter(&s->intr, L, id)) {
    int status;
    s->io = &t;
    lua_rawgeti(L, LUA_REGISTRYINDEX, s->run_ref);
    status = lua_pcall(L, 0, 0, 0);
    s->io = NULL;
    s->enc.flush = NULL;
    lp_encoder_end_list(&s->enc, L);  /* an error may have cut a list's result short */
    s->heap.enforce = 0;
    if (status == LUA_ERRMEM) {
      lua_pushnil(L);
      put_error(s, &t, "out_of_memory", lua_gettop(L), "Out of memory", NULL);
    } else if (status != LUA_OK) {
      const char *code;
      lua_getfield(L, LUA_REGISTRYINDEX, CODE_KEY);
      code = lua_isstring(L, -1) ? lua_tostring(L, -1) : "task_error";
      put_error(s, &t, code, 1, NULL, NULL);
    }
    stopped = t.oom;
  }
  lua_settop(L, 0);
  if (atomic_load(s->intr.cancel) == id || atomic_load(s->intr.stop)) {
    lua_pushnil(L);
    put_error(s, &t, "aborted", 1, "The task has been aborted", NULL);
    stopped = 1;
  }
  lp_interrupt_leave(&s->intr, L);
  if (s->intr.exiting) {
    char msg[64];
    lua_sethook(L, NULL, 0, 0);
    snprintf(msg, sizeof msg, "Worker exited with code %.14g", (double)s->exit_code);
    if (s->exit_code >= INT_MIN && s->exit_code <= INT_MAX && s->exit_code == (int)s->exit_code)
      lua_pushinteger(L, (int)s->exit_code);  /* 3, not 3.0, on Lua 5.3+ */
    else
      lua_pushnumber(L, s->exit_code);
    put_error(s, &t, "worker_exited", lua_gettop(L), msg, NULL);
    stopped = 1;
  }
  lua_settop(L, 0);
  *failed = t.failed;
  return stopped;
}

/* ---- who we are, for the other end of a process boundary ------------- */

#ifdef LUA_JITLIBNAME
#include <luajit.h>
#endif

static void *probe_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

void lp_hello_make(lp_hello *h) {
  lua_State *L;
  memset(h, 0, sizeof *h);
  memcpy(h->magic, "luapool", 8);
  h->protocol = LP_PROTOCOL;
  h->lua = LUA_VERSION_NUM;
  h->ptrsize = (uint8_t)sizeof(void *);
#ifdef LUA_JITLIBNAME
  h->luajit = 1;
  /* x64 LuaJIT takes an allocator of ours only in GC64 builds: a probe. */
  if ((L = lua_newstate(probe_alloc, NULL)) != NULL) {
    h->gc64 = 1;
    lua_close(L);
  }
#else
  (void)L;
  (void)probe_alloc;
#endif
}
