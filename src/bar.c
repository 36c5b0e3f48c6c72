/* The progress bar: items done/total, rate, ETA, on the master's stderr (never
 * stdout, never a serving rank: only the master submits). On a terminal one line
 * is redrawn in place ("\r", erase to the end of the line) every BAR_TTY_S;
 * otherwise (a pipe, a Slurm log) a plain line is written every
 * $RP_PROGRESS_INTERVAL seconds (default BAR_PLAIN_S). Called by the monitor thread
 * (monitor.c) and, for the last line, by finalization. One lock keeps lines whole
 * when several bars share stderr. */
#include "monitor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BAR_TTY_S   0.1  /* redraw period on a terminal */
#define BAR_PLAIN_S 5.0  /* default period of plain lines */
#define BAR_WIDTH   24   /* characters of the bar itself */

static pthread_mutex_t bar_lock = PTHREAD_MUTEX_INITIALIZER;

static double plain_period(void)
{
    return rp__env_seconds("RP_PROGRESS_INTERVAL", BAR_PLAIN_S, false);
}

/* "1:02:03", "2:03" or "4.2s". */
static void fmt_time(char *buf, size_t len, double s)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, len, "?");
    } else if (s < 60) {
        snprintf(buf, len, "%.1fs", s);
    } else {
        long t = (long)(s + 0.5);
        if (t >= 3600)
            snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
        else
            snprintf(buf, len, "%ld:%02ld", t / 60, t % 60);
    }
}

/* The text of a line: what is done, the rate of this run (items restored from a
 * journal are not counted in it), the time left at that rate. */
static void format_line(char *buf, size_t len, size_t done, size_t total, size_t skipped,
                        size_t failed, double elapsed, bool tty, bool final)
{
    double frac = total ? (double)done / (double)total : 1.0;
    double rate = elapsed > 0 ? (double)(done - (done > skipped ? skipped : done)) / elapsed : 0;
    char eta[32], took[32], bar[BAR_WIDTH + 1] = "";
    fmt_time(took, sizeof took, elapsed);
    fmt_time(eta, sizeof eta, rate > 0 ? (double)(total - done) / rate : NAN);
    if (tty) {
        int fill = (int)(frac * BAR_WIDTH);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[BAR_WIDTH] = '\0';
    }
    int k = total == SIZE_MAX /* a stream whose length is not known yet */
                ? snprintf(buf, len, "rankpool: %zu items %.1f items/s", done, rate)
                : snprintf(buf, len, "rankpool: %s%s%s%zu/%zu items (%3.0f%%) %.1f items/s",
                           tty ? "[" : "", bar, tty ? "] " : "", done, total, frac * 100,
                           rate);
    if (total == SIZE_MAX && !final)
        return;
    if (k < 0 || (size_t)k >= len)
        return;
    if (final)
        snprintf(buf + k, len - (size_t)k, ", %zu failed, took %s%s", failed, took,
                 skipped ? " (resumed)" : "");
    else
        snprintf(buf + k, len - (size_t)k, ", ETA %s", eta);
}

/* Under bar_lock: whether a line is due now. The first comes one period after
 * submission; the last (final) only when the call asked for a bar or a line was
 * drawn. Moves *next when nothing is drawn. */
static bool line_due(double *next, bool asked, bool drawn, bool final, double now, bool tty)
{
    if (isinf(*next) || (!final && *next > now) || (final && !asked && !drawn)) {
        if (final)
            *next = INFINITY;
        return false;
    }
    if (*next == 0 && !final) {
        *next = now + (tty ? BAR_TTY_S : plain_period());
        return false;
    }
    return true;
}

/* Under bar_lock: writes the line (redrawn in place on a terminal) and when the
 * next is due. */
static void put_line(const char *line, double *next, bool *drawn, bool final, double now,
                     bool tty)
{
    if (tty)
        fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    else
        fprintf(stderr, "%s\n", line);
    fflush(stderr);
    *drawn = true;
    *next = final ? INFINITY : now + (tty ? BAR_TTY_S : plain_period());
}

void rp__bar_draw(rp_result_t *r, bool final)
{
    struct rp__monitorres *w = r->monitor;
    double now = rp__now();
    bool tty = isatty(STDERR_FILENO);
    pthread_mutex_lock(&bar_lock);
    if (line_due(&w->next, w->asked, w->drawn, final, now, tty)) {
        size_t done, total;
        if (final)
            done = total = w->total;
        else
            rp_result_progress(r, &done, &total);
        char line[256];
        format_line(line, sizeof line, done, total, w->skipped, final ? r->nerrors : 0,
                    now - w->t0, tty, final);
        put_line(line, &w->next, &w->drawn, final, now, tty);
    }
    pthread_mutex_unlock(&bar_lock);
}

void rp__bar_stream(struct rp__sbar *b, size_t done, size_t total, size_t failed, bool final)
{
    if (!b->on)
        return;
    double now = rp__now();
    bool tty = isatty(STDERR_FILENO);
    pthread_mutex_lock(&bar_lock);
    if (line_due(&b->next, b->asked, b->drawn, final, now, tty)) {
        char line[256];
        format_line(line, sizeof line, done, final ? done : total, 0, failed, now - b->t0,
                    tty, final);
        put_line(line, &b->next, &b->drawn, final, now, tty);
    }
    pthread_mutex_unlock(&bar_lock);
}
