/* Running statistics of durations (ms): count, extremes, moments and a
** log-scaled histogram for percentiles. A pool's are added to under its lock. */
#ifndef LUAPOOL_STATS_H
#define LUAPOOL_STATS_H

#include <stdint.h>

#define LP_STATS_BUCKETS 256

typedef struct lp_stats {
  uint64_t count;
  double min, max, sum, sumsq;
  uint64_t bucket[LP_STATS_BUCKETS];
} lp_stats;

/* A duration of ns nanoseconds (kept in ms). */
void lp_stats_add(lp_stats *s, uint64_t ns);
double lp_stats_percentile(const lp_stats *s, double p);

#endif
