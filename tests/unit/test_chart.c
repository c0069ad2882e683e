/* Tests of the SVG chart helpers (cmd/chart.c, compiled in here: it is CLI
 * code, not part of libspattn): round ticks, and the bench chart's labels
 * (issue 19: "time per forward" on a forward+backward chart, speedup ticks
 * at 0.0x/1.6x/3.1x/4.7x/6.2x). */
#include <math.h>
#include <string.h>

#include "cmd/chart.c"
#include "tests/check.h"

static int is_round(double v, double step)
{
    double k = v / step;
    return fabs(k - round(k)) < 1e-9;
}

static void test_ticks(void)
{
    double t[CHART_MAX_TICKS], step;
    int n = chart_ticks(0, 6.2, 5, t, &step);
    CHECKF(n >= 2 && n <= 5 && step == 2, "0..6.2: %d ticks, step %g", n, step);
    for (int i = 0; i < n; i++) CHECKF(is_round(t[i], step) && t[i] >= 0 && t[i] <= 6.2, "tick %g", t[i]);
    n = chart_ticks(0, 4096, 5, t, &step);
    CHECKF(step == 1000 && n == 5 && t[4] == 4000, "0..4096: step %g, %d ticks", step, n);
    n = chart_ticks(0.013, 0.0171, 4, t, &step);
    CHECKF(n >= 2 && n <= 4 && t[0] >= 0.013 && t[n - 1] <= 0.0171, "small range: %d ticks, step %g", n, step);
    n = chart_ticks(0, 1, 6, t, &step);
    CHECKF(step == 0.2 && n == 6, "0..1: step %g, %d ticks", step, n);
    strbuf sb = STRBUF_INIT;
    chart_tick_label(&sb, 0.6000000000000001, 0.2, "x");
    CHECKF(strcmp(sb.buf, "0.6x") == 0, "label '%s'", sb.buf);
    sb_reset(&sb);
    chart_tick_label(&sb, 4, 2, "x");
    CHECKF(strcmp(sb.buf, "4x") == 0, "label '%s'", sb.buf);
    sb_free(&sb);

    n = chart_log_ticks(0.05, 200, t);
    CHECKF(n == 4 && t[0] == 0.1 && t[3] == 100, "log 0.05..200: %d ticks", n);
    n = chart_log_ticks(0.3, 4, t);
    CHECKF(n >= 3 && t[0] == 0.5 && t[1] == 1 && t[2] == 2, "log 0.3..4: %d ticks from %g", n, t[0]);
}

static void test_bench_chart(void)
{
    chart_point pts[] = { { 1024, 0.05, 0.12, 0.5 }, { 4096, 0.3, 1.4, 0.176 }, { 16384, 3.1, 19.0, 0.161 } };
    strbuf s = STRBUF_INIT;
    chart_bench_svg(&s, "spattn bench: x, forward+backward on NVIDIA H200", "time per forward+backward (ms, log scale)",
                    pts, 3);
    CHECK("the panel names the pass", strstr(s.buf, ">time per forward+backward (ms, log scale)<") != NULL);
    CHECK("the title names pass and GPU", strstr(s.buf, "forward+backward on NVIDIA H200</text>") != NULL);
    /* Every speedup tick label ("...x</text>") is a round number. */
    int labels = 0, round_ok = 1;
    for (const char *p = s.buf; (p = strstr(p, "x</text>")); p++) {
        const char *q = p;
        while (q > s.buf && q[-1] != '>') q--;
        double v = atof(q);
        labels++;
        if (!(is_round(v, 1) || is_round(v, 0.5) || is_round(v, 0.2))) round_ok = 0;
    }
    CHECKF(labels >= 3 && round_ok, "%d speedup labels, round %d", labels, round_ok);
    CHECK("no 1.6x-style tick", strstr(s.buf, ">1.6x<") == NULL && strstr(s.buf, ">3.1x<") == NULL);
    sb_free(&s);
}

static const test_case tests[] = {
    { "ticks", test_ticks },
    { "bench_chart", test_bench_chart },
    { 0, 0 },
};
TEST_MAIN(tests)
