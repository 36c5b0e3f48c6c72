/* The semantics of the pool, the same on both backends: this program runs as is
 * on the local backend and under mpirun with RP_BACKEND=mpi. Every rank runs the
 * same sequence of pool creations (tu_pool); serving ranks get NULL and skip the
 * body. Nothing here forks, kills or looks at processes. */
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

/* ---- tasks (static on purpose: they must work without being exported) -------- */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Fails for multiples of 7 (but not 0) with code x % 5 + 1. */
static int square_or_fail(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 7 == 0 && x != 0)
        return rp_raise(ctx, (int)(x % 5) + 1, "refusing %ld", x);
    *(long *)out = x * x;
    return 0;
}

static int no_output(const void *in, void *out, rp_ctx_t *ctx)
{
    return out == NULL ? 0 : rp_raise(ctx, 1, "out should be NULL");
}

static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.002);
    return square(in, out, ctx);
}

static int very_slow(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.05);
    return square(in, out, ctx);
}

/* Later items finish first: order of completion differs from input order. */
static int reverse_speed(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    tu_sleep(0.0002 * (double)(40 - x % 40));
    *(long *)out = x * x;
    return 0;
}

struct where {
    size_t index;
    int    worker;
};

static int where_am_i(const void *in, void *out, rp_ctx_t *ctx)
{
    struct where *w = out;
    w->index = rp_ctx_index(ctx);
    w->worker = rp_ctx_worker(ctx);
    return 0;
}

/* ---- map ---------------------------------------------------------------------- */

static void test_semantics_map_order(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 2000;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    size_t chunks[] = { 0, 1, 2, 3, 17, 1000, 1999, 2000, 100000 };
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        memset(out, 0, n * sizeof(long));
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof(long), out, sizeof(long), &mo, NULL),
                        RP_OK);
        CU_ASSERT_EQUAL(tu_wrong_squares(out, n), 0);
    }
    /* completion order differs from input order: outputs still in input order */
    memset(out, 0, n * sizeof(long));
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, reverse_speed, in, 200, sizeof(long), out, sizeof(long), &one,
                           NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 200), 0);
    /* the context knows the item and the worker */
    struct where *w = calloc(n, sizeof *w);
    CU_ASSERT_EQUAL(rp_map(p, where_am_i, in, n, sizeof(long), w, sizeof *w, &one, NULL), RP_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += w[i].index != i || w[i].worker < 0 || w[i].worker >= rp_pool_size(p);
    CU_ASSERT_EQUAL(bad, 0);
    free(w);
    /* no output at all */
    CU_ASSERT_EQUAL(rp_map(p, no_output, in, 7, sizeof(long), NULL, 0, NULL, NULL), RP_OK);
    free(in);
    free(out);
    tu_pool_done(p);
}

static void test_semantics_map_async(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 300;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    rp_result_t *r = NULL;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_square, in, n, sizeof(long), out, sizeof(long),
                                       &one, &r),
                          RP_OK);
    /* a slow job: polling times out and the result stays valid */
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_result_wait(r, 0.001), RP_ETIMEDOUT);
    CU_ASSERT_FALSE(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_successful(r), RP_ENOTREADY);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
    size_t done = 0, total = 0;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(total, n);
    CU_ASSERT(done < n);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_successful(r), 1);
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, n);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, n), 0);
    /* get again: same verdict */
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    rp_result_free(r);
    free(in);
    free(out);
    tu_pool_done(p);
}

static void test_semantics_apply(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    for (long x = 0; x < 200; x++) {
        long y = -1;
        CU_ASSERT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
        CU_ASSERT_EQUAL(y, x * x);
    }
    long x = 14, y = -1;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_apply(p, square_or_fail, &x, sizeof x, &y, sizeof y, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 0);
    CU_ASSERT_EQUAL(e.task_code, 14 % 5 + 1);
    CU_ASSERT_STRING_EQUAL(e.message, "refusing 14");

    enum { K = 50 };
    long xs[K], ys[K];
    rp_result_t *r[K];
    for (int k = 0; k < K; k++) {
        xs[k] = k;
        ys[k] = -1;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &xs[k], sizeof(long), &ys[k],
                                             sizeof(long), NULL, &r[k]),
                              RP_OK);
    }
    for (int k = 0; k < K; k++) {
        CU_ASSERT_EQUAL(rp_result_get(r[k], RP_FOREVER, NULL), RP_OK);
        CU_ASSERT_EQUAL(ys[k], (long)k * k);
        rp_result_free(r[k]);
    }
    tu_pool_done(p);
}

/* ---- imap --------------------------------------------------------------------- */

static void test_semantics_imap(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 500;
    long *in = tu_iota(n);
    size_t chunks[] = { 0, 1, 8 };
    for (size_t c = 0; c < 3; c++) {
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        rp_iter_t *it;
        CU_ASSERT_EQUAL_FATAL(rp_imap(p, square_or_fail, in, n, sizeof(long), sizeof(long), &mo,
                                      &it),
                              RP_OK);
        size_t idx, k = 0;
        long v;
        rp_error_t e;
        int rc, bad = 0;
        while ((rc = rp_iter_next(it, 30, &idx, &v, &e)) != RP_DONE) {
            if (rc == RP_ETIMEDOUT) {
                bad++;
                break;
            }
            bad += idx != k;
            if (idx != k || (rc != RP_OK && rc != RP_ETASK) || (rc == RP_OK && v != (long)(idx * idx)))
                fprintf(stderr, "imap cs %zu: k %zu idx %zu rc %d v %ld\n", chunks[c], k, idx, rc, v);
            if (idx % 7 == 0 && idx != 0)
                bad += rc != RP_ETASK || e.index != idx || e.task_code != (int)(idx % 5) + 1;
            else
                bad += rc != RP_OK || v != (long)(idx * idx);
            k++;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(rp_iter_next(it, 0, &idx, &v, &e), RP_DONE);
        rp_iter_free(it);
    }
    free(in);
    tu_pool_done(p);
}

static void test_semantics_imap_unordered(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 400;
    long *in = tu_iota(n);
    rp_map_opts_t one = { .chunksize = 1 };
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap_unordered(p, reverse_speed, in, n, sizeof(long), sizeof(long),
                                            &one, &it),
                          RP_OK);
    unsigned char *seen = calloc(n, 1);
    size_t idx, count = 0;
    long v;
    int rc, bad = 0;
    while ((rc = rp_iter_next(it, 30, &idx, &v, NULL)) == RP_OK) {
        bad += idx >= n || seen[idx] || v != (long)(idx * idx);
        if (idx < n)
            seen[idx] = 1;
        count++;
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(count, n);
    CU_ASSERT_EQUAL(bad, 0);
    rp_iter_free(it);
    /* an iterator freed before the end waits for its items; nothing leaks */
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square, in, n, sizeof(long), sizeof(long), NULL, &it), RP_OK);
    CU_ASSERT_EQUAL(rp_iter_next(it, 30, &idx, &v, NULL), RP_OK);
    CU_ASSERT_EQUAL(idx, 0);
    rp_iter_free(it);
    free(seen);
    free(in);
    tu_pool_done(p);
}

/* ---- callbacks ------------------------------------------------------------------ */

struct cbstate {
    _Atomic int ok, err;
    rp_error_t  e;
    _Atomic int finished;  /* set at the end of a slow callback */
};

static void cb_ok(rp_result_t *r, void *ud)
{
    struct cbstate *s = ud;
    atomic_fetch_add(&s->ok, 1);
    tu_sleep(0.02);
    atomic_store(&s->finished, 1);
}

static void cb_err(const rp_error_t *e, void *ud)
{
    struct cbstate *s = ud;
    s->e = *e;
    atomic_fetch_add(&s->err, 1);
    tu_sleep(0.02);
    atomic_store(&s->finished, 1);
}

static void test_semantics_callbacks(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 300;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    struct cbstate s;

    /* success: callback once, finished before get returns */
    memset(&s, 0, sizeof s);
    rp_map_opts_t mo = { .callback = cb_ok, .error_callback = cb_err, .userdata = &s };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, n, sizeof(long), out, sizeof(long), &mo, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.finished), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 0);
    rp_result_free(r);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);

    /* failure: error_callback once, with the lowest failing index */
    for (size_t cs = 0; cs < 3; cs++) {
        memset(&s, 0, sizeof s);
        mo.chunksize = cs * 5;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_or_fail, in, n, sizeof(long), out,
                                           sizeof(long), &mo, &r),
                              RP_OK);
        CU_ASSERT_EQUAL(rp_result_wait(r, RP_FOREVER), RP_OK);
        CU_ASSERT_EQUAL(atomic_load(&s.finished), 1);
        CU_ASSERT_EQUAL(atomic_load(&s.ok), 0);
        CU_ASSERT_EQUAL(atomic_load(&s.err), 1);
        CU_ASSERT_EQUAL(s.e.index, 7);
        CU_ASSERT_EQUAL(s.e.code, RP_ETASK);
        CU_ASSERT_EQUAL(s.e.task_code, 3);
        rp_result_free(r);
    }

    /* an empty map calls the callback */
    memset(&s, 0, sizeof s);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, 0, sizeof(long), out, sizeof(long), &mo, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 0);
    rp_result_free(r);

    /* a result freed without waiting still gets exactly one callback */
    memset(&s, 0, sizeof s);
    mo.chunksize = 0;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, n, sizeof(long), out, sizeof(long), &mo, &r),
                          RP_OK);
    rp_result_free(r);
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 1);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* ---- errors --------------------------------------------------------------------- */

static void test_semantics_errors(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 1000;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    size_t chunks[] = { 0, 1, 13 };
    for (size_t c = 0; c < 3; c++) {
        memset(out, 0, n * sizeof(long));
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_or_fail, in, n, sizeof(long), out,
                                           sizeof(long), &mo, &r),
                              RP_OK);
        rp_error_t e;
        CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_ETASK);
        CU_ASSERT_EQUAL(e.index, 7);
        CU_ASSERT_EQUAL(e.code, RP_ETASK);
        CU_ASSERT_STRING_EQUAL(e.message, "refusing 7");
        CU_ASSERT_EQUAL(rp_result_successful(r), 0);
        size_t expect = (n - 1) / 7;
        CU_ASSERT_EQUAL(rp_result_nerrors(r), expect);
        int bad = 0;
        for (size_t k = 0; k < expect; k++) {
            const rp_error_t *x = rp_result_error(r, k);
            if (!x) {
                bad++;
                continue;
            }
            size_t idx = 7 * (k + 1);
            char msg[64];
            snprintf(msg, sizeof msg, "refusing %zu", idx);
            bad += x->index != idx || x->code != RP_ETASK || x->task_code != (int)(idx % 5) + 1
                   || strcmp(x->message, msg) != 0 || x->worker < 0;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_PTR_NULL(rp_result_error(r, expect));
        /* every successful item is delivered */
        bad = 0;
        for (size_t i = 0; i < n; i++)
            if (i % 7 != 0 || i == 0)
                bad += out[i] != (long)(i * i);
        CU_ASSERT_EQUAL(bad, 0);
        rp_result_free(r);
    }
    /* rp_map: same verdict, *err the lowest */
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, square_or_fail, in, n, sizeof(long), out, sizeof(long), NULL, &e),
                    RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 7);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* ---- initializer, max_tasks_per_worker ------------------------------------------ */

static long init_value = -1;

static int set_value(const void *arg, rp_ctx_t *ctx)
{
    init_value = *(const long *)arg;
    return 0;
}

static int read_value(const void *in, void *out, rp_ctx_t *ctx)
{
    *(long *)out = init_value + *(const long *)in;
    return 0;
}

static void test_semantics_initializer(void)
{
    long arg = 1000;
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.initializer = set_value;
    o.initarg = &arg;
    o.initarg_size = sizeof arg;
    rp_pool_t *p = tu_pool(0, &o);
    arg = 5;  /* copied at creation: changing it now changes nothing */
    if (!p)
        return;
    size_t n = 100;
    long *in = tu_iota(n), out[100];
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, read_value, in, n, sizeof(long), out, sizeof(long), &one, NULL),
                    RP_OK);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != 1000 + (long)i;
    CU_ASSERT_EQUAL(bad, 0);
    free(in);
    tu_pool_done(p);
}

static void test_semantics_max_tasks(void)
{
    long arg = 7;
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.max_tasks_per_worker = 3;
    o.initializer = set_value;
    o.initarg = &arg;
    o.initarg_size = sizeof arg;
    rp_pool_t *p = tu_pool(0, &o);
    if (!p)
        return;
    size_t n = 60;
    long *in = tu_iota(n), out[60];
    size_t chunks[] = { 0, 1, 10 };
    for (size_t c = 0; c < 3; c++) {
        memset(out, 0, sizeof out);
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        CU_ASSERT_EQUAL(rp_map(p, read_value, in, n, sizeof(long), out, sizeof(long), &mo, NULL),
                        RP_OK);
        int bad = 0;
        for (size_t i = 0; i < n; i++)
            bad += out[i] != 7 + (long)i;  /* replacements ran the initializer too */
        CU_ASSERT_EQUAL(bad, 0);
    }
    free(in);
    tu_pool_done(p);
}

/* ---- life cycle ------------------------------------------------------------------- */

static void test_semantics_close_join(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 200;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_EINVAL);  /* join before close */
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_square, in, n, sizeof(long), out, sizeof(long),
                                       &one, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    long x = 3, y;
    CU_ASSERT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_ECLOSED);
    CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_ECLOSED);
    /* queued work finishes */
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, n), 0);
    rp_result_free(r);
    rp_pool_free(p);
    free(in);
    free(out);
}

static void test_semantics_terminate(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 400;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    rp_result_t *r1, *r2;
    struct cbstate s;
    memset(&s, 0, sizeof s);
    rp_map_opts_t mo = { .chunksize = 1, .callback = cb_ok, .error_callback = cb_err,
                         .userdata = &s };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, very_slow, in, n, sizeof(long), out, sizeof(long), &mo,
                                       &r1),
                          RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, n, sizeof(long), out, sizeof(long), NULL,
                                       &r2),
                          RP_OK);
    tu_sleep(0.1);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT(tu_now() - t0 < 3.0);
    CU_ASSERT_EQUAL(rp_result_wait(r1, 10), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r2, 10), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r1, 0, &e), RP_ECANCELED);
    CU_ASSERT_EQUAL(e.code, RP_ECANCELED);
    CU_ASSERT(rp_result_nerrors(r1) >= 1 && rp_result_nerrors(r1) <= n);
    CU_ASSERT_EQUAL(atomic_load(&s.err), 1);  /* error_callback, once */
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 0);
    CU_ASSERT_EQUAL(s.e.code, RP_ECANCELED);
    int rc2 = rp_result_get(r2, 0, NULL);
    CU_ASSERT(rc2 == RP_ECANCELED || rc2 == RP_OK);
    /* nothing new after terminate */
    long x = 2, y;
    CU_ASSERT_NOT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
    rp_result_free(r1);
    rp_result_free(r2);
    free(in);
    free(out);
}

/* ---- threads -------------------------------------------------------------------- */

struct thr {
    rp_pool_t *p;
    int        id, wrong, rc;
};

static void *mapper(void *arg)
{
    struct thr *t = arg;
    size_t n = 3000;
    long *in = tu_iota(n), *out = malloc(n * sizeof(long));
    for (int k = 0; k < 10; k++) {
        rp_map_opts_t mo = { .chunksize = (size_t)((t->id + k) % 4) * 5 };
        int rc;
        if (k % 3 == 2) {
            rp_result_t *r;
            rc = rp_map_async(t->p, square, in, n, sizeof(long), out, sizeof(long), &mo, &r);
            if (rc == RP_OK) {
                rc = rp_result_get(r, RP_FOREVER, NULL);
                rp_result_free(r);
            }
        } else {
            rc = rp_map(t->p, square, in, n, sizeof(long), out, sizeof(long), &mo, NULL);
        }
        if (rc != RP_OK)
            t->rc = rc;
        t->wrong += tu_wrong_squares(out, n);
        long x = k, y = -1;
        if (rp_apply(t->p, square, &x, sizeof x, &y, sizeof y, NULL) != RP_OK || y != x * x)
            t->wrong++;
    }
    free(in);
    free(out);
    return NULL;
}

static void test_semantics_threads(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    enum { T = 4 };
    pthread_t th[T];
    struct thr t[T];
    memset(t, 0, sizeof t);
    for (int i = 0; i < T; i++) {
        t[i].p = p;
        t[i].id = i;
        pthread_create(&th[i], NULL, mapper, &t[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(t[i].rc, RP_OK);
        CU_ASSERT_EQUAL(t[i].wrong, 0);
    }
    tu_pool_done(p);
}

/* ---- variable-size outputs ---------------------------------------------------------- */

static int divisors(const void *in, void *out, rp_ctx_t *ctx)
{
    long n = *(const long *)in;
    if (n % 50 == 0)
        return rp_raise(ctx, 50, "no divisors for %ld", n);
    size_t k = 0;
    for (long i = 1; i <= n; i++)
        k += n % i == 0;
    long *d = rp_output(ctx, k * sizeof(long));
    if (!d)
        return rp_raise(ctx, 1, "rp_output failed");
    k = 0;
    for (long i = 1; i <= n; i++)
        if (n % i == 0)
            d[k++] = i;
    return 0;
}

static void test_semantics_varsize(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 500;
    long *in = tu_iota(n);
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i + 1;
    rp_varout_t *vo = NULL;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map_var(p, divisors, in, n, sizeof(long), NULL, &vo, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 49);
    CU_ASSERT_EQUAL(e.task_code, 50);
    CU_ASSERT_EQUAL_FATAL(rp_varout_count(vo), n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size;
        const long *d = rp_varout_item(vo, i, &size);
        long x = in[i];
        if (x % 50 == 0) {
            bad += d != NULL || size != 0;
            continue;
        }
        if (!d || size == 0 || size % sizeof(long)) {
            bad++;
            continue;
        }
        size_t k = size / sizeof(long);
        bad += d[0] != 1 || d[k - 1] != x;
        for (size_t j = 0; j < k; j++)
            bad += x % d[j] != 0;
    }
    CU_ASSERT_EQUAL(bad, 0);
    rp_varout_free(vo);
    free(in);
    tu_pool_done(p);
}

/* ---- arguments ------------------------------------------------------------------------ */

static void test_semantics_bad_arguments(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    long in[4] = { 1, 2, 3, 4 }, out[4];
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map(p, NULL, in, 4, sizeof(long), out, sizeof(long), NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, NULL, 4, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof(long), NULL, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, SIZE_MAX / 2, sizeof(long), out, sizeof(long), NULL,
                           NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 4, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(NULL, square, in, 4, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    /* still usable */
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 4, sizeof(long), out, sizeof(long), NULL, &r),
                    RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(out[3], 16);
    rp_result_free(r);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_semantics_map_order),
        TU_TEST(test_semantics_map_async),
        TU_TEST(test_semantics_apply),
        TU_TEST(test_semantics_imap),
        TU_TEST(test_semantics_imap_unordered),
        TU_TEST(test_semantics_callbacks),
        TU_TEST(test_semantics_errors),
        TU_TEST(test_semantics_initializer),
        TU_TEST(test_semantics_max_tasks),
        TU_TEST(test_semantics_close_join),
        TU_TEST(test_semantics_terminate),
        TU_TEST(test_semantics_threads),
        TU_TEST(test_semantics_varsize),
        TU_TEST(test_semantics_bad_arguments),
        TU_END,
    };
    return tu_run("semantics", tests, argc, argv);
}
