/* The long-stream benchmark: n items of 8 bytes (a long, squared by the task)
 * through an imap, the master's memory measured as it goes.
 *
 *   stream SOURCE N [DELAY_NS [WORKERS [BUFFERSIZE]]]
 *
 * SOURCE is "producer" (rp_imap_producer: the items are counted up by a producer,
 * nothing exists up front) or "array" (rp_imap over an array of N longs made
 * before the measurement starts). DELAY_NS: the consumer spins that long after
 * each item (a slow consumer). The master's resident set (VmRSS of
 * /proc/self/status) is read after the pool is created ("start") and every 2^16
 * items; the peak is the highest of those and VmHWM at the end.
 * Prints RESULT lines (bench/common.h): rss_start_mb, rss_peak_growth_mb,
 * items_per_s. Exit status 1 if an output is wrong. */
#include "common.h"

#include <rankpool.h>

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

struct count {
    long next, n;
};

static int count_up(void *item, void *userdata)
{
    struct count *c = userdata;
    if (c->next == c->n)
        return 0;
    *(long *)item = c->next++;
    return 1;
}

/* A line of /proc/self/status in kB ("VmRSS:", "VmHWM:"), -1 if not found. */
static long status_kb(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    size_t len = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, len) == 0) {
            kb = strtol(line + len, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

static void busy_ns(long ns)
{
    if (ns <= 0)
        return;
    double until = bench_now() + (double)ns * 1e-9;
    while (bench_now() < until)
        ;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s producer|array N [DELAY_NS [WORKERS [BUFFERSIZE]]]\n",
                argv[0]);
        return 2;
    }
    int array = strcmp(argv[1], "array") == 0;
    long n = (long)strtod(argv[2], NULL);
    long delay = argc > 3 ? strtol(argv[3], NULL, 10) : 0;
    int workers = argc > 4 ? atoi(argv[4]) : 0;
    size_t buffersize = argc > 5 ? (size_t)strtoull(argv[5], NULL, 10) : 0;

    long *in = NULL;
    if (array) {
        in = malloc((size_t)n * sizeof *in);
        if (!in)
            return 2;
        for (long i = 0; i < n; i++)
            in[i] = i;
    }
    rp_pool_opts_t po = { .workers = workers };
    rp_pool_t *pool;
    if (rp_pool_create(&pool, &po) != RP_OK)
        return 2;
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
    long start_kb = status_kb("VmRSS:"), peak_kb = start_kb;
    rp_map_opts_t mo = { .buffersize = buffersize };
    struct count c = { 0, n };
    rp_iter_t *it;
    double t0 = bench_now();
    int rc = array ? rp_imap(pool, square, in, (size_t)n, sizeof(long), sizeof(long), &mo, &it)
                   : rp_imap_producer(pool, square, count_up, &c, sizeof(long), sizeof(long),
                                      &mo, &it);
    if (rc != RP_OK) {
        fprintf(stderr, "imap: %s\n", rp_strerror(rc));
        return 2;
    }
    long got = 0, wrong = 0, v;
    size_t idx;
    while ((rc = rp_iter_next(it, RP_FOREVER, &idx, &v, NULL)) == RP_OK) {
        wrong += idx != (size_t)got || v != (long)(idx * idx);
        got++;
        busy_ns(delay);
        if ((got & 0xffff) == 0) {
            long kb = status_kb("VmRSS:");
            if (kb > peak_kb)
                peak_kb = kb;
        }
    }
    double t = bench_now() - t0;
    rp_iter_free(it);
    long hwm = status_kb("VmHWM:");
    if (hwm > peak_kb)
        peak_kb = hwm;
    int size = rp_pool_size(pool);
    const char *backend = rp_pool_backend(pool);
    rp_pool_free(pool);
    free(in);
    char variant[64], impl[32];
    snprintf(variant, sizeof variant, "%s-n%.0e-delay%ld", array ? "array" : "producer",
             (double)n, delay);
    snprintf(impl, sizeof impl, "rankpool-%s", backend);
    printf("RESULT\tstream\t%s\t%s\t%d\trss_start_mb\tMB\tlower\t%.1f\n", variant, impl, size,
           start_kb / 1024.0);
    printf("RESULT\tstream\t%s\t%s\t%d\trss_peak_growth_mb\tMB\tlower\t%.1f\n", variant, impl,
           size, (peak_kb - start_kb) / 1024.0);
    printf("RESULT\tstream\t%s\t%s\t%d\titems_per_s\titems/s\thigher\t%.0f\n", variant, impl,
           size, got / t);
    if (got != n || wrong || rc != RP_DONE) {
        fprintf(stderr, "stream: %ld of %ld items, %ld wrong, ended with %s\n", got, n, wrong,
                rp_err_name(rc));
        return 1;
    }
    return 0;
}
