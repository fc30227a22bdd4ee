/* A value read while it is written: a worker publishes a large result in
** chunks as its encoder writes them, and the main thread decodes each as it
** comes (codec.c's refill), so that writing and reading overlap. One writer,
** one reader. */
#ifndef LUAPOOL_STREAM_H
#define LUAPOOL_STREAM_H

#include <pthread.h>
#include "buffer.h"

typedef struct lp_stream {
  pthread_mutex_t lock;
  pthread_cond_t more;
  lp_buf *chunks;      /* published, in order; under lock */
  size_t n, cap;       /* under lock */
  int ended;           /* under lock: no chunk is to come */
  int failed;          /* under lock, once ended: the writer gave up */
  size_t read;         /* the reader's: chunks handed to it */
} lp_stream;

lp_stream *lp_stream_new(void);  /* NULL out of memory */
/* Writer: appends *b's bytes and references as the next chunk, leaving b
** empty; 0, or -1 out of memory (b then unchanged). */
int lp_stream_publish(lp_stream *s, lp_buf *b);
/* Writer, last: no more chunks; failed says the value is not whole. The
** reader may free s from then on. */
void lp_stream_end(lp_stream *s, int failed);
/* Reader: waits for the next chunk; 1 with it in *p, *n; 0 at the end of
** a whole value, -1 at the end of one the writer gave up. */
int lp_stream_next(void *s, const char **p, size_t *n);
void lp_stream_wait_end(lp_stream *s);  /* reader: until lp_stream_end */
/* Reader, after the end: appends every chunk to out; 0, or -1 out of
** memory (out then unchanged). */
int lp_stream_gather(lp_stream *s, lp_buf *out);
void lp_stream_free(lp_stream *s);      /* reader, after the end */

#endif
