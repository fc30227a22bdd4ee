#include "pool.h"
static int pr_open(lp_worker *w, char *err, size_t errlen) { (void)w; (void)err; (void)errlen; return -1; }
static int pr_run(lp_worker *w, lp_task *t) { (void)w; (void)t; return 1; }
static void pr_close(lp_worker *w) { (void)w; }
static void pr_interrupt(lp_worker *w) { (void)w; }
static void pr_kill(lp_worker *w) { (void)w; }
const lp_runtime lp_rt_process = {"process", pr_open, pr_run, NULL, pr_close, pr_interrupt, pr_kill};
