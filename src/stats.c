/* Duration statistics. Buckets are 1/8 of a power of two wide, from 1 ns
** up, so percentiles are within about 9% of the exact value. */
#include <math.h>
#include "stats.h"

/* In integers: the power of two below ns, and the eighth of it ns is in. */
static int bucket_of(uint64_t ns) {
  int e, b;
  uint64_t top;
  if (ns == 0) return 0;
  e = 63 - __builtin_clzll(ns);
  top = e >= 3 ? ns >> (e - 3) : ns << (3 - e);  /* 8..15 */
  b = e * 8 + (int)(top - 8);
  return b < LP_STATS_BUCKETS ? b : LP_STATS_BUCKETS - 1;
}

static double bucket_mid(int b) {
  return ldexp(1.0 + ((b % 8) + 0.5) / 8, b / 8) / 1e6;
}

void lp_stats_add(lp_stats *s, uint64_t ns) {
  double ms = (double)ns / 1e6;
  if (s->count == 0 || ms < s->min) s->min = ms;
  if (s->count == 0 || ms > s->max) s->max = ms;
  s->count++;
  s->sum += ms;
  s->sumsq += ms * ms;
  s->bucket[bucket_of(ns)]++;
}

double lp_stats_percentile(const lp_stats *s, double p) {
  uint64_t want, seen = 0;
  int b;
  double v;
  if (s->count == 0) return 0;
  want = (uint64_t)ceil(p * (double)s->count);
  if (want == 0) want = 1;
  for (b = 0; b < LP_STATS_BUCKETS; b++) {
    seen += s->bucket[b];
    if (seen >= want) break;
  }
  v = bucket_mid(b);
  return v < s->min ? s->min : v > s->max ? s->max : v;
}
