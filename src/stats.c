/* Duration statistics. Buckets are 1/8 of a power of two wide, from 1 ns
** up, so percentiles are within about 9% of the exact value. */
#include <math.h>
#include "stats.h"

static int bucket_of(double ms) {
  double ns = ms * 1e6;
  int e, b;
  if (!(ns >= 1)) return 0;
  e = ilogb(ns);
  b = e * 8 + (int)((ns / ldexp(1.0, e) - 1) * 8);
  return b < LP_STATS_BUCKETS ? b : LP_STATS_BUCKETS - 1;
}

static double bucket_mid(int b) {
  return ldexp(1.0 + ((b % 8) + 0.5) / 8, b / 8) / 1e6;
}

void lp_stats_add(lp_stats *s, double ms) {
  if (s->count == 0 || ms < s->min) s->min = ms;
  if (s->count == 0 || ms > s->max) s->max = ms;
  s->count++;
  s->sum += ms;
  s->sumsq += ms * ms;
  s->bucket[bucket_of(ms)]++;
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
