/* Shared buffers (rp_pool_alloc) and batch tasks (rp_map_batch), the same on both
 * backends: this program runs locally and under mpirun with RP_BACKEND=mpi
 * (tests/mpi-np2.sh). Every rank runs the same pool creations (tu_pool); serving
 * ranks get NULL and skip the body. Maps whose input and output lie in a shared
 * buffer, in place, are correct on both; on the local backend the workers read
 * and write the buffer itself (a worker's output is visible while the job still
 * runs; an input changed after the submit is what the task reads). Batch tasks:
 * runs of items, failures named with rp_raise_at, a call that fails as a whole,
 * a crash inside a call; bad frees and sizes are refused. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <stdint.h>
#include <sys/resource.h>

static long target; /* the item a crashing task dies on (set on every rank) */

/* ---- tasks --------------------------------------------------------------------- */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int square_batch(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++)
        b[k] = a[k] * a[k];
    return 0;
}

/* Writes x*x and the length of the call it ran in. */
struct sq_run {
    long sq, run;
};
static int square_run_batch(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    struct sq_run *b = out;
    for (size_t k = 0; k < count; k++) {
        b[k].sq = a[k] * a[k];
        b[k].run = (long)count;
    }
    return 0;
}

/* Stops at every item ending in 7 (x % 1000 == 7), naming it. */
static int stop_at_sevens(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++) {
        if (a[k] % 1000 == 7)
            return rp_raise_at(ctx, first + k, 42, "item %ld refused", a[k]);
        b[k] = a[k] * a[k];
    }
    return 0;
}

/* Names every item ending in 7 and goes on; returns 0. */
static int skip_sevens(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++) {
        if (a[k] % 1000 == 7)
            rp_raise_at(ctx, first + k, 43, "item %ld skipped", a[k]);
        else
            b[k] = a[k] * a[k];
    }
    return 0;
}

/* A call that holds item `target` fails as a whole, naming nothing. */
static int fail_call(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++) {
        if (a[k] == target)
            return -1;
        b[k] = a[k] * a[k];
    }
    return 0;
}

/* A call that holds item `target` crashes its worker. */
static int crash_call(const void *in, void *out, size_t count, size_t first, rp_ctx_t *ctx)
{
    const long *a = in;
    long *b = out;
    for (size_t k = 0; k < count; k++) {
        if (a[k] == target)
            raise(SIGSEGV);
        b[k] = a[k] * a[k];
    }
    return 0;
}

static int segv_item(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target)
        raise(SIGSEGV);
    *(long *)out = x * x;
    return 0;
}

/* Writes its output, then waits (up to 10 s) for the master to set the flag just
 * before its input: the master sets it once it sees the output in place. */
static int wait_for_flag(const void *in, void *out, rp_ctx_t *ctx)
{
    volatile const long *flag = (volatile const long *)in - 1;
    *(volatile long *)out = 1000;
    double end = tu_now() + 10;
    while (*flag == 0 && tu_now() < end)
        tu_sleep(0.001);
    if (*flag == 0)
        return rp_raise(ctx, RP_ETASK, "the master never saw the output in place");
    return 0;
}

/* ---- helpers ------------------------------------------------------------------- */

static bool is_local(rp_pool_t *p)
{
    return strcmp(rp_pool_backend(p), "local") == 0;
}

static long *shared_iota(rp_pool_t *p, size_t n)
{
    long *v = rp_pool_alloc(p, n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (long)i;
    return v;
}

/* ---- shared buffers ------------------------------------------------------------ */

static void test_buffers_inplace_map(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 300000 };
    long *v = shared_iota(p, N);
    CU_ASSERT_EQUAL(((uintptr_t)v) % 64, 0);
    CU_ASSERT_EQUAL(rp_map(p, square, v, N, sizeof(long), v, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, N), 0);
    /* input shared, output ordinary; and the other way round */
    long *out = malloc(N * sizeof *out), *in = tu_iota(N);
    for (size_t i = 0; i < N; i++)
        v[i] = (long)i;
    CU_ASSERT_EQUAL(rp_map(p, square, v, N, sizeof(long), out, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, N), 0);
    memset(v, 0, N * sizeof *v);
    CU_ASSERT_EQUAL(rp_map(p, square, in, N, sizeof(long), v, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, N), 0);
    /* a part of a buffer; an iterator over a shared input */
    for (size_t i = 0; i < N; i++)
        v[i] = (long)i;
    CU_ASSERT_EQUAL(rp_map(p, square, v + 1000, 5000, sizeof(long), v + 1000, sizeof(long),
                           NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(v[999], 999);
    CU_ASSERT_EQUAL(v[1000], 1000L * 1000);
    CU_ASSERT_EQUAL(v[5999], 5999L * 5999);
    CU_ASSERT_EQUAL(v[6000], 6000);
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square, in, 1000, sizeof(long), sizeof(long), NULL, &it),
                          RP_OK);
    size_t idx, got = 0;
    long y;
    while (rp_iter_next(it, 30, &idx, &y, NULL) == RP_OK)
        got += y == (long)(idx * idx);
    CU_ASSERT_EQUAL(got, 1000);
    rp_iter_free(it);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, v), RP_OK);
    free(out);
    free(in);
    tu_pool_done(p);
}

/* Local: a worker writes its output into the buffer itself, so the master sees it
 * while the job is still running (item 0 waits for the master's word). */
static void test_buffers_outputs_in_place(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long *v = rp_pool_alloc(p, 4 * sizeof(long));
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    if (is_local(p)) {
        /* v[0] flag, in = {v[1]} (index 0), out = v[2] */
        v[0] = 0;
        v[1] = 5;
        v[2] = 0;
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, wait_for_flag, &v[1], 1, sizeof(long), &v[2],
                                           sizeof(long), NULL, &r), RP_OK);
        double end = tu_now() + 10;
        while (((volatile long *)v)[2] != 1000 && tu_now() < end)
            tu_sleep(0.001);
        bool seen = ((volatile long *)v)[2] == 1000;
        CU_ASSERT(seen);
        CU_ASSERT_FALSE(seen && rp_result_ready(r)); /* seen before the job ended */
        ((volatile long *)v)[0] = 1;
        rp_error_t e;
        int rc = rp_result_get(r, RP_FOREVER, &e);
        CU_ASSERT_EQUAL(rc, RP_OK);
        if (rc != RP_OK)
            printf("  %s\n", e.message);
        rp_result_free(r);
    }
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, v), RP_OK);
    tu_pool_done(p);
}

/* Local: the task reads the input in the buffer, not a copy made at submit: an
 * input changed after the submit (before the worker reads it) is what it gets. */
static int read_late(const void *in, void *out, rp_ctx_t *ctx)
{
    volatile const long *x = in;
    volatile const long *flag = x - 1;
    double end = tu_now() + 10;
    while (*flag == 0 && tu_now() < end)
        tu_sleep(0.001);
    *(long *)out = *x;
    return 0;
}

static void test_buffers_inputs_in_place(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    if (is_local(p)) {
        long *v = rp_pool_alloc(p, 2 * sizeof(long));
        CU_ASSERT_PTR_NOT_NULL_FATAL(v);
        v[0] = 0; /* the flag */
        v[1] = 1;
        long out = 0;
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, read_late, &v[1], 1, sizeof(long), &out,
                                           sizeof(long), NULL, &r), RP_OK);
        ((volatile long *)v)[1] = 77;
        ((volatile long *)v)[0] = 1;
        CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
        rp_result_free(r);
        CU_ASSERT_EQUAL(out, 77);
        CU_ASSERT_EQUAL(rp_pool_free_buffer(p, v), RP_OK);
    }
    tu_pool_done(p);
}

static void test_buffers_bad_free_and_sizes(void)
{
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p)
        return;
    errno = 0;
    CU_ASSERT_PTR_NULL(rp_pool_alloc(p, 0));
    CU_ASSERT_EQUAL(errno, EINVAL);
    errno = 0;
    CU_ASSERT_PTR_NULL(rp_pool_alloc(p, SIZE_MAX));
    CU_ASSERT_EQUAL(errno, ENOMEM);
    errno = 0;
    CU_ASSERT_PTR_NULL(rp_pool_alloc(p, (size_t)1 << 60));
    CU_ASSERT_EQUAL(errno, ENOMEM);
    errno = 0;
    CU_ASSERT_PTR_NULL(rp_pool_alloc(NULL, 64));
    CU_ASSERT_EQUAL(errno, EINVAL);
    char *b = rp_pool_alloc(p, 1000);
    CU_ASSERT_PTR_NOT_NULL_FATAL(b);
    char *m = malloc(16);
    long on_stack;
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, m), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, &on_stack), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, b + 8), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(NULL, b), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, NULL), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, b), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, b), RP_EINVAL); /* twice */
    free(m);
    /* the pool still works, and a buffer not freed goes with the pool */
    long *v = shared_iota(p, 1000);
    CU_ASSERT_EQUAL(rp_map(p, square, v, 1000, sizeof(long), v, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, 1000), 0);
    tu_pool_done(p);
}

/* One worker: the replacement of a worker that crashed works on the same buffer. */
static void test_buffers_replacement_sees_buffer(void)
{
    target = 50;
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p)
        return;
    enum { N = 200 };
    long *v = shared_iota(p, N);
    rp_map_opts_t o = { .chunksize = 10 };
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, segv_item, v, N, sizeof(long), v, sizeof(long), &o, &e),
                    RP_EWORKER);
    CU_ASSERT_EQUAL(e.index, 50);
    for (size_t i = 0; i < N; i++)
        if (i != 50)
            CU_ASSERT_EQUAL(v[i], (long)(i * i));
    for (size_t i = 0; i < N; i++)
        v[i] = (long)i;
    CU_ASSERT_EQUAL(rp_map(p, square, v, N, sizeof(long), v, sizeof(long), &o, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, N), 0);
    tu_pool_done(p);
}

/* ---- batch tasks --------------------------------------------------------------- */

static void test_buffers_batch_map(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 1000000 };
    long *v = shared_iota(p, N);
    CU_ASSERT_EQUAL(rp_map_batch(p, square_batch, v, N, sizeof(long), v, sizeof(long), NULL,
                                 NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, N), 0);
    /* ordinary memory; calls get runs of items (at most a chunk) */
    long *in = tu_iota(N);
    struct sq_run *out = calloc(N, sizeof *out);
    rp_map_opts_t o = { .chunksize = 1000 };
    CU_ASSERT_EQUAL(rp_map_batch(p, square_run_batch, in, N, sizeof(long), out, sizeof *out, &o,
                                 NULL), RP_OK);
    int wrong = 0, longer = 0;
    for (size_t i = 0; i < N; i++) {
        wrong += out[i].sq != (long)(i * i);
        longer += out[i].run > 1000;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(longer, 0);
    CU_ASSERT_EQUAL(out[0].run, 1000);
    /* a callback, asynchronously */
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_batch_async(p, square_batch, in, 10, sizeof(long), v,
                                             sizeof(long), NULL, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(v[9], 81);
    rp_result_free(r);
    CU_ASSERT_EQUAL(rp_map_batch(p, NULL, in, 10, sizeof(long), v, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* Checks a map of squares of 0..n-1 in which exactly the items x % 1000 == 7 failed
 * with RP_ETASK, task_code and a message containing `word`. */
static void check_sevens(rp_pool_t *p, rp_batch_fn fn, int task_code, const char *word)
{
    enum { N = 20000 };
    long *in = tu_iota(N), *out = calloc(N, sizeof *out);
    rp_result_t *r;
    rp_map_opts_t o = { .chunksize = 512 };
    CU_ASSERT_EQUAL_FATAL(rp_map_batch_async(p, fn, in, N, sizeof(long), out, sizeof(long), &o, &r),
                          RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 7);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), N / 1000);
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *ek = rp_result_error(r, k);
        CU_ASSERT_EQUAL(ek->index, k * 1000 + 7);
        CU_ASSERT_EQUAL(ek->code, RP_ETASK);
        CU_ASSERT_EQUAL(ek->task_code, task_code);
        CU_ASSERT_PTR_NOT_NULL(strstr(ek->message, word));
    }
    int wrong = 0;
    for (size_t i = 0; i < N; i++)
        wrong += i % 1000 != 7 && out[i] != (long)(i * i);
    CU_ASSERT_EQUAL(wrong, 0);
    rp_result_free(r);
    free(in);
    free(out);
}

static void test_buffers_batch_raise_at_stops(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    check_sevens(p, stop_at_sevens, 42, "refused");
    tu_pool_done(p);
}

static void test_buffers_batch_raise_at_goes_on(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    check_sevens(p, skip_sevens, 43, "skipped");
    tu_pool_done(p);
}

/* A non-zero return naming no item fails the call's items, and only those. */
static void test_buffers_batch_call_fails(void)
{
    target = 1234;
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 5000 };
    long *in = tu_iota(N), *out = calloc(N, sizeof *out);
    rp_map_opts_t o = { .chunksize = 100 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_batch_async(p, fail_call, in, N, sizeof(long), out,
                                             sizeof(long), &o, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_ETASK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 100);
    const rp_error_t *e0 = rp_result_error(r, 0), *e99 = rp_result_error(r, 99);
    CU_ASSERT_EQUAL(e0->index, 1200);
    CU_ASSERT_EQUAL(e99->index, 1299);
    CU_ASSERT_EQUAL(e0->task_code, -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(e0->message, "returned -1"));
    int wrong = 0;
    for (size_t i = 0; i < N; i++)
        wrong += (i < 1200 || i >= 1300) && out[i] != (long)(i * i);
    CU_ASSERT_EQUAL(wrong, 0);
    rp_result_free(r);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* A crash inside a call fails the items of that call (the chunk) with RP_EWORKER;
 * every other item succeeds, and the pool goes on. */
static void test_buffers_batch_crash(void)
{
    target = 2345;
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 10000 };
    long *v = shared_iota(p, N);
    rp_map_opts_t o = { .chunksize = 100 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_batch_async(p, crash_call, v, N, sizeof(long), v, sizeof(long),
                                             &o, &r), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_EWORKER);
    CU_ASSERT_EQUAL(e.index, 2300);
    CU_ASSERT_EQUAL(e.signal, SIGSEGV);
    size_t nerr = rp_result_nerrors(r);
    CU_ASSERT_EQUAL(nerr, 100);
    size_t last = 0;
    for (size_t k = 0; k < nerr; k++) {
        const rp_error_t *ek = rp_result_error(r, k);
        CU_ASSERT_EQUAL(ek->code, RP_EWORKER);
        CU_ASSERT_EQUAL(ek->index, 2300 + k); /* one run */
        last = ek->index;
    }
    int wrong = 0;
    for (size_t i = 0; i < N; i++)
        wrong += (i < 2300 || i > last) && v[i] != (long)(i * i);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "batch task"));
    rp_result_free(r);
    for (size_t i = 0; i < N; i++)
        v[i] = (long)i;
    CU_ASSERT_EQUAL(rp_map_batch(p, square_batch, v, N, sizeof(long), v, sizeof(long), &o, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(v, N), 0);
    tu_pool_done(p);
}

/* rp_raise_at inside an ordinary task fails the running item. */
static int raise_at_plain(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == 3)
        return rp_raise_at(ctx, 999, 44, "plain %ld", x);
    *(long *)out = x * x;
    return 0;
}

static void test_buffers_raise_at_in_plain_task(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[10], out[10];
    for (int i = 0; i < 10; i++)
        in[i] = i;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, raise_at_plain, in, 10, sizeof(long), out, sizeof(long), NULL, &e),
                    RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 3);
    CU_ASSERT_EQUAL(e.task_code, 44);
    CU_ASSERT_STRING_EQUAL(e.message, "plain 3");
    CU_ASSERT_EQUAL(rp_raise_at(NULL, 0, 0, "x"), RP_ETASK);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);
    static const tu_test tests[] = {
        TU_TEST(test_buffers_inplace_map),
        TU_TEST(test_buffers_outputs_in_place),
        TU_TEST(test_buffers_inputs_in_place),
        TU_TEST(test_buffers_bad_free_and_sizes),
        TU_TEST(test_buffers_replacement_sees_buffer),
        TU_TEST(test_buffers_batch_map),
        TU_TEST(test_buffers_batch_raise_at_stops),
        TU_TEST(test_buffers_batch_raise_at_goes_on),
        TU_TEST(test_buffers_batch_call_fails),
        TU_TEST(test_buffers_batch_crash),
        TU_TEST(test_buffers_raise_at_in_plain_task),
        TU_END,
    };
    return tu_run("buffers", tests, argc, argv);
}
