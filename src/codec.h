/* The value codec: Lua values of one state to a compact binary buffer and
** back into another state. One pass each way; tables keep cycles and shared
** references, functions travel as bytecode with their upvalues. */
#ifndef LUAPOOL_CODEC_H
#define LUAPOOL_CODEC_H

#include <stdint.h>
#include "compat.h"
#include "buffer.h"

#define LP_CODEC_MAXDEPTH 8000
/* A table at the top of a value, this long or longer, is written as a list
** (read while it is written) when the encoder may flush (lp_encoder). */
#define LP_CODEC_LIST_MIN 256
#define LP_CODEC_ERRLEN 512

/* Strings repeated in a message cross once, then by number: from their
** second time, which a small cache of the strings last written tells (so a
** message that repeats none pays nothing for it on the decoding side). At
** most LP_CODEC_MAXKEYS of them a message, each LP_CODEC_KEYLEN bytes at
** most (the decoder refuses more). */
#define LP_CODEC_MAXKEYS 4096
#define LP_CODEC_KEYLEN 40
#define LP_CODEC_RECENT 256  /* slots of that cache (4 KiB), a power of two */

/* A string written once this message (the cache of recent ones). */
typedef struct lp_seen {
  const void *key;
  uint32_t gen;
} lp_seen;

/* Pointer -> number (0, 1, 2... in the order added), open addressing. A
** slot holds its entry's number + base + 1, so that a new message empties
** the map by moving base past the numbers of the last one; the pointers
** lie in ptrs, by number. Four bytes a slot keep a large value's map small
** (it is as wide as the addresses the value spans). */
typedef struct lp_ptrmap {
  uint32_t *slot;
  const void **ptrs;  /* by number */
  size_t mask;        /* capacity - 1 (capacity a power of two) */
  size_t used;        /* entries: numbers 0..used-1 */
  size_t nptrs;       /* room in ptrs */
  uint32_t base;
} lp_ptrmap;

/* Encoder state; kept by one thread and reused across calls. */
typedef struct lp_encoder {
  lp_ptrmap seen;     /* tables and functions: reference numbers */
  lp_ptrmap keys;     /* strings (by address): key numbers */
  lp_seen *recent;    /* strings written once this message, by address,
                      ** direct-mapped; NULL until used */
  uint32_t msg;       /* the message's number, for recent; 0: none yet */
  size_t *tagpos;     /* by reference number: where its tag byte lies */
  size_t ntagpos;
  uint32_t nextref;
  int depth;
  int no_shared;      /* set by the caller: shared objects are refused */
  const void *globals;
  int modules;        /* registry ref of package.loaded inverted; 0: none */
  int own_modules;    /* modules made for this message (a list: see put_list) */
  /* Set by the caller to have a long table at the top of the value read
  ** while it is written: flush takes *out's bytes each time it holds
  ** flush_at or more (it leaves out empty, or returns -1 out of memory);
  ** the reader decodes with a refill (lp_decode_refill). NULL: none. */
  int (*flush)(void *ud, lp_buf *out);
  void *flush_ud;
  size_t flush_at;
  int flushed;        /* this message: bytes have gone */
  size_t nflush;      /* this message: flushes tried */
  int top_list;       /* a list at the top of the value is being written */
  int keep_all;       /* this message: tables go unmarked (put_list) */
  size_t start;       /* where this message begins in out (lp_encode) */
  lp_buf *out;
  lua_State *L;
  char err[LP_CODEC_ERRLEN];  /* after a failure: path and reason */
  char reason[128];
  lp_buf path;                /* the path, built from the inside out */
} lp_encoder;

void lp_encoder_free(lp_encoder *e);

/* Appends the n values at stack index idx.. to out. Returns 0, or -1 with
** e->err naming the path below root (e.g. "task.list[2]") and the reason;
** out is then left as it was. Never raises except on Lua's own errors. */
int lp_encode(lp_encoder *e, lua_State *L, lp_buf *out, int idx, int n,
              const char *root);
/* A value that fails to copy may hold loaded modules: lp_encode then tries
** once more with loaded modules sent by name. For a pair of calls
** (lp_encode, lp_encode_more), the caller does so: modules(), both calls
** again, no_modules(). modules() returns 0, or -1 out of memory. */
int lp_encoder_modules(lp_encoder *e, lua_State *L);
void lp_encoder_no_modules(lp_encoder *e, lua_State *L);
/* After a message, or an error that cut it short: drops the modules a list
** turned on to write a value again (put_list); 1 if it had, else 0. */
int lp_encoder_end_list(lp_encoder *e, lua_State *L);
/* The same, continuing the previous call's references: values written by
** both calls decode together, in one lp_decode, sharing tables. */
int lp_encode_more(lp_encoder *e, lua_State *L, lp_buf *out, int idx, int n,
                   const char *root);

/* Whether the value at idx may be read while written (with a flush): a
** table that is a long list or holds one (see codec.c as_list). */
int lp_codec_streams(lua_State *L, int idx);

/* Pushes every value in data[0..len) and returns how many; raises on a
** malformed buffer or when the Lua state runs out of memory. */
int lp_decode(lua_State *L, const char *data, size_t len);
/* The same, but into one new table (values at 1..n) on the stack, so that
** any number of values needs but a few stack slots; returns n. */
int lp_decode_table(lua_State *L, const char *data, size_t len);
/* lp_decode, with LP_DECODE_NOFUNC: a function (bytecode) or a shared
** object's address is refused as malformed, for bytes that Lua's loader
** should not be trusted with. */
#define LP_DECODE_NOFUNC 1
#define LP_DECODE_TABLE 2   /* as lp_decode_table */
int lp_decode_flags(lua_State *L, const char *data, size_t len, int flags);
/* Where the rest of a value written with a flush comes from: 1 with the
** next bytes in *p, *n; 0 at the end; -1 when the writer gave up. */
typedef int (*lp_refill)(void *ud, const char **p, size_t *n);
/* lp_decode_flags of a value that comes in parts: data[0..len) then what
** refill gives. Raises as lp_decode does, and when the writer gave up. */
int lp_decode_refill(lua_State *L, const char *data, size_t len, lp_refill refill,
                     void *ud, int flags);
/* Pushes the one value in data[0..len), or none, when it is nil, a boolean
** or a number: what needs no memory, so that it cannot raise. Returns how
** many (0 or 1), or -1 with nothing pushed for anything else. */
int lp_decode_scalar(lua_State *L, const char *data, size_t len);

/* Appends n strings (NULL: nil) as values, with no Lua state; 0 or -1. */
int lp_encode_strings(lp_buf *out, const char *const *s, int n);

#endif
