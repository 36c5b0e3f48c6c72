/* AsyncResult, iterator and variable-size-output semantics of the core, in one
 * process: the core's files are linked directly and run on a test-only backend
 * whose workers are threads (tests/thread_backend.c). */
#include "testutil.h"
#include "thread_backend.h"
#include "result.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

static rp_pool_t *pool_n(int workers)
{
    rp_pool_opts_t o = { .workers = workers };
    rp_pool_t *p = NULL;
    rp_error_t e;
    int rc = rp__pool_create_ops(&p, &o, &tb_backend, &e);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    return p;
}

static void pool_done(rp_pool_t *p)
{
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* ---- tasks ---------------------------------------------------------------------- */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Fails the odd items with a message and code 7. */
static int fail_odd(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 2)
        return rp_raise(ctx, 7, "odd %ld", x);
    *(long *)out = x;
    return 0;
}

/* Fails without rp_raise. */
static int fail_plain(const void *in, void *out, rp_ctx_t *ctx)
{
    return 42;
}

static atomic_int gate_open;

/* Blocks until the gate opens (polling: the test must not hang if it never does). */
static int gated(const void *in, void *out, rp_ctx_t *ctx)
{
    for (int i = 0; i < 5000 && !atomic_load(&gate_open); i++)
        tu_sleep(1e-3);
    *(long *)out = *(const long *)in;
    return 0;
}

static int slow(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(1e-3);
    *(long *)out = *(const long *)in;
    return 0;
}

/* ---- map and get -------------------------------------------------------------------- */

static void test_result_map_outputs_in_order(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 1000;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, n, sizeof *in, out, sizeof *out,
                                       NULL, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_TRUE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_successful(r), 1);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
    CU_ASSERT_PTR_NULL(rp_result_error(r, 0));
    size_t done, total;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, n);
    CU_ASSERT_EQUAL(total, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != (long)(i * i);
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    free(in);
    free(out);
    pool_done(p);
}

static void test_result_failures_sorted_lowest_first(void)
{
    rp_pool_t *p = pool_n(4);
    size_t n = 200;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_map_opts_t mo = { .chunksize = 3 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, n, sizeof *in, out, sizeof *out,
                                       &mo, &r), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.code, RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 1);
    CU_ASSERT_EQUAL(e.task_code, 7);
    CU_ASSERT_STRING_EQUAL(e.message, "odd 1");
    CU_ASSERT_STRING_EQUAL(e.host, "threads");
    CU_ASSERT_EQUAL(e.signal, 0);
    CU_ASSERT_EQUAL(e.exit_status, -1);
    CU_ASSERT_EQUAL(rp_result_successful(r), 0);
    CU_ASSERT_EQUAL_FATAL(rp_result_nerrors(r), n / 2);
    size_t unsorted = 0, goodout = 0;
    for (size_t i = 0; i < n / 2; i++) {
        const rp_error_t *ei = rp_result_error(r, i);
        unsorted += !ei || ei->index != 2 * i + 1;
    }
    for (size_t i = 0; i < n; i += 2)
        goodout += out[i] == (long)i;
    CU_ASSERT_EQUAL(unsorted, 0);
    CU_ASSERT_EQUAL(goodout, n / 2); /* a failure does not throw away the others */
    CU_ASSERT_PTR_NULL(rp_result_error(r, n / 2));
    rp_result_free(r);
    free(in);
    free(out);
    pool_done(p);
}

static void test_result_plain_failure_message(void)
{
    rp_pool_t *p = pool_n(2);
    long in = 5, out = 0;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_apply(p, fail_plain, &in, sizeof in, &out, sizeof out, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.task_code, 42);
    CU_ASSERT_EQUAL(e.index, 0);
    CU_ASSERT_STRING_EQUAL(e.message, "task returned 42");
    pool_done(p);
}

static void test_result_apply_roundtrip(void)
{
    rp_pool_t *p = pool_n(2);
    long in = 9, out = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &in, sizeof in, &out, sizeof out, NULL), RP_OK);
    CU_ASSERT_EQUAL(out, 81);
    pool_done(p);
}

static void test_result_get_timeout_keeps_result(void)
{
    rp_pool_t *p = pool_n(2);
    atomic_store(&gate_open, 0);
    long in[4] = { 1, 2, 3, 4 }, out[4] = { 0 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, gated, in, 4, sizeof *in, out, sizeof *out, NULL,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 0.01, NULL), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_result_wait(r, 0), RP_ETIMEDOUT);
    CU_ASSERT_FALSE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_successful(r), RP_ENOTREADY);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
    size_t done = 99, total = 0;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(total, 4);
    CU_ASSERT_TRUE(done < 4);
    atomic_store(&gate_open, 1);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(out[3], 4);
    rp_result_free(r);
    pool_done(p);
}

/* ---- callbacks ---------------------------------------------------------------------- */

struct cb_state {
    atomic_int ok, err;
    size_t     err_index;
    int        err_code;
    atomic_int finished;  /* set at the end of a slow callback */
    rp_result_t *seen;
    int        get_in_cb; /* rp_result_get from inside the callback */
};

static void on_ok(rp_result_t *r, void *ud)
{
    struct cb_state *s = ud;
    s->seen = r;
    s->get_in_cb = rp_result_get(r, 0, NULL);
    tu_sleep(20e-3);
    atomic_fetch_add(&s->ok, 1);
    atomic_store(&s->finished, 1);
}

static void on_err(const rp_error_t *e, void *ud)
{
    struct cb_state *s = ud;
    s->err_index = e->index;
    s->err_code = e->code;
    tu_sleep(20e-3);
    atomic_fetch_add(&s->err, 1);
    atomic_store(&s->finished, 1);
}

static void test_result_callback_once_before_get_returns(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 100;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    struct cb_state s = { 0 };
    rp_map_opts_t mo = { .callback = on_ok, .error_callback = on_err, .userdata = &s };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, n, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.finished), 1); /* the callback had returned */
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 0);
    CU_ASSERT_PTR_EQUAL(s.seen, r);
    CU_ASSERT_EQUAL(s.get_in_cb, RP_OK); /* no deadlock, outputs final */
    rp_result_free(r);
    pool_done(p);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    free(in);
    free(out);
}

static void test_result_error_callback_lowest_index(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 100;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    struct cb_state s = { 0 };
    rp_map_opts_t mo = { .callback = on_ok, .error_callback = on_err, .userdata = &s,
                         .chunksize = 1 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, n, sizeof *in, out, sizeof *out,
                                       &mo, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, RP_FOREVER), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.finished), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 0);
    CU_ASSERT_EQUAL(s.err_index, 1);
    CU_ASSERT_EQUAL(s.err_code, RP_ETASK);
    rp_result_free(r);
    pool_done(p);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 1);
    free(in);
    free(out);
}

static void test_result_empty_map_calls_callback(void)
{
    rp_pool_t *p = pool_n(2);
    struct cb_state s = { 0 };
    rp_map_opts_t mo = { .callback = on_ok, .error_callback = on_err, .userdata = &s };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, NULL, 0, sizeof(long), NULL, sizeof(long),
                                       &mo, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 0);
    CU_ASSERT_EQUAL(rp_result_successful(r), 1);
    rp_result_free(r);
    CU_ASSERT_EQUAL(rp_map(p, square, NULL, 0, sizeof(long), NULL, 0, NULL, NULL), RP_OK);
    pool_done(p);
}

static void free_in_callback(rp_result_t *r, void *ud)
{
    rp_result_free(r); /* allowed: takes effect after the callback */
    atomic_fetch_add((atomic_int *)ud, 1);
}

static void test_result_free_inside_callback(void)
{
    rp_pool_t *p = pool_n(2);
    atomic_int calls = 0;
    long in[8] = { 0 }, out[8];
    rp_map_opts_t mo = { .callback = free_in_callback, .userdata = &calls };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, 8, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    pool_done(p); /* join waits for it */
    CU_ASSERT_EQUAL(atomic_load(&calls), 1);
}

/* ---- life cycle ------------------------------------------------------------------------ */

static void test_result_outlives_pool(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 50;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, n, sizeof *in, out, sizeof *out,
                                       NULL, &r), RP_OK);
    pool_done(p); /* join finalizes r, which nobody waited for */
    CU_ASSERT_TRUE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_nerrors(r), n / 2);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ETASK);
    const rp_error_t *e = rp_result_error(r, 2);
    CU_ASSERT_PTR_NOT_NULL_FATAL(e);
    CU_ASSERT_EQUAL(e->index, 5);
    rp_result_free(r);
    free(in);
    free(out);
}

static void test_result_terminate_cancels_as_ranges(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 2000;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow, in, n, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    tu_sleep(5e-3);
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 5.0), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 0, &e), RP_ECANCELED);
    size_t nerr = rp_result_nerrors(r);
    CU_ASSERT_TRUE(nerr > n / 2);
    CU_ASSERT_TRUE(r->nfails < 10); /* stored compactly */
    /* Canceled items are the tail, each listed with its own index, in order. */
    size_t bad = 0;
    for (size_t i = 0; i < nerr; i++) {
        const rp_error_t *ei = rp_result_error(r, i);
        bad += !ei || ei->code != RP_ECANCELED || ei->index != n - nerr + i;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rp_result_error(r, 0)->index, e.index);
    /* Calls after terminate. */
    rp_result_t *r2 = NULL;
    CU_ASSERT_EQUAL(rp_map_async(p, slow, in, n, sizeof *in, out, sizeof *out, &mo, &r2),
                    RP_ECLOSED);
    CU_ASSERT_PTR_NULL(r2);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
    rp_result_free(r);
    free(in);
    free(out);
}

static void test_result_free_pool_with_pending_work(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 500;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out), *out2 = calloc(n, sizeof *out2);
    rp_map_opts_t mo = { .chunksize = 1 };
    struct cb_state s = { 0 };
    rp_map_opts_t cbo = { .chunksize = 1, .callback = on_ok, .error_callback = on_err,
                          .userdata = &s };
    rp_result_t *r, *r2;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow, in, n, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow, in, n, sizeof *in, out2, sizeof *out2,
                                       &cbo, &r2), RP_OK);
    rp_pool_free(p); /* terminates: both become ready */
    CU_ASSERT_TRUE(rp_result_ready(r));
    CU_ASSERT_TRUE(rp_result_ready(r2));
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ECANCELED);
    CU_ASSERT_EQUAL(atomic_load(&s.err) + atomic_load(&s.ok), 1);
    rp_result_free(r);
    rp_result_free(r2);
    free(in);
    free(out);
    free(out2);
}

static void test_result_join_waits_for_work(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 40;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_EINVAL); /* before close */
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow, in, n, sizeof *in, out, sizeof *out, NULL,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 1, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_ECLOSED);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT_TRUE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK); /* queued work finished */
    CU_ASSERT_EQUAL(out[n - 1], (long)n - 1);
    rp_pool_free(p);
    rp_result_free(r);
    free(in);
    free(out);
}

struct thr_arg {
    rp_pool_t *p;
    int        id;
    int        bad;
};

static void *map_thread(void *arg)
{
    struct thr_arg *a = arg;
    size_t n = 300;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    for (int round = 0; round < 5; round++) {
        rp_result_t *r;
        if (rp_map_async(a->p, square, in, n, sizeof *in, out, sizeof *out, NULL, &r) != RP_OK) {
            a->bad++;
            continue;
        }
        if (rp_result_get(r, RP_FOREVER, NULL) != RP_OK)
            a->bad++;
        rp_result_free(r);
        for (size_t i = 0; i < n; i++)
            a->bad += out[i] != (long)(i * i);
        long x = a->id, y = 0;
        if (rp_apply(a->p, square, &x, sizeof x, &y, sizeof y, NULL) != RP_OK || y != x * x)
            a->bad++;
    }
    free(in);
    free(out);
    return NULL;
}

static void test_result_maps_from_several_threads(void)
{
    rp_pool_t *p = pool_n(3);
    pthread_t t[4];
    struct thr_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr_arg){ p, i, 0 };
        pthread_create(&t[i], NULL, map_thread, &a[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        bad += a[i].bad;
    }
    CU_ASSERT_EQUAL(bad, 0);
    pool_done(p);
}

static void *control_thread(void *arg)
{
    rp_pool_t *p = arg;
    rp_pool_close(p);
    rp_pool_join(p);
    rp_pool_terminate(p);
    rp_pool_join(p);
    return NULL;
}

static void test_result_control_from_several_threads(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 100;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow, in, n, sizeof *in, out, sizeof *out, NULL,
                                       &r), RP_OK);
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, control_thread, p);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    CU_ASSERT_TRUE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK); /* closed before terminate */
    rp_pool_free(p);
    rp_result_free(r);
    free(in);
    free(out);
}

struct waiter_arg {
    rp_result_t *r;
    int          rc;
    int          nerrors;
};

static void *waiter_thread(void *arg)
{
    struct waiter_arg *a = arg;
    rp_error_t e;
    a->rc = rp_result_get(a->r, RP_FOREVER, &e);
    a->nerrors = (int)rp_result_nerrors(a->r);
    return NULL;
}

/* Several threads wait on one result, callbacks or not: every one sees the same
 * final verdict (finalized once). */
static void test_result_many_waiters_one_result(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 64;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    struct cb_state s = { 0 };
    rp_map_opts_t variants[2] = { { .chunksize = 1 },
                                  { .chunksize = 1, .error_callback = on_err, .userdata = &s } };
    for (int v = 0; v < 2; v++) {
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, n, sizeof *in, out, sizeof *out,
                                           &variants[v], &r), RP_OK);
        pthread_t t[5];
        struct waiter_arg a[5];
        for (int i = 0; i < 5; i++) {
            a[i] = (struct waiter_arg){ r, 0, 0 };
            pthread_create(&t[i], NULL, waiter_thread, &a[i]);
        }
        int bad = 0;
        for (int i = 0; i < 5; i++) {
            pthread_join(t[i], NULL);
            bad += a[i].rc != RP_ETASK || a[i].nerrors != (int)n / 2;
        }
        CU_ASSERT_EQUAL(bad, 0);
        rp_result_free(r);
    }
    CU_ASSERT_EQUAL(atomic_load(&s.err), 1);
    pool_done(p);
    free(in);
    free(out);
}

static void test_result_free_unwaited(void)
{
    rp_pool_t *p = pool_n(2);
    size_t n = 30;
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    for (int k = 0; k < 20; k++) {
        rp_result_t *r;
        CU_ASSERT_EQUAL(rp_map_async(p, square, in, n, sizeof *in, out, sizeof *out, NULL,
                                     &r), RP_OK);
        rp_result_free(r); /* waits, then frees */
        CU_ASSERT_EQUAL(out[n - 1], (long)((n - 1) * (n - 1)));
    }
    rp_result_free(NULL);
    pool_done(p);
    free(in);
    free(out);
}

/* ---- iterators -------------------------------------------------------------------------- */

static void test_result_imap_ordered_with_failures(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 300;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .chunksize = 2 };
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, fail_odd, in, n, sizeof *in, sizeof(long), &mo, &it),
                          RP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t idx = 9999;
        long v = -1;
        rp_error_t e;
        int rc = rp_iter_next(it, RP_FOREVER, &idx, &v, &e);
        bad += idx != i;
        if (i % 2)
            bad += rc != RP_ETASK || e.index != i || e.task_code != 7;
        else
            bad += rc != RP_OK || v != (long)i;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rp_iter_next(it, RP_FOREVER, NULL, NULL, NULL), RP_DONE);
    CU_ASSERT_EQUAL(rp_iter_next(it, 0, NULL, NULL, NULL), RP_DONE);
    rp_iter_free(it);
    pool_done(p);
    free(in);
}

static void test_result_imap_unordered_each_once(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 500;
    long *in = tu_iota(n);
    char *seen = calloc(n, 1);
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap_unordered(p, square, in, n, sizeof *in, sizeof(long), NULL,
                                            &it), RP_OK);
    size_t bad = 0, count = 0, idx;
    long v;
    int rc;
    while ((rc = rp_iter_next(it, RP_FOREVER, &idx, &v, NULL)) == RP_OK) {
        bad += idx >= n || seen[idx] || v != (long)(idx * idx);
        if (idx < n)
            seen[idx] = 1;
        count++;
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(count, n);
    CU_ASSERT_EQUAL(bad, 0);
    rp_iter_free(it);
    pool_done(p);
    free(in);
    free(seen);
}

static void test_result_imap_timeout(void)
{
    rp_pool_t *p = pool_n(2);
    atomic_store(&gate_open, 0);
    long in[3] = { 1, 2, 3 }, v;
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, gated, in, 3, sizeof *in, sizeof v, NULL, &it), RP_OK);
    CU_ASSERT_EQUAL(rp_iter_next(it, 0.01, NULL, &v, NULL), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_iter_next(it, 0, NULL, &v, NULL), RP_ETIMEDOUT);
    atomic_store(&gate_open, 1);
    size_t idx;
    CU_ASSERT_EQUAL(rp_iter_next(it, RP_FOREVER, &idx, &v, NULL), RP_OK);
    CU_ASSERT_EQUAL(idx, 0);
    CU_ASSERT_EQUAL(v, 1);
    rp_iter_free(it); /* with items left */
    pool_done(p);
}

static void test_result_imap_after_join(void)
{
    /* The pool finalizes the iterator's job (items go through finish(), not
     * arrivals()); iteration still yields every item. */
    rp_pool_t *p = pool_n(2);
    size_t n = 64;
    long *in = tu_iota(n);
    rp_iter_t *it, *iu;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, fail_odd, in, n, sizeof *in, sizeof(long), NULL, &it),
                          RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_imap_unordered(p, fail_odd, in, n, sizeof *in, sizeof(long),
                                            NULL, &iu), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    size_t ok = 0, failed = 0, idx;
    long v;
    int rc;
    for (size_t i = 0; (rc = rp_iter_next(it, 0, &idx, &v, NULL)) != RP_DONE && i < 2 * n; i++)
        rc == RP_OK && v == (long)idx ? ok++ : rc == RP_ETASK ? failed++ : 0;
    CU_ASSERT_EQUAL(ok, n / 2);
    CU_ASSERT_EQUAL(failed, n / 2);
    ok = failed = 0;
    for (size_t i = 0; (rc = rp_iter_next(iu, 0, &idx, &v, NULL)) != RP_DONE && i < 2 * n; i++)
        rc == RP_OK && v == (long)idx ? ok++ : rc == RP_ETASK ? failed++ : 0;
    CU_ASSERT_EQUAL(ok, n / 2);
    CU_ASSERT_EQUAL(failed, n / 2);
    rp_iter_free(it);
    rp_iter_free(iu);
    rp_pool_free(p);
    free(in);
}

static void test_result_imap_empty(void)
{
    rp_pool_t *p = pool_n(2);
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square, NULL, 0, sizeof(long), sizeof(long), NULL, &it),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_iter_next(it, RP_FOREVER, NULL, NULL, NULL), RP_DONE);
    rp_iter_free(it);
    CU_ASSERT_EQUAL(rp_iter_next(NULL, 0, NULL, NULL, NULL), RP_EINVAL);
    rp_iter_free(NULL);
    pool_done(p);
}

/* ---- variable-size outputs ---------------------------------------------------------------- */

/* Item x outputs x bytes of value x; items divisible by 5 fail after output. */
static int var_task(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (out != NULL)
        return rp_raise(ctx, 1, "out should be NULL");
    unsigned char *o = rp_output(ctx, (size_t)x);
    if (!o)
        return rp_raise(ctx, 2, "no room");
    memset(o, (int)x, (size_t)x);
    if (x % 5 == 0 && x > 0)
        return rp_raise(ctx, 3, "multiple of five");
    return 0;
}

static void test_result_varout_sizes_and_failures(void)
{
    rp_pool_t *p = pool_n(3);
    size_t n = 60;
    long *in = tu_iota(n);
    rp_varout_t *vo;
    rp_error_t e;
    CU_ASSERT_EQUAL_FATAL(rp_map_var(p, var_task, in, n, sizeof *in, NULL, &vo, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 5);
    CU_ASSERT_EQUAL(rp_varout_count(vo), n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t sz = 777;
        const unsigned char *d = rp_varout_item(vo, i, &sz);
        if (i % 5 == 0 && i > 0) {
            bad += d != NULL || sz != 0;
        } else {
            bad += sz != i;
            for (size_t k = 0; k < sz && d; k++)
                bad += d[k] != (unsigned char)i;
        }
    }
    CU_ASSERT_EQUAL(bad, 0);
    size_t sz = 5;
    CU_ASSERT_PTR_NULL(rp_varout_item(vo, n, &sz));
    CU_ASSERT_EQUAL(sz, 0);
    CU_ASSERT_PTR_NULL(rp_varout_item(NULL, 0, &sz));
    CU_ASSERT_EQUAL(rp_varout_count(NULL), 0);
    rp_varout_free(vo);
    rp_varout_free(NULL);
    pool_done(p);
    free(in);
}

static void test_result_output_outside_var_map(void)
{
    rp_ctx_t ctx = { 0 };
    CU_ASSERT_PTR_NULL(rp_output(&ctx, 10));
    CU_ASSERT_PTR_NULL(rp_output(NULL, 10));
}

/* ---- the worker side --------------------------------------------------------------------- */

static int raise_zero(const void *in, void *out, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 0, "zero %d", 0);
}

static int init_fails(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 9, "bad init %d", *(const int *)arg);
}

static void fail_collect(void *arg, const rp_error_t *e)
{
    *(rp_error_t *)arg = *e;
}

static void test_result_worker_run_describes_failure(void)
{
    rp_ctx_t ctx = { .worker = 3, .host = "h" };
    long in[3] = { 0, 1, 2 };
    long out[3];
    _Atomic size_t cur = 99;
    rp_error_t e;
    memset(&e, 0, sizeof e);
    size_t nf = rp__worker_run(&ctx, raise_zero, (const char *)in, sizeof *in, (char *)out,
                               sizeof *out, 10, 3, &cur, fail_collect, &e);
    CU_ASSERT_EQUAL(nf, 3);
    CU_ASSERT_EQUAL(atomic_load(&cur), 12);
    CU_ASSERT_EQUAL(e.code, RP_ETASK);
    CU_ASSERT_EQUAL(e.task_code, RP_ETASK); /* rp_raise(ctx, 0, ...) is RP_ETASK */
    CU_ASSERT_EQUAL(e.index, 12);
    CU_ASSERT_EQUAL(e.worker, 3);
    CU_ASSERT_STRING_EQUAL(e.host, "h");
    CU_ASSERT_STRING_EQUAL(e.message, "zero 0");
    CU_ASSERT_EQUAL(rp_raise(NULL, 4, "x"), 4);
    CU_ASSERT_EQUAL(rp_ctx_worker(&ctx), 3);
    CU_ASSERT_EQUAL(rp_ctx_index(&ctx), 12);
    CU_ASSERT_EQUAL(rp_ctx_worker(NULL), -1);
    /* A raise in one item does not leak into the next. */
    nf = rp__worker_run(&ctx, square, (const char *)in, sizeof *in, (char *)out, sizeof *out,
                        0, 3, NULL, fail_collect, &e);
    CU_ASSERT_EQUAL(nf, 0);
    CU_ASSERT_FALSE(ctx.raised);
}

static void test_result_initializer_failure(void)
{
    int arg = 17;
    rp_pool_opts_t o = { .workers = 2, .initializer = init_fails, .initarg = &arg,
                         .initarg_size = sizeof arg };
    rp_pool_t *p = (rp_pool_t *)1;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp__pool_create_ops(&p, &o, &tb_backend, &e), RP_EINIT);
    CU_ASSERT_EQUAL(e.code, RP_EINIT);
    CU_ASSERT_EQUAL(e.task_code, 9);
    CU_ASSERT_STRING_EQUAL(e.message, "bad init 17");
    CU_ASSERT_PTR_NULL(p);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_result_map_outputs_in_order),
        TU_TEST(test_result_failures_sorted_lowest_first),
        TU_TEST(test_result_plain_failure_message),
        TU_TEST(test_result_apply_roundtrip),
        TU_TEST(test_result_get_timeout_keeps_result),
        TU_TEST(test_result_callback_once_before_get_returns),
        TU_TEST(test_result_error_callback_lowest_index),
        TU_TEST(test_result_empty_map_calls_callback),
        TU_TEST(test_result_free_inside_callback),
        TU_TEST(test_result_outlives_pool),
        TU_TEST(test_result_terminate_cancels_as_ranges),
        TU_TEST(test_result_free_pool_with_pending_work),
        TU_TEST(test_result_join_waits_for_work),
        TU_TEST(test_result_maps_from_several_threads),
        TU_TEST(test_result_control_from_several_threads),
        TU_TEST(test_result_many_waiters_one_result),
        TU_TEST(test_result_free_unwaited),
        TU_TEST(test_result_imap_ordered_with_failures),
        TU_TEST(test_result_imap_unordered_each_once),
        TU_TEST(test_result_imap_timeout),
        TU_TEST(test_result_imap_after_join),
        TU_TEST(test_result_imap_empty),
        TU_TEST(test_result_varout_sizes_and_failures),
        TU_TEST(test_result_output_outside_var_map),
        TU_TEST(test_result_worker_run_describes_failure),
        TU_TEST(test_result_initializer_failure),
        TU_END
    };
    return tu_run("result", tests, argc, argv);
}
