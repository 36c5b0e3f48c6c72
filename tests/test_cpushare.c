/* Waiting for a job whose worker shares the waiter's CPU (local backend). A
 * waiter spins on the done word only while the job runs on another CPU; when
 * the worker needs the waiter's own CPU, the waiter sleeps at once, or yields
 * when the pool has no other CPU (result.c, ops->runs_on). Each test runs in
 * both situations: a process pinned to one CPU before the pool starts, and a
 * pool started on every CPU whose workers and master then pin themselves to the
 * same one. And, with two CPUs, split: the master and worker 0 on one, worker 1
 * on the other, where a submit whose only spinning worker is the one beside the
 * master wakes worker 1 (claim.c, rp__sched_wake_beside). Results, failures,
 * crashes, timeouts and callbacks must be exactly what they are otherwise;
 * nothing may hang. Behaviour only: no timing. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>

static cpu_set_t saved; /* the test process's CPUs before a test */

/* Worker initializer: worker k moves to the CPU in arg[k % 2]. */
static int pin_self(const void *arg, rp_ctx_t *ctx)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(((const int *)arg)[rp_ctx_worker(ctx) % 2], &one);
    return sched_setaffinity(0, sizeof one, &one) == 0 ? 0 : rp_raise(ctx, 1, "pinning failed");
}

/* The n-th CPU this process may use (0 = the first), or -1. */
static int nth_cpu(int n)
{
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &saved) && n-- == 0)
            return c;
    return -1;
}

static void pin_master(int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    CU_ASSERT_EQUAL(sched_setaffinity(0, sizeof one, &one), 0);
}

enum layout {
    ONE_CPU, /* started on one CPU: the pool sees one */
    PINNED,  /* started on all, then every process moved to the first */
    SPLIT,   /* started on all, then the master and worker 0 on the first, worker 1
                on the second */
};

/* A pool of 2 workers laid out as said (NULL for SPLIT on a single CPU). */
static rp_pool_t *shared_pool(enum layout how)
{
    static int cpus[2];
    CU_ASSERT_EQUAL_FATAL(sched_getaffinity(0, sizeof saved, &saved), 0);
    cpus[0] = nth_cpu(0);
    cpus[1] = how == SPLIT ? nth_cpu(1) : cpus[0];
    if (cpus[1] < 0) {
        printf("(one CPU: no split layout) ");
        return NULL;
    }
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    if (how == ONE_CPU) {
        pin_master(cpus[0]);
    } else {
        o.initializer = pin_self;
        o.initarg = cpus;
        o.initarg_size = sizeof cpus;
    }
    rp_pool_t *p = tu_local_pool(2, &o);
    if (how != ONE_CPU)
        pin_master(cpus[0]);
    return p;
}

static void shared_done(rp_pool_t *p)
{
    tu_pool_done(p);
    CU_ASSERT_EQUAL(sched_setaffinity(0, sizeof saved, &saved), 0);
}

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Fails odd items, crashes on -1, sleeps 0.3 s on -2. */
static int mixed(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == -1)
        raise(SIGKILL);
    if (x == -2)
        tu_sleep(0.3);
    if (x > 0 && x % 2)
        return rp_raise(ctx, 7, "odd %ld", x);
    *(long *)out = x * x;
    return 0;
}

static void applies(enum layout how)
{
    rp_pool_t *p = shared_pool(how);
    if (!p)
        return;
    int wrong = 0;
    for (long i = 0; i < 3000; i++) {
        long y = -1;
        if (i % 100 == 99)
            tu_sleep(0.001); /* the idle workers fall asleep: the next submits wake them */
        int rc = rp_apply(p, square, &i, sizeof i, &y, sizeof y, NULL);
        wrong += rc != RP_OK || y != i * i;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    long *in = tu_iota(20000), *out = calloc(20000, sizeof *out);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 20000, sizeof *in, out, sizeof *out, NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 20000), 0);
    free(in);
    free(out);
    shared_done(p);
}

static void test_cpushare_apply_one_cpu(void) { applies(ONE_CPU); }
static void test_cpushare_apply_pinned(void) { applies(PINNED); }
static void test_cpushare_apply_split(void) { applies(SPLIT); }

/* A task's failure and a worker's death reach the waiter, and the pool goes on. */
static void failures(enum layout how)
{
    rp_pool_t *p = shared_pool(how);
    if (!p)
        return;
    for (long i = 1; i < 200; i += 2) {
        long y = 0;
        if (i % 20 == 19)
            tu_sleep(0.001); /* as in applies() */
        rp_error_t e;
        memset(&e, 0, sizeof e);
        rp_result_t *r = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, mixed, &i, sizeof i, &y, sizeof y, NULL, &r), RP_OK);
        CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_ETASK);
        CU_ASSERT_EQUAL(e.task_code, 7);
        rp_result_free(r);
    }
    for (int k = 0; k < 3; k++) {
        long crash = -1, y = 0;
        rp_error_t e;
        memset(&e, 0, sizeof e);
        rp_result_t *r = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, mixed, &crash, sizeof crash, &y, sizeof y, NULL, &r),
                              RP_OK);
        CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_EWORKER);
        rp_result_free(r);
        long two = 2;
        CU_ASSERT_EQUAL(rp_apply(p, mixed, &two, sizeof two, &y, sizeof y, NULL), RP_OK);
        CU_ASSERT_EQUAL(y, 4);
    }
    shared_done(p);
}

static void test_cpushare_failures_one_cpu(void) { failures(ONE_CPU); }
static void test_cpushare_failures_pinned(void) { failures(PINNED); }
static void test_cpushare_failures_split(void) { failures(SPLIT); }

/* A wait with a deadline ends at it while the task runs, then the result comes. */
static void timeouts(enum layout how)
{
    rp_pool_t *p = shared_pool(how);
    if (!p)
        return;
    long slow = -2, y = 0;
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, mixed, &slow, sizeof slow, &y, sizeof y, NULL, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 0.01), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ETIMEDOUT);
    CU_ASSERT_EQUAL(rp_result_get(r, 60, NULL), RP_OK);
    CU_ASSERT_EQUAL(y, 4);
    rp_result_free(r);
    shared_done(p);
}

static void test_cpushare_timeout_one_cpu(void) { timeouts(ONE_CPU); }
static void test_cpushare_timeout_pinned(void) { timeouts(PINNED); }
static void test_cpushare_timeout_split(void) { timeouts(SPLIT); }

struct seen {
    _Atomic int ok, failed;
    long value;
};

static void on_done(rp_result_t *r, void *arg)
{
    (void)r;
    atomic_fetch_add(&((struct seen *)arg)->ok, 1);
}

static void on_error(const rp_error_t *e, void *arg)
{
    struct seen *s = arg;
    s->value = (long)e->index;
    atomic_fetch_add(&s->failed, 1);
}

/* Callbacks run once each, before the wait returns. */
static void callbacks(enum layout how)
{
    rp_pool_t *p = shared_pool(how);
    if (!p)
        return;
    struct seen s = { 0, 0, -1 };
    rp_map_opts_t mo;
    memset(&mo, 0, sizeof mo);
    mo.callback = on_done;
    mo.error_callback = on_error;
    mo.userdata = &s;
    for (long i = 0; i < 100; i++) {
        long y = 0;
        rp_result_t *r = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, mixed, &i, sizeof i, &y, sizeof y, &mo, &r), RP_OK);
        int rc = rp_result_wait(r, RP_FOREVER);
        CU_ASSERT_EQUAL(rc, RP_OK);
        CU_ASSERT_EQUAL(atomic_load(&s.ok) + atomic_load(&s.failed), (int)i + 1);
        if (i > 0 && i % 2) {
            CU_ASSERT_EQUAL(rp_result_successful(r), 0);
        } else {
            CU_ASSERT_EQUAL(y, i * i);
        }
        rp_result_free(r);
    }
    CU_ASSERT_EQUAL(atomic_load(&s.ok), 50);
    CU_ASSERT_EQUAL(atomic_load(&s.failed), 50);
    CU_ASSERT_EQUAL(s.value, 0); /* an apply's one item is item 0 */
    shared_done(p);
}

static void test_cpushare_callbacks_one_cpu(void) { callbacks(ONE_CPU); }
static void test_cpushare_callbacks_pinned(void) { callbacks(PINNED); }
static void test_cpushare_callbacks_split(void) { callbacks(SPLIT); }

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_cpushare_apply_one_cpu),
        TU_TEST(test_cpushare_apply_pinned),
        TU_TEST(test_cpushare_apply_split),
        TU_TEST(test_cpushare_failures_one_cpu),
        TU_TEST(test_cpushare_failures_pinned),
        TU_TEST(test_cpushare_failures_split),
        TU_TEST(test_cpushare_timeout_one_cpu),
        TU_TEST(test_cpushare_timeout_pinned),
        TU_TEST(test_cpushare_timeout_split),
        TU_TEST(test_cpushare_callbacks_one_cpu),
        TU_TEST(test_cpushare_callbacks_pinned),
        TU_TEST(test_cpushare_callbacks_split),
        TU_END,
    };
    return tu_run("cpushare", tests, argc, argv);
}
