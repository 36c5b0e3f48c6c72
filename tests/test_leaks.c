/* Nothing is left behind by the local backend: hundreds of pools created, used
 * and freed in one process leave the same descriptors, memory mappings, threads
 * and child processes as before (counted in /proc/self). */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

/* Mappings: a few may come from the allocator growing (malloc arenas, sanitizer
 * pools); one per pool would be hundreds. */
#define MAPS_SLACK 8

struct counts {
    int fds, maps, threads, children;
};

static int count_dir(const char *path)
{
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1 * (strcmp(path, "/proc/self/fd") == 0); /* the DIR's own fd */
}

static int count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    int n = 0, c;
    while ((c = fgetc(f)) != EOF)
        n += c == '\n';
    fclose(f);
    return n;
}

static struct counts measure(void)
{
    struct counts c;
    c.fds = count_dir("/proc/self/fd");
    c.maps = count_lines("/proc/self/maps");
    c.threads = count_dir("/proc/self/task");
    c.children = tu_count_children();
    return c;
}

/* Threads and children may take a moment to disappear from /proc. */
static struct counts settle(struct counts want)
{
    struct counts c = measure();
    for (int t = 0; t < 200; t++) {
        if (c.fds == want.fds && c.maps <= want.maps + MAPS_SLACK && c.threads == want.threads
            && c.children == want.children)
            break;
        usleep(5000);
        c = measure();
    }
    return c;
}

static void check_same(struct counts before, struct counts after)
{
    CU_ASSERT_EQUAL(after.fds, before.fds);
    CU_ASSERT(after.maps <= before.maps + MAPS_SLACK);
    CU_ASSERT_EQUAL(after.threads, before.threads);
    CU_ASSERT_EQUAL(after.children, before.children);
    if (after.fds != before.fds || after.maps > before.maps + MAPS_SLACK
        || after.threads != before.threads
        || after.children != before.children)
        fprintf(stderr, "\n  before: fds %d maps %d threads %d children %d"
                        "\n  after:  fds %d maps %d threads %d children %d\n",
                before.fds, before.maps, before.threads, before.children, after.fds, after.maps,
                after.threads, after.children);
}

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int crash_on_3(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == 3)
        raise(SIGSEGV);
    *(long *)out = x * x;
    return 0;
}

static int sleepy(const void *in, void *out, rp_ctx_t *ctx)
{
    sleep(60);
    return 0;
}

static int divisors(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in + 1;
    long *d = rp_output(ctx, 64 * sizeof(long));
    if (!d)
        return rp_raise(ctx, 1, "no room");
    long k = 0;
    for (long i = 1; i <= x && k < 64; i++)
        if (x % i == 0)
            d[k++] = i;
    rp_output(ctx, (size_t)k * sizeof(long));  /* replaces: only k of them */
    d = rp_output(ctx, (size_t)k * sizeof(long));
    k = 0;
    for (long i = 1; i <= x && k < 64; i++)
        if (x % i == 0)
            d[k++] = i;
    return 0;
}

static rp_pool_t *make(int workers)
{
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = "local";
    o.workers = workers;
    rp_pool_t *p = NULL;
    if (rp_pool_create(&p, &o) != RP_OK)
        return NULL;
    return p;
}

static long in_items[1000];

static void fill(void)
{
    for (long i = 0; i < 1000; i++)
        in_items[i] = i;
}

/* Warm-up: lazily initialised library state (hwloc, atfork handlers, stdio)
 * is not a leak. */
static void warm_up(void)
{
    rp_pool_t *p = make(2);
    if (p) {
        long out[1000];
        rp_map(p, square, in_items, 1000, sizeof(long), out, sizeof(long), NULL, NULL);
        rp_pool_close(p);
        rp_pool_join(p);
        rp_pool_free(p);
    }
}

static void test_leaks_create_free(void)
{
    fill();
    warm_up();
    struct counts before = measure();
    for (int k = 0; k < 300; k++) {
        rp_pool_t *p = make(1 + k % 3);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        long out[1000];
        CU_ASSERT_EQUAL(rp_map(p, square, in_items, 1000, sizeof(long), out, sizeof(long), NULL,
                               NULL),
                        RP_OK);
        CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        rp_pool_free(p);
    }
    check_same(before, settle(before));
}

static void test_leaks_failures(void)
{
    fill();
    warm_up();
    struct counts before = measure();
    /* k == -1 warms up: malloc arenas of the pool thread are reused, not leaked */
    for (int k = -1; k < 50; k++) {
        if (k == 0)
            before = measure();
        rp_pool_t *p = make(2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        long out[100];
        rp_map_opts_t mo = { .chunksize = 2 };
        CU_ASSERT_EQUAL(rp_map(p, crash_on_3, in_items, 100, sizeof(long), out, sizeof(long), &mo,
                               NULL),
                        RP_EWORKER);
        rp_varout_t *vo = NULL;
        CU_ASSERT_EQUAL(rp_map_var(p, divisors, in_items, 100, sizeof(long), NULL, &vo, NULL),
                        RP_OK);
        rp_varout_free(vo);
        rp_result_t *r;
        CU_ASSERT_EQUAL(rp_map_async(p, sleepy, in_items, 4, sizeof(long), NULL, 0, NULL, &r),
                        RP_OK);
        if (k % 2) {
            CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
            CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        }
        rp_pool_free(p);  /* terminates if needed */
        CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ECANCELED);
        rp_result_free(r);
    }
    check_same(before, settle(before));
}

/* A pool whose creation fails (initializer) leaves nothing either. */
static int bad_init(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 1, "no");
}

static void test_leaks_failed_create(void)
{
    warm_up();
    struct counts before = measure();
    for (int k = 0; k < 50; k++) {
        rp_pool_opts_t o;
        memset(&o, 0, sizeof o);
        o.backend = "local";
        o.workers = 2;
        o.initializer = bad_init;
        rp_pool_t *p;
        CU_ASSERT_EQUAL(rp_pool_create(&p, &o), RP_EINIT);
    }
    check_same(before, settle(before));
}

/* Big outputs do not stay resident once the pool is free (the region is
 * unmapped), nor grow without bound while it lives. */
static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "RssShmem: %ld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void test_leaks_shared_memory(void)
{
    size_t n = 4 << 20;  /* 32 MB in, 32 MB out */
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i;
    long before = rss_kb();
    for (int k = 0; k < 5; k++) {
        rp_pool_t *p = make(2);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
        for (int j = 0; j < 3; j++)
            CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof(long), out, sizeof(long), NULL, NULL),
                            RP_OK);
        rp_pool_close(p);
        rp_pool_join(p);
        rp_pool_free(p);
    }
    long after = rss_kb();
    CU_ASSERT(after >= 0 && after <= before + 1024);
    free(in);
    free(out);
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);
    static const tu_test tests[] = {
        TU_TEST(test_leaks_create_free),
        TU_TEST(test_leaks_failures),
        TU_TEST(test_leaks_failed_create),
        TU_TEST(test_leaks_shared_memory),
        TU_END,
    };
    return tu_run("leaks", tests, argc, argv);
}
