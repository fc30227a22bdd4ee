/* Bytes between the pool and its workers: varints (the codec's, the task
** header's) and the frames a process worker exchanges with its host. */
#ifndef LUAPOOL_WIRE_H
#define LUAPOOL_WIRE_H

#include <stddef.h>
#include <signal.h>
#include <stdint.h>
#include "buffer.h"

#define LP_VARINT_MAX 10

/* Writes v at p (room for LP_VARINT_MAX bytes); returns the bytes written. */
size_t lp_varint_put(unsigned char *p, uint64_t v);
/* Appends v to b; 0, or -1 out of memory. */
int lp_varint_append(lp_buf *b, uint64_t v);
/* Reads a varint from *p, never past end; 0, or -1 when it is cut short or
** longer than 64 bits. */
int lp_varint_get(const unsigned char **p, const unsigned char *end, uint64_t *v);

/* Frame: a 12-byte header (kind u8, flags u8, 2 zero bytes, task id u32,
** body length u32, host byte order: both ends are one machine), then the body. */
enum {
  LP_FRAME_HELLO = 1,  /* both ways, first: versions (lp_hello) */
  LP_FRAME_CONFIG,     /* host: the worker's configuration */
  LP_FRAME_READY,      /* worker: its state is open; body: u64 heap bytes */
  LP_FRAME_TASK,       /* host: id, body: the task's input */
  LP_FRAME_RESULT,     /* worker: id, flags, body: u64 heap bytes, u64 ns it ran, outcome */
  LP_FRAME_MESSAGE,    /* worker: a postMessage value */
  LP_FRAME_ERROR,      /* worker: an "error" event's text */
  LP_FRAME_PART,       /* worker: id, body: the next part of the outcome a RESULT ends */
  LP_FRAME_KINDS
};
enum { LP_RESULT_FAILED = 1, LP_RESULT_STOPPED = 2 };  /* RESULT flags */

/* A long list's encoding goes to its reader every time it holds this much
** (a chunk of stream.h between threads, a PART frame from a process). */
#define LP_PART_BYTES 65536

#define LP_FRAME_HEADER 12
#define LP_FRAME_MAXBODY ((uint32_t)1 << 30)

typedef struct lp_frame {
  int kind, flags;
  uint32_t id;
  const char *body;  /* into the reader's buffer, until its next read */
  size_t len;
} lp_frame;

/* Parses the frame at the start of data[0..len): 1 and *used when whole,
** 0 when more bytes are needed, -1 when the header is invalid. */
int lp_frame_parse(const char *data, size_t len, lp_frame *f, size_t *used);
/* Appends a frame's header to b, with room for its body of len bytes,
** which the caller appends; 0, or -1 out of memory or too long. */
int lp_frame_header(lp_buf *b, int kind, int flags, uint32_t id, size_t len);
/* Appends a frame to b; 0, or -1 out of memory or too long. */
int lp_frame_append(lp_buf *b, int kind, int flags, uint32_t id, const void *body, size_t len);
/* Writes all of b to fd, then empties it; 0, or -1 (errno). */
int lp_write_all(int fd, lp_buf *b);

/* Reads frames from a descriptor. */
typedef struct lp_reader {
  int fd;
  lp_buf buf;
  size_t pos;  /* bytes of buf already handed out */
} lp_reader;

/* The next frame: 1, 0 at end of input between frames, -1 on a read error,
** a cut-short frame or an invalid header (errno EPROTO for the last two). */
int lp_reader_next(lp_reader *r, lp_frame *f);

/* A worker process reads frames on LP_FD_IN, writes them on LP_FD_OUT, and
** ends when LP_FD_LIFE, whose other end only its host holds, hangs up. The
** host interrupts its task with LP_PROC_SIGNAL, queued with the task's id
** (0: whatever runs, the pool is stopping). */
enum { LP_FD_IN = 3, LP_FD_OUT = 4, LP_FD_LIFE = 5, LP_FD_STOPS = 6 };
#define LP_PROC_SIGNAL (SIGRTMIN + 1)
/* Tasks sent ahead, not started yet, are stopped by their ids (u32) on
** LP_FD_STOPS (non-blocking), and LP_PROC_AHEAD_SIGNAL to look there. */
#define LP_PROC_AHEAD_SIGNAL (SIGRTMIN + 2)

/* The first frame each way: who is at the other end. */
#define LP_PROTOCOL 4  /* 4: PART frames; 3: lists and keep-all in the codec; 2: its new format, RESULT carries the run time */
typedef struct lp_hello {
  char magic[8];       /* "luapool" */
  uint32_t protocol;   /* LP_PROTOCOL */
  uint32_t lua;        /* LUA_VERSION_NUM */
  uint8_t luajit, gc64, ptrsize, pad;
} lp_hello;

/* Fills h from this build and the Lua it runs on (state.c). */
void lp_hello_make(lp_hello *h);
/* Checks the other end's HELLO body against ours; 0, or -1 with why. */
int lp_hello_check(const lp_hello *mine, const char *body, size_t len, char *err, size_t errlen);

/* CONFIG fields: a string is a varint (length + 1; 0 for none) and its
** bytes, a number a varint. */
int lp_field_put(lp_buf *b, const char *s, size_t len);  /* s NULL: none */
/* 0 with *s (NULL for none, not NUL-terminated) and *len, or -1. */
int lp_field_get(const unsigned char **p, const unsigned char *end, const char **s, size_t *len);

#endif
