/* libFuzzer target: the bytes a host reads from its worker processes. The
** first input byte picks what gets the rest:
**   0  the value decoder, as the main state decodes results and messages
**      (functions, shared objects and modules not loaded already refused:
**      a host never loads bytecode or follows a pointer it did not check)
**   1  the frame parser, then each frame's body as config fields and hello
**   2  the frame reader, reading through a pipe
** Nothing may crash, read out of bounds or leak; errors are expected. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "codec.h"
#include "wire.h"

static lua_State *state(void) {
  static lua_State *L;  /* one state for the whole run: making one is slow */
  if (!L && (L = luaL_newstate())) luaL_openlibs(L);  /* package.loaded, as a host has */
  return L;
}

static int decode(lua_State *L) {
  const char *data = (const char *)lua_touserdata(L, 1);
  size_t len = (size_t)lua_tointeger(L, 2);
  lua_settop(L, 0);
  return lp_decode_flags(L, data, len, LP_DECODE_NOFUNC);
}

static void fuzz_decoder(const uint8_t *data, size_t len) {
  lua_State *L = state();
  lua_pushcfunction(L, decode);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)len);
  lua_pcall(L, 2, 0, 0);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
}

static void fuzz_body(const lp_frame *f) {
  const unsigned char *p = (const unsigned char *)f->body, *end = p + f->len;
  const char *s;
  size_t n;
  uint64_t v;
  lp_hello mine;
  char err[256];
  memset(&mine, 0, sizeof mine);
  memcpy(mine.magic, "luapool", 8);
  mine.protocol = LP_PROTOCOL;
  lp_hello_check(&mine, f->body, f->len, err, sizeof err);
  while (p < end && lp_field_get(&p, end, &s, &n) == 0) {
    if (s && n) (void)s[n - 1];  /* touch the last byte: ASan checks it */
  }
  p = (const unsigned char *)f->body;
  while (p < end && lp_varint_get(&p, end, &v) == 0) {}
}

static void fuzz_parser(const uint8_t *data, size_t len) {
  size_t used;
  lp_frame f;
  while (lp_frame_parse((const char *)data, len, &f, &used) > 0) {
    fuzz_body(&f);
    data += used;
    len -= used;
  }
}

static void fuzz_reader(const uint8_t *data, size_t len) {
  int fd[2];
  lp_reader r;
  lp_frame f;
  if (len > 60000) len = 60000;  /* what a pipe holds before a reader drains it */
  if (pipe(fd)) abort();
  if (len && write(fd[1], data, len) != (ssize_t)len) abort();
  close(fd[1]);
  memset(&r, 0, sizeof r);
  r.fd = fd[0];
  while (lp_reader_next(&r, &f) > 0) fuzz_body(&f);
  close(fd[0]);
  lp_buf_free(&r.buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t len) {
  if (len == 0) return 0;
  switch (data[0] % 3) {
    case 0: fuzz_decoder(data + 1, len - 1); break;
    case 1: fuzz_parser(data + 1, len - 1); break;
    default: fuzz_reader(data + 1, len - 1); break;
  }
  return 0;
}
