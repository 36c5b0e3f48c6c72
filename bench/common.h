/* Shared by the C benchmark programs: clock, the calibrated busy loop, the
 * workload sizes and the RESULT line every program prints.
 *
 * A RESULT line is tab-separated:
 *   RESULT workload variant impl workers metric unit better value
 * one per repetition; bench/report.py turns them into medians, ratios, a CSV and
 * plots. `better` is "lower" or "higher". */
#ifndef RP_BENCH_COMMON_H
#define RP_BENCH_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* CPU seconds of this process so far, user and system, all its threads. */
static inline double bench_cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* CPU work the compiler cannot remove: a xorshift chain of `iters` steps. */
static inline uint64_t bench_spin(uint64_t iters)
{
    uint64_t x = 0x9e3779b97f4a7c15ULL ^ iters;
    for (uint64_t i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/* Iterations of bench_spin per millisecond on this core (best of a few tries). */
static inline uint64_t bench_calibrate(void)
{
    uint64_t iters = 200000, per_ms = 1;
    volatile uint64_t sink = 0;
    for (int round = 0; round < 2; round++) { /* the second round runs ~10 ms a try */
        double best = 1e9;
        for (int i = 0; i < 5; i++) {
            double t0 = bench_now();
            sink += bench_spin(iters);
            double t = bench_now() - t0;
            if (t < best)
                best = t;
        }
        per_ms = (uint64_t)((double)iters / (best * 1e3));
        if (!per_ms)
            per_ms = 1;
        iters = per_ms * 10;
    }
    (void)sink;
    return per_ms;
}

/* Workload sizes; --quick shrinks them for a smoke run. */
struct bench_sizes {
    size_t n1;        /* w1: trivial items, automatic chunking */
    size_t n1_cs1;    /* w1: trivial items with chunksize 1 (C programs) */
    size_t n2;        /* w2: ~1 ms tasks */
    size_t n2_sweep;  /* w2 in the chunksize sweep and the scaling runs */
    size_t n3;        /* w3: imbalanced items (base 0.2 ms, four of them 100x) */
    size_t n4;        /* w4: 1 MiB items */
    size_t k5;        /* w5: apply round trips per repetition */
    size_t k6;        /* w6: pool start+stop per repetition */
};

static inline struct bench_sizes bench_sizes(int quick)
{
    struct bench_sizes s;
    if (quick) {
        s.n1 = 100000; s.n1_cs1 = 100000; s.n2 = 200; s.n2_sweep = 100;
        s.n3 = 200; s.n4 = 8; s.k5 = 2000; s.k6 = 5;
    } else {
        s.n1 = 1000000; s.n1_cs1 = 1000000; s.n2 = 2000; s.n2_sweep = 500;
        s.n3 = 1000; s.n4 = 64; s.k5 = 20000; s.k6 = 20;
    }
    return s;
}

/* w3: base item 0.2 ms; items 0, 1, n-2, n-1 are 100x longer. */
#define BENCH_W3_BASE_MS 0.2
#define BENCH_W3_FACTOR 100
static inline int bench_w3_is_long(size_t i, size_t n)
{
    return i < 2 || i + 2 >= n;
}

#define BENCH_ITEM_BYTES ((size_t)1 << 20) /* w4 */

/* Python's multiprocessing.Pool default chunksize: ceil(n / (4 * workers)). */
static inline size_t bench_py_chunksize(size_t n, int workers)
{
    size_t d = 4 * (size_t)workers;
    size_t c = n / d + (n % d != 0);
    return c ? c : 1;
}

static const char *bench_impl = "?";

static inline void bench_result(const char *workload, const char *variant, int workers,
                                const char *metric, const char *unit, const char *better,
                                double value)
{
    printf("RESULT\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.6g\n", workload, variant, bench_impl,
           workers, metric, unit, better, value);
    fflush(stdout);
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static inline double bench_median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, bench_cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

/* --only LIST: comma-separated workload names (w1,w2,...,sweep); NULL = all. */
static inline int bench_wants(const char *only, const char *name)
{
    if (!only || !*only)
        return 1;
    size_t len = strlen(name);
    for (const char *p = only; *p;) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == len && strncmp(p, name, len) == 0)
            return 1;
        if (!e)
            break;
        p = e + 1;
    }
    return 0;
}

#endif /* RP_BENCH_COMMON_H */
