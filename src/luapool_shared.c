/* Lua bindings of channels and shared buffers, for the host and for
** thread workers alike (a worker's state gets them through the worker
** view). Bad arguments raise error tables {code, message} as the rest of
** the API does. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include "channel.h"
#include "codec.h"
#include "interrupt.h"
#include "luapool_shared.h"
#include "pool.h"  /* LP_FOREVER_MS */
#include "sharedbuf.h"
#include "state.h"  /* LP_CODE_KEY */

#define CHANNEL_MT "luapool.channel"
#define BUFFER_MT "luapool.buffer"
#define ERROR_MT "luapool.Error"
#define ENCODER_KEY "luapool.encoder"
#define MAX_SIZE 9007199254740992.0  /* 2^53: every size a double holds exactly */

/* ---- errors and arguments ---------------------------------------------- */

static int error_tostring(lua_State *L) {
  lua_getfield(L, 1, "code");
  lua_getfield(L, 1, "message");
  lua_pushfstring(L, "luapool %s: %s", lua_tostring(L, -2), lua_tostring(L, -1));
  return 1;
}

/* The metatable of errors: the host module's Error, or a small one. */
static void push_error_mt(lua_State *L) {
  lua_getfield(L, LUA_REGISTRYINDEX, ERROR_MT);
  if (lua_istable(L, -1)) return;
  lua_pop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, error_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, ERROR_MT);
}

/* core.error_metatable(Error): errors raised here are luapool.isError. */
static int set_error_mt(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, ERROR_MT);
  return 0;
}

static int throw(lua_State *L, const char *code, const char *fmt, ...) {
  va_list ap;
  lua_createtable(L, 0, 2);
  lua_pushstring(L, code);
  lua_setfield(L, -2, "code");
  va_start(ap, fmt);
  lua_pushvfstring(L, fmt, ap);
  va_end(ap);
  lua_setfield(L, -2, "message");
  push_error_mt(L);
  lua_setmetatable(L, -2);
  return lua_error(L);
}

/* The value at idx as an error message shows it. */
static const char *describe(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TSTRING) return lua_pushfstring(L, "\"%s\"", lua_tostring(L, idx));
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tostring(L, -1);  /* 3, not 3.0, on 5.3+ */
  }
  return lua_pushfstring(L, "%s", luaL_typename(L, idx));
}

/* A timeout in ms at idx: none or nil is for ever, as is math.huge. */
static double opt_timeout(lua_State *L, int idx, const char *fname) {
  double ms;
  if (lua_isnoneornil(L, idx)) return LP_FOREVER_MS;
  ms = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : -1;
  if (!(ms >= 0))
    throw(L, "invalid_argument", "%s: timeout must be a non-negative number of milliseconds "
          "(math.huge: no limit), not %s", fname, describe(L, idx));
  return ms;
}

/* A whole number of bytes or values in [lo, MAX_SIZE] at idx, or dflt when absent. */
static size_t opt_count(lua_State *L, int idx, const char *fname, const char *what,
                        double lo, double dflt) {
  double v;
  if (lua_isnoneornil(L, idx)) return (size_t)dflt;
  v = lua_type(L, idx) == LUA_TNUMBER ? (double)lua_tonumber(L, idx) : -1;
  if (!(v >= lo && v <= MAX_SIZE && v == floor(v)))
    throw(L, "invalid_argument", "%s: %s must be a whole number from %d, not %s", fname, what,
          (int)lo, describe(L, idx));
  return (size_t)v;
}

/* The object of kind t at 1, or an error saying how to call a method. */
static lp_shared *check_self(lua_State *L, const lp_shared_type *t, const char *method) {
  lp_shared *o = lp_shared_test(L, 1);
  if (!o || o->type != t)
    throw(L, "invalid_argument", "%s.%s: call it with a colon: %s:%s(...)", t->name, method,
          t->name, method);
  return o;
}

/* ---- waiting, interruptibly --------------------------------------------- */

/* A wait in a worker stops when its task is to stop; anywhere, when a hook
** appears (the interpreter's Ctrl-C, or the worker's interrupt). */
typedef struct waiter {
  lua_State *L;
  lp_intr *intr;
  lua_Hook hook;
} waiter;

static int waiter_stop(void *ud) {
  waiter *w = (waiter *)ud;
  lua_Hook h = lua_gethook(w->L);
  return (w->intr && lp_interrupt_pending(w->intr)) || (h && h != w->hook);
}

static void waiter_init(lua_State *L, waiter *w, lp_wait_check *chk) {
  w->L = L;
  w->intr = lp_interrupt_get(L);
  w->hook = lua_gethook(L);
  chk->stop = waiter_stop;
  chk->ud = w;
}

/* After LP_CH_STOPPED: a worker's task ends as the interrupt's hook would
** end it; on the host the wait just returns, and the hook fires then. */
static void stopped(lua_State *L, waiter *w) {
  if (w->intr && lp_interrupt_pending(w->intr))
    luaL_error(L, w->intr->exiting ? "luapool: worker exited" : "luapool: task interrupted");
}

/* ---- channels ---------------------------------------------------------- */

typedef struct encoder_box { lp_encoder e; int busy; } encoder_box;

static int encoder_gc(lua_State *L) {
  lp_encoder_free(&((encoder_box *)lua_touserdata(L, 1))->e);
  return 0;
}

/* This state's encoder, kept in its registry; tmp when it is in use (a
** finalizer pushing while a push encodes). */
static encoder_box *state_encoder(lua_State *L, encoder_box *tmp) {
  encoder_box *b;
  lua_getfield(L, LUA_REGISTRYINDEX, ENCODER_KEY);
  b = (encoder_box *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  if (!b) {
    b = (encoder_box *)lua_newuserdata(L, sizeof *b);
    memset(b, 0, sizeof *b);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, encoder_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, ENCODER_KEY);
  }
  if (!b->busy) return b;
  memset(tmp, 0, sizeof *tmp);
  return tmp;
}

static int ch_push(lua_State *L) {
  lp_channel *c = (lp_channel *)check_self(L, &lp_channel_type, "push");
  double ms = opt_timeout(L, 3, "channel:push");
  lp_buf v = {NULL, 0, 0, NULL};
  encoder_box tmp, *eb;
  lp_wait_check chk;
  waiter w;
  int r;
  if (lua_isnoneornil(L, 2))
    return throw(L, "invalid_argument", "channel:push: cannot push nil (pop returns nil "
                 "for a closed, empty channel)");
  eb = state_encoder(L, &tmp);
  eb->busy = 1;
  r = lp_encode(&eb->e, L, &v, 2, 1, "value");
  eb->busy = 0;
  if (r) {
    lp_buf_free(&v);
    lua_pushstring(L, eb->e.err);
    if (eb == &tmp) lp_encoder_free(&tmp.e);
    return throw(L, "serialize", "channel:push: %s", lua_tostring(L, -1));
  }
  if (eb == &tmp) lp_encoder_free(&tmp.e);
  waiter_init(L, &w, &chk);
  r = lp_channel_push(c, &v, ms, &chk);
  lp_buf_free(&v);  /* not taken: the channel did not take it */
  if (r == LP_CH_STOPPED) stopped(L, &w);
  if (r == LP_CH_NOMEM) return throw(L, "out_of_memory", "channel:push: out of memory");
  lua_pushboolean(L, r == LP_CH_OK);
  if (r == LP_CH_OK) return 1;
  lua_pushstring(L, r == LP_CH_CLOSED ? "closed" : "timeout");
  return 2;
}

static int decode_value(lua_State *L) {
  lp_buf *v = (lp_buf *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  return lp_decode(L, v->data, v->len);
}

static int ch_pop(lua_State *L) {
  lp_channel *c = (lp_channel *)check_self(L, &lp_channel_type, "pop");
  double ms = opt_timeout(L, 2, "channel:pop");
  lp_buf v = {NULL, 0, 0, NULL};
  lp_wait_check chk;
  waiter w;
  int r;
  waiter_init(L, &w, &chk);
  r = lp_channel_pop(c, &v, ms, &chk);
  if (r != LP_CH_OK) {
    if (r == LP_CH_STOPPED) stopped(L, &w);
    lua_pushnil(L);
    return 1;
  }
  lua_settop(L, 0);
  lua_pushcfunction(L, decode_value);
  lua_pushlightuserdata(L, &v);
  r = lua_pcall(L, 1, 1, 0);
  lp_buf_free(&v);
  if (r != LUA_OK) {
    lua_pushnil(L);  /* a value this state cannot make is this call's error */
    lua_setfield(L, LUA_REGISTRYINDEX, LP_CODE_KEY);
    return throw(L, "serialize", "channel:pop: %s",
                 lua_isstring(L, 1) ? lua_tostring(L, 1) : "the value cannot be made here");
  }
  return 1;
}

static int ch_close(lua_State *L) {
  lp_channel_close((lp_channel *)check_self(L, &lp_channel_type, "close"));
  return 0;
}

static int ch_closed(lua_State *L) {
  lua_pushboolean(L, lp_channel_closed((lp_channel *)check_self(L, &lp_channel_type, "closed")));
  return 1;
}

static int ch_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)lp_channel_count((lp_channel *)check_self(L, &lp_channel_type, "len")));
  return 1;
}

static int ch_capacity(lua_State *L) {
  size_t n = lp_channel_capacity((lp_channel *)check_self(L, &lp_channel_type, "capacity"));
  if (n == (size_t)-1) lua_pushnumber(L, (lua_Number)HUGE_VAL);
  else lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int ch_pollfd(lua_State *L) {
  int fd = lp_channel_pollfd((lp_channel *)check_self(L, &lp_channel_type, "pollfd"));
  if (fd < 0) return throw(L, "out_of_memory", "channel:pollfd: cannot make an eventfd");
  lua_pushinteger(L, fd);
  return 1;
}

static int ch_tostring(lua_State *L) {
  lp_channel *c = (lp_channel *)check_self(L, &lp_channel_type, "tostring");
  lua_pushfstring(L, "luapool.channel (%d values): %p", (int)lp_channel_count(c), (void *)c);
  return 1;
}

static void channel_metatable(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"push", ch_push}, {"pop", ch_pop}, {"close", ch_close}, {"closed", ch_closed},
    {"capacity", ch_capacity}, {"pollfd", ch_pollfd}, {NULL, NULL}};
  lp_shared_new_metatable(L, CHANNEL_MT, &lp_channel_type, methods, ch_len, ch_tostring);
}

const lp_shared_type lp_channel_type = {"channel", lp_channel_destroy, channel_metatable};

/* luapool.channel([capacity]) -> a channel holding at most capacity values
** (none: no limit). */
static int new_channel(lua_State *L) {
  size_t cap = lua_isnoneornil(L, 1) ? (size_t)-1
                                      : opt_count(L, 1, "luapool.channel", "capacity", 1, 0);
  lp_channel *c;
  if (!(c = lp_channel_new(cap))) return throw(L, "out_of_memory", "luapool.channel: out of memory");
  lp_shared_push(L, (lp_shared *)c);  /* a channel begins with its lp_shared */
  lp_shared_release((lp_shared *)c);  /* the userdata holds it now */
  return 1;
}

/* ---- shared buffers ---------------------------------------------------- */

#define check_buf(L, m) ((lp_sharedbuf *)check_self(L, &lp_sharedbuf_type, m))

/* The byte range [off, off + len) of b from arguments 2 and 3, checked. */
static void range(lua_State *L, lp_sharedbuf *b, const char *fname, size_t *off, size_t *len,
                  int has_len) {
  *off = opt_count(L, 2, fname, "offset", 0, 0);
  if (has_len) *len = opt_count(L, 3, fname, "length", 0, *off <= b->len ? (double)(b->len - *off) : 0);
  if (*off > b->len || *len > b->len - *off) {
    char from[24], to[24], size[24];
    snprintf(from, sizeof from, "%zu", *off);
    snprintf(to, sizeof to, "%.0f", (double)*off + (double)*len);
    snprintf(size, sizeof size, "%zu", b->len);
    throw(L, "invalid_argument", "%s: bytes %s to %s are outside the buffer's %s bytes "
          "(offsets count from 0)", fname, from, to, size);
  }
}

/* buf:read([offset [, length]]) -> string; offsets count from 0 */
static int buf_read(lua_State *L) {
  lp_sharedbuf *b = check_buf(L, "read");
  size_t off, len;
  range(L, b, "buffer:read", &off, &len, 1);
  lua_pushlstring(L, (const char *)b->data + off, len);
  return 1;
}

/* buf:write(offset, string) */
static int buf_write(lua_State *L) {
  lp_sharedbuf *b = check_buf(L, "write");
  size_t off, len;
  const char *s;
  if (lua_type(L, 3) != LUA_TSTRING)
    return throw(L, "invalid_argument", "buffer:write: expects a string to write, not %s",
                 describe(L, 3));
  s = lua_tolstring(L, 3, &len);
  range(L, b, "buffer:write", &off, &len, 0);
  memcpy(b->data + off, s, len);
  return 0;
}

/* buf:ptr() -> the first byte's address, for ffi.cast; valid while buf lives */
static int buf_ptr(lua_State *L) {
  lua_pushlightuserdata(L, check_buf(L, "ptr")->data);
  return 1;
}

static int buf_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_buf(L, "len")->len);
  return 1;
}

static int buf_tostring(lua_State *L) {
  lp_sharedbuf *b = check_buf(L, "tostring");
  char size[24];
  snprintf(size, sizeof size, "%zu", b->len);
  lua_pushfstring(L, "luapool.buffer (%s bytes): %p", size, (void *)b);
  return 1;
}

static void buffer_metatable(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"read", buf_read}, {"write", buf_write}, {"ptr", buf_ptr}, {NULL, NULL}};
  lp_shared_new_metatable(L, BUFFER_MT, &lp_sharedbuf_type, methods, buf_len, buf_tostring);
}

const lp_shared_type lp_sharedbuf_type = {"buffer", lp_sharedbuf_destroy, buffer_metatable};

/* luapool.buffer(nbytes) -> nbytes zero bytes shared by reference */
static int new_buffer(lua_State *L) {
  size_t n;
  lp_sharedbuf *b;
  if (lua_isnoneornil(L, 1))
    return throw(L, "invalid_argument", "luapool.buffer: expects a size in bytes");
  n = opt_count(L, 1, "luapool.buffer", "size", 0, 0);
  if (!(b = lp_sharedbuf_new(n)))
    return throw(L, "out_of_memory", "luapool.buffer: cannot allocate %s bytes", describe(L, 1));
  lp_shared_push(L, &b->base);
  lp_shared_release(&b->base);
  return 1;
}

/* ---- registering -------------------------------------------------------- */

void lp_shared_view(lua_State *L) {
  lua_pushcfunction(L, new_channel);
  lua_setfield(L, -2, "channel");
  lua_pushcfunction(L, new_buffer);
  lua_setfield(L, -2, "buffer");
}

void lp_shared_open(lua_State *L) {
  lp_shared_view(L);
  lua_pushcfunction(L, set_error_mt);
  lua_setfield(L, -2, "error_metatable");
}
