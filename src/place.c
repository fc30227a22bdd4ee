/* Which cores a worker runs on (a process worker's child goes with it).
**
** A worker runs where the kernel puts it, except in two cases, both for
** short tasks (LP_SHORT_TASK_NS), whose cost is the hand-offs.
**
** No core free (spin.c says so): a worker woken on another core than the
** main thread's waits there behind what runs on it, and the result then
** wakes the main thread across cores again: each such wake-up needs the
** other core to be interrupted, about 10 us on a virtual machine. A worker
** on the main thread's core runs as soon as the main thread waits for it,
** and wakes it without an interrupt. So a worker whose pool has nothing to
** do (nothing queued, no worker busy), and whose last ALONE_MIN tasks ran
** with nothing queued and no other worker busy, moves to the core of the main
** thread's last submit before it sleeps ("beside"): a pool that runs one
** short task at a time keeps its hand-offs on one core.
**
** A core free, and tasks queued behind the one a worker takes: the pool is
** as fast as its main thread submits and settles, and a worker that shares
** the main thread's core takes turns with it (two workers and the main
** thread on two cores: bounded64's main thread was preempted up to 4000
** times in 50k tasks, and passed half as many). So the worker keeps off
** that core ("away") for as long as its tasks are short and a core is free.
**
** A process worker's child moves with its thread, so the pipe between them
** goes along. Anything else, or a task taken with others queued behind it
** while beside, gives a worker all its cores back. */
#define _GNU_SOURCE  /* sched_getaffinity, sched_getcpu, CPU_* */
#include <sched.h>
#include <stdlib.h>
#include "pool.h"

#define HOME (-1)
#define AWAY(cpu) (-2 - (cpu))  /* all its cores but cpu */
#define IS_AWAY(placed) ((placed) <= -2)
#define ALONE_MIN 8  /* tasks in a row run alone before "beside" */

void lp_place_init(lp_worker *w) {
  cpu_set_t *home = malloc(sizeof *home);
  w->placed = HOME;
  w->alone = 0;
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

/* The core of the main thread's last submit, if w may run on it; else -1. */
static int main_core(lp_pool *p, lp_worker *w) {
  int cpu = atomic_load_explicit(&p->main_cpu, memory_order_relaxed);
  return cpu >= 0 && cpu < CPU_SETSIZE && CPU_ISSET(cpu, (cpu_set_t *)w->home) ? cpu : -1;
}

/* Where w should be before it sleeps. Lock held. */
int lp_place_wanted(lp_pool *p, lp_worker *w) {
  int cpu;
  if (!w->home || w->task_ns >= LP_SHORT_TASK_NS) return HOME;
  if (lp_spin_allowed(p))  /* a core free: away stays away */
    return IS_AWAY(w->placed) && AWAY(main_core(p, w)) == w->placed ? w->placed : HOME;
  if (w->alone < ALONE_MIN || p->idle < p->nlive ||
      atomic_load_explicit(&p->queued, memory_order_relaxed))
    return HOME;
  cpu = main_core(p, w);
  return cpu >= 0 ? cpu : HOME;
}

/* Where w should be as it starts a task (lock not held): queued, tasks
** behind it; alone, no other worker busy and none queued. */
int lp_place_busy(lp_pool *p, lp_worker *w, size_t queued, int alone) {
  int cpu;
  w->alone = alone ? w->alone + (w->alone < ALONE_MIN) : 0;
  if (!w->home || w->task_ns >= LP_SHORT_TASK_NS)
    return HOME;
  if (!queued)
    return w->placed;
  if (!lp_spin_allowed(p) || CPU_COUNT((cpu_set_t *)w->home) < 2 || (cpu = main_core(p, w)) < 0)
    return HOME;
  return AWAY(cpu);
}

/* Keeps the calling worker, and what runs its tasks, where placed says. A
** move the kernel refuses (a core taken offline, a cpuset changed) sends w
** back to all its cores, and ends moving for it. */
void lp_place_move(lp_worker *w, int placed) {
  cpu_set_t some, *set = (cpu_set_t *)w->home;
  if (!set) {  /* moving has ended */
    w->placed = HOME;
    return;
  }
  if (placed >= 0) {
    CPU_ZERO(&some);
    CPU_SET(placed, &some);
    set = &some;
  } else if (IS_AWAY(placed)) {
    CPU_ZERO(&some);
    CPU_OR(&some, &some, set);
    CPU_CLR(-2 - placed, &some);
    set = &some;
  }
  if (sched_setaffinity(0, sizeof *set, set) != 0) {
    if (placed != HOME) lp_place_move(w, HOME);
    w->placed = HOME;
    lp_place_free(w);
    return;
  }
  w->placed = placed;
  if (w->rt->place) w->rt->place(w, set, sizeof *set);
}
