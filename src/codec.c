/* Value codec. Format: one tag byte per value, then its payload.
**   nil false true          tag only
**   int                     zigzag varint (integers; integral doubles on 5.1)
**   num                     8 raw bytes of a double
**   str                     varint length, bytes
**   key                     the same, for a string written before in this
**                           message: it also gets the next number (from 0)
**   key-ref                 varint number of a string given one before
**   table / table-shared    u32 narr, u32 nhash, narr values, nhash
**                           key/value pairs; "shared" ones are referred to
**                           again
**   list / list-shared      varint n, the values at 1..n, the other pairs,
**                           nil: a table at the top of a value that may be
**                           read while written (e->flush), long or holding
**                           a long one; or such a long one (see put_nested)
**   keep-all                (first, before any value) the message's tables
**                           are not marked shared: the reader keeps every
**                           one (written for a list: its bytes may be read
**                           before a mark could be made)
**   func / func-shared      varint size, bytecode, u8 nups, nups values
**   ref                     varint number of an earlier table or function
**   globals                 the receiving state's globals table
**   module                  varint length, name: package.loaded[name] there
**                           (required if need be), for a loaded module that
**                           cannot be copied (it holds C functions)
**   handle                  the address of a shared object (shared.h): the
**                           bytes hold a reference to it (lp_buf's refs)
**   cdata                   str C type name, str its bytes (LuaJIT, cdata.c)
** Tables and functions are numbered in the order they begin, keys in the
** order they are written; both numberings span the values of one decode. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "cdata.h"
#include "codec.h"
#include "shared.h"
#include "wire.h"

/* A C function may use some 8000 stack slots in LuaJIT and Lua 5.1, and
** each level of nesting takes two; deeper values go on fresh coroutine
** stacks, a new one every LEVELS_PER_STACK levels. Room on a stack is made
** every STACK_STEP levels, for that many: a level holds three slots at most
** (a table, a key, a value), the deepest a few more for a moment. */
#define LEVELS_PER_STACK 2000

#ifdef __GNUC__
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE
#endif
#define STACK_STEP 8
#define STACK_ROOM (3 * STACK_STEP + 8)

enum {
  T_NIL, T_FALSE, T_TRUE, T_INT, T_NUM, T_STR, T_TABLE, T_TABLE_SHARED,
  T_FUNC, T_FUNC_SHARED, T_REF, T_GLOBALS, T_KEY, T_HANDLE, T_CDATA, T_MODULE,
  T_KEYREF, T_LIST, T_LIST_SHARED, T_KEEPALL
};

/* ---- encoder: pointer maps -------------------------------------------- */

/* Tables made one after another lie near one another, and so should their
** slots: a locality-keeping hash (the address by granules of 2^shift bytes,
** high bits folded in) turns the seen map's cache misses, the encoder's
** main cost on large values, into mostly hits. A table takes 56 bytes or
** more: 64-byte granules keep neighbours in neighbouring slots. */
#define SEEN_SHIFT 6
#define KEY_SHIFT 4
static size_t hashptr(const void *p, int shift) {
  uintptr_t x = (uintptr_t)p >> shift;
  return (size_t)(x ^ (x >> 16) ^ (x >> 32));
}

/* The slot of p, or the empty one where it goes (the map is never full). */
static size_t map_find(const lp_ptrmap *m, const void *p, int shift) {
  size_t i = hashptr(p, shift) & m->mask;
  for (;; i = (i + 1) & m->mask) {
    uint32_t v = m->slot[i];
    if (v <= m->base || m->ptrs[v - m->base - 1] == p) return i;
  }
}

/* The number of the entry in slot i, or -1 when it is empty. */
static int64_t map_number(const lp_ptrmap *m, size_t i) {
  return m->slot[i] > m->base ? (int64_t)(m->slot[i] - m->base - 1) : -1;
}

/* Adds p in slot i (empty, from map_find, with room made); its number. */
static uint32_t map_add(lp_ptrmap *m, size_t i, const void *p) {
  uint32_t n = (uint32_t)m->used++;
  m->ptrs[n] = p;
  m->slot[i] = m->base + 1 + n;
  return n;
}

/* Room for n entries in all, at most half the slots used; 0 or -1. */
static int map_grow(lp_ptrmap *m, size_t n, int shift) {
  size_t oldcap = m->slot ? m->mask + 1 : 0, cap = oldcap ? oldcap : 64, i;
  uint32_t *s;
  if (n >= UINT32_MAX / 2) return -1;  /* base + 1 + a number fits */
  if (n > m->nptrs) {
    size_t k = m->nptrs * 2 > n ? m->nptrs * 2 : n;
    const void **p = realloc(m->ptrs, k * sizeof *p);
    if (!p) return -1;
    m->ptrs = p;
    m->nptrs = k;
  }
  while (n > cap / 2) cap *= 2;
  if (cap == oldcap) return 0;
  if (!(s = calloc(cap, sizeof *s))) return -1;
  free(m->slot);
  m->slot = s;
  m->mask = cap - 1;
  m->base = 0;
  for (i = 0; i < m->used; i++) s[map_find(m, m->ptrs[i], shift)] = (uint32_t)i + 1;
  return 0;
}

static int map_room(lp_ptrmap *m, int shift) {
  if (m->slot && m->used + 1 <= (m->mask + 1) / 2 && m->used < m->nptrs) return 0;
  return map_grow(m, m->used + 1, shift);
}

/* Forgets the entries numbered used and after, the newest first: none of
** the older ones was placed past a slot that a newer one took. */
static void map_truncate(lp_ptrmap *m, size_t used, int shift) {
  while (m->used > used) {
    m->used--;
    m->slot[map_find(m, m->ptrs[m->used], shift)] = 0;
  }
}

static void map_clear(lp_ptrmap *m) {
  m->base += (uint32_t)m->used;
  m->used = 0;
  if (m->base >= UINT32_MAX / 2) {  /* numbers would wrap: really clear */
    if (m->slot) memset(m->slot, 0, (m->mask + 1) * sizeof *m->slot);
    m->base = 0;
  }
}

static void map_free(lp_ptrmap *m) {
  free(m->slot);
  free(m->ptrs);
  m->slot = NULL;
  m->ptrs = NULL;
  m->mask = m->used = m->nptrs = 0;
  m->base = 0;
}

void lp_encoder_free(lp_encoder *e) {
  lp_buf_free(&e->path);
  free(e->tagpos);
  e->tagpos = NULL;
  e->ntagpos = 0;
  map_free(&e->seen);
  map_free(&e->keys);
  free(e->recent);
  e->recent = NULL;
}

/* ---- encoder: writing ------------------------------------------------- */

static int fail(lp_encoder *e, const char *fmt, const char *what) {
  snprintf(e->reason, sizeof e->reason, fmt, what);
  return -1;
}

static int oom(lp_encoder *e) { return fail(e, "%s", "out of memory"); }

/* Room for n more bytes at the end of the output: where they go, or NULL
** (and the reason) out of memory. Each value reserves once, then writes. */
static unsigned char *room(lp_encoder *e, size_t n) {
  if (lp_buf_reserve(e->out, n)) {
    oom(e);
    return NULL;
  }
  return (unsigned char *)e->out->data + e->out->len;
}

static void done(lp_encoder *e, const unsigned char *p) {
  e->out->len = (size_t)((const char *)p - e->out->data);
}

static unsigned char *varint_at(unsigned char *p, uint64_t v) {
  while (v >= 0x80) { *p++ = (unsigned char)(v | 0x80); v >>= 7; }
  *p++ = (unsigned char)v;
  return p;
}

static inline int put_byte(lp_encoder *e, int c) {
  unsigned char *p = room(e, 1);
  if (!p) return -1;
  *p++ = (unsigned char)c;
  done(e, p);
  return 0;
}

/* A tag and a varint. */
static inline int put_head(lp_encoder *e, int tag, uint64_t v) {
  unsigned char *p = room(e, 1 + LP_VARINT_MAX);
  if (!p) return -1;
  *p++ = (unsigned char)tag;
  done(e, varint_at(p, v));
  return 0;
}

static int put_varint(lp_encoder *e, uint64_t v) {
  unsigned char *p = room(e, LP_VARINT_MAX);
  if (!p) return -1;
  done(e, varint_at(p, v));
  return 0;
}

static int put_tagged_bytes(lp_encoder *e, int tag, const void *s, size_t n) {
  unsigned char *p;
  if (n > (size_t)-1 / 2 || !(p = room(e, 1 + LP_VARINT_MAX + n))) return oom(e);
  *p++ = (unsigned char)tag;
  p = varint_at(p, n);
  memcpy(p, s, n);
  done(e, p + n);
  return 0;
}

static int put_int(lp_encoder *e, int64_t i) {
  return put_head(e, T_INT, ((uint64_t)i << 1) ^ (uint64_t)(i >> 63));
}

static int put_number(lp_encoder *e, lua_State *L, int idx) {
  unsigned char *p;
#if LP_HAS_INTEGERS
  if (lua_isinteger(L, idx)) return put_int(e, (int64_t)lua_tointeger(L, idx));
#endif
  {
    double d = (double)lua_tonumber(L, idx);
#if !LP_HAS_INTEGERS
    if (d >= -2147483648.0 && d <= 2147483647.0 && d == (double)(int32_t)d &&
        !(d == 0 && signbit(d)))
      return put_int(e, (int32_t)d);
#endif
    if (!(p = room(e, 1 + sizeof d))) return -1;
    *p++ = T_NUM;
    memcpy(p, &d, sizeof d);
    done(e, p + sizeof d);
    return 0;
  }
}

/* Whether string s was written before in this message, as far as the
** cache tells (it forgets some); 1 or 0, -1 out of memory. */
static int seen_recently(lp_encoder *e, const char *s) {
  lp_seen *slot;
  if (!e->recent && !(e->recent = calloc(LP_CODEC_RECENT, sizeof *e->recent))) return -1;
  slot = &e->recent[hashptr(s, KEY_SHIFT) & (LP_CODEC_RECENT - 1)];
  if (slot->key == s && slot->gen == e->msg) return 1;
  slot->key = s;
  slot->gen = e->msg;
  return 0;
}

/* A string; a short one goes by number once it has a number, and gets one
** the second time it is written (see codec.h). A string is known by its
** address: one state keeps one copy of each short string, and the value
** being written keeps its strings alive. */
static int put_string(lp_encoder *e, int idx) {
  size_t n;
  const char *s = lua_tolstring(e->L, idx, &n);
  int64_t k;
  int r;
  if (n > LP_CODEC_KEYLEN) return put_tagged_bytes(e, T_STR, s, n);
  if (e->keys.used && (k = map_number(&e->keys, map_find(&e->keys, s, KEY_SHIFT))) >= 0)
    return put_head(e, T_KEYREF, (uint64_t)k);
  if ((r = seen_recently(e, s)) <= 0 || e->keys.used >= LP_CODEC_MAXKEYS)
    return r < 0 ? oom(e) : put_tagged_bytes(e, T_STR, s, n);
  if (map_room(&e->keys, KEY_SHIFT) || put_tagged_bytes(e, T_KEY, s, n)) return oom(e);
  map_add(&e->keys, map_find(&e->keys, s, KEY_SHIFT), s);
  return 0;
}

/* Prepends one step of the path ("[2]", ".name") after a failure below. */
static void path_prepend(lp_encoder *e, const char *seg) {
  size_t n = strlen(seg);
  lp_buf *b = &e->path;
  if (lp_buf_reserve(b, n)) return;  /* no memory: a shorter path */
  memmove(b->data + n, b->data, b->len);
  memcpy(b->data, seg, n);
  b->len += n;
}

/* err = root, path and reason; a long path loses its middle. */
static void compose_error(lp_encoder *e, const char *root) {
  size_t room = sizeof e->err - strlen(root) - strlen(e->reason) - 8;
  const char *p = e->path.data ? e->path.data : "";
  int n = (int)e->path.len;
  if ((size_t)n <= room)
    snprintf(e->err, sizeof e->err, "%s%.*s%s", root, n, p, e->reason);
  else
    snprintf(e->err, sizeof e->err, "%s%.*s...%.*s%s", root, (int)(room / 2), p,
             (int)(room / 2), p + n - (int)(room / 2), e->reason);
}

static int is_identifier(const char *s, size_t n) {
  size_t i;
  if (n == 0 || n > 40 || (s[0] >= '0' && s[0] <= '9')) return 0;
  for (i = 0; i < n; i++) {
    char c = s[i];
    if (!(c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
          (c >= '0' && c <= '9')))
      return 0;
  }
  return 1;
}

/* The path step for the key at stack index k. */
static void path_key(lp_encoder *e, lua_State *L, int k) {
  char seg[64];
  size_t n;
  const char *s;
  switch (lua_type(L, k)) {
    case LUA_TSTRING:
      s = lua_tolstring(L, k, &n);
      if (is_identifier(s, n)) snprintf(seg, sizeof seg, ".%s", s);
      else snprintf(seg, sizeof seg, "[\"%.*s%s\"]", n > 32 ? 32 : (int)n, s,
                    n > 32 ? "..." : "");
      break;
    case LUA_TNUMBER:
#if LP_HAS_INTEGERS
      if (lua_isinteger(L, k)) {
        snprintf(seg, sizeof seg, "[%lld]", (long long)lua_tointeger(L, k));
        break;
      }
#endif
      snprintf(seg, sizeof seg, "[%.14g]", (double)lua_tonumber(L, k));
      break;
    case LUA_TBOOLEAN:
      snprintf(seg, sizeof seg, "[%s]", lua_toboolean(L, k) ? "true" : "false");
      break;
    default:
      snprintf(seg, sizeof seg, "[<%s>]", luaL_typename(L, k));
  }
  path_prepend(e, seg);
}

static int put_value(lp_encoder *e, int idx);
static int put_typed(lp_encoder *e, int idx, int type);

/* A table or function seen before becomes a reference, and its first
** occurrence is marked shared; returns 1 then, 0 when new, -1 on failure. */
static int put_seen(lp_encoder *e, const void *p) {
  size_t i;
  int64_t ref;
  if (map_room(&e->seen, SEEN_SHIFT)) return oom(e);
  if (e->nextref >= e->ntagpos) {
    size_t n = e->ntagpos ? e->ntagpos * 2 : 64;
    size_t *t = realloc(e->tagpos, n * sizeof *t);
    if (!t) return oom(e);
    e->tagpos = t;
    e->ntagpos = n;
  }
  i = map_find(&e->seen, p, SEEN_SHIFT);
  if ((ref = map_number(&e->seen, i)) >= 0) {
    if (!e->keep_all) {  /* else its bytes may be gone: the reader keeps every table */
      char *tag = &e->out->data[e->tagpos[ref]];
      if (*tag == T_TABLE) *tag = T_TABLE_SHARED;
      else if (*tag == T_FUNC) *tag = T_FUNC_SHARED;
      else if (*tag == T_LIST) *tag = T_LIST_SHARED;
    }
    return put_head(e, T_REF, (uint64_t)ref) ? -1 : 1;
  }
  e->tagpos[map_add(&e->seen, i, p)] = e->out->len;
  e->nextref++;
  return 0;
}

/* A list of many tables (records) grows the seen map in one step, not by
** doubling as they come: room for two tables a record (one nested in
** each, or the map's next doubling made at once); called when its first
** value is a table. 0, or -1 out of memory. */
static int reserve_records(lp_encoder *e, int idx) {
  size_t n = lp_rawlen(e->L, idx);
  return n < 1024 ? 0 : map_grow(&e->seen, e->seen.used + 2 * n, SEEN_SHIFT);
}

/* Whether the key at k goes on the array section, now narr values long:
** how many nils go before its value, or -1 (a pair). Holes count only below
** the table's length (as # sees it, found once, when the first one comes:
** *len is that + 1, 0 until then), so that # on the other side is the
** same. */
static double array_gap(lua_State *L, int idx, int k, uint32_t narr, size_t *len) {
  double d;
  if (lua_type(L, k) != LUA_TNUMBER) return -1;
  d = (double)lua_tonumber(L, k);
  if (d == (double)narr + 1) return 0;
  if (!(d > (double)narr + 1) || d >= INT32_MAX || d != floor(d)) return -1;
  if (!*len) *len = lp_rawlen(L, idx) + 1;
  return d < (double)*len ? d - ((double)narr + 1) : -1;
}

/* One traversal: the keys 1, 2, 3... that come first (a table's array
** part, in order) make the array section, with nils for its holes; every
** other key a pair. Both counts are filled in at the end. idx is absolute;
** keys and values go above the stack's top at entry. */
static int put_table(lp_encoder *e, int idx) {
  lua_State *L = e->L;
  uint32_t narr = 0, nhash = 0;
  size_t cpos, len = 0;
  int top = lua_gettop(L);
  unsigned char *p = room(e, 1 + 2 * sizeof narr);
  if (!p) return -1;
  *p++ = T_TABLE;
  cpos = (size_t)((char *)p - e->out->data);
  done(e, p + 2 * sizeof narr);
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    double gap = nhash ? -1 : array_gap(L, idx, top + 1, narr, &len);
    int r;
    if (gap >= 0) {
      int type = lua_type(L, top + 2);
      if ((narr == 0 && type == LUA_TTABLE && reserve_records(e, idx)) ||
          (gap > 0 && !(p = room(e, (size_t)gap)))) {
        lua_settop(L, top);
        return oom(e);
      }
      if (gap > 0) {
        memset(p, T_NIL, (size_t)gap);
        done(e, p + (size_t)gap);
      }
      r = put_typed(e, top + 2, type);
      narr += (uint32_t)gap + 1;
    } else {
      r = put_value(e, top + 1) || put_value(e, top + 2);
      if (++nhash == 0) r = fail(e, "%s", ": table too large");
    }
    if (r) {
      path_key(e, L, top + 1);  /* names the key itself too: t[<thread>] */
      lua_settop(L, top);
      return -1;
    }
    lua_settop(L, top + 1);
  }
  memcpy(e->out->data + cpos, &narr, sizeof narr);
  memcpy(e->out->data + cpos + sizeof narr, &nhash, sizeof nhash);
  return 0;
}

/* Whether the key at k is one of a list's 1..n (written already). */
static int in_list(lua_State *L, int k, size_t n) {
  double d;
  if (lua_type(L, k) != LUA_TNUMBER) return 0;
  d = (double)lua_tonumber(L, k);
  return d >= 1 && d <= (double)n && d == floor(d);
}

/* The message's tables go unmarked from now: a keep-all byte goes first
** (see put_list). At the first flush nothing of the message has gone yet,
** and the tables begun are lists (as_list), which patch nothing: the bytes
** after the start move up by one. */
static int put_keep_all(lp_encoder *e) {
  unsigned char *p = room(e, 1);
  char *start;
  if (!p) return -1;
  start = e->out->data + e->start;
  memmove(start + 1, start, e->out->len - e->start);
  *start = T_KEEPALL;
  e->out->len++;
  e->keep_all = 1;
  return 0;
}

/* What is written so far goes to the reader (lp_encoder's flush); the
** bytes are gone once out is empty, even if the flush then failed. */
static int flush(lp_encoder *e) {
  int r;
  e->nflush++;  /* tried: what went before may have moved, or gone */
  if (!e->keep_all && put_keep_all(e)) return -1;
  r = e->flush(e->flush_ud, e->out);
  if (e->out->len == 0) e->flushed = 1;
  if (r) return oom(e);
  (void)lp_buf_reserve(e->out, e->flush_at + 1 + LP_VARINT_MAX);  /* else room() fails later */
  return 0;
}

/* Where a list's value begins: what to go back to, to write it again. */
typedef struct item_mark {
  size_t len, refs, seen, keys, nflush;
  uint32_t nextref;
} item_mark;

static void item_begin(lp_encoder *e, item_mark *m) {
  m->len = e->out->len;
  m->refs = lp_buf_nrefs(e->out);
  m->seen = e->seen.used;
  m->keys = e->keys.used;
  m->nextref = e->nextref;
  m->nflush = e->nflush;
}

/* A list's value (or pair) failed: with loaded modules by name (see
** lp_encode), once, it is to be written again from where it began, unless
** a flush came meanwhile (a list in it). 0: go again; -1: the failure stands. */
static int item_again(lp_encoder *e, const item_mark *m) {
  if (e->modules || e->nflush != m->nflush || lp_encoder_modules(e, e->L)) return -1;
  e->own_modules = 1;
  e->out->len = m->len;
  lp_buf_drop_refs(e->out, m->refs);
  map_truncate(&e->seen, m->seen, SEEN_SHIFT);
  map_truncate(&e->keys, m->keys, KEY_SHIFT);
  e->nextref = m->nextref;
  e->path.len = 0;
  e->reason[0] = '\0';
  return 0;
}

/* A table of a value that may be read while written (see put_nested): its
** length first, then the values at 1..n, between any two of which the bytes
** so far may go; then its other pairs, and a nil (no count to patch: a long
** list may be among them). A value that fails to copy is tried again with
** loaded modules by name, from there on: once bytes have gone, lp_encode's
** second pass cannot be. */
static int put_list(lp_encoder *e, int idx, size_t n) {
  lua_State *L = e->L;
  size_t i;
  int top = lua_gettop(L);
  unsigned char *p = room(e, 1 + LP_VARINT_MAX);
  if (!p) return -1;
  *p++ = T_LIST;
  done(e, varint_at(p, n));
  for (i = 1; i <= n; i++) {
    item_mark m;
    int type;
    lua_rawgeti(L, idx, (int)i);
    type = lua_type(L, top + 1);
    item_begin(e, &m);
    if ((i == 1 && type == LUA_TTABLE && reserve_records(e, idx) && oom(e)) ||
        (put_typed(e, top + 1, type) && (item_again(e, &m) || put_value(e, top + 1)))) {
      lua_pushinteger(L, (lua_Integer)i);
      path_key(e, L, top + 2);
      lua_settop(L, top);
      return -1;
    }
    lua_settop(L, top);
    if (e->out->len >= e->flush_at && flush(e)) return -1;
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    item_mark m;
    if (in_list(L, top + 1, n)) {
      lua_pop(L, 1);
      continue;
    }
    item_begin(e, &m);
    if ((put_value(e, top + 1) || put_value(e, top + 2)) &&
        (item_again(e, &m) || put_value(e, top + 1) || put_value(e, top + 2))) {
      path_key(e, L, top + 1);
      lua_settop(L, top);
      return -1;
    }
    lua_settop(L, top + 1);
  }
  return put_byte(e, T_NIL);
}

/* Whether a table (idx absolute) holds a long list among the values of its
** first 64 pairs (a record of options and data). */
static int holds_list(lua_State *L, int idx) {
  int k = 0, found = 0, more = 1;
  lua_pushnil(L);
  while (!found && k++ < 64 && (more = lua_next(L, idx))) {
    found = lua_type(L, -1) == LUA_TTABLE && lp_rawlen(L, lua_gettop(L)) >= LP_CODEC_LIST_MIN;
    lua_pop(L, 1);
  }
  if (more) lua_pop(L, 1);  /* the key lua_next left */
  return found;
}

int lp_codec_streams(lua_State *L, int idx) {
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  return lua_type(L, idx) == LUA_TTABLE &&
         (lp_rawlen(L, idx) >= LP_CODEC_LIST_MIN || holds_list(L, idx));
}

/* Whether the table at idx is written as a list: with a flush, at the top
** of the value when long or holding a long one, and a long one in a table
** at the top written so; only there can bytes go, as no table above them
** waits for its counts (put_table patches them at its end). */
static int as_list(lp_encoder *e, int idx, size_t *n) {
  if (!e->flush || e->depth > 1 || (e->depth == 1 && !e->top_list) ||
      (*n = lp_rawlen(e->L, idx)) > INT32_MAX)
    return 0;
  if (*n >= LP_CODEC_LIST_MIN) return 1;
  return e->depth == 0 && holds_list(e->L, idx);
}

static int dump_writer(lua_State *L, const void *p, size_t n, void *ud) {
  (void)L;
  return lp_buf_put((lp_buf *)ud, p, n);
}

static int put_function(lp_encoder *e, int idx) {
  lua_State *L = e->L;
  size_t lenpos, start;
  uint64_t size;
  int nups = 0, i;
  const char *name;
  if (lua_iscfunction(L, idx))
    return fail(e, "%s", ": a C function cannot cross to another Lua state");
  /* Reserve a fixed 5-byte varint for the size, then dump behind it. */
  if (put_byte(e, T_FUNC) || lp_buf_reserve(e->out, 5)) return oom(e);
  lenpos = e->out->len;
  e->out->len += 5;
  start = e->out->len;
  lua_pushvalue(L, idx);
  i = lp_dump(L, dump_writer, e->out);
  lua_pop(L, 1);
  if (i != 0) return fail(e, "%s", ": function could not be dumped as bytecode");
  size = e->out->len - start;
  if (size >= ((uint64_t)1 << 35)) return fail(e, "%s", ": function too large");
  for (i = 0; i < 4; i++) e->out->data[lenpos + i] = (char)((size >> (7 * i)) | 0x80);
  e->out->data[lenpos + 4] = (char)(size >> 28);
  while (lua_getupvalue(L, idx, nups + 1)) { lua_pop(L, 1); nups++; }
  if (nups > 255) return fail(e, "%s", ": function has too many upvalues");
  if (put_byte(e, nups)) return -1;
  for (i = 1; i <= nups; i++) {
    int r;
    name = lua_getupvalue(L, idx, i);
    /* A function's environment is the receiving state's globals, as in
    ** LuaJIT and 5.1, where environments do not travel with functions. */
    if (name && strcmp(name, "_ENV") == 0) r = put_byte(e, T_GLOBALS);
    else r = put_value(e, lua_gettop(L));
    if (r) {
      char seg[80];
      snprintf(seg, sizeof seg, "(upvalue %.60s)", name && *name ? name : "?");
      path_prepend(e, seg);
      lua_pop(L, 1);
      return -1;
    }
    lua_pop(L, 1);
  }
  return 0;
}

static int put_on_new_stack(lp_encoder *e, int idx) {
  lua_State *L = e->L, *T = lua_newthread(L);  /* anchored on L */
  int r;
  lua_pushvalue(L, idx);
  lua_xmove(L, T, 1);
  e->L = T;
  r = lua_type(T, 1) == LUA_TTABLE ? put_table(e, 1) : put_function(e, 1);
  e->L = L;
  lua_pop(L, 1);
  return r;
}

/* With a map of loaded modules (a second pass, see lp_encode): a value
** that is package.loaded[name] goes as its name; 1 if it was one. */
static int put_module(lp_encoder *e, int idx, int *r) {
  lua_State *L = e->L;
  size_t n;
  const char *name;
  if (!e->modules) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, e->modules);
  lua_pushvalue(L, idx);
  lua_rawget(L, -2);
  if (!(name = lua_tolstring(L, -1, &n))) {
    lua_pop(L, 2);
    return 0;
  }
  *r = put_tagged_bytes(e, T_MODULE, name, n);
  lua_pop(L, 2);
  return 1;
}

/* A shared object crosses by address; the bytes keep it alive. */
static int put_shared(lp_encoder *e, lp_shared *o) {
  if (e->no_shared) {
    snprintf(e->reason, sizeof e->reason, ": a %s cannot cross to a process worker "
             "(it shares no memory with the host)", o->type->name);
    return -1;
  }
  if (put_byte(e, T_HANDLE) || lp_buf_hold(e->out, o) || lp_buf_put(e->out, &o, sizeof o))
    return oom(e);
  return 0;
}

/* A cdata of a plain C type crosses by value: its type's name and bytes. */
static int put_cdata(lp_encoder *e, int idx) {
  lua_State *L = e->L;
  size_t nn, nb;
  const char *name, *bytes;
  int r;
  if (lp_cdata_encode(L, idx, e->reason, sizeof e->reason)) return -1;
  name = lua_tolstring(L, -2, &nn);
  bytes = lua_tolstring(L, -1, &nb);
  r = put_tagged_bytes(e, T_CDATA, name, nn) || put_varint(e, nb) ||
      (lp_buf_put(e->out, bytes, nb) ? oom(e) : 0);
  lua_pop(L, 2);
  return r ? -1 : 0;
}

static NOINLINE int put_other(lp_encoder *e, int idx) {
  lua_State *L = e->L;
  lp_shared *o;
  int r;
  if (e->modules && lua_type(L, idx) >= LUA_TTABLE && put_module(e, idx, &r)) return r;
  if ((o = lp_shared_test(L, idx))) return put_shared(e, o);
  if (lp_cdata_is(L, idx)) return put_cdata(e, idx);
  return fail(e, ": a %s cannot cross to another Lua state", luaL_typename(L, idx));
}

/* A table or function: the globals table, a reference, or written whole.
** Not inlined: put_typed, which runs for every value, stays small. */
static NOINLINE int put_nested(lp_encoder *e, int idx, int type) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  size_t n;
  int r;
  if (e->modules && put_module(e, idx, &r)) return r;
  if (p == e->globals) return put_byte(e, T_GLOBALS);
  if (e->depth >= LP_CODEC_MAXDEPTH ||
      (e->depth % STACK_STEP == 0 && !lua_checkstack(L, STACK_ROOM)))
    return fail(e, "%s", ": nested too deep");
  if ((r = put_seen(e, p)) != 0) return r < 0 ? -1 : 0;
  if (type == LUA_TTABLE && as_list(e, idx, &n)) {
    int top_list = e->top_list;
    e->top_list = e->depth == 0;
    e->depth++;
    r = put_list(e, idx, n);
    e->depth--;
    e->top_list = top_list;
    return r;
  }
  e->depth++;
  if (e->depth % LEVELS_PER_STACK == 0) r = put_on_new_stack(e, idx);
  else r = type == LUA_TTABLE ? put_table(e, idx) : put_function(e, idx);
  e->depth--;
  return r;
}

/* idx is absolute; type is lua_type's. */
static int put_typed(lp_encoder *e, int idx, int type) {
  lua_State *L = e->L;
  switch (type) {
    case LUA_TNIL: return put_byte(e, T_NIL);
    case LUA_TBOOLEAN: return put_byte(e, lua_toboolean(L, idx) ? T_TRUE : T_FALSE);
    case LUA_TNUMBER: return put_number(e, L, idx);
    case LUA_TSTRING: return put_string(e, idx);
    case LUA_TTABLE:
    case LUA_TFUNCTION: return put_nested(e, idx, type);
    default: return put_other(e, idx);
  }
}

static int put_value(lp_encoder *e, int idx) {
  return put_typed(e, idx, lua_type(e->L, idx));
}

static void encoder_reset(lp_encoder *e) {
  e->nextref = 0;
  e->flushed = e->keep_all = e->top_list = 0;
  e->nflush = 0;
  if (++e->msg == 0) {  /* wrapped: the cache of recent strings forgets all */
    if (e->recent) memset(e->recent, 0, LP_CODEC_RECENT * sizeof *e->recent);
    e->msg = 1;
  }
  map_clear(&e->seen);
  map_clear(&e->keys);
}

/* Pushes package.loaded inverted (value -> name) for the values that are
** tables, functions or userdata; the globals table is left to T_GLOBALS. */
static int modules_inverted(lua_State *L) {
  lua_newtable(L);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  if (lua_istable(L, -1)) {
    lua_pushnil(L);
    while (lua_next(L, -2)) {
      if (lua_type(L, -2) == LUA_TSTRING && lua_type(L, -1) >= LUA_TTABLE) {
        lua_pushvalue(L, -2);
        lua_rawset(L, -5);
      } else {
        lua_pop(L, 1);
      }
    }
  }
  lua_pop(L, 1);
  return 1;
}

/* A value that fails to copy may hold a loaded module (a closure over
** `local cjson = require "cjson"`): a second pass sends modules by name.
** Only on failure, so that values that copy pay nothing for it. */
int lp_encoder_modules(lp_encoder *e, lua_State *L) {
  if (e->modules) return 0;
  lua_pushcfunction(L, modules_inverted);
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) {
    lua_pop(L, 1);
    return -1;
  }
  e->modules = luaL_ref(L, LUA_REGISTRYINDEX);
  return 0;
}

void lp_encoder_no_modules(lp_encoder *e, lua_State *L) {
  if (e->modules) luaL_unref(L, LUA_REGISTRYINDEX, e->modules);
  e->modules = 0;
}

int lp_encoder_end_list(lp_encoder *e, lua_State *L) {
  if (!e->own_modules) return 0;
  lp_encoder_no_modules(e, L);
  e->own_modules = 0;
  return 1;
}

/* Values that are all nil, booleans or numbers need no references, modules
** nor globals: written straight (a task's argument, an empty result).
** Returns 0, -1 (out of memory, e->err says so), or 1 when one is not. */
static int put_scalars(lp_encoder *e, lua_State *L, lp_buf *out, int idx, int n,
                       const char *root) {
  size_t mark = out->len;
  int i;
  for (i = 0; i < n; i++) {
    int type = lua_type(L, idx + i);
    if (type != LUA_TNIL && type != LUA_TBOOLEAN && type != LUA_TNUMBER) return 1;
  }
  e->L = L;
  e->out = out;
  for (i = 0; i < n; i++) {
    if (put_value(e, idx + i)) {
      e->path.len = 0;
      compose_error(e, root);
      out->len = mark;
      return -1;
    }
  }
  return 0;
}

int lp_encode(lp_encoder *e, lua_State *L, lp_buf *out, int idx, int n,
              const char *root) {
  int r;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  e->start = out->len;
  if ((r = put_scalars(e, L, out, idx, n, root)) <= 0) return r;
  encoder_reset(e);
  r = lp_encode_more(e, L, out, idx, n, root);
  if (lp_encoder_end_list(e, L)) return r;  /* a list tried its values again already */
  if (r == 0 || e->modules || e->flushed) return r;  /* once bytes have gone, no second pass */
  if (lp_encoder_modules(e, L)) return -1;  /* no memory: the first error stands */
  encoder_reset(e);
  r = lp_encode_more(e, L, out, idx, n, root);
  lp_encoder_no_modules(e, L);
  return r;
}

int lp_encode_more(lp_encoder *e, lua_State *L, lp_buf *out, int idx, int n,
                   const char *root) {
  size_t mark = out->len, held = lp_buf_nrefs(out);
  int i;
  if (idx < 0) idx = lua_gettop(L) + idx + 1;
  e->L = L;
  e->out = out;
  e->depth = 0;
  lp_pushglobals(L);
  e->globals = lua_topointer(L, -1);
  lua_pop(L, 1);
  e->err[0] = e->reason[0] = '\0';
  e->path.len = 0;
  for (i = 0; i < n; i++) {
    if (put_value(e, idx + i)) {
      char seg[64];
      if (n > 1) snprintf(seg, sizeof seg, "%s[%d]", root, i + 1);
      else snprintf(seg, sizeof seg, "%s", root);
      compose_error(e, seg);
      if (e->flushed) mark = held = 0;  /* what went before went to the reader */
      out->len = mark;
      lp_buf_drop_refs(out, held);
      return -1;
    }
  }
  return 0;
}

/* ---- decoder ---------------------------------------------------------- */

typedef struct lp_decoder {
  lua_State *L;
  const unsigned char *p, *end;
  uint32_t nextref;
  uint32_t nkeys;
  int base;  /* stack top before decoding */
  int depth;
  int refs;  /* stack index of the table of shared values, 0 until needed */
  int keys;  /* stack index of the table of keys, 0 until needed */
  int flags;
  lp_refill refill;  /* where later bytes come from; NULL: none */
  void *refill_ud;
  int keep_all;      /* keep every table for references (T_KEEPALL) */
} lp_decoder;

static void bad(lp_decoder *d) { luaL_error(d->L, "luapool: corrupt value buffer"); }

static uint64_t get_varint(lp_decoder *d) {
  uint64_t v;
  if (d->p < d->end && *d->p < 0x80) return *d->p++;
  if (lp_varint_get(&d->p, d->end, &v)) bad(d);
  return v;
}

static void get_value(lp_decoder *d);

/* A table made once, below the values decoded so far; returns its index. */
static int make_below(lp_decoder *d, int narr) {
  lua_createtable(d->L, narr, 0);
  lua_insert(d->L, d->base + 1);
  if (d->refs) d->refs++;
  if (d->keys) d->keys++;
  return d->base + 1;
}

static void make_refs(lp_decoder *d) {
  if (!d->refs) d->refs = make_below(d, 0);
}

static void make_keys(lp_decoder *d) {
  if (!d->keys) d->keys = make_below(d, 16);
}

static void keep_shared(lp_decoder *d, int shared, uint32_t ref) {
  lua_State *L = d->L;
  if (!shared && !d->keep_all) return;
  make_refs(d);
  lua_pushvalue(L, -1);
  lua_rawseti(L, d->refs, (int)ref + 1);
}

/* n key/value pairs into the table on top. */
static void get_pairs(lp_decoder *d, uint32_t n) {
  lua_State *L = d->L;
  uint32_t j;
  for (j = 0; j < n; j++) {
    double k;
    if (d->p >= d->end || *d->p == T_NIL) bad(d);
    if (*d->p == T_NUM && d->end - d->p > 8) {  /* a NaN key: corrupt too */
      memcpy(&k, d->p + 1, 8);
      if (k != k) bad(d);
    }
    get_value(d);
    get_value(d);
    lua_rawset(L, -3);
  }
}

/* Table sizes are checked against the bytes left (a value takes one at
** least, a pair two), then made exact. */
static void get_table(lp_decoder *d, int shared) {
  lua_State *L = d->L;
  uint32_t ref = d->nextref++, narr, nhash, i;
  uint64_t left;
  if (d->end - d->p < 8) bad(d);
  memcpy(&narr, d->p, 4);
  memcpy(&nhash, d->p + 4, 4);
  d->p += 8;
  left = (uint64_t)(d->end - d->p);
  if (narr > left || nhash > left / 2 || narr + 2 * (uint64_t)nhash > left ||
      narr > INT32_MAX || nhash > INT32_MAX)
    bad(d);
  lua_createtable(L, (int)narr, (int)nhash);
  keep_shared(d, shared, ref);
  for (i = 1; i <= narr; i++) {
    get_value(d);
    lua_rawseti(L, -2, (int)i);
  }
  get_pairs(d, nhash);
}

/* The next bytes of a value that comes in parts; 1, or 0 at its end. */
static int next_part(lp_decoder *d) {
  const char *p;
  size_t n = 0;
  int r;
  if (!d->refill) return 0;
  while ((r = d->refill(d->refill_ud, &p, &n)) == 1 && n == 0) {}
  if (r < 0) luaL_error(d->L, "luapool: the value was not written whole");
  if (r == 0) return 0;
  d->p = (const unsigned char *)p;
  d->end = d->p + n;
  return 1;
}

/* A list (see put_list): its parts may come while it is read, between
** two of its values or pairs. */
static void get_list(lp_decoder *d, int shared) {
  lua_State *L = d->L;
  uint32_t ref = d->nextref++;
  uint64_t n = get_varint(d), i, made = n;
  if (n > INT32_MAX || (!d->refill && n > (uint64_t)(d->end - d->p))) bad(d);
  if ((d->flags & LP_DECODE_NOFUNC) && made > (uint64_t)(d->end - d->p))
    made = (uint64_t)(d->end - d->p);  /* from a process: made as long as its part shows */
  lua_createtable(L, (int)made, 0);
  keep_shared(d, shared, ref);
  for (i = 1; i <= n; i++) {
    if (d->p == d->end && !next_part(d)) bad(d);
    get_value(d);
    lua_rawseti(L, -2, (int)i);
  }
  for (;;) {
    if (d->p == d->end && !next_part(d)) bad(d);
    if (*d->p == T_NIL) break;
    get_pairs(d, 1);
  }
  d->p++;
}

typedef struct chunk { const char *p; size_t n; } chunk;

static const char *chunk_reader(lua_State *L, void *ud, size_t *size) {
  chunk *c = (chunk *)ud;
  (void)L;
  *size = c->n;
  c->n = 0;
  return *size ? c->p : NULL;
}

static void get_function(lp_decoder *d, int shared) {
  lua_State *L = d->L;
  uint32_t ref = d->nextref++;
  uint64_t size = get_varint(d);
  int nups, i;
  chunk c;
  if (size > (uint64_t)(d->end - d->p)) bad(d);
  c.p = (const char *)d->p;
  c.n = (size_t)size;
  d->p += size;
  if (lp_load(L, chunk_reader, &c, "=luapool") != LUA_OK) lua_error(L);
  keep_shared(d, shared, ref);
  if (d->p >= d->end) bad(d);
  nups = *d->p++;
  for (i = 1; i <= nups; i++) {
    get_value(d);
    if (!lua_setupvalue(L, -2, i)) lua_pop(L, 1);
  }
}

static void get_table(lp_decoder *d, int shared);
static void get_function(lp_decoder *d, int shared);
static void get_list(lp_decoder *d, int shared);

static void get_composite(lp_decoder *d, int tag) {
  switch (tag) {
    case T_TABLE: case T_TABLE_SHARED: get_table(d, tag == T_TABLE_SHARED); break;
    case T_LIST: case T_LIST_SHARED: get_list(d, tag == T_LIST_SHARED); break;
    default: get_function(d, tag == T_FUNC_SHARED);
  }
}

/* The decoder's side of put_on_new_stack: the value is built on a fresh
** coroutine stack, which gets the tables of shared values and keys too. */
static void get_on_new_stack(lp_decoder *d, int tag) {
  lua_State *L = d->L, *T;
  int refs, keys;
  make_refs(d);
  make_keys(d);
  refs = d->refs;
  keys = d->keys;
  T = lua_newthread(L);
  lua_pushvalue(L, refs);
  lua_pushvalue(L, keys);
  lua_xmove(L, T, 2);
  d->L = T;
  d->refs = 1;
  d->keys = 2;
  get_composite(d, tag);
  lua_xmove(T, L, 1);
  d->L = L;
  d->refs = refs;
  d->keys = keys;
  lua_remove(L, -2);  /* the coroutine */
}

static void get_nested(lp_decoder *d, int tag) {
  if (d->depth >= LP_CODEC_MAXDEPTH) bad(d);  /* no encoder writes deeper */
  if ((tag == T_LIST || tag == T_LIST_SHARED) && d->depth > 1) bad(d);  /* no encoder writes one */
  if ((tag == T_FUNC || tag == T_FUNC_SHARED) && (d->flags & LP_DECODE_NOFUNC))
    luaL_error(d->L, "a function cannot come from another process (its bytecode is not "
               "loaded: a process that went wrong could have written it)");
  if (d->depth % STACK_STEP == 0)
    luaL_checkstack(d->L, STACK_ROOM, "luapool: value nested too deep");
  if (++d->depth % LEVELS_PER_STACK == 0) get_on_new_stack(d, tag);
  else get_composite(d, tag);
  d->depth--;
}

/* package.loaded[name], required if need be; bytes that are not to be
** trusted (LP_DECODE_NOFUNC) may name only a module loaded already. */
static void get_module(lp_decoder *d) {
  lua_State *L = d->L;
  uint64_t n = get_varint(d);
  if (n > (uint64_t)(d->end - d->p) || n == 0 || n > 255) bad(d);
  lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
  lua_pushlstring(L, (const char *)d->p, (size_t)n);
  d->p += n;
  lua_pushvalue(L, -1);
  lua_rawget(L, -3);                   /* loaded, name, loaded[name] */
  if (lua_isnil(L, -1) || lua_type(L, -1) == LUA_TBOOLEAN) {
    if (d->flags & LP_DECODE_NOFUNC) bad(d);
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushvalue(L, -2);
    lua_call(L, 1, 1);                 /* its error says which module */
  }
  lua_replace(L, -3);
  lua_pop(L, 1);
}

static void get_shared(lp_decoder *d) {
  lp_shared *o;
  if ((d->flags & LP_DECODE_NOFUNC) || d->end - d->p < (ptrdiff_t)sizeof o) bad(d);
  memcpy(&o, d->p, sizeof o);
  d->p += sizeof o;
  lp_shared_push(d->L, o);
}

static const char *get_string(lp_decoder *d, size_t *n) {
  uint64_t len = get_varint(d);
  const char *s = (const char *)d->p;
  if (len > (uint64_t)(d->end - d->p)) bad(d);
  d->p += len;
  *n = (size_t)len;
  return s;
}

static void get_cdata(lp_decoder *d) {
  size_t nn, nb;
  const char *name = get_string(d, &nn), *bytes = get_string(d, &nb);
  lp_cdata_decode(d->L, name, nn, bytes, nb);
}

static void get_value(lp_decoder *d) {
  lua_State *L = d->L;
  int tag;
  if (d->p >= d->end) bad(d);
  tag = *d->p++;
  switch (tag) {
    case T_NIL: lua_pushnil(L); break;
    case T_FALSE: lua_pushboolean(L, 0); break;
    case T_TRUE: lua_pushboolean(L, 1); break;
    case T_INT: {
      uint64_t u = get_varint(d);
      int64_t i = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
#if LP_HAS_INTEGERS
      lua_pushinteger(L, (lua_Integer)i);
#else
      lua_pushnumber(L, (lua_Number)i);
#endif
      break;
    }
    case T_NUM: {
      double n;
      if (d->end - d->p < 8) bad(d);
      memcpy(&n, d->p, 8);
      d->p += 8;
      lua_pushnumber(L, (lua_Number)n);
      break;
    }
    case T_STR: {
      size_t n;
      const char *s = get_string(d, &n);
      lua_pushlstring(L, s, n);
      break;
    }
    case T_KEY: {
      size_t n;
      const char *s = get_string(d, &n);
      if (n > LP_CODEC_KEYLEN || d->nkeys >= LP_CODEC_MAXKEYS) bad(d);
      make_keys(d);
      lua_pushlstring(L, s, n);
      lua_pushvalue(L, -1);
      lua_rawseti(L, d->keys, (int)++d->nkeys);
      break;
    }
    case T_KEYREF: {
      uint64_t k = get_varint(d);
      if (k >= d->nkeys) bad(d);  /* only a key decoded before */
      lua_rawgeti(L, d->keys, (int)k + 1);
      break;
    }
    case T_TABLE: case T_TABLE_SHARED: case T_LIST: case T_LIST_SHARED:
    case T_FUNC: case T_FUNC_SHARED: get_nested(d, tag); break;
    case T_REF: {
      uint64_t r = get_varint(d);
      if (!d->refs || r >= d->nextref) bad(d);  /* only a value decoded before */
      lua_rawgeti(L, d->refs, (int)r + 1);
      if (lua_isnil(L, -1)) bad(d);
      break;
    }
    case T_GLOBALS: lp_pushglobals(L); break;
    case T_HANDLE: get_shared(d); break;
    case T_CDATA: get_cdata(d); break;
    case T_MODULE: get_module(d); break;
    default: bad(d);
  }
}

static int decode(lua_State *L, const char *data, size_t len, int into_table, int flags,
                  lp_refill refill, void *ud) {
  lp_decoder d;
  int n = 0;
  if (into_table) lua_newtable(L);
  d.L = L;
  d.p = (const unsigned char *)data;
  d.end = d.p + len;
  d.nextref = 0;
  d.refs = d.keys = 0;
  d.nkeys = 0;
  d.depth = 0;
  d.flags = flags;
  d.refill = refill;
  d.refill_ud = ud;
  d.keep_all = 0;
  d.base = lua_gettop(L);
  while (d.p < d.end || next_part(&d)) {
    if (*d.p == T_KEEPALL && n == 0 && !d.keep_all) {  /* first, or not at all */
      d.p++;
      d.keep_all = 1;
      continue;
    }
    luaL_checkstack(L, 4, "luapool: too many values");
    get_value(&d);
    n++;
    if (into_table) lua_rawseti(L, d.base, n);
  }
  /* drop the tables of shared values and of keys, the higher first */
  if (d.refs > d.keys) lua_remove(L, d.refs);
  if (d.keys) lua_remove(L, d.keys);
  if (d.refs && d.refs < d.keys) lua_remove(L, d.refs);
  return n;
}

/* A large value is decoded with the collector paused: it would otherwise
** walk the new objects again and again while they are made (about 10% of
** a 100k-record payload). Protected, so that an error restarts it. */
#define GC_PAUSE_BYTES 65536

#ifdef LUA_GCISRUNNING  /* not in PUC 5.1, which then decodes as usual */
typedef struct big_decode {
  const char *data;
  size_t len;
  int into_table, flags, n;
  lp_refill refill;
  void *ud;
} big_decode;

static int decode_protected(lua_State *L) {
  big_decode *b = (big_decode *)lua_touserdata(L, 1);
  lua_pop(L, 1);
  b->n = decode(L, b->data, b->len, b->into_table, b->flags, b->refill, b->ud);
  return b->into_table ? 1 : b->n;
}
#endif

static int decode_paused(lua_State *L, const char *data, size_t len, int into_table,
                         int flags, lp_refill refill, void *ud) {
#ifdef LUA_GCISRUNNING
  if ((len >= GC_PAUSE_BYTES || refill) && lua_gc(L, LUA_GCISRUNNING, 0)) {
    big_decode b;
    int r;
    b.data = data;
    b.len = len;
    b.into_table = into_table;
    b.flags = flags;
    b.refill = refill;
    b.ud = ud;
    b.n = 0;
    lua_gc(L, LUA_GCSTOP, 0);
    lua_pushcfunction(L, decode_protected);
    lua_pushlightuserdata(L, &b);
    r = lua_pcall(L, 1, LUA_MULTRET, 0);
    lua_gc(L, LUA_GCRESTART, 0);
    if (r != LUA_OK) lua_error(L);
    return b.n;
  }
#endif
  return decode(L, data, len, into_table, flags, refill, ud);
}

int lp_decode(lua_State *L, const char *data, size_t len) {
  return decode_paused(L, data, len, 0, 0, NULL, NULL);
}

int lp_decode_table(lua_State *L, const char *data, size_t len) {
  return decode_paused(L, data, len, 1, 0, NULL, NULL);
}

int lp_decode_flags(lua_State *L, const char *data, size_t len, int flags) {
  return lp_decode_refill(L, data, len, NULL, NULL, flags);
}

int lp_decode_refill(lua_State *L, const char *data, size_t len, lp_refill refill,
                     void *ud, int flags) {
  return decode_paused(L, data, len, (flags & LP_DECODE_TABLE) != 0, flags & ~LP_DECODE_TABLE,
                       refill, ud);
}

int lp_decode_scalar(lua_State *L, const char *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data, *end = p + len;
  uint64_t u;
  double n;
  if (len == 0) return 0;
  switch (*p++) {
    case T_NIL: if (p != end) return -1; lua_pushnil(L); return 1;
    case T_FALSE: if (p != end) return -1; lua_pushboolean(L, 0); return 1;
    case T_TRUE: if (p != end) return -1; lua_pushboolean(L, 1); return 1;
    case T_INT: {
      int64_t i;
      if (lp_varint_get(&p, end, &u) || p != end) return -1;
      i = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
#if LP_HAS_INTEGERS
      lua_pushinteger(L, (lua_Integer)i);
#else
      lua_pushnumber(L, (lua_Number)i);
#endif
      return 1;
    }
    case T_NUM:
      if (end - p != 8) return -1;
      memcpy(&n, p, 8);
      lua_pushnumber(L, (lua_Number)n);
      return 1;
    default: return -1;
  }
}

/* ---- values written without a Lua state ------------------------------- */

int lp_encode_strings(lp_buf *out, const char *const *s, int n) {
  size_t mark = out->len;
  int i;
  for (i = 0; i < n; i++) {
    size_t len = s[i] ? strlen(s[i]) : 0;
    char tag = s[i] ? T_STR : T_NIL;
    if (lp_buf_put(out, &tag, 1) ||
        (s[i] && (lp_varint_append(out, len) || lp_buf_put(out, s[i], len)))) {
      out->len = mark;
      return -1;
    }
  }
  return 0;
}
