#include "cmd/chart.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int chart_ticks(double lo, double hi, int max_ticks, double *out, double *step)
{
    if (max_ticks < 2) max_ticks = 2;
    if (max_ticks > CHART_MAX_TICKS) max_ticks = CHART_MAX_TICKS;
    if (!(hi > lo)) { out[0] = lo; *step = 1; return 1; }
    static const double mult[] = { 1, 2, 5 };
    double p = pow(10, floor(log10((hi - lo) / max_ticks)) - 1);
    for (;; p *= 10)
        for (int m = 0; m < 3; m++) {
            double st = mult[m] * p;
            double first = ceil(lo / st - 1e-9) * st;
            int n = (int)floor((hi - first) / st + 1e-9) + 1;
            if (n > max_ticks) continue;
            for (int i = 0; i < n; i++) out[i] = first + i * st;
            *step = st;
            return n;
        }
}

int chart_log_ticks(double lo, double hi, double *out)
{
    int n = 0;
    for (int d = (int)floor(log10(lo)); d <= (int)ceil(log10(hi)) && n < CHART_MAX_TICKS; d++) {
        double v = pow(10, d);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out[n++] = v;
    }
    if (n >= 3) return n;
    n = 0;
    static const double mult[] = { 1, 2, 5 };
    for (int d = (int)floor(log10(lo)); d <= (int)ceil(log10(hi)); d++)
        for (int m = 0; m < 3 && n < CHART_MAX_TICKS; m++) {
            double v = mult[m] * pow(10, d);
            if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out[n++] = v;
        }
    return n;
}

void chart_tick_label(strbuf *sb, double v, double step, const char *suffix)
{
    int decimals = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (decimals > 9) decimals = 9;
    double r = fabs(v) < step * 1e-6 ? 0 : v;   /* no "-0" */
    sb_printf(sb, "%.*f%s", decimals, r, suffix ? suffix : "");
}

static void sb_xml_text(strbuf *s, const char *t)
{
    for (; *t; t++) {
        if (*t == '<') sb_puts(s, "&lt;");
        else if (*t == '&') sb_puts(s, "&amp;");
        else if (*t == '>') sb_puts(s, "&gt;");
        else sb_add(s, t, 1);
    }
}

void chart_bench_svg(strbuf *s, const char *title, const char *time_label, const chart_point *pts, int n)
{
    const int pw = 380, ph = 260, top = 70;
    const int left[2] = { 70, 520 };
    /* Wide enough for the title at 16 px (about 9 px a character). */
    int W = 960, Hh = 380;
    int title_w = 40 + (int)(9.0 * (double)strlen(title));
    if (title_w > W) W = title_w;
    double tmin = 1e30, tmax = 0, smax = 1, nmin = 1e30, nmax = 0;
    for (int i = 0; i < n; i++) {
        tmin = fmin(tmin, fmin(pts[i].ms, pts[i].dense_ms));
        tmax = fmax(tmax, fmax(pts[i].ms, pts[i].dense_ms));
        smax = fmax(smax, fmax(pts[i].dense_ms / pts[i].ms, 1.0 / pts[i].ratio));
        nmin = fmin(nmin, (double)pts[i].N);
        nmax = fmax(nmax, (double)pts[i].N);
    }
    double lx0 = log2(nmin), lx1 = log2(nmax) + (nmax == nmin ? 1 : 0);
    double ly0 = log10(tmin) - 0.1, ly1 = log10(tmax) + 0.1;
    /* The speedup axis ends on a round tick above the largest value. */
    double sticks[CHART_MAX_TICKS], sstep;
    int ns = chart_ticks(0, smax * 1.05, 6, sticks, &sstep);
    double stop = sticks[ns - 1] < smax * 1.05 ? sticks[ns - 1] + sstep : sticks[ns - 1];
    if (stop > sticks[ns - 1] && ns < CHART_MAX_TICKS) sticks[ns++] = stop;
    smax = stop;
#define X(panel, N) (left[panel] + (log2((double)(N)) - lx0) / (lx1 - lx0) * pw)
#define YT(ms) (top + ph - (log10(ms) - ly0) / (ly1 - ly0) * ph)
#define YS(v) (top + ph - (v) / smax * ph)
    sb_printf(s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, Hh);
    sb_printf(s, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>\n", W, Hh);
    sb_printf(s, "<text x=\"%d\" y=\"24\" font-size=\"16\">", 20);
    sb_xml_text(s, title);
    sb_puts(s, "</text>\n");
    const char *ptitle[2] = { time_label, "speedup over dense causal" };
    for (int p = 0; p < 2; p++) {
        sb_printf(s, "<text x=\"%d\" y=\"%d\">", left[p], top - 10);
        sb_xml_text(s, ptitle[p]);
        sb_puts(s, "</text>\n");
        sb_printf(s, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n", left[p], top, pw, ph);
        for (int i = 0; i < n; i++) {
            sb_printf(s, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#888\"/>", X(p, pts[i].N), top + ph,
                      X(p, pts[i].N), top + ph + 4);
            sb_printf(s, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%lld</text>\n", X(p, pts[i].N), top + ph + 16,
                      (long long)pts[i].N);
        }
        sb_printf(s, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">sequence length N</text>\n", left[p] + pw / 2, top + ph + 34);
    }
    double tt[CHART_MAX_TICKS];
    int nt = chart_log_ticks(pow(10, ly0), pow(10, ly1), tt);
    for (int i = 0; i < nt; i++) {
        sb_printf(s, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#888\"/>", left[0] - 4, YT(tt[i]), left[0],
                  YT(tt[i]));
        sb_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%g</text>\n", left[0] - 6, YT(tt[i]) + 4, tt[i]);
    }
    for (int i = 0; i < ns; i++) {
        sb_printf(s, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#888\"/>", left[1] - 4, YS(sticks[i]), left[1],
                  YS(sticks[i]));
        sb_printf(s, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">", left[1] - 6, YS(sticks[i]) + 4);
        chart_tick_label(s, sticks[i], sstep, "x");
        sb_puts(s, "</text>\n");
    }
    const char *color[3] = { "#d62728", "#1f77b4", "#999" };
    const char *label[2][2] = { { "spattn", "dense causal (same engine)" }, { "measured speedup", "ideal (1 / work ratio)" } };
    for (int series = 0; series < 2; series++) {
        sb_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color[series]);
        for (int i = 0; i < n; i++)
            sb_printf(s, "%.1f,%.1f ", X(0, pts[i].N), YT(series == 0 ? pts[i].ms : pts[i].dense_ms));
        sb_puts(s, "\"/>\n");
        sb_printf(s, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\"%s points=\"", series ? color[2] : color[0],
                  series ? " stroke-dasharray=\"5,4\"" : "");
        for (int i = 0; i < n; i++)
            sb_printf(s, "%.1f,%.1f ", X(1, pts[i].N), YS(series == 0 ? pts[i].dense_ms / pts[i].ms : 1.0 / pts[i].ratio));
        sb_puts(s, "\"/>\n");
        for (int i = 0; i < n; i++) {
            sb_printf(s, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", X(0, pts[i].N),
                      YT(series == 0 ? pts[i].ms : pts[i].dense_ms), color[series]);
        }
        /* legends: top left of the time panel, bottom right of the speedup panel (clear of the ideal line) */
        for (int p = 0; p < 2; p++)
            sb_printf(s, "<text x=\"%d\" y=\"%d\" fill=\"%s\"%s>%s</text>\n", p == 0 ? left[p] + 10 : left[p] + pw - 10,
                      p == 0 ? top + 16 + 16 * series : top + ph - 28 + 16 * series,
                      p == 0 ? color[series] : (series ? color[2] : color[0]), p == 0 ? "" : " text-anchor=\"end\"",
                      label[p][series]);
    }
    sb_puts(s, "</svg>\n");
#undef X
#undef YT
#undef YS
}
