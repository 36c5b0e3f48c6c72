/* The in-process peer: the same workloads as OpenMP loops over threads of one
 * process (no copies, no processes). Trivial items (w1, w7) run as an OpenMP user
 * would write them, schedule(static) and schedule(dynamic, 1000), and with
 * schedule(dynamic, 1) as the peer of rankpool's chunksize 1; the CPU-bound
 * workloads use schedule(dynamic, 1) (1 ms items: one per dispatch).
 *
 *   omp_bench [--workers W] [--reps R] [--quick] [--only w1,w2,w3,w4,w7]
 *
 * Prints RESULT lines (see common.h). */
#include <omp.h>
#include <unistd.h>

#include "common.h"

static struct {
    int workers, reps, quick;
    const char *only;
    struct bench_sizes sz;
    uint64_t iters_ms;
} g;

/* The schedule of a trivial map: what an OpenMP user writes for cheap, even
 * items (static, or dynamic with chunks of 1000) and, as the peer of rankpool's
 * chunksize 1, one dispatch per item (dynamic, 1). */
enum omp_sched { SCHED_STATIC, SCHED_DYN1000, SCHED_DYN1 };

static void trivial_once(const char *wl, const char *variant, int workers, size_t n,
                         enum omp_sched sched, const long *in, long *out)
{
    double t0 = bench_now();
    if (sched == SCHED_STATIC) {
#pragma omp parallel for schedule(static) num_threads(workers)
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * in[i];
    } else if (sched == SCHED_DYN1000) {
#pragma omp parallel for schedule(dynamic, 1000) num_threads(workers)
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * in[i];
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(workers)
        for (size_t i = 0; i < n; i++)
            out[i] = in[i] * in[i];
    }
    double t = bench_now() - t0;
    for (size_t i = 0; i < n; i++)
        if (out[i] != (long)i * (long)i) {
            fprintf(stderr, "omp_bench: wrong output at %zu\n", i);
            exit(1);
        }
    bench_result(wl, variant, workers, "time", "s", "lower", t);
    bench_result(wl, variant, workers, "rate", "Mitems/s", "higher", (double)n / t / 1e6);
    bench_result(wl, variant, workers, "per_item", "ns", "lower", t / (double)n * 1e9);
}

static double spin_map(const uint64_t *in, uint64_t *out, size_t n, int workers)
{
    double t0 = bench_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(workers)
    for (size_t i = 0; i < n; i++)
        out[i] = bench_spin(in[i]);
    return bench_now() - t0;
}

static double serial_spin(const uint64_t *in, size_t n)
{
    volatile uint64_t sink = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++)
        sink += bench_spin(in[i]);
    (void)sink;
    return bench_now() - t0;
}

static void spin_once(const char *wl, const char *variant, int workers, const uint64_t *in,
                      uint64_t *out, size_t n, double serial)
{
    double t = spin_map(in, out, n, workers);
    bench_result(wl, variant, workers, "time", "s", "lower", t);
    bench_result(wl, variant, workers, "efficiency", "%", "higher",
                 100.0 * serial / ((double)workers * t));
    bench_result(wl, variant, workers, "rate", "tasks/s", "higher", (double)n / t);
}

int main(int argc, char **argv)
{
    g.workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    g.reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            g.workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            g.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            g.quick = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            g.only = argv[++i];
        else {
            fprintf(stderr, "usage: omp_bench [--workers W] [--reps R] [--quick] [--only ...]\n");
            return 2;
        }
    }
    g.sz = bench_sizes(g.quick);
    g.iters_ms = bench_calibrate();
    bench_impl = "openmp";
    int W = g.workers;

    size_t n1 = g.sz.n1 > g.sz.n1_cs1 ? g.sz.n1 : g.sz.n1_cs1;
    long *in = malloc(n1 * sizeof *in), *out = malloc(n1 * sizeof *out);
    for (size_t i = 0; i < n1; i++)
        in[i] = (long)i;

    if (bench_wants(g.only, "w1")) {
        /* impl names: openmp-static, openmp-dyn1000 (auto: what an OpenMP user
         * writes) and openmp (dynamic, 1: one dispatch per item, cs1 only); the
         * three alternate, repetition by repetition, like rankpool's variants */
        trivial_once("w1_trivial", "warmup", W, g.sz.n1, SCHED_STATIC, in, out);
        for (int r = 0; r < g.reps; r++)
            for (int k = 0; k < 3; k++)
                switch ((k + r) % 3) {
                case 0:
                    bench_impl = "openmp-static";
                    trivial_once("w1_trivial", "auto", W, g.sz.n1, SCHED_STATIC, in, out);
                    break;
                case 1:
                    bench_impl = "openmp-dyn1000";
                    trivial_once("w1_trivial", "auto", W, g.sz.n1, SCHED_DYN1000, in, out);
                    break;
                default:
                    bench_impl = "openmp";
                    trivial_once("w1_trivial", "cs1", W, g.sz.n1_cs1, SCHED_DYN1, in, out);
                }
        bench_impl = "openmp";
    }

    if (bench_wants(g.only, "w2")) {
        size_t n = g.sz.n2;
        uint64_t *sin = malloc(n * sizeof *sin), *sout = malloc(n * sizeof *sout);
        for (size_t i = 0; i < n; i++)
            sin[i] = g.iters_ms;
        double serial = serial_spin(sin, n / 4) * 4;
        bench_result("w2_1ms", "serial", 1, "time", "s", "lower", serial);
        for (int r = 0; r < g.reps; r++)
            spin_once("w2_1ms", "auto", W, sin, sout, n, serial);
        free(sin);
        free(sout);
    }

    if (bench_wants(g.only, "w3")) {
        size_t n = g.sz.n3;
        uint64_t *sin = malloc(n * sizeof *sin), *sout = malloc(n * sizeof *sout);
        uint64_t base = (uint64_t)(g.iters_ms * BENCH_W3_BASE_MS);
        for (size_t i = 0; i < n; i++)
            sin[i] = bench_w3_is_long(i, n) ? base * BENCH_W3_FACTOR : base;
        double serial = serial_spin(sin, n), longest = serial_spin(sin, 1);
        double ideal = serial / W > longest ? serial / W : longest;
        bench_result("w3_imbalanced", "ideal", W, "makespan", "s", "lower", ideal);
        for (int r = 0; r < g.reps; r++) {
            double t = spin_map(sin, sout, n, W);
            bench_result("w3_imbalanced", "auto", W, "makespan", "s", "lower", t);
            bench_result("w3_imbalanced", "auto", W, "vs_ideal", "x ideal", "lower", t / ideal);
        }
        free(sin);
        free(sout);
    }

    if (bench_wants(g.only, "w4")) {
        size_t n = g.sz.n4;
        unsigned char *bin = malloc(n * BENCH_ITEM_BYTES), *bout = malloc(n * BENCH_ITEM_BYTES);
        for (size_t i = 0; i < n * BENCH_ITEM_BYTES; i++)
            bin[i] = (unsigned char)(i * 131 + (i >> 20));
        memset(bout, 0, n * BENCH_ITEM_BYTES);
        for (int r = 0; r < g.reps + 1; r++) {
            double t0 = bench_now();
#pragma omp parallel for schedule(dynamic, 1) num_threads(W)
            for (size_t i = 0; i < n; i++) {
                memcpy(bout + i * BENCH_ITEM_BYTES, bin + i * BENCH_ITEM_BYTES, BENCH_ITEM_BYTES);
                bout[i * BENCH_ITEM_BYTES] ^= 1;
            }
            double t = bench_now() - t0;
            if (r == 0)
                continue; /* warm-up: first touch of out */
            bench_result("w4_large", "auto", W, "time", "s", "lower", t);
            bench_result("w4_large", "auto", W, "throughput", "MiB/s in", "higher",
                         (double)n / t);
        }
        free(bin);
        free(bout);
    }

    if (bench_wants(g.only, "w7")) {
        size_t n2 = g.sz.n2_sweep;
        uint64_t *sin = malloc(n2 * sizeof *sin), *sout = malloc(n2 * sizeof *sout);
        for (size_t i = 0; i < n2; i++)
            sin[i] = g.iters_ms;
        double serial = serial_spin(sin, n2);
        int reps = g.reps > 3 ? 3 : g.reps;
        for (int w = 1; w <= W; w = (w < W && 2 * w > W) ? W : 2 * w) { /* 1, 2, 4, ..., W */
            char v[16];
            snprintf(v, sizeof v, "%d", w);
            bench_impl = "openmp-dyn1000";
            for (int r = 0; r < reps; r++)
                trivial_once("w7_scale_trivial", v, w, g.sz.n1, SCHED_DYN1000, in, out);
            bench_impl = "openmp";
            for (int r = 0; r < reps; r++)
                trivial_once("w7_scale_cs1", v, w, g.sz.n1_cs1 / 4, SCHED_DYN1, in, out);
            for (int r = 0; r < reps; r++)
                spin_once("w7_scale_1ms", v, w, sin, sout, n2, serial);
        }
        free(sin);
        free(sout);
    }
    free(in);
    free(out);
    return 0;
}
