/* Crashes on the local backend seen from outside the workers: a worker killed by
 * the test (its pid from a pipe), terminate and free while tasks sleep for minutes
 * (no process left behind, counted in /proc), an initializer that hangs while
 * another fails, workers dying inside a claim (the library's test hook), the fork
 * server or the master killed. The crashes a task causes itself, the same on both
 * backends, are tests/test_crash.c. Nothing may hang; every other item must still
 * be delivered. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* A pipe created before the pool: workers inherit the write end and tell the
 * test their pid (and that a task started). */
static int pids_pipe[2] = { -1, -1 };

static void pipe_open(void)
{
    CU_ASSERT_EQUAL_FATAL(pipe(pids_pipe), 0);
}

static void pipe_close(void)
{
    close(pids_pipe[0]);
    close(pids_pipe[1]);
    pids_pipe[0] = pids_pipe[1] = -1;
}

/* Reads one pid from the pipe, waiting at most `seconds`; 0 on timeout. */
static pid_t pipe_read_pid(double seconds)
{
    struct pollfd p = { pids_pipe[0], POLLIN, 0 };
    if (poll(&p, 1, (int)(seconds * 1000)) != 1)
        return 0;
    int32_t pid = 0;
    if (read(pids_pipe[0], &pid, sizeof pid) != (ssize_t)sizeof pid)
        return 0;
    return pid;
}

static void tell_pid(void)
{
    int32_t pid = (int32_t)getpid();
    ssize_t r = write(pids_pipe[1], &pid, sizeof pid);
    (void)r;
}

/* Waits until pid is gone (reaped), at most `seconds`. */
static bool gone(pid_t pid, double seconds)
{
    double end = tu_now() + seconds;
    do {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return true;
        usleep(2000);
    } while (tu_now() < end);
    return false;
}

static bool wait_children(int expected, double seconds)
{
    double end = tu_now() + seconds;
    do {
        if (tu_count_children() == expected)
            return true;
        usleep(2000);
    } while (tu_now() < end);
    return false;
}

/* ---- tasks --------------------------------------------------------------------- */

static long target;  /* the item that misbehaves (set before the pool forks) */

static int square_hang(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target) {
        tell_pid();
        sleep(120);  /* killed from outside long before */
    }
    *(long *)out = x * x;
    return 0;
}

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int sleep_long(const void *in, void *out, rp_ctx_t *ctx)
{
    tell_pid();
    sleep(120);
    return 0;
}

/* ---- helpers -------------------------------------------------------------------- */

enum { N = 200 };
static long in_items[N];

static void fill_in(void)
{
    for (long i = 0; i < N; i++)
        in_items[i] = i;
}

/* Every item but `bad` holds its square. */
static int wrong_outputs(const long *out, size_t n, long bad)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++)
        if ((long)i != bad && out[i] != (long)(i * i))
            wrong++;
    return wrong;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_crash_local_kill9(void)
{
    fill_in();
    target = 123;
    pipe_open();
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long out[N];
    memset(out, 0, sizeof out);
    rp_result_t *r;
    rp_map_opts_t mo = { .chunksize = 7 };
    CU_ASSERT_EQUAL(rp_map_async(p, square_hang, in_items, N, sizeof(long), out, sizeof(long),
                                 &mo, &r),
                    RP_OK);
    pid_t pid = pipe_read_pid(20);
    CU_ASSERT_FATAL(pid > 0);
    CU_ASSERT_EQUAL(kill(pid, SIGKILL), 0);
    rp_error_t e;
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_result_get(r, 30.0, &e), RP_EWORKER);
    CU_ASSERT(tu_now() - t0 < 10);
    CU_ASSERT_EQUAL(e.index, 123);
    CU_ASSERT_EQUAL(e.signal, SIGKILL);
    CU_ASSERT_EQUAL(e.exit_status, -1);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 1);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, 123), 0);
    rp_result_free(r);
    CU_ASSERT(gone(pid, 5));
    memset(out, 0, sizeof out);
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, N, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, -1), 0);
    tu_pool_done(p);
    pipe_close();
}

/* terminate while tasks sleep for minutes: prompt, every result canceled, no
 * process left behind. */
static void test_crash_local_terminate_sleeping(void)
{
    fill_in();
    pipe_open();
    int children0 = tu_count_children();
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    rp_result_t *r1, *r2;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map_async(p, sleep_long, in_items, 10, sizeof(long), NULL, 0, &one, &r1),
                    RP_OK);
    long out[N];
    CU_ASSERT_EQUAL(rp_map_async(p, square, in_items, N, sizeof(long), out, sizeof(long), NULL,
                                 &r2),
                    RP_OK);
    pid_t w1 = pipe_read_pid(20), w2 = pipe_read_pid(20);
    CU_ASSERT_FATAL(w1 > 0 && w2 > 0);
    CU_ASSERT_EQUAL(rp_result_get(r1, 0, NULL), RP_ETIMEDOUT);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT(tu_now() - t0 < 2.0);
    CU_ASSERT(rp_result_ready(r1));
    CU_ASSERT(rp_result_ready(r2));
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r1, 0, &e), RP_ECANCELED);
    CU_ASSERT_EQUAL(e.index, 0);
    CU_ASSERT_EQUAL(rp_result_nerrors(r1), 10);
    CU_ASSERT_EQUAL(rp_result_get(r2, 0, &e), RP_ECANCELED);
    CU_ASSERT_EQUAL(rp_result_nerrors(r2), N);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT(tu_now() - t0 < 3.0);
    rp_pool_free(p);
    rp_result_free(r1);
    rp_result_free(r2);
    CU_ASSERT(gone(w1, 5));
    CU_ASSERT(gone(w2, 5));
    CU_ASSERT(wait_children(children0, 5));
    pipe_close();
}

/* rp_pool_free on a pool with sleeping tasks: the same, without an explicit
 * terminate. */
static void test_crash_local_free_while_running(void)
{
    fill_in();
    pipe_open();
    int children0 = tu_count_children();
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map_async(p, sleep_long, in_items, 4, sizeof(long), NULL, 0, NULL, &r),
                    RP_OK);
    pid_t w = pipe_read_pid(20);
    CU_ASSERT_FATAL(w > 0);
    double t0 = tu_now();
    rp_pool_free(p);
    CU_ASSERT(tu_now() - t0 < 3.0);
    CU_ASSERT(rp_result_ready(r));
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ECANCELED);
    rp_result_free(r);
    CU_ASSERT(gone(w, 5));
    CU_ASSERT(wait_children(children0, 5));
    pipe_close();
}

static int init_fail(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 7, "cannot open %s", (const char *)arg);
}

static int init_slow_fail(const void *arg, rp_ctx_t *ctx)
{
    if (rp_ctx_worker(ctx) == 0)
        sleep(60);  /* killed when creation fails because of the other one */
    return rp_raise(ctx, 3, "slow no");
}

/* A failing initializer: creation returns promptly, and leaves no process; one
 * that fails while another hangs in its initializer does not wait for that one. */
static void test_crash_local_init_failure(void)
{
    int children0 = tu_count_children();
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = "local";
    o.workers = 2;
    o.initializer = init_fail;
    o.initarg = "the database";
    o.initarg_size = strlen("the database") + 1;
    rp_pool_t *p = (rp_pool_t *)1;
    rp_error_t e;
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINIT);
    CU_ASSERT(tu_now() - t0 < 2.0);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT(wait_children(children0, 5));

    o.initializer = init_slow_fail;
    t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_create(&p, &o), RP_EINIT);
    CU_ASSERT(tu_now() - t0 < 5.0);
    CU_ASSERT(wait_children(children0, 5));
}

/* A worker killed inside a claim, after taking items from the shared counter but
 * before recording them as its own (or just before taking them): no item may be
 * lost or failed, nothing hangs. Uses the library's test hook
 * RP_TEST_DIE_IN_CLAIM (worker 0 kills itself at its N-th claim, in every
 * incarnation). */
static int pid_after_nap(const void *in, void *out, rp_ctx_t *ctx)
{
    usleep(50);
    *(int *)out = (int)getpid();
    return 0;
}

static void check_die_in_claim(const char *when, size_t chunksize, size_t n)
{
    setenv("RP_TEST_DIE_IN_CLAIM", when, 1);
    rp_pool_t *p = tu_local_pool(2, NULL);
    unsetenv("RP_TEST_DIE_IN_CLAIM");
    if (!p)
        return;
    long *in = calloc(n, sizeof *in);
    int *out = calloc(n, sizeof *out);
    rp_map_opts_t mo = { .chunksize = chunksize };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, pid_after_nap, in, n, sizeof(long), out, sizeof(int),
                                       &mo, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
    int missing = 0, distinct = 0;
    for (size_t i = 0; i < n; i++) {
        missing += out[i] == 0;
        int seen = 0;
        for (size_t k = 0; k < i && !seen; k++)
            seen = out[k] == out[i];
        distinct += !seen;
    }
    CU_ASSERT_EQUAL(missing, 0);
    CU_ASSERT(distinct >= 3);  /* worker 0 did die, more than once */
    rp_result_free(r);
    free(in);
    free(out);
    rp_pool_terminate(p);
    rp_pool_free(p);
}

static void test_crash_local_die_in_claim_after_cas(void)
{
    check_die_in_claim("3", 1, 400);
    check_die_in_claim("2", 0, 3000);
    check_die_in_claim("2", 7, 800);
}

static void test_crash_local_die_in_claim_before_cas(void)
{
    check_die_in_claim("-3", 1, 400);
    check_die_in_claim("-2", 0, 3000);
}

/* A worker killed after it counted the last items of a job and before it looked
 * whether the job is complete (the library's test hook RP_TEST_DIE_AFTER_COUNT:
 * worker 0 kills itself after counting its N-th chunk): nobody else will look, so
 * the master must, when it hears of the death. The job completes, every item
 * succeeded (they all ran), and the pool goes on. */
static void check_die_after_count(const char *when, size_t n, size_t chunksize)
{
    fill_in();
    setenv("RP_TEST_DIE_AFTER_COUNT", when, 1);
    rp_pool_t *p = tu_local_pool(1, NULL);
    unsetenv("RP_TEST_DIE_AFTER_COUNT");
    if (!p)
        return;
    long out[16];
    memset(out, 0, sizeof out);
    rp_map_opts_t mo = { .chunksize = chunksize };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in_items, n, sizeof(long), out, sizeof(long),
                                       &mo, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 20), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 0);
    int bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != in_items[i] * in_items[i];
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    /* later jobs complete too (a replacement dies again at its own N-th chunk) */
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, 1, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    rp_pool_terminate(p);
    rp_pool_free(p);
}

static void test_crash_local_die_after_count(void)
{
    check_die_after_count("1", 5, 5);  /* the job's only chunk */
    check_die_after_count("3", 3, 1);  /* its last of three */
}

/* The pid of this process's only child, or 0. */
static pid_t only_child(void)
{
    pid_t c[2];
    return tu_children_of(getpid(), c, 2) == 1 ? c[0] : 0;
}

/* Someone kills the fork server: pending items fail with RP_EBROKEN, later work
 * fails at once, nothing hangs, the workers go too. */
static void test_crash_local_fork_server_killed(void)
{
    fill_in();
    pipe_open();
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    pid_t fs = only_child();
    CU_ASSERT_FATAL(fs > 0);
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, sleep_long, in_items, 6, sizeof(long), NULL, 0, &one,
                                       &r),
                          RP_OK);
    pid_t w = pipe_read_pid(20);
    CU_ASSERT_FATAL(w > 0);
    CU_ASSERT_EQUAL(kill(fs, SIGKILL), 0);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_wait(r, 10), RP_OK);
    int rc = rp_result_get(r, 0, &e);
    CU_ASSERT(rc == RP_EBROKEN || rc == RP_EWORKER);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 6);
    rp_result_free(r);
    long out[10];
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, 10, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_EBROKEN);
    CU_ASSERT(tu_dead(w, 5));
    double t0 = tu_now();
    tu_pool_done(p);
    CU_ASSERT(tu_now() - t0 < 2);
    CU_ASSERT(wait_children(0, 5));
    pipe_close();
}

/* The master dies (kill -9): its fork server and workers do not outlive it. */
static void test_crash_local_master_killed(void)
{
    fill_in();
    pipe_open();
    pid_t m = fork();
    if (m == 0) {
        rp_pool_opts_t o;
        memset(&o, 0, sizeof o);
        o.backend = "local";
        o.workers = 2;
        rp_pool_t *p;
        if (rp_pool_create(&p, &o) != RP_OK)
            _exit(1);
        int32_t fs = (int32_t)only_child();
        ssize_t wr = write(pids_pipe[1], &fs, sizeof fs);
        (void)wr;
        rp_map(p, sleep_long, in_items, 4, sizeof(long), NULL, 0, NULL, NULL);
        _exit(2);
    }
    CU_ASSERT_FATAL(m > 0);
    pid_t fs = pipe_read_pid(20), w = pipe_read_pid(20);
    CU_ASSERT(fs > 0);
    CU_ASSERT(w > 0);
    kill(m, SIGKILL);
    int st;
    CU_ASSERT_EQUAL(waitpid(m, &st, 0), m);
    CU_ASSERT(fs > 0 && tu_dead(fs, 5));
    CU_ASSERT(w > 0 && tu_dead(w, 5));
    pipe_close();
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);  /* abort() and SIGSEGV without core files */
    static const tu_test tests[] = {
        TU_TEST(test_crash_local_kill9),
        TU_TEST(test_crash_local_terminate_sleeping),
        TU_TEST(test_crash_local_free_while_running),
        TU_TEST(test_crash_local_init_failure),
        TU_TEST(test_crash_local_die_in_claim_after_cas),
        TU_TEST(test_crash_local_die_in_claim_before_cas),
        TU_TEST(test_crash_local_die_after_count),
        TU_TEST(test_crash_local_fork_server_killed),
        TU_TEST(test_crash_local_master_killed),
        TU_END,
    };
    return tu_run("crash_local", tests, argc, argv);
}
