/* A value read while it is written (stream.h). */
#include <stdlib.h>
#include "stream.h"

lp_stream *lp_stream_new(void) {
  lp_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  if (pthread_mutex_init(&s->lock, NULL)) {
    free(s);
    return NULL;
  }
  if (pthread_cond_init(&s->more, NULL)) {
    pthread_mutex_destroy(&s->lock);
    free(s);
    return NULL;
  }
  return s;
}

int lp_stream_publish(lp_stream *s, lp_buf *b) {
  int r = 0;
  pthread_mutex_lock(&s->lock);
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 16;
    lp_buf *c = realloc(s->chunks, cap * sizeof *c);
    if (c) {
      s->chunks = c;
      s->cap = cap;
    } else {
      r = -1;
    }
  }
  if (r == 0) {
    s->chunks[s->n++] = *b;
    memset(b, 0, sizeof *b);
    pthread_cond_signal(&s->more);
  }
  pthread_mutex_unlock(&s->lock);
  return r;
}

void lp_stream_end(lp_stream *s, int failed) {
  pthread_mutex_lock(&s->lock);
  s->ended = 1;
  s->failed = failed;
  pthread_cond_signal(&s->more);
  pthread_mutex_unlock(&s->lock);
}

int lp_stream_next(void *ud, const char **p, size_t *n) {
  lp_stream *s = (lp_stream *)ud;
  int r;
  pthread_mutex_lock(&s->lock);
  while (s->read == s->n && !s->ended) pthread_cond_wait(&s->more, &s->lock);
  if (s->read < s->n) {
    *p = s->chunks[s->read].data;
    *n = s->chunks[s->read].len;
    s->read++;
    r = 1;
  } else {
    r = s->failed ? -1 : 0;
  }
  pthread_mutex_unlock(&s->lock);
  return r;
}

void lp_stream_wait_end(lp_stream *s) {
  pthread_mutex_lock(&s->lock);
  while (!s->ended) pthread_cond_wait(&s->more, &s->lock);
  pthread_mutex_unlock(&s->lock);
}

int lp_stream_gather(lp_stream *s, lp_buf *out) {
  size_t i, n, len = out->len, held = lp_buf_nrefs(out);
  pthread_mutex_lock(&s->lock);
  n = s->n;
  pthread_mutex_unlock(&s->lock);
  for (i = 0; i < n; i++) {
    if (lp_buf_append(out, &s->chunks[i])) {
      out->len = len;
      lp_buf_drop_refs(out, held);
      return -1;
    }
  }
  return 0;
}

void lp_stream_free(lp_stream *s) {
  size_t i;
  if (!s) return;
  for (i = 0; i < s->n; i++) lp_buf_free(&s->chunks[i]);
  free(s->chunks);
  pthread_cond_destroy(&s->more);
  pthread_mutex_destroy(&s->lock);
  free(s);
}
