/* Control of running work, on either backend (run locally and under mpirun -np 2):
 * rp_result_cancel / rp_iter_cancel / rp_pool_close_cancel, rp_result_wait_any /
 * rp_result_wait_all, rp_result_on_ready. */
#include "testutil.h"

#include <math.h>
#include <pthread.h>

/* i*i after a pause of in[1] microseconds (in[0] = i). */
static int nap_square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    const long *v = in;
    tu_sleep((double)v[1] * 1e-6);
    *(long *)out = v[0] * v[0];
    return 0;
}

/* The same with a variable-size output: i*i as a long. */
static int nap_square_var(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)out;
    const long *v = in;
    tu_sleep((double)v[1] * 1e-6);
    long *o = rp_output(ctx, sizeof(long));
    if (!o)
        return rp_raise(ctx, RP_ENOMEM, "no room");
    *o = v[0] * v[0];
    return 0;
}

/* Never returns (a runaway item). */
static int spin_forever(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)in;
    (void)ctx;
    volatile unsigned long x = 0;
    for (;;)
        x++;
    *(long *)out = (long)x;
    return 0;
}

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* n pairs {i, nap_us}. */
static long *pairs(size_t n, long nap_us)
{
    long *v = malloc(2 * n * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (size_t i = 0; i < n; i++) {
        v[2 * i] = (long)i;
        v[2 * i + 1] = nap_us;
    }
    return v;
}

/* Waits until at least `want` items of r are processed (at most 30 s). */
static size_t progress_at_least(rp_result_t *r, size_t want)
{
    size_t done = 0, total = 0;
    double end = tu_now() + 30;
    do {
        rp_result_progress(r, &done, &total);
        if (done >= want)
            break;
        tu_sleep(0.002);
    } while (tu_now() < end);
    return done;
}

/* Every item of a canceled map: a right output, or RP_ECANCELED. \return how
 * many succeeded; *wrong counts the others. */
static size_t check_canceled_map(rp_result_t *r, const long *out, size_t n, int *wrong)
{
    size_t nerr = rp_result_nerrors(r), k = 0, ok = 0;
    const rp_error_t *e = nerr ? rp_result_error(r, 0) : NULL;
    for (size_t i = 0; i < n; i++) {
        if (e && e->index == i) {
            *wrong += e->code != RP_ECANCELED;
            e = ++k < nerr ? rp_result_error(r, k) : NULL;
        } else {
            ok++;
            *wrong += out[i] != (long)(i * i);
        }
    }
    *wrong += k != nerr;
    return ok;
}

/* ---- cancel ------------------------------------------------------------------------ */

static void test_cancel_map_midway(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 10000 };
    long *in = pairs(N, 200), *out = calloc(N, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, N, 2 * sizeof(long), out,
                                       sizeof(long), NULL, &r), RP_OK);
    size_t before = progress_at_least(r, 1000);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_result_cancel(r, 0), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 10), RP_OK);
    double took = tu_now() - t0;
    printf("\n    cancel of a %d-item map after %zu items: ready in %.1f ms\n", N, before,
           took * 1e3);
    CU_ASSERT(took < 0.5); /* 50 ms expected; generous on a loaded machine */
    int wrong = 0;
    size_t ok = check_canceled_map(r, out, N, &wrong);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(ok >= before);                  /* what finished is kept */
    CU_ASSERT(rp_result_nerrors(r) > N / 2);  /* most never started */
    CU_ASSERT_EQUAL(ok + rp_result_nerrors(r), N);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 0, &e), RP_ECANCELED);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "rp_result_cancel"));
    CU_ASSERT_EQUAL(rp_result_successful(r), 0);
    rp_result_free(r);
    /* the pool goes on */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 1000, 2 * sizeof(long), out, sizeof(long), NULL,
                           NULL), RP_OK);
    long *sq = tu_iota(1000);
    CU_ASSERT_EQUAL(rp_map(p, square, sq, 1000, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 1000), 0);
    free(sq);
    tu_pool_done(p);
    free(in);
    free(out);
}

static void test_cancel_other_jobs_unaffected(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 2000 };
    long *in = pairs(N, 300);
    long *a = calloc(N, sizeof *a), *b = calloc(N, sizeof *b);
    rp_result_t *ra, *rb;
    rp_map_opts_t small = { .chunksize = 4 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, N, 2 * sizeof(long), a,
                                       sizeof(long), &small, &ra), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, 200, 2 * sizeof(long), b,
                                       sizeof(long), &small, &rb), RP_OK);
    progress_at_least(ra, 20);
    CU_ASSERT_EQUAL(rp_result_cancel(ra, 0), RP_OK);
    CU_ASSERT_EQUAL(rp_result_cancel(ra, 0), RP_OK); /* a second time: nothing more */
    CU_ASSERT_EQUAL(rp_result_get(rb, 30, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(b, 200), 0);
    CU_ASSERT_EQUAL(rp_result_wait(ra, 30), RP_OK);
    int wrong = 0;
    check_canceled_map(ra, a, N, &wrong);
    CU_ASSERT_EQUAL(wrong, 0);
    /* cancel of a ready result changes nothing */
    CU_ASSERT_EQUAL(rp_result_cancel(rb, RP_CANCEL_KILL), RP_OK);
    CU_ASSERT_EQUAL(rp_result_successful(rb), 1);
    CU_ASSERT_EQUAL(rp_result_nerrors(rb), 0);
    rp_result_free(ra);
    rp_result_free(rb);
    tu_pool_done(p);
    free(in);
    free(a);
    free(b);
}

static void test_cancel_apply(void)
{
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p)
        return;
    long busy[2] = { 3, 300000 }, quick[2] = { 4, 0 }, o1 = 0, o2 = 0, o3 = 0;
    rp_result_t *r1, *r2, *r3;
    /* r1 occupies the one worker (at least on the local backend); r2 waits */
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, busy, sizeof busy, &o1, sizeof o1,
                                         NULL, &r1), RP_OK);
    progress_at_least(r1, 0);
    tu_sleep(0.05);
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, quick, sizeof quick, &o2, sizeof o2,
                                         NULL, &r2), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, quick, sizeof quick, &o3, sizeof o3,
                                         NULL, &r3), RP_OK);
    /* canceling the running one lets it finish (no kill): its output is kept */
    CU_ASSERT_EQUAL(rp_result_cancel(r1, 0), RP_OK);
    CU_ASSERT_EQUAL(rp_result_cancel(r3, 0), RP_OK);
    rp_error_t e;
    int rc3 = rp_result_get(r3, 10, &e);
    CU_ASSERT(rc3 == RP_ECANCELED || rc3 == RP_OK); /* it may have started already */
    if (rc3 == RP_ECANCELED)
        CU_ASSERT_EQUAL(e.index, 0);
    int rc1 = rp_result_get(r1, 10, NULL);
    CU_ASSERT(rc1 == RP_OK || rc1 == RP_ECANCELED);
    if (rc1 == RP_OK)
        CU_ASSERT_EQUAL(o1, 9);
    CU_ASSERT_EQUAL(rp_result_get(r2, 10, NULL), RP_OK);
    CU_ASSERT_EQUAL(o2, 16);
    rp_result_free(r1);
    rp_result_free(r2);
    rp_result_free(r3);
    tu_pool_done(p);
}

/* An apply queued behind a running item is canceled before it starts. */
static void test_cancel_apply_not_started(void)
{
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p)
        return;
    enum { N = 40 };
    long *in = pairs(N, 20000), out[N], o = 0, x[2] = { 5, 0 };
    rp_result_t *busy, *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, N, 2 * sizeof(long), out,
                                       sizeof(long), &one, &busy), RP_OK);
    progress_at_least(busy, 1);
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, x, sizeof x, &o, sizeof o, NULL, &r),
                          RP_OK);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_result_cancel(r, 0), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 10, &e), RP_ECANCELED);
    CU_ASSERT(tu_now() - t0 < 0.5); /* not after the 0.8 s map */
    CU_ASSERT_EQUAL(e.code, RP_ECANCELED);
    CU_ASSERT_EQUAL(o, 0);
    CU_ASSERT_EQUAL(rp_result_get(busy, 30, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, N), 0);
    rp_result_free(r);
    rp_result_free(busy);
    tu_pool_done(p);
    free(in);
}

static void test_cancel_var_map(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 4000 };
    long *in = pairs(N, 300);
    rp_varout_t *vo = NULL;
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_var_async(p, nap_square_var, in, N, 2 * sizeof(long), NULL,
                                           &vo, &r), RP_OK);
    size_t before = progress_at_least(r, 200);
    CU_ASSERT_EQUAL(rp_result_cancel(r, 0), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 10), RP_OK);
    size_t ok = 0, canceled = 0;
    int wrong = 0;
    for (size_t i = 0; i < N; i++) {
        size_t size;
        const long *v = rp_varout_item(vo, i, &size);
        if (v) {
            ok++;
            wrong += size != sizeof(long) || *v != (long)(i * i);
        }
    }
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *e = rp_result_error(r, k);
        canceled += e && e->code == RP_ECANCELED;
        size_t size = 1;
        wrong += e && rp_varout_item(vo, e->index, &size) != NULL;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(ok >= before);
    CU_ASSERT(canceled > 0);
    CU_ASSERT_EQUAL(ok + canceled, N);
    rp_result_free(r);
    rp_varout_free(vo);
    tu_pool_done(p);
    free(in);
}

/* After rp_iter_cancel the iterator yields every item once: finished ones with
 * their output, the others as RP_ECANCELED; then RP_DONE. */
static void iterate_canceled(rp_pool_t *p, bool ordered)
{
    enum { N = 3000 };
    long *in = pairs(N, 300);
    rp_iter_t *it;
    int rc = ordered ? rp_imap(p, nap_square, in, N, 2 * sizeof(long), sizeof(long), NULL, &it)
                     : rp_imap_unordered(p, nap_square, in, N, 2 * sizeof(long), sizeof(long),
                                         NULL, &it);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    unsigned char *seen = calloc(N, 1);
    size_t got = 0, ok = 0, canceled = 0;
    int wrong = 0;
    for (;;) {
        size_t idx;
        long v = -1;
        rp_error_t e;
        rc = rp_iter_next(it, 30, &idx, &v, &e);
        if (rc == RP_DONE || rc == RP_ETIMEDOUT)
            break;
        if (got == 10)
            CU_ASSERT_EQUAL(rp_iter_cancel(it, 0), RP_OK);
        got++;
        wrong += idx >= N || seen[idx];
        if (idx < N)
            seen[idx] = 1;
        if (ordered)
            wrong += idx != got - 1;
        if (rc == RP_OK) {
            ok++;
            wrong += v != (long)(idx * idx);
        } else {
            canceled++;
            wrong += rc != RP_ECANCELED || e.code != RP_ECANCELED || e.index != idx;
        }
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(got, N);
    CU_ASSERT_EQUAL(wrong, 0);
    printf("\n    %s iterator canceled after 10 items: %zu finished, %zu canceled\n",
           ordered ? "ordered" : "unordered", ok, canceled);
    CU_ASSERT(ok >= 10);
    CU_ASSERT(canceled > N / 4);
    CU_ASSERT_EQUAL(rp_iter_next(it, 0, NULL, NULL, NULL), RP_DONE);
    rp_iter_free(it);
    free(seen);
    free(in);
}

static void test_cancel_iterator(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    iterate_canceled(p, true);
    iterate_canceled(p, false);
    tu_pool_done(p);
}

static void test_cancel_kill_running(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[3] = { 1, 2, 3 }, out[3] = { 0, 0, 0 };
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, spin_forever, in, 3, sizeof(long), out, sizeof(long),
                                       &one, &r), RP_OK);
    tu_sleep(0.2); /* both workers inside an endless item */
    CU_ASSERT_EQUAL(rp_result_wait(r, 0.05), RP_ETIMEDOUT);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_result_cancel(r, RP_CANCEL_KILL), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_result_wait(r, 10), RP_OK);
    printf("\n    cancel with kill of endless items: ready in %.1f ms\n", (tu_now() - t0) * 1e3);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 3);
    int killed = 0;
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *e = rp_result_error(r, k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(e->code, RP_ECANCELED);
        CU_ASSERT_EQUAL(e->index, k);
        killed += strstr(e->message, "killed while running") != NULL;
    }
    CU_ASSERT(killed >= 1 && killed <= 2); /* the running ones (one per worker) */
    rp_result_free(r);
    /* the killed workers were replaced: the pool goes on, at full size */
    enum { M = 500 };
    long *sq = tu_iota(M), *o = calloc(M, sizeof *o);
    CU_ASSERT_EQUAL(rp_map(p, square, sq, M, sizeof(long), o, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(o, M), 0);
    CU_ASSERT_EQUAL(rp_pool_size(p), 2);
    free(sq);
    free(o);
    tu_pool_done(p);
}

static void test_cancel_close_cancel(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 5000 };
    long *in = pairs(N, 300), *out = calloc(N, sizeof *out), o2[100];
    rp_result_t *r, *r2;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, N, 2 * sizeof(long), out,
                                       sizeof(long), NULL, &r), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, 100, 2 * sizeof(long), o2,
                                       sizeof(long), NULL, &r2), RP_OK);
    progress_at_least(r, 100);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_close_cancel(p, 0), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT(tu_now() - t0 < 2.0);
    CU_ASSERT(rp_result_ready(r));
    CU_ASSERT(rp_result_ready(r2));
    int wrong = 0;
    check_canceled_map(r, out, N, &wrong);
    check_canceled_map(r2, o2, 100, &wrong);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(rp_result_nerrors(r) > 0);
    rp_result_t *r3 = NULL;
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 1, sizeof(long), out, sizeof(long), NULL, &r3),
                    RP_ECLOSED);
    rp_result_free(r);
    rp_result_free(r2);
    rp_pool_free(p);
    free(in);
    free(out);
}

/* ---- wait for any ------------------------------------------------------------------ */

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void test_cancel_wait_any_in_order(void)
{
    rp_pool_t *p = tu_pool(3, NULL);
    if (!p)
        return;
    /* durations 0.6, 0.2, 0.4 s: they become ready in the order 1, 2, 0 */
    long in[3][2] = { { 0, 600000 }, { 1, 200000 }, { 2, 400000 } }, out[3] = { 0, 0, 0 };
    rp_result_t *r[3], *left[3];
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, in[i], sizeof in[i], &out[i],
                                             sizeof out[i], NULL, &r[i]), RP_OK);
        left[i] = r[i];
    }
    size_t order[3], idx = 99;
    CU_ASSERT_EQUAL(rp_result_wait_any(left, 3, 0, &idx), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_result_wait_any(left, 3, -5.0, &idx), RP_ETIMEDOUT); /* polls */
    CU_ASSERT_EQUAL(rp_result_wait_all(left, 3, 0.01), RP_ETIMEDOUT);
    double wall0 = tu_now(), cpu0 = thread_cpu();
    for (int k = 0; k < 3; k++) { /* as_completed */
        CU_ASSERT_EQUAL_FATAL(rp_result_wait_any(left, 3, 10, &idx), RP_OK);
        CU_ASSERT_FATAL(idx < 3 && left[idx]);
        CU_ASSERT(rp_result_ready(left[idx]));
        order[k] = idx;
        left[idx] = NULL;
    }
    double wall = tu_now() - wall0, cpu = thread_cpu() - cpu0;
    printf("\n    wait_any: order %zu %zu %zu; waited %.3f s using %.3f ms of CPU (%.2f%%)\n",
           order[0], order[1], order[2], wall, cpu * 1e3, 100 * cpu / wall);
    CU_ASSERT_EQUAL(order[0], 1);
    CU_ASSERT_EQUAL(order[1], 2);
    CU_ASSERT_EQUAL(order[2], 0);
    CU_ASSERT(cpu < 0.02 * wall);
    CU_ASSERT_EQUAL(rp_result_wait_any(left, 3, 0, &idx), RP_EINVAL); /* every entry taken */
    CU_ASSERT_EQUAL(rp_result_wait_all(r, 3, 0), RP_OK);
    for (int i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(rp_result_get(r[i], 0, NULL), RP_OK);
        CU_ASSERT_EQUAL(out[i], (long)(i * i));
        rp_result_free(r[i]);
    }
    tu_pool_done(p);
}

static void test_cancel_wait_all(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[4][2] = { { 0, 100000 }, { 1, 0 }, { 2, 200000 }, { 3, 50000 } }, out[4];
    rp_result_t *r[4];
    for (int i = 0; i < 4; i++)
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, in[i], sizeof in[i], &out[i],
                                             sizeof out[i], NULL, &r[i]), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait_all(r, 4, 10), RP_OK);
    for (int i = 0; i < 4; i++) {
        CU_ASSERT(rp_result_ready(r[i]));
        CU_ASSERT_EQUAL(out[i], (long)(i * i));
        rp_result_free(r[i]);
    }
    tu_pool_done(p);
}

/* ---- on_ready ---------------------------------------------------------------------- */

struct seen {
    pthread_mutex_t lock;
    int             calls;
    int             order[4];
    pthread_t       thread;
    bool            ready_inside;
    bool            free_inside;
};

static void on_ready_cb(rp_result_t *r, void *ud)
{
    struct seen *s = ud;
    pthread_mutex_lock(&s->lock);
    s->order[s->calls < 4 ? s->calls : 3] = 1;
    s->calls++;
    s->thread = pthread_self();
    s->ready_inside = rp_result_ready(r);
    pthread_mutex_unlock(&s->lock);
    if (s->free_inside)
        rp_result_free(r);
}

static void opts_cb(rp_result_t *r, void *ud)
{
    (void)r;
    struct seen *s = ud;
    pthread_mutex_lock(&s->lock);
    s->order[s->calls < 4 ? s->calls : 3] = 2;
    s->calls++;
    pthread_mutex_unlock(&s->lock);
}

static int calls_of(struct seen *s, double seconds)
{
    double end = tu_now() + seconds;
    int n;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        n = s->calls;
        pthread_mutex_unlock(&s->lock);
        if (n > 0 || tu_now() >= end)
            return n;
        tu_sleep(0.001);
    }
}

static void test_cancel_on_ready(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[2] = { 6, 200000 }, out = 0;
    /* pending: runs on the pool's thread once ready */
    struct seen a = { .lock = PTHREAD_MUTEX_INITIALIZER };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, in, sizeof in, &out, sizeof out, NULL,
                                         &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_on_ready(r, on_ready_cb, &a), RP_OK);
    CU_ASSERT_EQUAL(calls_of(&a, 0), 0);
    CU_ASSERT_EQUAL(rp_result_wait(r, 10), RP_OK);
    CU_ASSERT_EQUAL(calls_of(&a, 10), 1);
    CU_ASSERT(a.ready_inside);
    CU_ASSERT(!pthread_equal(a.thread, pthread_self()));
    CU_ASSERT_EQUAL(out, 36);
    /* ready: at once, on this thread */
    struct seen b = { .lock = PTHREAD_MUTEX_INITIALIZER };
    CU_ASSERT_EQUAL(rp_result_on_ready(r, on_ready_cb, &b), RP_OK);
    CU_ASSERT_EQUAL(b.calls, 1);
    CU_ASSERT(pthread_equal(b.thread, pthread_self()));
    rp_result_free(r);

    /* with an rp_map_opts_t callback: that one first; freed inside on_ready */
    struct seen c = { .lock = PTHREAD_MUTEX_INITIALIZER, .free_inside = true };
    rp_map_opts_t mo = { .callback = opts_cb, .userdata = &c };
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, in, sizeof in, &out, sizeof out, &mo,
                                         &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_on_ready(r, on_ready_cb, &c), RP_OK);
    double end = tu_now() + 10;
    while (calls_of(&c, 0) < 2 && tu_now() < end)
        tu_sleep(0.001);
    CU_ASSERT_EQUAL(c.calls, 2);
    CU_ASSERT_EQUAL(c.order[0], 2);
    CU_ASSERT_EQUAL(c.order[1], 1);
    /* (r was freed by the callback) */

    /* a canceled result's callback runs too */
    struct seen d = { .lock = PTHREAD_MUTEX_INITIALIZER };
    enum { N = 2000 };
    long *many = pairs(N, 300), *o = calloc(N, sizeof *o);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, many, N, 2 * sizeof(long), o,
                                       sizeof(long), NULL, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_on_ready(r, on_ready_cb, &d), RP_OK);
    progress_at_least(r, 50);
    CU_ASSERT_EQUAL(rp_result_cancel(r, 0), RP_OK);
    CU_ASSERT_EQUAL(calls_of(&d, 10), 1);
    CU_ASSERT(rp_result_nerrors(r) > 0);
    rp_result_free(r);
    free(many);
    free(o);
    tu_pool_done(p);
}

/* Callbacks on results whose jobs still wait for a job slot (more jobs in flight
 * than a pool runs at once) run once each, like the others; once those slots are
 * given back, plain jobs in them complete for their waiter as before. */
static void test_cancel_on_ready_while_queued(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 100, PLAIN = 200 };
    long *in = pairs(N, 10000), out[N];
    rp_result_t *r[N];
    static struct seen s[N];
    for (int i = 0; i < N; i++) {
        s[i] = (struct seen){ .lock = PTHREAD_MUTEX_INITIALIZER };
        out[i] = -1;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, nap_square, in + 2 * i, 2 * sizeof(long),
                                             &out[i], sizeof out[i], NULL, &r[i]), RP_OK);
    }
    for (int i = N - 1; i >= 0; i--) /* the last first: they wait for a slot */
        CU_ASSERT_EQUAL(rp_result_on_ready(r[i], on_ready_cb, &s[i]), RP_OK);
    int once = 0, right = 0;
    double end = tu_now() + 30; /* for all of them (0.5 s of naps on 2 workers) */
    for (int i = 0; i < N; i++) {
        CU_ASSERT_EQUAL(rp_result_wait(r[i], fmax(end - tu_now(), 0)), RP_OK);
        once += calls_of(&s[i], fmax(end - tu_now(), 0)) == 1;
        right += out[i] == (long)i * i;
        rp_result_free(r[i]);
    }
    CU_ASSERT_EQUAL(once, N);
    CU_ASSERT_EQUAL(right, N);
    right = 0;
    for (long i = 0; i < PLAIN; i++) {
        long x[2] = { i, 0 }, y = -1;
        CU_ASSERT_EQUAL(rp_apply(p, nap_square, x, sizeof x, &y, sizeof y, NULL), RP_OK);
        right += y == i * i;
    }
    CU_ASSERT_EQUAL(right, PLAIN);
    free(in);
    tu_pool_done(p);
}

/* ---- bad arguments ----------------------------------------------------------------- */

static void noop_cb(rp_result_t *r, void *ud)
{
    (void)r;
    (void)ud;
}

static void test_cancel_bad_arguments(void)
{
    CU_ASSERT_EQUAL(rp_result_cancel(NULL, 0), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_iter_cancel(NULL, 0), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_close_cancel(NULL, 0), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_on_ready(NULL, noop_cb, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_wait_any(NULL, 3, 0, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_wait_all(NULL, 3, 0), RP_EINVAL);
    rp_result_t *none[2] = { NULL, NULL };
    size_t idx = 7;
    CU_ASSERT_EQUAL(rp_result_wait_any(none, 2, 0, &idx), RP_EINVAL);
    CU_ASSERT_EQUAL(idx, 7);
    CU_ASSERT_EQUAL(rp_result_wait_all(none, 2, 0), RP_EINVAL);
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p)
        return;
    long x = 3, out = 0;
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &x, sizeof x, &out, sizeof out, NULL, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_cancel(r, 0x40), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_close_cancel(p, -1), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_on_ready(r, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_wait_any(&r, 0, 0, &idx), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_wait_all(&r, 0, 0), RP_EINVAL);
    rp_result_t *mixed[2] = { r, NULL };
    CU_ASSERT_EQUAL(rp_result_wait_all(mixed, 2, 0), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_wait_any(mixed, 2, NAN, &idx) == RP_OK ||
                        rp_result_wait_any(mixed, 2, NAN, &idx) == RP_ETIMEDOUT, 1);
    CU_ASSERT_EQUAL(rp_result_wait_any(mixed, 2, 10, &idx), RP_OK);
    CU_ASSERT_EQUAL(idx, 0);
    CU_ASSERT_EQUAL(out, 9);
    rp_result_free(r);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_cancel_map_midway),
        TU_TEST(test_cancel_other_jobs_unaffected),
        TU_TEST(test_cancel_apply),
        TU_TEST(test_cancel_apply_not_started),
        TU_TEST(test_cancel_var_map),
        TU_TEST(test_cancel_iterator),
        TU_TEST(test_cancel_kill_running),
        TU_TEST(test_cancel_close_cancel),
        TU_TEST(test_cancel_wait_any_in_order),
        TU_TEST(test_cancel_wait_all),
        TU_TEST(test_cancel_on_ready),
        TU_TEST(test_cancel_on_ready_while_queued),
        TU_TEST(test_cancel_bad_arguments),
        TU_END,
    };
    return tu_run("cancel", tests, argc, argv);
}
