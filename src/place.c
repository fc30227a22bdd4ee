/* Which cores a worker runs on (a process worker's child goes with it).
**
** A worker runs where the kernel puts it, except in one case. When no core
** is free (spin.c says so) a worker woken on another core than the main
** thread's waits there behind what runs on it, and the result then wakes
** the main thread across cores again: each such wake-up needs the other
** core to be interrupted, about 10 us on a virtual machine. A worker on
** the main thread's core runs as soon as the main thread waits for it, and
** wakes it without an interrupt. So a worker whose pool has nothing to do
** (nothing queued, no worker busy), whose tasks are short and which finds
** no core free, moves to the core of the main thread's last submit before
** it sleeps: a pool that runs one short task at a time then keeps its
** hand-offs on one core (a process worker's child moves with its thread,
** so the pipe between them stays on it too). It goes back to all its cores as soon as any of
** that stops being so: a task taken with others queued behind it (then the
** pool needs its cores), long tasks, or a core free again. */
#define _GNU_SOURCE  /* sched_getaffinity, sched_getcpu, CPU_* */
#include <sched.h>
#include <stdlib.h>
#include "pool.h"

void lp_place_init(lp_worker *w) {
  cpu_set_t *home = malloc(sizeof *home);
  w->placed = -1;
  if (home && sched_getaffinity(0, sizeof *home, home) != 0) {
    free(home);
    home = NULL;
  }
  w->home = home;  /* NULL: never moves */
}

void lp_place_free(lp_worker *w) {
  free(w->home);
  w->home = NULL;
}

/* The core w should be kept on before it sleeps, or -1 for all of its own.
** Lock held. */
int lp_place_wanted(lp_pool *p, lp_worker *w) {
  int cpu;
  if (!w->home || w->task_ns >= LP_SHORT_TASK_NS ||
      p->idle < p->nlive || atomic_load_explicit(&p->queued, memory_order_relaxed) ||
      lp_spin_allowed(p))
    return -1;
  cpu = atomic_load_explicit(&p->main_cpu, memory_order_relaxed);
  return cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, (cpu_set_t *)w->home) ? cpu : -1;
}

/* Keeps the calling worker, and what runs its tasks, on cpu, or on its own
** cores (-1). A core the kernel refuses (taken offline, a cpuset changed)
** ends moving for w. */
void lp_place_move(lp_worker *w, int cpu) {
  cpu_set_t one, *set = (cpu_set_t *)w->home;
  if (cpu >= 0) {
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    set = &one;
  }
  if (sched_setaffinity(0, sizeof *set, set) != 0 && cpu >= 0) {
    lp_place_free(w);
    return;
  }
  w->placed = cpu;
  if (w->rt->place) w->rt->place(w, set, sizeof *set);
}
