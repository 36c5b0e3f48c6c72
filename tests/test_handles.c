/* A result handle stays valid, and tells its own job's outcome, until the
 * caller frees it, however many other results are created and freed meanwhile
 * (the core reuses the record of a freed result for the next one: result.c).
 * Shared suite: runs on the local backend and under mpirun -np 2. Behaviour
 * only: no timing. */
#include "testutil.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>

enum { HELD = 48, CHURN = 1500, THREADS = 3 };

/* out = in * in; an input that is a multiple of 7 fails, naming itself. */
static int square_or_fail(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 7 == 0)
        return rp_raise(ctx, 40 + (int)(x % 5), "no square for %ld", x);
    *(long *)out = x * x;
    return 0;
}

/* Submits apply_async(x) for x = base + k, k < n, into res[k]/out[k]. */
static void submit_held(rp_pool_t *p, long base, size_t n, long *in, long *out,
                        rp_result_t **res)
{
    for (size_t k = 0; k < n; k++) {
        in[k] = base + (long)k;
        out[k] = -1;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square_or_fail, &in[k], sizeof in[k], &out[k],
                                             sizeof out[k], NULL, &res[k]),
                              RP_OK);
    }
}

/* What a held result must say about input x (its output in *out). Checked
 * twice: the error record's pointer must not change while the handle lives. */
static void check_held(rp_result_t *r, long x, const long *out, const rp_error_t **first)
{
    rp_error_t e;
    memset(&e, 0, sizeof e);
    int rc = rp_result_get(r, RP_FOREVER, &e);
    CU_ASSERT_TRUE(rp_result_ready(r));
    if (x % 7 == 0) {
        char want[64];
        snprintf(want, sizeof want, "no square for %ld", x);
        CU_ASSERT_EQUAL(rc, RP_ETASK);
        CU_ASSERT_EQUAL(e.task_code, 40 + (int)(x % 5));
        CU_ASSERT_STRING_EQUAL(e.message, want);
        CU_ASSERT_EQUAL(rp_result_successful(r), 0);
        CU_ASSERT_EQUAL(rp_result_nerrors(r), 1);
        const rp_error_t *rec = rp_result_error(r, 0);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
        CU_ASSERT_STRING_EQUAL(rec->message, want);
        CU_ASSERT_EQUAL(rec->index, 0);
        if (*first)
            CU_ASSERT_PTR_EQUAL(rec, *first);
        *first = rec;
    } else {
        CU_ASSERT_EQUAL(rc, RP_OK);
        CU_ASSERT_EQUAL(*out, x * x);
        CU_ASSERT_EQUAL(rp_result_successful(r), 1);
        CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
        CU_ASSERT_PTR_NULL(rp_result_error(r, 0));
    }
    size_t done = 0, total = 0;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, 1);
    CU_ASSERT_EQUAL(total, 1);
}

/* count back-to-back rp_apply calls (each creates and frees a result), checked. */
static int churn(rp_pool_t *p, long base, int count)
{
    int wrong = 0;
    for (int i = 0; i < count; i++) {
        long x = base + i, y = -1;
        rp_error_t e;
        int rc = rp_apply(p, square_or_fail, &x, sizeof x, &y, sizeof y, &e);
        if (x % 7 == 0)
            wrong += rc != RP_ETASK || e.task_code != 40 + (int)(x % 5);
        else
            wrong += rc != RP_OK || y != x * x;
    }
    return wrong;
}

/* Held results, ready and pending, outlive thousands of applies; freed half
 * by half (in another order than made), the rest still tell their own jobs. */
static void test_handles_outlive_other_applies(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[HELD], out[HELD];
    rp_result_t *res[HELD];
    const rp_error_t *first[HELD] = { 0 };
    submit_held(p, 1000, HELD, in, out, res);
    for (size_t k = 0; k < HELD; k += 2) /* half of them ready before the churn */
        check_held(res[k], in[k], &out[k], &first[k]);
    CU_ASSERT_EQUAL(churn(p, 1, CHURN), 0);
    for (size_t k = 0; k < HELD; k++)
        check_held(res[k], in[k], &out[k], &first[k]);
    for (size_t k = 1; k < HELD; k += 2)
        rp_result_free(res[k]);
    CU_ASSERT_EQUAL(churn(p, 5000, CHURN), 0);
    for (size_t k = 0; k < HELD; k += 2) {
        check_held(res[k], in[k], &out[k], &first[k]);
        rp_result_free(res[k]);
    }
    tu_pool_done(p);
}

struct thread_arg {
    rp_pool_t *p;
    long       base;
    int        wrong;
};

/* Each thread holds results of its own while it churns, then checks them. */
static void *thread_main(void *arg)
{
    struct thread_arg *a = arg;
    enum { N = 8 };
    long in[N], out[N];
    rp_result_t *res[N];
    for (int round = 0; round < 20; round++) {
        long base = a->base + round * 100;
        for (int k = 0; k < N; k++) {
            in[k] = base + k;
            out[k] = -1;
            if (rp_apply_async(a->p, square_or_fail, &in[k], sizeof in[k], &out[k],
                               sizeof out[k], NULL, &res[k]) != RP_OK) {
                a->wrong++;
                res[k] = NULL;
            }
        }
        a->wrong += churn(a->p, base + 50, 40);
        for (int k = N - 1; k >= 0; k--) {
            if (!res[k])
                continue;
            rp_error_t e;
            int rc = rp_result_get(res[k], RP_FOREVER, &e);
            if (in[k] % 7 == 0)
                a->wrong += rc != RP_ETASK || e.task_code != 40 + (int)(in[k] % 5);
            else
                a->wrong += rc != RP_OK || out[k] != in[k] * in[k];
            rp_result_free(res[k]);
        }
    }
    return NULL;
}

/* Results made and freed on several threads at once (a record freed on one
 * thread is reused by another) each tell their own job. */
static void test_handles_across_threads(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    pthread_t t[THREADS];
    struct thread_arg a[THREADS];
    for (int i = 0; i < THREADS; i++) {
        a[i] = (struct thread_arg){ p, 100000L * (i + 1), 0 };
        CU_ASSERT_EQUAL_FATAL(pthread_create(&t[i], NULL, thread_main, &a[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        CU_ASSERT_EQUAL(a[i].wrong, 0);
    }
    tu_pool_done(p);
}

struct cb_seen {
    pthread_mutex_t lock;
    int             calls, errors;
};

static void on_done(rp_result_t *r, void *userdata)
{
    struct cb_seen *s = userdata;
    (void)r;
    pthread_mutex_lock(&s->lock);
    s->calls++;
    pthread_mutex_unlock(&s->lock);
}

static void on_error(const rp_error_t *e, void *userdata)
{
    struct cb_seen *s = userdata;
    (void)e;
    pthread_mutex_lock(&s->lock);
    s->errors++;
    pthread_mutex_unlock(&s->lock);
}

/* Results with callbacks (finalized, and possibly freed, on the pool thread)
 * mixed with plain applies: every callback runs once, every handle stays right. */
static void test_handles_with_callbacks(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    struct cb_seen s = { PTHREAD_MUTEX_INITIALIZER, 0, 0 };
    rp_map_opts_t o;
    memset(&o, 0, sizeof o);
    o.callback = on_done;
    o.error_callback = on_error;
    o.userdata = &s;
    long in[HELD], out[HELD];
    rp_result_t *res[HELD];
    int fails = 0;
    for (size_t k = 0; k < HELD; k++) {
        in[k] = 7000 + (long)k;
        out[k] = -1;
        fails += in[k] % 7 == 0;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square_or_fail, &in[k], sizeof in[k], &out[k],
                                             sizeof out[k], &o, &res[k]),
                              RP_OK);
        if (k % 4 == 3) { /* some freed at once: the pool thread drops the last reference */
            rp_result_free(res[k]);
            res[k] = NULL;
        }
        CU_ASSERT_EQUAL(churn(p, 20 + 10 * (long)k, 10), 0);
    }
    const rp_error_t *first = NULL;
    for (size_t k = 0; k < HELD; k++) {
        if (!res[k])
            continue;
        first = NULL;
        check_held(res[k], in[k], &out[k], &first);
        rp_result_free(res[k]);
    }
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK); /* every callback has run */
    CU_ASSERT_EQUAL(s.calls, HELD - fails);
    CU_ASSERT_EQUAL(s.errors, fails);
    rp_pool_free(p);
}

/* ---- a task's module unloaded and another loaded between two applies ------------ */

static bool on_mpi(const rp_pool_t *p)
{
    return strcmp(rp_pool_backend(p), "mpi") == 0;
}

/* The task of module a is applied; a is unloaded and module b loaded, often at
 * the same address (its task at the same offset, so the same pointer): an apply
 * of b's task runs b's task, never a's. On MPI the same pool carries both (the
 * serving ranks hold both modules); a local pool's workers see what was loaded
 * when they were forked, so there b's task gets a new pool. */
static void test_handles_task_module_reloaded(void)
{
    void *ha = NULL, *hb = NULL;
    tu_dlmod_fn fa = tu_dlmod_open("a", &ha);
    if (!tu_master_rank())
        tu_dlmod_open("b", &hb);
    rp_pool_t *p = tu_pool(1, NULL);
    if (!p) {
        dlclose(ha);
        if (hb)
            dlclose(hb);
        return;
    }
    long x = 5, y = 0;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_apply(p, (rp_task_fn)fa, &x, sizeof x, &y, sizeof y, &e), RP_OK);
    CU_ASSERT_EQUAL(y, 1005);
    uintptr_t a_at = (uintptr_t)fa;
    CU_ASSERT_EQUAL_FATAL(dlclose(ha), 0);
    tu_dlmod_fn fb = tu_dlmod_open("b", &hb);
    if (!on_mpi(p)) {
        tu_pool_done(p);
        p = tu_pool(1, NULL);
        CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    }
    for (int i = 0; i < 3; i++) {
        y = 0;
        CU_ASSERT_EQUAL(rp_apply(p, (rp_task_fn)fb, &x, sizeof x, &y, sizeof y, &e), RP_OK);
        CU_ASSERT_EQUAL(y, 2005);
    }
    printf("\n    b loaded %s a's address ", (uintptr_t)fb == a_at ? "at" : "away from");
    tu_pool_done(p);
    dlclose(hb);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_handles_outlive_other_applies),
        TU_TEST(test_handles_across_threads),
        TU_TEST(test_handles_with_callbacks),
        TU_TEST(test_handles_task_module_reloaded),
        TU_END,
    };
    return tu_run("handles", tests, argc, argv);
}
