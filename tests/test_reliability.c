/* Reliability: what an attack on the library as a hostile user found, each kept
 * as a test. The program runs on the local backend and, through tests/mpi-np2.sh,
 * under mpirun on the mpi backend (every rank runs the same pool creations;
 * serving ranks get NULL from tu_pool and skip the body). Tests of the local
 * backend's processes and shared memory skip themselves on the mpi backend.
 *
 * A test whose defect would hang runs the call in a helper thread and gives up
 * after a generous bound, so that the defect fails the test instead of stalling
 * the suite. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Bound for calls that must return "promptly": far above what they take on a
 * loaded machine, far below forever. */
#define PROMPT_S 20.0

/* ---- tasks ------------------------------------------------------------------- */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* ---- rp_output with a size that cannot be ------------------------------------ */

static const size_t huge_sizes[] = {
    SIZE_MAX, SIZE_MAX - 7, SIZE_MAX - 15, SIZE_MAX - 63, SIZE_MAX / 2 + 1, (size_t)1 << 62,
};

/* Every third item first asks for impossible sizes (each must be NULL), then every
 * item writes (x, x*x). */
static int huge_then_small(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 3 == 0)
        for (size_t k = 0; k < sizeof huge_sizes / sizeof *huge_sizes; k++)
            if (rp_output(ctx, huge_sizes[k]) != NULL)
                return rp_raise(ctx, 99, "rp_output(%zu) was not NULL", huge_sizes[k]);
    long *o = rp_output(ctx, 2 * sizeof(long));
    if (!o)
        return rp_raise(ctx, 98, "rp_output(16) failed");
    o[0] = x;
    o[1] = x * x;
    return 0;
}

static void test_reliability_output_huge_size_is_null(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 300;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    size_t chunks[] = { 0, 1, 300 };
    for (size_t c = 0; c < sizeof chunks / sizeof *chunks; c++) {
        rp_map_opts_t mo = { .chunksize = chunks[c] };
        rp_varout_t *vo = NULL;
        rp_error_t e;
        memset(&e, 0, sizeof e);
        int rc = rp_map_var(p, huge_then_small, in, n, sizeof(long), &mo, &vo, &e);
        CU_ASSERT_EQUAL(rc, RP_OK);
        if (rc != RP_OK)
            printf("\n  chunksize %zu: %s, item %zu: %s\n", chunks[c], rp_err_name(rc), e.index,
                   e.message);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            size_t size;
            const long *d = rp_varout_item(vo, i, &size);
            bad += !d || size != 2 * sizeof(long) || d[0] != (long)i || d[1] != (long)(i * i);
        }
        CU_ASSERT_EQUAL(bad, 0);
        rp_varout_free(vo);
        /* every worker (every rank) is still there and works */
        CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof(long), out, sizeof(long), &mo, NULL),
                        RP_OK);
        CU_ASSERT_EQUAL(tu_wrong_squares(out, n), 0);
    }
    free(in);
    free(out);
    tu_pool_done(p);
}

/* ---- sizes near SIZE_MAX ------------------------------------------------------- */

static const size_t bad_sizes[] = {
    SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 7, SIZE_MAX - 63, SIZE_MAX - 64, SIZE_MAX / 2 + 1,
};

static void test_reliability_sizes_near_size_max(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    long in[4] = { 1, 2, 3, 4 }, out[4];
    int wrong = 0;
    for (size_t k = 0; k < sizeof bad_sizes / sizeof *bad_sizes; k++) {
        size_t s = bad_sizes[k];
        rp_result_t *r = NULL;
        rp_iter_t *it = NULL;
        rp_varout_t *vo = NULL;
        int rc[8] = {
            rp_map(p, square, in, 1, sizeof(long), out, s, NULL, NULL),
            rp_map(p, square, in, 1, s, out, sizeof(long), NULL, NULL),
            rp_apply(p, square, in, sizeof(long), out, s, NULL),
            rp_apply(p, square, in, s, out, sizeof(long), NULL),
            rp_map_async(p, square, in, 1, sizeof(long), out, s, NULL, &r),
            rp_imap(p, square, in, 1, sizeof(long), s, NULL, &it),
            rp_imap_unordered(p, square, in, 1, s, sizeof(long), NULL, &it),
            rp_map_var(p, square, in, 1, s, NULL, &vo, NULL),
        };
        for (int i = 0; i < 8; i++)
            if (rc[i] != RP_EINVAL) {
                wrong++;
                printf("\n  size %zu, call %d: %s\n", s, i, rp_err_name(rc[i]));
            }
        CU_ASSERT_PTR_NULL(r);
        CU_ASSERT_PTR_NULL(it);
        CU_ASSERT_PTR_NULL(vo);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    /* n * size past PTRDIFF_MAX without wrapping SIZE_MAX */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof(long), out, SIZE_MAX / 4, NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 2, SIZE_MAX / 4 + 1, out, sizeof(long), NULL, NULL),
                    RP_EINVAL);
    /* the pool is unharmed */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof(long), out, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(out[3], 16);
    tu_pool_done(p);
}

/* ---- timeouts: only RP_FOREVER (and +inf) waits without limit ---------------------- */

static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.25);
    return square(in, out, ctx);
}

static void cb_nothing(rp_result_t *r, void *ud)
{
}

static const double polls[] = { -0.5, -1e-9, -2.0, -1.0000001, -INFINITY, NAN };

/* Each call must answer RP_ETIMEDOUT at once while the work runs. */
static int count_slow_polls(rp_result_t *r, rp_iter_t *it)
{
    int wrong = 0;
    for (size_t k = 0; k < sizeof polls / sizeof *polls; k++) {
        double t0 = tu_now();
        int rc[3];
        rc[0] = rp_result_wait(r, polls[k]);
        rc[1] = rp_result_get(r, polls[k], NULL);
        rc[2] = rp_iter_next(it, polls[k], NULL, NULL, NULL);
        double took = tu_now() - t0;
        for (int i = 0; i < 3; i++)
            if (rc[i] != RP_ETIMEDOUT) {
                wrong++;
                printf("\n  timeout %g, call %d: %s\n", polls[k], i, rp_err_name(rc[i]));
            }
        if (took > 2.0) {
            wrong++;
            printf("\n  timeout %g: %.2f s\n", polls[k], took);
        }
    }
    return wrong;
}

static void test_reliability_negative_and_nan_timeouts_poll(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    enum { N = 24 };
    long in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t one = { .chunksize = 1 }, cb = { .chunksize = 1, .callback = cb_nothing };
    rp_result_t *r, *rcb;
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_square, in, N, sizeof(long), out, sizeof(long), &one,
                                       &r),
                          RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_square, in, N, sizeof(long), out, sizeof(long), &cb,
                                       &rcb),
                          RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, slow_square, in, N, sizeof(long), sizeof(long), &one, &it),
                          RP_OK);
    CU_ASSERT_EQUAL(count_slow_polls(r, it), 0);
    CU_ASSERT_EQUAL(count_slow_polls(rcb, it), 0);
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    /* RP_FOREVER and +inf wait (the results are ready now) */
    CU_ASSERT_EQUAL(rp_result_wait(r, RP_FOREVER), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(rcb, INFINITY), RP_OK);
    rp_result_free(r);
    rp_result_free(rcb);
    rp_iter_free(it);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* ---- rp_result_error pointers inside a failure range -------------------------- */

static int nap_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.01);
    return square(in, out, ctx);
}

static void test_reliability_error_pointers_stay_valid(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    size_t n = 20000;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    rp_map_opts_t one = { .chunksize = 1 };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, n, sizeof(long), out, sizeof(long),
                                       &one, &r),
                          RP_OK);
    tu_sleep(0.2);
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_result_wait(r, PROMPT_S), RP_OK);
    size_t ne = rp_result_nerrors(r);
    CU_ASSERT_FATAL(ne >= 1000 && ne <= n);
    /* Keep 200 pointers spread over the failures, with copies of what they show. */
    enum { K = 200 };
    const rp_error_t *kept[K];
    rp_error_t copy[K];
    size_t step = ne / K;
    for (size_t k = 0; k < K; k++) {
        kept[k] = rp_result_error(r, k * step);
        CU_ASSERT_PTR_NOT_NULL_FATAL(kept[k]);
        copy[k] = *kept[k];
    }
    /* Ask for every failure, the kept ones again too. */
    for (size_t i = 0; i < ne; i++)
        CU_ASSERT_PTR_NOT_NULL(rp_result_error(r, i));
    size_t changed = 0, unordered = 0, codes = 0;
    for (size_t k = 0; k < K; k++) {
        changed += memcmp(kept[k], &copy[k], sizeof copy[k]) != 0;
        codes += copy[k].code != RP_ECANCELED;
        if (k > 0)
            unordered += copy[k].index <= copy[k - 1].index;
    }
    CU_ASSERT_EQUAL(changed, 0);
    CU_ASSERT_EQUAL(unordered, 0);
    CU_ASSERT_EQUAL(codes, 0);
    /* the i-th failure is the item at index (outputs before it succeeded) */
    CU_ASSERT_EQUAL(copy[K - 1].index, n - ne + (K - 1) * step);
    rp_result_free(r);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
    free(in);
    free(out);
}

/* ---- helper thread with a bound ---------------------------------------------- */

struct bounded {
    pthread_t   t;
    void     *(*fn)(void *);
    void       *arg;
    _Atomic int done;
};

static void *bounded_main(void *arg)
{
    struct bounded *b = arg;
    b->fn(b->arg);
    atomic_store(&b->done, 1);
    return NULL;
}

static void bounded_start(struct bounded *b, void *(*fn)(void *), void *arg)
{
    b->fn = fn;
    b->arg = arg;
    atomic_init(&b->done, 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&b->t, NULL, bounded_main, b), 0);
}

/* Waits up to `seconds` for the helper; joins it if it finished. \return whether
 * it did (if not, the thread is left behind: the call it makes hangs). */
static bool bounded_join(struct bounded *b, double seconds)
{
    double end = tu_now() + seconds;
    while (!atomic_load(&b->done) && tu_now() < end)
        tu_sleep(0.005);
    if (!atomic_load(&b->done))
        return false;
    pthread_join(b->t, NULL);
    return true;
}

/* ---- rp_result_free while other threads wait on the result --------------------- */

struct waiter {
    rp_result_t *r;
    bool         get;
    int          rc;
    _Atomic int  entered;
};

static void *waiter_main(void *arg)
{
    struct waiter *w = arg;
    rp_error_t e;
    atomic_store(&w->entered, 1);
    w->rc = w->get ? rp_result_get(w->r, RP_FOREVER, &e) : rp_result_wait(w->r, RP_FOREVER);
    return NULL;
}

static void test_reliability_free_while_others_wait(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    /* freed memory is overwritten at once: a waiter still reading it notices */
    mallopt(M_PERTURB, 0xa5);
    enum { ROUNDS = 12, W = 3, N = 2 };
    long in[N] = { 1, 2 }, out[N];
    int hung = 0, wrong = 0;
    for (int k = 0; k < ROUNDS && !hung; k++) {
        rp_map_opts_t mo = { .chunksize = 1, .callback = k % 2 ? cb_nothing : NULL };
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_square, in, N, sizeof(long), out, sizeof(long),
                                           &mo, &r),
                              RP_OK);
        struct waiter w[W];
        struct bounded b[W];
        for (int i = 0; i < W; i++) {
            w[i] = (struct waiter){ r, i % 2 == 0, -100, 0 };
            bounded_start(&b[i], waiter_main, &w[i]);
        }
        /* the waiters are inside their calls (the tasks take 250 ms) */
        double end = tu_now() + PROMPT_S;
        for (int i = 0; i < W; i++)
            while (!atomic_load(&w[i].entered) && tu_now() < end)
                tu_sleep(0.001);
        tu_sleep(0.02);
        rp_result_free(r);
        for (int i = 0; i < W; i++) {
            if (!bounded_join(&b[i], PROMPT_S)) {
                hung++;
                continue;
            }
            wrong += w[i].rc != RP_OK;
        }
    }
    mallopt(M_PERTURB, 0);
    CU_ASSERT_EQUAL(hung, 0);
    CU_ASSERT_EQUAL(wrong, 0);
    if (hung)
        return; /* a waiter is stuck in freed memory: leave the pool alone */
    tu_pool_done(p);
}

/* ---- join and free from a callback ----------------------------------------------- */

struct cbjoin {
    rp_pool_t  *p;
    bool        terminate;   /* terminate instead of close + join + free */
    int         close_rc, join_rc, term_rc;
    _Atomic int ran;
};

static void cb_join(rp_result_t *r, void *ud)
{
    struct cbjoin *s = ud;
    if (s->terminate) {
        s->term_rc = rp_pool_terminate(s->p);
    } else {
        s->close_rc = rp_pool_close(s->p);
        s->join_rc = rp_pool_join(s->p);
        rp_pool_free(s->p); /* refused: the pool stays usable */
    }
    atomic_store(&s->ran, 1);
}

static void cb_join_err(const rp_error_t *e, void *ud)
{
    cb_join(NULL, ud);
}

static int fail_odd(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 2)
        return rp_raise(ctx, 3, "odd %ld", x);
    *(long *)out = x;
    return 0;
}

struct cbrun {
    rp_pool_t     *p;
    size_t         n;
    bool           failing;
    struct cbjoin *s;
    int            rc;
};

static void *cb_run(void *arg)
{
    struct cbrun *c = arg;
    static long in[100], out[100];
    for (int i = 0; i < 100; i++)
        in[i] = i;
    rp_map_opts_t mo = { .userdata = c->s };
    if (c->failing)
        mo.error_callback = cb_join_err;
    else
        mo.callback = cb_join;
    rp_result_t *r;
    c->rc = rp_map_async(c->p, c->failing ? fail_odd : square, in, c->n, sizeof(long), out,
                         sizeof(long), &mo, &r);
    if (c->rc == RP_OK) {
        rp_result_wait(r, RP_FOREVER);
        rp_result_free(r);
    }
    return NULL;
}

/* A callback (on the pool's thread; for an empty map, on the submitting thread)
 * calls close, join and free: join is refused with RP_EDEADLK, free does nothing,
 * nothing spins; afterwards the pool is joined and freed as usual. */
static void check_join_from_callback(size_t n, bool failing, bool terminate)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    struct cbjoin s = { .p = p, .terminate = terminate, .close_rc = -100, .join_rc = -100,
                        .term_rc = -100 };
    atomic_init(&s.ran, 0);
    struct cbrun c = { p, n, failing, &s, -100 };
    struct bounded b;
    bounded_start(&b, cb_run, &c);
    bool returned = bounded_join(&b, PROMPT_S);
    CU_ASSERT(returned);
    if (!returned) {
        printf("\n  %s from a callback (n = %zu) did not return\n",
               terminate ? "rp_pool_terminate" : "rp_pool_join", n);
        return; /* the callback spins: leave the pool alone */
    }
    CU_ASSERT_EQUAL(c.rc, RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&s.ran), 1);
    if (terminate) {
        CU_ASSERT_EQUAL(s.term_rc, RP_OK);
    } else {
        CU_ASSERT_EQUAL(s.close_rc, RP_OK);
        CU_ASSERT_EQUAL(s.join_rc, RP_EDEADLK);
    }
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

static void test_reliability_join_from_callback_refused(void)
{
    check_join_from_callback(100, false, false);
    check_join_from_callback(100, true, false);
    check_join_from_callback(0, false, false);
}

static void test_reliability_terminate_from_callback(void)
{
    check_join_from_callback(100, false, true);
    check_join_from_callback(0, false, true);
}

/* ---- the local backend only --------------------------------------------------- */

static bool on_mpi(void)
{
    const char *b = getenv("RP_BACKEND");
    return b && strcmp(b, "mpi") == 0;
}

/* ---- the local var heap is reused while var maps overlap ------------------------- */

/* Item x of round k (x = k * 1000 + i): 64 KB of the byte (k + i) & 0xff; item 0
 * 300 KB (more than one segment of a small heap). */
static size_t var_len(long x)
{
    return x % 1000 == 0 ? 300u << 10 : 64u << 10;
}

static int fill_var(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    size_t len = var_len(x);
    unsigned char *o = rp_output(ctx, len);
    if (!o)
        return rp_raise(ctx, RP_ENOMEM, "rp_output(%zu) failed", len);
    memset(o, (int)((x / 1000 + x % 1000) & 0xff), len);
    return 0;
}

static int check_var(const rp_varout_t *vo, long round, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        long x = round * 1000 + (long)i;
        size_t size;
        const unsigned char *d = rp_varout_item(vo, i, &size);
        unsigned char want = (unsigned char)((round + (long)i) & 0xff);
        if (!d || size != var_len(x)) {
            bad++;
            continue;
        }
        bad += d[0] != want || d[size / 2] != want || d[size - 1] != want;
    }
    return bad;
}

struct var_run {
    rp_pool_t *p;
    int        failed, bad;
};

/* 100 rounds of ~4.4 MB, each submitted before the previous one is collected. */
static void *var_rounds(void *arg)
{
    struct var_run *v = arg;
    enum { N = 64, ROUNDS = 100 };
    long in[2][N];
    rp_varout_t *vo[2] = { NULL, NULL };
    rp_result_t *r[2] = { NULL, NULL };
    for (long k = 0; k <= ROUNDS; k++) {
        int b = (int)(k & 1);
        if (k < ROUNDS) {
            for (int i = 0; i < N; i++)
                in[b][i] = k * 1000 + i;
            if (rp_map_var_async(v->p, fill_var, in[b], N, sizeof(long), NULL, &vo[b], &r[b])
                != RP_OK) {
                v->failed++;
                return NULL;
            }
        }
        if (k == 0)
            continue;
        int pb = 1 - b; /* the previous round, while this one runs */
        rp_error_t e;
        int rc = rp_result_get(r[pb], RP_FOREVER, &e);
        if (rc != RP_OK && v->failed++ == 0)
            printf("\n  round %ld: %s: %s\n", k - 1, rp_err_name(rc), e.message);
        v->bad += check_var(vo[pb], k - 1, N);
        rp_result_free(r[pb]);
        rp_varout_free(vo[pb]);
    }
    return NULL;
}

/* A 32 MB var heap; two threads each keep two var maps in flight, 880 MB of
 * outputs in all: the space of every finished map must be reused. */
static void test_reliability_var_heap_reused_while_maps_overlap(void)
{
    if (on_mpi())
        return;
    setenv("RP_TEST_VAR_HEAP", "33554432", 1);
    rp_pool_t *p = tu_local_pool(2, NULL);
    unsetenv("RP_TEST_VAR_HEAP");
    if (!p)
        return;
    struct var_run v[2] = { { p, 0, 0 }, { p, 0, 0 } };
    struct bounded b[2];
    for (int i = 0; i < 2; i++)
        bounded_start(&b[i], var_rounds, &v[i]);
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_FATAL(bounded_join(&b[i], 300));
        CU_ASSERT_EQUAL(v[i].failed, 0);
        CU_ASSERT_EQUAL(v[i].bad, 0);
    }
    tu_pool_done(p);
}

/* ---- the local terminate with a stopped fork server or worker ------------------ */

/* The first child of `parent` whose name starts with prefix, or 0. */
static pid_t child_named(pid_t parent, const char *prefix)
{
    pid_t kids[64];
    int n = tu_children_of(parent, kids, 64);
    for (int i = 0; i < n && i < 64; i++) {
        pid_t pid = kids[i];
        char path[64], comm[64] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
        FILE *c = fopen(path, "r");
        if (!c)
            continue;
        if (!fgets(comm, sizeof comm, c))
            comm[0] = '\0';
        fclose(c);
        if (strncmp(comm, prefix, strlen(prefix)) == 0)
            return pid;
    }
    return 0;
}

static void *do_terminate(void *p)
{
    rp_pool_terminate(p);
    return NULL;
}

static void *do_free(void *p)
{
    rp_pool_free(p);
    return NULL;
}

static void cb_terminate(rp_result_t *r, void *p)
{
    rp_pool_terminate(p);
}

/* A pipe made before the pool (its workers inherit it): a task waits for the
 * test's go. */
static int go_pipe[2] = { -1, -1 };

static int wait_for_go(const void *in, void *out, rp_ctx_t *ctx)
{
    char c;
    if (read(go_pipe[0], &c, 1) != 1)
        return rp_raise(ctx, 1, "no go");
    return square(in, out, ctx);
}

/* Waits for a result whose callback terminates the pool. */
static void *wait_for_callback(void *r)
{
    rp_result_wait(r, RP_FOREVER);
    rp_result_free(r);
    return NULL;
}

enum { STOP_FORKSERVER, STOP_WORKER };
enum { BY_TERMINATE, BY_FREE, BY_CALLBACK };

/* Stops (SIGSTOP) the fork server or a worker while tasks run, then terminates
 * (or frees) the pool from a helper thread (or from a callback): it must return
 * within PROMPT_S, every pending item canceled, and no process may be left. */
static void terminate_with_stopped(int what, int how)
{
    bool by_free = how == BY_FREE;
    if (on_mpi())
        return;
    CU_ASSERT_EQUAL_FATAL(pipe(go_pipe), 0);
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    size_t n = 4000; /* 20 s of work: still running when terminate is done */
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    rp_map_opts_t one = { .chunksize = 1 };
    rp_result_t *r, *rcb = NULL;
    /* BY_CALLBACK: an item taken first (older job) ends once the fork server is
     * stopped; its callback, on the pool's thread, terminates */
    long x = 3, y;
    rp_map_opts_t cbo = { .callback = cb_terminate, .userdata = p };
    if (how == BY_CALLBACK)
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, wait_for_go, &x, sizeof x, &y, sizeof y, &cbo,
                                             &rcb),
                              RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, nap_square, in, n, sizeof(long), out, sizeof(long),
                                       &one, &r),
                          RP_OK);
    /* the fork server and both workers (named once they run) */
    pid_t fs = 0, w0 = 0, w1 = 0;
    double end = tu_now() + PROMPT_S;
    while (!(fs && w0 && w1) && tu_now() < end) {
        tu_sleep(0.01);
        fs = child_named(getpid(), "rp-forkserver");
        w0 = fs ? child_named(fs, "rp-worker-0") : 0;
        w1 = fs ? child_named(fs, "rp-worker-1") : 0;
    }
    CU_ASSERT(fs && w0 && w1);
    if (!(fs && w0 && w1)) {
        CU_ASSERT_EQUAL(write(go_pipe[1], "go", 1), 1);
        rp_pool_free(p);
        rp_result_free(r);
        rp_result_free(rcb);
        goto done;
    }
    tu_sleep(0.05);
    pid_t stopped = what == STOP_FORKSERVER ? fs : w0;
    CU_ASSERT_EQUAL_FATAL(kill(stopped, SIGSTOP), 0);
    tu_sleep(0.05);
    struct bounded b;
    double t0 = tu_now();
    if (how == BY_CALLBACK) {
        CU_ASSERT_EQUAL(write(go_pipe[1], "go", 1), 1);
        bounded_start(&b, wait_for_callback, rcb);
    } else
        bounded_start(&b, by_free ? do_free : do_terminate, p);
    bool returned = bounded_join(&b, PROMPT_S);
    CU_ASSERT(returned);
    if (!returned) {
        printf("\n  %s did not return within %.0f s with the %s stopped\n",
               by_free ? "rp_pool_free" : "rp_pool_terminate", PROMPT_S,
               what == STOP_FORKSERVER ? "fork server" : "worker");
        kill(stopped, SIGCONT); /* let it finish (the process is still unreaped) */
        bounded_join(&b, PROMPT_S);
    }
    double took = tu_now() - t0;
    CU_ASSERT(took < PROMPT_S);
    CU_ASSERT_EQUAL(rp_result_wait(r, PROMPT_S), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 0, &e), RP_ECANCELED);
    CU_ASSERT(rp_result_nerrors(r) >= 1);
    if (!by_free) {
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        rp_pool_free(p);
    }
    rp_result_free(r);
    /* nothing is left: the fork server reaped, the workers ended */
    CU_ASSERT(tu_dead(w0, 5));
    CU_ASSERT(tu_dead(w1, 5));
    CU_ASSERT_EQUAL(child_named(getpid(), "rp-forkserver"), 0);
done:
    close(go_pipe[0]);
    close(go_pipe[1]);
    free(in);
    free(out);
}

static void test_reliability_terminate_with_stopped_fork_server(void)
{
    terminate_with_stopped(STOP_FORKSERVER, BY_TERMINATE);
    terminate_with_stopped(STOP_FORKSERVER, BY_CALLBACK);
}

static void test_reliability_free_with_stopped_fork_server(void)
{
    terminate_with_stopped(STOP_FORKSERVER, BY_FREE);
}

static void test_reliability_terminate_with_stopped_worker(void)
{
    terminate_with_stopped(STOP_WORKER, BY_TERMINATE);
    terminate_with_stopped(STOP_WORKER, BY_FREE);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_reliability_output_huge_size_is_null),
        TU_TEST(test_reliability_sizes_near_size_max),
        TU_TEST(test_reliability_negative_and_nan_timeouts_poll),
        TU_TEST(test_reliability_error_pointers_stay_valid),
        TU_TEST(test_reliability_free_while_others_wait),
        TU_TEST(test_reliability_join_from_callback_refused),
        TU_TEST(test_reliability_terminate_from_callback),
        TU_TEST(test_reliability_var_heap_reused_while_maps_overlap),
        TU_TEST(test_reliability_terminate_with_stopped_fork_server),
        TU_TEST(test_reliability_free_with_stopped_fork_server),
        TU_TEST(test_reliability_terminate_with_stopped_worker),
        TU_END,
    };
    return tu_run("reliability", tests, argc, argv);
}
