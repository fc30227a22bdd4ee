/* Varints and frames. */
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include "wire.h"

size_t lp_varint_put(unsigned char *p, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) { p[n++] = (unsigned char)(v | 0x80); v >>= 7; }
  p[n++] = (unsigned char)v;
  return n;
}

int lp_varint_append(lp_buf *b, uint64_t v) {
  if (lp_buf_reserve(b, LP_VARINT_MAX)) return -1;
  b->len += lp_varint_put((unsigned char *)b->data + b->len, v);
  return 0;
}

int lp_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *v) {
  const unsigned char *s = *p;
  uint64_t x = 0;
  int shift = 0;
  for (;;) {
    if (s >= end || shift > 63) return -1;
    x |= (uint64_t)(*s & 0x7f) << shift;
    if (!(*s++ & 0x80)) break;
    shift += 7;
  }
  *p = s;
  *v = x;
  return 0;
}

int lp_frame_parse(const char *data, size_t len, lp_frame *f, size_t *used) {
  const unsigned char *h = (const unsigned char *)data;
  uint32_t n;
  if (len < LP_FRAME_HEADER) return 0;
  if (h[0] == 0 || h[0] >= LP_FRAME_KINDS || h[1] > 3 || h[2] || h[3]) return -1;
  memcpy(&f->id, h + 4, 4);
  memcpy(&n, h + 8, 4);
  if (n > LP_FRAME_MAXBODY) return -1;
  if (len - LP_FRAME_HEADER < n) return 0;
  f->kind = h[0];
  f->flags = h[1];
  f->body = data + LP_FRAME_HEADER;
  f->len = n;
  *used = LP_FRAME_HEADER + (size_t)n;
  return 1;
}

int lp_frame_header(lp_buf *b, int kind, int flags, uint32_t id, size_t len) {
  unsigned char h[LP_FRAME_HEADER] = {0};
  uint32_t n = (uint32_t)len;
  if (len > LP_FRAME_MAXBODY) return -1;
  h[0] = (unsigned char)kind;
  h[1] = (unsigned char)flags;
  memcpy(h + 4, &id, 4);
  memcpy(h + 8, &n, 4);
  return lp_buf_reserve(b, LP_FRAME_HEADER + len) || lp_buf_put(b, h, sizeof h);
}

int lp_frame_append(lp_buf *b, int kind, int flags, uint32_t id, const void *body, size_t len) {
  if (lp_frame_header(b, kind, flags, id, len)) return -1;
  if (len) lp_buf_put(b, body, len);
  return 0;
}

int lp_write_all(int fd, lp_buf *b) {
  size_t off = 0;
  while (off < b->len) {
    ssize_t r = write(fd, b->data + off, b->len - off);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    off += (size_t)r;
  }
  b->len = 0;
  return 0;
}

#define READ_CHUNK 65536

int lp_reader_next(lp_reader *r, lp_frame *f) {
  if (!r->buf.data && lp_buf_reserve(&r->buf, READ_CHUNK)) return -1;
  for (;;) {
    size_t used;
    ssize_t n;
    int k = lp_frame_parse(r->buf.data + r->pos, r->buf.len - r->pos, f, &used);
    if (k > 0) {
      r->pos += used;
      return 1;
    }
    if (k < 0) {
      errno = EPROTO;
      return -1;
    }
    if (r->pos) {  /* keep only the part of a frame that is left */
      memmove(r->buf.data, r->buf.data + r->pos, r->buf.len - r->pos);
      r->buf.len -= r->pos;
      r->pos = 0;
    }
    if (lp_buf_reserve(&r->buf, READ_CHUNK)) return -1;
    do n = read(r->fd, r->buf.data + r->buf.len, r->buf.cap - r->buf.len);
    while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n == 0) {
      if (r->buf.len == 0) return 0;
      errno = EPROTO;  /* the other end left in the middle of a frame */
      return -1;
    }
    r->buf.len += (size_t)n;
  }
}

static void describe(const lp_hello *h, char *out, size_t n) {
  if (h->luajit)
    snprintf(out, n, "LuaJIT (%s, %u-bit)", h->gc64 ? "GC64" : "not GC64", h->ptrsize * 8u);
  else
    snprintf(out, n, "Lua %u.%u (%u-bit)", h->lua / 100, h->lua % 100, h->ptrsize * 8u);
}

int lp_hello_check(const lp_hello *mine, const char *body, size_t len, char *err, size_t errlen) {
  lp_hello other;
  char a[64], b[64];
  if (len != sizeof other || memcmp(body, "luapool", 8) != 0) {
    snprintf(err, errlen, "it is not a luapool worker program");
    return -1;
  }
  memcpy(&other, body, sizeof other);
  if (other.protocol != mine->protocol) {
    snprintf(err, errlen, "it speaks protocol %u, this module %u: install both from one build",
             other.protocol, mine->protocol);
    return -1;
  }
  if (other.lua != mine->lua || other.luajit != mine->luajit || other.gc64 != mine->gc64 ||
      other.ptrsize != mine->ptrsize) {
    describe(&other, a, sizeof a);
    describe(mine, b, sizeof b);
    snprintf(err, errlen, "it runs %s, this host %s; bytecode and values do not cross "
             "between them: build the module and the worker for one Lua", a, b);
    return -1;
  }
  return 0;
}

int lp_field_put(lp_buf *b, const char *s, size_t len) {
  if (!s) return lp_varint_append(b, 0);
  return lp_varint_append(b, (uint64_t)len + 1) || lp_buf_put(b, s, len);
}

int lp_field_get(const unsigned char **p, const unsigned char *end, const char **s, size_t *len) {
  uint64_t n;
  if (lp_varint_get(p, end, &n)) return -1;
  if (n == 0) {
    *s = NULL;
    *len = 0;
    return 0;
  }
  if (n - 1 > (uint64_t)(end - *p)) return -1;
  *s = (const char *)*p;
  *len = (size_t)(n - 1);
  *p += n - 1;
  return 0;
}
