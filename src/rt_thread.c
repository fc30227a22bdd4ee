/* The thread runtime: a worker's tasks run on a Lua state of its own
** thread (state.c). */
#include <stdlib.h>
#include "luapool_shared.h"
#include "pool.h"
#include "stream.h"

static int post_message(void *ud, lp_buf *body) {
  lp_worker *w = (lp_worker *)ud;
  lp_msg *m = calloc(1, sizeof *m);
  if (!m) return -1;
  m->kind = LP_MSG_MESSAGE;
  m->worker_id = w->slot + 1;
  m->body = *body;
  memset(body, 0, sizeof *body);  /* its references moved too */
  lp_pool_post_message(w, m);  /* -1: dropped, as the task is being stopped */
  return 0;
}

static void post_event(void *ud, const char *text) {
  lp_worker_post((lp_worker *)ud, LP_MSG_ERROR, text);
}

/* A large result's bytes so far (lp_task_part). */
static int put_result(void *ud, lp_buf *out) {
  lp_worker *w = (lp_worker *)ud;
  return lp_task_part(w->pool, w->task, out, 1);
}

static void heap_seen(lp_worker *w) {
  atomic_store_explicit(&w->heap_bytes, lp_state_heap(&w->st), memory_order_relaxed);
}

static int th_open(lp_worker *w, char *err, size_t errlen) {
  const lp_config *c = &w->pool->cfg;
  lp_state_config *sc = &w->scfg;
  sc->filename = c->filename;
  sc->name = c->name;
  sc->path = c->path;
  sc->cpath = c->cpath;
  sc->teardown = c->teardown;
  sc->runtime = "threads";
  sc->bytecode = c->bytecode;
  sc->handler = c->handler;
  sc->worker_data = c->worker_data;
  sc->max_heap = c->max_heap;
  sc->isolate = c->isolate;
  sc->view = lp_shared_view;  /* channels and buffers: one address space */
  sc->spawn = &c->spawn;  /* the programs tasks start: the host's mask, not ours */
  w->st.cfg = sc;
  w->st.host.ud = w;
  w->st.host.message = post_message;
  w->st.host.event = post_event;
  w->st.host.result = put_result;
  w->st.host.result_chunk = LP_PART_BYTES;
  w->st.worker_id = w->slot + 1;
  w->st.thread_id = (lua_Integer)w->thread_id;
  w->st.intr.cancel = &w->cancel;
  w->st.intr.stop = &w->pool->stop;
  if (lp_state_open(&w->st, err, errlen)) return -1;
  heap_seen(w);
  return 0;
}

/* A task whose value came in parts (t->in_stream: submitted as it was
** written) is read as they come; its first part holds its header. */
static int th_run(lp_worker *w, lp_task *t) {
  const char *in;
  size_t len;
  int stopped;
  if (!t->in_stream) {  /* else t->in is still the main thread's to write */
    in = t->in.data;
    len = t->in.len;
  } else if (lp_stream_next(t->in_stream, &in, &len) != 1) {
    lp_task_fail(t, "serialize", "task: the value was not written whole");
    return 0;
  }
  stopped = lp_state_run(&w->st, t->id, in, len, t->in_stream ? lp_stream_next : NULL,
                         t->in_stream, &t->out, &t->failed);
  heap_seen(w);
  return stopped;
}

static int th_renew(lp_worker *w, char *err, size_t errlen) {
  lp_state_close(&w->st);
  if (lp_state_open(&w->st, err, errlen)) return -1;
  heap_seen(w);
  return 0;
}

static void th_close(lp_worker *w) {
  lp_state_free(&w->st);
}

static void th_interrupt(lp_worker *w) {
  lp_interrupt_thread(w->thread, &w->st.intr, w->pool->signo);
}

const lp_runtime lp_rt_thread = {"threads", th_open, th_run, th_renew, th_close,
                                 th_interrupt, NULL, NULL, NULL};
