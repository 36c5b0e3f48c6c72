/* rankpool on the benchmark workloads, on either backend.
 *
 *   rp_bench [--backend local|mpi] [--workers W] [--reps R] [--quick] [--bind]
 *            [--placement] [--only w1,w2,w3,w4,w5,w6,w7,sweep]
 *
 * --bind creates the pools with opts.bind (worker k on core k); --placement prints,
 * after each chunksize-1 map of w1, the CPUs the master and each worker ran on
 * (bench/README.md, "chunksize 1: two speeds").
 *
 * Prints RESULT lines (see common.h). Under mpirun (--backend mpi) every rank runs
 * this program: the master times, the other ranks serve inside rp_pool_create, so
 * every rank must create the same pools in the same order — control flow that
 * opens pools never depends on timings. The program initialises MPI itself so that
 * the pools of one run can follow each other on the same MPI_COMM_WORLD. */
#define _GNU_SOURCE /* sched_getcpu */
#include <errno.h>
#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <unistd.h>

#include <mpi.h>

#include "common.h"
#include "rankpool.h"

static struct {
    const char *backend;
    int workers;      /* local: pool size; mpi: reported, taken from the world size */
    int reps;
    int quick;
    const char *only;
    int mpi;
    int bind;         /* --bind: pool option bind (worker k on core k) */
    int placement;    /* --placement: after each chunksize-1 map, where things ran */
    struct bench_sizes sz;
    uint64_t iters_ms; /* bench_spin iterations per ms, calibrated on the master */
} g;

static int failures;

/* ---- tasks ------------------------------------------------------------------ */

static int task_square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Where a task ran: worker number and CPU, after ~20 us of work so that every
 * worker takes items (for --placement). */
static int task_where(const void *in, void *out, rp_ctx_t *ctx)
{
    double t0 = bench_now();
    while (bench_now() - t0 < 20e-6)
        ;
    *(long *)out = (long)rp_ctx_worker(ctx) * 4096 + sched_getcpu();
    return 0;
}

static int task_spin(const void *in, void *out, rp_ctx_t *ctx)
{
    *(uint64_t *)out = bench_spin(*(const uint64_t *)in);
    return 0;
}

static int task_big(const void *in, void *out, rp_ctx_t *ctx)
{
    memcpy(out, in, BENCH_ITEM_BYTES);
    ((unsigned char *)out)[0] ^= 1;
    return 0;
}

/* The batch form of task_square: a run of items in one call (vectorised). */
static int batch_square(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++)
        b[k] = a[k] * a[k];
    return 0;
}

/* ---- helpers ---------------------------------------------------------------- */

static int pool_is_master = 1;

/* Opens a pool of `workers` (local) or of every other rank (mpi). Returns NULL on
 * a serving MPI rank, after it served; exits on failure (a benchmark, not a library). */
static rp_pool_t *pool_open(int workers)
{
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = g.backend;
    o.workers = g.mpi ? 0 : workers;
    o.bind = g.bind != 0;
    rp_pool_t *p = NULL;
    rp_error_t err;
    memset(&err, 0, sizeof err);
    int rc = rp_pool_create_ex(&p, &o, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "rp_bench: rp_pool_create(%s, %d): %s: %s\n", g.backend, workers,
                rp_err_name(rc), err.message);
        exit(2);
    }
    if (!rp_pool_is_master(p)) {
        pool_is_master = 0;
        rp_pool_free(p);
        return NULL;
    }
    return p;
}

static void pool_done(rp_pool_t *p)
{
    if (!p)
        return;
    int rc = rp_pool_close(p);
    if (rc == RP_OK)
        rc = rp_pool_join(p);
    if (rc != RP_OK) {
        fprintf(stderr, "rp_bench: close/join: %s\n", rp_err_name(rc));
        failures++;
    }
    rp_pool_free(p);
}

static double timed_map(rp_pool_t *p, rp_task_fn fn, const void *in, size_t n,
                        size_t in_size, void *out, size_t out_size, size_t chunksize)
{
    rp_map_opts_t mo;
    memset(&mo, 0, sizeof mo);
    mo.chunksize = chunksize;
    rp_error_t err;
    double t0 = bench_now();
    int rc = rp_map(p, fn, in, n, in_size, out, out_size, &mo, &err);
    double t = bench_now() - t0;
    if (rc != RP_OK) {
        fprintf(stderr, "rp_bench: rp_map: %s (item %zu: %s)\n", rp_err_name(rc),
                err.index, err.message);
        failures++;
        return -1;
    }
    return t;
}

/* timed_map with a batch task. */
static double timed_batch(rp_pool_t *p, rp_batch_fn fn, const void *in, size_t n,
                          size_t in_size, void *out, size_t out_size)
{
    rp_error_t err;
    double t0 = bench_now();
    int rc = rp_map_batch(p, fn, in, n, in_size, out, out_size, NULL, &err);
    double t = bench_now() - t0;
    if (rc != RP_OK) {
        fprintf(stderr, "rp_bench: rp_map_batch: %s (item %zu: %s)\n", rp_err_name(rc),
                err.index, err.message);
        failures++;
        return -1;
    }
    return t;
}

/* rp_pool_alloc or exit (a benchmark, not a library). */
static void *shared_alloc(rp_pool_t *p, size_t bytes)
{
    void *b = rp_pool_alloc(p, bytes);
    if (!b) {
        perror("rp_bench: rp_pool_alloc");
        exit(2);
    }
    return b;
}

static char *variant_cs(char *buf, size_t len, size_t cs)
{
    if (cs)
        snprintf(buf, len, "cs=%zu", cs);
    else
        snprintf(buf, len, "auto");
    return buf;
}

/* ---- w1: trivial items ------------------------------------------------------ */

static long *squares_in(size_t n)
{
    long *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i;
    return in;
}

static int squares_ok(const long *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (out[i] != (long)i * (long)i) {
            fprintf(stderr, "rp_bench: wrong output at %zu\n", i);
            failures++;
            return 0;
        }
    return 1;
}

/* One timed map of n trivial items; reports rate and per-item cost and returns
 * the time (-1 on failure), like the other *_once. batch: with batch_square. */
static double trivial_once_as(rp_pool_t *p, const char *wl, const char *variant, int workers,
                              size_t n, size_t cs, long *in, long *out, bool batch)
{
    memset(out, 0, n * sizeof *out);
    double t = batch ? timed_batch(p, batch_square, in, n, sizeof *in, out, sizeof *out)
                     : timed_map(p, task_square, in, n, sizeof *in, out, sizeof *out, cs);
    if (t < 0 || !squares_ok(out, n))
        return -1;
    bench_result(wl, variant, workers, "time", "s", "lower", t);
    bench_result(wl, variant, workers, "rate", "Mitems/s", "higher", (double)n / t / 1e6);
    bench_result(wl, variant, workers, "per_item", "ns", "lower", t / (double)n * 1e9);
    return t;
}

static double trivial_once(rp_pool_t *p, const char *wl, const char *variant, int workers,
                           size_t n, size_t cs, long *in, long *out)
{
    return trivial_once_as(p, wl, variant, workers, n, cs, in, out, false);
}

/* --placement: the CPUs the master and each worker ran on over a short map right
 * after a measured one, as a comment line beside the RESULT lines. */
static void print_placement(rp_pool_t *p, double per_item_ns)
{
    enum { N = 2000, MAXW = 64, MAXCPU = 64 };
    static long in[N], out[N];
    unsigned char seen[MAXW][MAXCPU] = { { 0 } };
    if (rp_map(p, task_where, in, N, sizeof *in, out, sizeof *out,
               &(rp_map_opts_t){ .chunksize = 1 }, NULL) != RP_OK)
        return;
    for (int i = 0; i < N; i++) {
        long w = out[i] / 4096, c = out[i] % 4096;
        if (w >= 0 && w < MAXW && c >= 0 && c < MAXCPU)
            seen[w][c] = 1;
    }
    printf("# placement: %.1f ns/item; master on cpu %d", per_item_ns, sched_getcpu());
    for (int w = 0; w < rp_pool_size(p) && w < MAXW; w++) {
        printf("; worker %d on cpu", w);
        for (int c = 0; c < MAXCPU; c++)
            if (seen[w][c])
                printf(" %d", c);
    }
    printf("\n");
}

static void w1(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    size_t n = g.sz.n1 > g.sz.n1_cs1 ? g.sz.n1 : g.sz.n1_cs1;
    long *in = squares_in(n), *out = malloc(n * sizeof *out);
    /* shared: in and out in rp_pool_alloc buffers (used in place, no copies), with
     * the per-item task, and with a batch task (shared-batch) */
    long *sin = shared_alloc(p, g.sz.n1 * sizeof *sin), *sout = shared_alloc(p, g.sz.n1 * sizeof *sout);
    memcpy(sin, in, g.sz.n1 * sizeof *sin);
    /* one unmeasured map first: the measured ones see a pool in its steady state */
    trivial_once(p, "w1_trivial", "warmup", g.workers, g.sz.n1, 0, in, out);
    trivial_once_as(p, "w1_trivial", "warmup", g.workers, g.sz.n1, 0, sin, sout, true);
    trivial_once_as(p, "w1_trivial", "warmup", g.workers, g.sz.n1, 0, sin, sout, false);
    /* the variants take turns, each repetition starting with the next one, so a
     * change in the machine's load hits them alike (also in w2 and w3) */
    for (int r = 0; r < g.reps; r++)
        for (int k = 0; k < 4; k++) {
            if ((k + r) % 4 == 2)
                trivial_once_as(p, "w1_trivial", "shared", g.workers, g.sz.n1, 0, sin, sout,
                                false);
            else if ((k + r) % 4 == 3)
                trivial_once_as(p, "w1_trivial", "shared-batch", g.workers, g.sz.n1, 0, sin,
                                sout, true);
            else if ((k + r) % 4 == 1) {
                double t = trivial_once(p, "w1_trivial", "cs1", g.workers, g.sz.n1_cs1, 1,
                                        in, out);
                if (g.placement && t > 0)
                    print_placement(p, t / (double)g.sz.n1_cs1 * 1e9);
            } else
                trivial_once(p, "w1_trivial", "auto", g.workers, g.sz.n1, 0, in, out);
        }
    free(in);
    free(out);
    rp_pool_free_buffer(p, sin);
    rp_pool_free_buffer(p, sout);
    pool_done(p);
}

/* ---- w2: ~1 ms tasks -------------------------------------------------------- */

/* Serial time of n tasks of `iters` each, measured on this process (on a sample). */
static double serial_spin_time(const uint64_t *in, size_t n)
{
    size_t sample = n < 200 ? n : 200;
    volatile uint64_t sink = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < sample; i++)
        sink += bench_spin(in[i * (n / sample)]);
    (void)sink;
    return (bench_now() - t0) * (double)n / (double)sample;
}

static double spin_once(rp_pool_t *p, const char *wl, const char *variant, int workers,
                        const uint64_t *in, uint64_t *out, size_t n, size_t cs, double serial,
                        int cpu)
{
    double c0 = bench_cpu_seconds();
    double t = timed_map(p, task_spin, in, n, sizeof *in, out, sizeof *out, cs);
    double c = bench_cpu_seconds() - c0;
    if (t < 0)
        return -1;
    for (size_t i = 0; i < n; i += n - 1 > 0 ? n - 1 : 1) /* first and last */
        if (out[i] != bench_spin(in[i])) {
            fprintf(stderr, "rp_bench: wrong spin output at %zu\n", i);
            failures++;
            return -1;
        }
    bench_result(wl, variant, workers, "time", "s", "lower", t);
    bench_result(wl, variant, workers, "efficiency", "%", "higher",
                 100.0 * serial / ((double)workers * t));
    bench_result(wl, variant, workers, "rate", "tasks/s", "higher", (double)n / t);
    if (cpu)
        bench_result(wl, variant, workers, "master_cpu", "% of a core", "lower",
                     100.0 * c / t);
    return t;
}

static void w2(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    size_t n = g.sz.n2;
    uint64_t *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        in[i] = g.iters_ms;
    double serial = serial_spin_time(in, n);
    bench_result("w2_1ms", "serial", 1, "time", "s", "lower", serial);
    for (int r = 0; r < g.reps; r++)
        for (int k = 0; k < 2; k++) {
            bool cs1 = (k + r) % 2;
            spin_once(p, "w2_1ms", cs1 ? "cs1" : "auto", g.workers, in, out, n, cs1, serial, 1);
        }
    free(in);
    free(out);
    pool_done(p);
}

/* ---- w3: imbalanced --------------------------------------------------------- */

static uint64_t *imbalanced_in(size_t n, double *serial, double *longest)
{
    uint64_t *in = malloc(n * sizeof *in);
    uint64_t base = (uint64_t)(g.iters_ms * BENCH_W3_BASE_MS);
    for (size_t i = 0; i < n; i++)
        in[i] = bench_w3_is_long(i, n) ? base * BENCH_W3_FACTOR : base;
    /* Ideal makespan: max(total work / workers, longest item), measured. */
    volatile uint64_t sink = 0;
    double t0 = bench_now();
    for (size_t i = 0; i < n; i++)
        sink += bench_spin(in[i]);
    *serial = bench_now() - t0;
    t0 = bench_now();
    sink += bench_spin(in[0]);
    *longest = bench_now() - t0;
    (void)sink;
    return in;
}

static double imbalanced_once(rp_pool_t *p, const char *wl, const char *variant,
                              const uint64_t *in, uint64_t *out, size_t n, size_t cs,
                              double ideal)
{
    double t = timed_map(p, task_spin, in, n, sizeof *in, out, sizeof *out, cs);
    if (t < 0)
        return -1;
    bench_result(wl, variant, g.workers, "makespan", "s", "lower", t);
    bench_result(wl, variant, g.workers, "vs_ideal", "x ideal", "lower", t / ideal);
    return t;
}

static void w3(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    size_t n = g.sz.n3;
    double serial, longest;
    uint64_t *in = imbalanced_in(n, &serial, &longest), *out = malloc(n * sizeof *out);
    double ideal = serial / g.workers > longest ? serial / g.workers : longest;
    bench_result("w3_imbalanced", "ideal", g.workers, "makespan", "s", "lower", ideal);
    /* auto and Python's formula alternate, as in w1 */
    size_t pycs = bench_py_chunksize(n, g.workers);
    for (int r = 0; r < g.reps; r++)
        for (int k = 0; k < 2; k++) {
            bool py = (k + r) % 2;
            imbalanced_once(p, "w3_imbalanced", py ? "pyformula" : "auto", in, out, n,
                            py ? pycs : 0, ideal);
        }
    free(in);
    free(out);
    pool_done(p);
}

/* ---- w4: large items -------------------------------------------------------- */

static double big_once(rp_pool_t *p, const char *wl, const char *variant, unsigned char *in,
                       unsigned char *out, size_t n, size_t cs)
{
    double t = timed_map(p, task_big, in, n, BENCH_ITEM_BYTES, out, BENCH_ITEM_BYTES, cs);
    if (t < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *a = in + i * BENCH_ITEM_BYTES, *b = out + i * BENCH_ITEM_BYTES;
        if (b[0] != (a[0] ^ 1) || b[BENCH_ITEM_BYTES - 1] != a[BENCH_ITEM_BYTES - 1]) {
            fprintf(stderr, "rp_bench: wrong large output at %zu\n", i);
            failures++;
            return -1;
        }
    }
    bench_result(wl, variant, g.workers, "time", "s", "lower", t);
    bench_result(wl, variant, g.workers, "throughput", "MiB/s in", "higher",
                 (double)n / t);
    return t;
}

static unsigned char *big_in(size_t n)
{
    unsigned char *in = malloc(n * BENCH_ITEM_BYTES);
    for (size_t i = 0; i < n * BENCH_ITEM_BYTES; i++)
        in[i] = (unsigned char)(i * 131 + (i >> 20));
    return in;
}

static void w4(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    size_t n = g.sz.n4;
    unsigned char *in = big_in(n), *out = malloc(n * BENCH_ITEM_BYTES);
    memset(out, 0, n * BENCH_ITEM_BYTES);
    /* shared: in and out in rp_pool_alloc buffers (no copies) */
    unsigned char *sin = shared_alloc(p, n * BENCH_ITEM_BYTES);
    unsigned char *sout = shared_alloc(p, n * BENCH_ITEM_BYTES);
    memcpy(sin, in, n * BENCH_ITEM_BYTES);
    memset(sout, 0, n * BENCH_ITEM_BYTES);
    big_once(p, "w4_large", "warmup", in, out, n, 0);
    big_once(p, "w4_large", "warmup", sin, sout, n, 0);
    for (int r = 0; r < g.reps; r++)
        for (int k = 0; k < 2; k++) {
            if ((k + r) % 2)
                big_once(p, "w4_large", "shared", sin, sout, n, 0);
            else
                big_once(p, "w4_large", "auto", in, out, n, 0);
        }
    free(in);
    free(out);
    rp_pool_free_buffer(p, sin);
    rp_pool_free_buffer(p, sout);
    pool_done(p);
}

/* ---- w5: apply round trips -------------------------------------------------- */

static void w5(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    size_t k = g.sz.k5;
    double *lat = malloc(k * sizeof *lat);
    for (int r = 0; r < g.reps + 1; r++) {
        int bad = 0;
        for (size_t i = 0; i < k; i++) {
            long x = (long)i, y = 0;
            double t0 = bench_now();
            int rc = rp_apply(p, task_square, &x, sizeof x, &y, sizeof y, NULL);
            lat[i] = bench_now() - t0;
            if (rc != RP_OK || y != x * x)
                bad = 1;
        }
        if (bad) {
            fprintf(stderr, "rp_bench: rp_apply failed or gave a wrong result\n");
            failures++;
            break;
        }
        if (r == 0)
            continue; /* warm-up */
        bench_result("w5_apply", "roundtrip", g.workers, "median", "us", "lower",
                     bench_median(lat, k) * 1e6);
        bench_result("w5_apply", "roundtrip", g.workers, "p90", "us", "lower",
                     lat[(size_t)(0.9 * (double)(k - 1))] * 1e6);
    }
    free(lat);
    pool_done(p);
}

/* ---- w6: pool start + stop -------------------------------------------------- */

static void w6(void)
{
    size_t k = g.sz.k6;
    double *tj = malloc(k * sizeof *tj), *tf = malloc(k * sizeof *tf);
    for (int r = 0; r < g.reps; r++) {
        for (size_t i = 0; i < k; i++) {
            double t0 = bench_now();
            rp_pool_t *p = pool_open(g.workers);
            if (!p)
                continue;
            int rc = rp_pool_close(p);
            if (rc == RP_OK)
                rc = rp_pool_join(p);
            tj[i] = bench_now() - t0;
            rp_pool_free(p);
            tf[i] = bench_now() - t0;
            if (rc != RP_OK)
                failures++;
        }
        if (!pool_is_master)
            continue;
        bench_result("w6_startstop", "create+close+join", g.workers, "median", "ms",
                     "lower", bench_median(tj, k) * 1e3);
        bench_result("w6_startstop", "create+close+join+free", g.workers, "median", "ms",
                     "lower", bench_median(tf, k) * 1e3);
    }
    free(tj);
    free(tf);
}

/* ---- w7: scaling with the number of workers ---------------------------------- */

static void scale_one(int workers)
{
    rp_pool_t *p = pool_open(workers);
    if (!p)
        return;
    if (g.mpi)
        workers = rp_pool_size(p);
    char variant[32];
    snprintf(variant, sizeof variant, "%d", workers);
    size_t n1 = g.sz.n1, ncs1 = g.sz.n1_cs1 / 4, n2 = g.sz.n2_sweep;
    long *in = squares_in(n1), *out = malloc(n1 * sizeof *out);
    uint64_t *sin = malloc(n2 * sizeof *sin), *sout = malloc(n2 * sizeof *sout);
    for (size_t i = 0; i < n2; i++)
        sin[i] = g.iters_ms;
    double serial = serial_spin_time(sin, n2);
    int reps = g.reps > 3 ? 3 : g.reps;
    trivial_once(p, "w7_warmup", variant, workers, n1, 0, in, out);
    for (int r = 0; r < reps; r++)
        trivial_once(p, "w7_scale_trivial", variant, workers, n1, 0, in, out);
    for (int r = 0; r < reps; r++)
        trivial_once(p, "w7_scale_cs1", variant, workers, ncs1, 1, in, out);
    for (int r = 0; r < reps; r++)
        spin_once(p, "w7_scale_1ms", variant, workers, sin, sout, n2, 0, serial, 0);
    free(in);
    free(out);
    free(sin);
    free(sout);
    pool_done(p);
}

static void w7(void)
{
    if (g.mpi) {
        scale_one(0); /* the world size decides: bench/run launches -np 2..5 */
        return;
    }
    /* 1, 2, 4, ... and W itself */
    for (int w = 1; w <= g.workers; w = (w < g.workers && 2 * w > g.workers) ? g.workers : 2 * w)
        scale_one(w);
}

/* ---- chunksize sweep: automatic chunking against fixed chunksizes ---------- */

#define ROT(c, r, k) (((c) + (size_t)(r)) % (k))

/* Rounds of a sweep whose rounds take about `round_s` each: enough that every
 * chunksize gets many samples when a run lasts milliseconds (a median of three
 * 2 ms runs on a shared machine is mostly noise), at least min(reps, 3), and about
 * SWEEP_BUDGET_S of running per workload (a tenth of it with --quick). */
#define SWEEP_BUDGET_S 5.0
#define SWEEP_ROUNDS_MAX 60

static int sweep_rounds(double round_s)
{
    int lo = g.reps > 3 ? 3 : g.reps;
    double budget = g.quick ? SWEEP_BUDGET_S / 10 : SWEEP_BUDGET_S;
    double r = round_s > 0 ? budget / round_s : lo;
    if (r > SWEEP_ROUNDS_MAX)
        r = SWEEP_ROUNDS_MAX;
    return r > lo ? (int)r : lo;
}

/* The shorter of two warm-up times (the first map after another workload may
 * pay for it), or -1 when both failed. */
static double warm_time(double a, double b)
{
    if (a < 0 || (b >= 0 && b < a))
        return b;
    return a;
}

static void sweep(void)
{
    rp_pool_t *p = pool_open(g.workers);
    if (!p)
        return;
    /* Every chunksize once per round, rounds repeated, and each round starts at the
     * next chunksize (ROT): drift in the machine's load, and whatever the first run
     * after another workload pays, hit every chunksize alike. The number of rounds
     * follows from the warm-up's time (sweep_rounds). */
    int rounds;
    char v[32];

    /* w1: trivial items */
    size_t n1 = g.sz.n1;
    size_t cs1[] = {0, 64, 1024, 16384, bench_py_chunksize(n1, g.workers)};
    size_t k1 = sizeof cs1 / sizeof *cs1;
    long *in = squares_in(n1), *out = malloc(n1 * sizeof *out);
    double t1 = warm_time(trivial_once(p, "sweep_warmup", "auto", g.workers, n1, 0, in, out),
                          trivial_once(p, "sweep_warmup", "auto", g.workers, n1, 0, in, out));
    rounds = sweep_rounds(t1 * (double)k1);
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0, c = ROT(i, r, k1); i < k1; i++, c = ROT(i, r, k1))
            trivial_once(p, "sweep_w1", variant_cs(v, sizeof v, cs1[c]), g.workers, n1,
                         cs1[c], in, out);
    free(in);
    free(out);

    /* w2: 1 ms tasks */
    size_t n2 = g.sz.n2_sweep;
    size_t cs2[] = {0, 1, 2, 4, 8, 16, bench_py_chunksize(n2, g.workers)};
    size_t k2 = sizeof cs2 / sizeof *cs2;
    uint64_t *sin = malloc(n2 * sizeof *sin), *sout = malloc(n2 * sizeof *sout);
    for (size_t i = 0; i < n2; i++)
        sin[i] = g.iters_ms;
    double serial = serial_spin_time(sin, n2);
    double t2 = spin_once(p, "sweep_warmup", "auto", g.workers, sin, sout, n2, 0, serial, 0);
    rounds = sweep_rounds(t2 * (double)k2);
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0, c = ROT(i, r, k2); i < k2; i++, c = ROT(i, r, k2))
            spin_once(p, "sweep_w2", variant_cs(v, sizeof v, cs2[c]), g.workers, sin, sout,
                      n2, cs2[c], serial, 0);
    free(sin);
    free(sout);

    /* w3: imbalanced */
    size_t n3 = g.sz.n3;
    size_t cs3[] = {0, 1, 2, 4, 8, 16, 32, bench_py_chunksize(n3, g.workers)};
    size_t k3 = sizeof cs3 / sizeof *cs3;
    double ser3, longest;
    uint64_t *iin = imbalanced_in(n3, &ser3, &longest), *iout = malloc(n3 * sizeof *iout);
    double ideal = ser3 / g.workers > longest ? ser3 / g.workers : longest;
    double t3 = imbalanced_once(p, "sweep_warmup", "auto", iin, iout, n3, 0, ideal);
    rounds = sweep_rounds(t3 * (double)k3);
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0, c = ROT(i, r, k3); i < k3; i++, c = ROT(i, r, k3))
            imbalanced_once(p, "sweep_w3", variant_cs(v, sizeof v, cs3[c]), iin, iout, n3,
                            cs3[c], ideal);
    free(iin);
    free(iout);

    /* w4: large items */
    size_t n4 = g.sz.n4;
    size_t cs4[] = {0, 1, 2, 4, bench_py_chunksize(n4, g.workers)};
    size_t k4 = sizeof cs4 / sizeof *cs4;
    unsigned char *bin = big_in(n4), *bout = malloc(n4 * BENCH_ITEM_BYTES);
    memset(bout, 0, n4 * BENCH_ITEM_BYTES);
    double t4 = warm_time(big_once(p, "sweep_warmup", "auto", bin, bout, n4, 0),
                          big_once(p, "sweep_warmup", "auto", bin, bout, n4, 0));
    rounds = sweep_rounds(t4 * (double)k4);
    for (int r = 0; r < rounds; r++)
        for (size_t i = 0, c = ROT(i, r, k4); i < k4; i++, c = ROT(i, r, k4))
            big_once(p, "sweep_w4", variant_cs(v, sizeof v, cs4[c]), bin, bout, n4, cs4[c]);
    free(bin);
    free(bout);
    pool_done(p);
}

/* ---- main --------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: rp_bench [--backend local|mpi] [--workers W] [--reps R] "
                    "[--quick] [--bind] [--placement] [--only w1,...,w7,sweep]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    g.backend = "local";
    g.workers = (int)sysconf(_SC_NPROCESSORS_ONLN);
    g.reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--backend") && i + 1 < argc)
            g.backend = argv[++i];
        else if (!strcmp(argv[i], "--workers") && i + 1 < argc)
            g.workers = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            g.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--quick"))
            g.quick = 1;
        else if (!strcmp(argv[i], "--bind"))
            g.bind = 1;
        else if (!strcmp(argv[i], "--placement"))
            g.placement = 1;
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            g.only = argv[++i];
        else
            usage();
    }
    if (g.workers < 1 || g.reps < 1)
        usage();
    g.sz = bench_sizes(g.quick);
    g.mpi = !strcmp(g.backend, "mpi");

    int rank = 0;
    if (g.mpi) {
        /* Initialised here (not by the pool) so that several pools can follow each
         * other: a pool that initialised MPI itself finalises it when freed. */
        int provided;
        MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
        int size;
        MPI_Comm_rank(MPI_COMM_WORLD, &rank);
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        g.workers = size - 1;
        if (size < 2) {
            fprintf(stderr, "rp_bench: --backend mpi needs mpirun -np 2 or more\n");
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    bench_impl = g.mpi ? "rankpool-mpi" : "rankpool-local";
    if (rank == 0)
        g.iters_ms = bench_calibrate();

    if (bench_wants(g.only, "w1"))
        w1();
    if (bench_wants(g.only, "w2"))
        w2();
    if (bench_wants(g.only, "w3"))
        w3();
    if (bench_wants(g.only, "w4"))
        w4();
    if (bench_wants(g.only, "w5"))
        w5();
    if (bench_wants(g.only, "w6"))
        w6();
    if (bench_wants(g.only, "w7"))
        w7();
    if (bench_wants(g.only, "sweep"))
        sweep();

    if (g.mpi)
        MPI_Finalize();
    return failures ? 1 : 0;
}
