/* Whether waiting threads of a pool may spin.
**
** A spin pays only while a core is free for it: then the thread that will
** answer runs beside the spinner, and the hand-off takes no system call.
** When the machine has more runnable threads than cores, a spinner takes
** the time the answering thread needs (often a thread of its own pool), and
** every hand-off waits for the scheduler instead: then it is better to
** sleep at once, and be woken. So every few milliseconds one waiter reads
** how many threads are runnable (/proc/loadavg), subtracts those of this
** pool, and keeps a decaying average of the rest; waiters spin only while
** that average leaves room for the pool's main thread and one worker.
**
** Each waiter also keeps a decaying share of its waits that ended within
** its spin budget, slept or not, and spins only while that is a quarter or more
** (and every 16th wait, to notice a change): a thread whose work comes
** seldom does not spend a core on spinning each time it waits. */
#define _GNU_SOURCE  /* sched_getaffinity, CPU_COUNT */
#include <fcntl.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>
#include "interrupt.h"
#include "pool.h"

#define SPIN_CHECK_NS 2000000  /* how often the load is looked at */
#define AVG_ONE 256             /* the averages' fixed point */
#define SCORE_MIN (AVG_ONE / 4) /* spin while a quarter of waits would pay */
#define PROBE_MASK 15           /* and on every 16th wait */

void lp_spin_init(lp_pool *p) {
  cpu_set_t set;
  long n = 0;
  if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
  if (n <= 0) n = sysconf(_SC_NPROCESSORS_ONLN);
  p->ncpu = n > 0 ? (int)n : 1;
  atomic_init(&p->spin_checked, 0);
  atomic_init(&p->others_avg, 0);
  atomic_init(&p->spin_ok, 1);
  atomic_init(&p->nawake, 0);
  atomic_init(&p->main_cpu, -1);
  lp_spinner_init(&p->spinner);
}

void lp_spinner_init(lp_spinner *s) {
  s->score = AVG_ONE;
  s->waits = 0;
}

int lp_spin_should(lp_pool *p, lp_spinner *s) {
  return (s->score >= SCORE_MIN || (++s->waits & PROBE_MASK) == 0) && lp_spin_allowed(p);
}

void lp_spin_learn(lp_spinner *s, uint64_t waited_ns, uint64_t budget_ns) {
  if (waited_ns <= budget_ns) s->score += (AVG_ONE - s->score) / 8;
  else s->score -= s->score / 8;
}

/* Threads runnable on the machine now, the caller included; -1 if unknown.
** /proc/loadavg reads "0.50 0.40 0.30 3/512 12345": 3 are runnable. */
static long runnable(void) {
  char buf[128], *s;
  ssize_t n;
  int fd = open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  for (s = buf; *s && *s != '/'; s++) {}
  while (s > buf && s[-1] >= '0' && s[-1] <= '9') s--;
  return *s >= '0' && *s <= '9' ? strtol(s, NULL, 10) : -1;
}

int lp_spin_allowed(lp_pool *p) {
  uint64_t now = lp_now_ns(), last = atomic_load_explicit(&p->spin_checked, memory_order_relaxed);
  long n, others;
  int avg;
  if (now - last < SPIN_CHECK_NS ||
      !atomic_compare_exchange_strong(&p->spin_checked, &last, now))  /* another looks */
    return atomic_load_explicit(&p->spin_ok, memory_order_relaxed);
  if ((n = runnable()) < 0) return 1;
  /* ours: the workers awake, and the main thread */
  others = n - atomic_load_explicit(&p->nawake, memory_order_relaxed) - 1;
  if (others < 0) others = 0;
  if (others > p->ncpu) others = p->ncpu;
  avg = atomic_load_explicit(&p->others_avg, memory_order_relaxed);
  avg += ((int)others * AVG_ONE - avg) / 4;
  atomic_store_explicit(&p->others_avg, avg, memory_order_relaxed);
  atomic_store_explicit(&p->spin_ok, avg <= (p->ncpu - 2) * AVG_ONE + AVG_ONE / 2,
                        memory_order_relaxed);
  return atomic_load_explicit(&p->spin_ok, memory_order_relaxed);
}
