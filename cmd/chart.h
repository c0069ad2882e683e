/* Small SVG drawing helpers shared by `plan --svg` and `bench --svg`: round
 * axis ticks, and the two-panel chart of a bench sweep.  Output only; no
 * GPU, no files (the caller writes the buffer). */
#ifndef SPATTN_CMD_CHART_H
#define SPATTN_CMD_CHART_H

#include <stdint.h>

#include "common/strbuf.h"

#define CHART_MAX_TICKS 16

/* Round ticks covering [lo, hi] (lo < hi) on a linear axis: multiples of a
 * step of 1, 2 or 5 times a power of ten, at most max_ticks of them (2 ..
 * CHART_MAX_TICKS), ascending, every one inside [lo, hi].  Returns the
 * count; *step gets the step. */
int chart_ticks(double lo, double hi, int max_ticks, double *out, double *step);

/* Ticks for a log axis over [lo, hi] (0 < lo < hi): the powers of ten
 * inside; where fewer than 3 fit, 1-2-5 multiples of them too.  Count, at
 * most CHART_MAX_TICKS. */
int chart_log_ticks(double lo, double hi, double *out);

/* Append to sb the text of value v as a tick label: "%g" of a value rounded
 * to the tick step's precision (no 0.30000000000000004), then suffix. */
void chart_tick_label(strbuf *sb, double v, double step, const char *suffix);

/* One point of a bench sweep, as the chart needs it. */
typedef struct {
    int64_t N;
    double ms, dense_ms, ratio;
} chart_point;

/* The bench chart: time (log) and speedup against N (log 2).  title: the
 * whole figure's (spec, shape, pass, GPU); time_label: the left panel's,
 * e.g. "time per forward+backward (ms, log scale)". */
void chart_bench_svg(strbuf *s, const char *title, const char *time_label, const chart_point *pts, int n);

#endif
