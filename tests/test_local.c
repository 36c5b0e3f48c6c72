/* The local backend's own behaviour: worker numbering, more jobs in flight than
 * job slots, large inputs through the shared arena, binding, living with a user
 * program that forks, uses threads, and reaps children in its own SIGCHLD
 * handler, idle workers that sleep, and dispatch: an idle worker takes new work
 * at once, bursts of one-item jobs use every worker. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int worker_number(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = rp_ctx_worker(ctx);
    tu_sleep(0.2e-3); /* every worker gets some */
    return 0;
}

static void test_local_worker_numbers(void)
{
    rp_pool_t *p = tu_local_pool(3, NULL);
    if (!p)
        return;
    CU_ASSERT_EQUAL(rp_pool_size(p), 3);
    CU_ASSERT_STRING_EQUAL(rp_pool_backend(p), "local");
    long *in = tu_iota(60);
    int who[60];
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, worker_number, in, 60, sizeof(long), who, sizeof(int), &one, NULL),
                    RP_OK);
    int seen[3] = { 0 };
    for (int i = 0; i < 60; i++) {
        CU_ASSERT(who[i] >= 0 && who[i] < 3);
        if (who[i] >= 0 && who[i] < 3)
            seen[who[i]] = 1;
    }
    CU_ASSERT(seen[0] + seen[1] + seen[2] >= 2);
    free(in);
    tu_pool_done(p);
}

static void test_local_default_size(void)
{
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = "local";
    rp_pool_t *p = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
    CU_ASSERT(rp_pool_size(p) >= 1);
    long x = 12, y = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
    CU_ASSERT_EQUAL(y, 144);
    tu_pool_done(p);
}

/* More jobs in flight than the backend has job slots: they queue, and complete
 * even when the caller waits for the last one first. */
static void test_local_many_jobs(void)
{
    enum { JOBS = 300, M = 50 };
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(M);
    long *out = calloc(JOBS * M, sizeof(long));
    rp_result_t *r[JOBS];
    for (int j = 0; j < JOBS; j++)
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, in, M, sizeof(long), out + j * M,
                                           sizeof(long), NULL, &r[j]),
                              RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r[JOBS - 1], 30, NULL), RP_OK);
    for (int j = JOBS - 1; j >= 0; j--) {
        CU_ASSERT_EQUAL(rp_result_get(r[j], 30, NULL), RP_OK);
        CU_ASSERT_EQUAL(tu_wrong_squares(out + j * M, M), 0);
        rp_result_free(r[j]);
    }
    free(in);
    free(out);
    tu_pool_done(p);
}

/* A few million items with automatic chunking, then chunksize 1 on fewer. */
static void test_local_large(void)
{
    size_t n = 3000000;
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(n), *out = calloc(n, sizeof(long));
    CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof(long), out, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, n), 0);
    memset(out, 0, n * sizeof(long));
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, square, in, 200000, sizeof(long), out, sizeof(long), &one, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 200000), 0);
    /* imap_unordered over many items: each index exactly once. */
    rp_iter_t *it;
    size_t m = 100000;
    CU_ASSERT_EQUAL_FATAL(rp_imap_unordered(p, square, in, m, sizeof(long), sizeof(long), NULL,
                                            &it),
                          RP_OK);
    unsigned char *seen = calloc(m, 1);
    size_t idx, count = 0;
    long v;
    int rc, bad = 0;
    while ((rc = rp_iter_next(it, 30, &idx, &v, NULL)) == RP_OK) {
        bad += idx >= m || seen[idx] || v != (long)(idx * idx);
        if (idx < m)
            seen[idx] = 1;
        count++;
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(count, m);
    CU_ASSERT_EQUAL(bad, 0);
    rp_iter_free(it);
    free(seen);
    free(in);
    free(out);
    tu_pool_done(p);
}

static void test_local_bind(void)
{
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.bind = true;
    rp_pool_t *p = tu_local_pool(2, &o);
    if (!p)
        return;
    long *in = tu_iota(1000), out[1000];
    CU_ASSERT_EQUAL(rp_map(p, square, in, 1000, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 1000), 0);
    free(in);
    tu_pool_done(p);
}

/* ---- a user program that forks and reaps ------------------------------------- */

static _Atomic int reaped;

static void reap_all(int sig)
{
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        atomic_fetch_add(&reaped, 1);
    errno = saved;
}

static int crash_on_5(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == 5)
        raise(SIGSEGV);
    *(long *)out = x * x;
    return 0;
}

/* A SIGCHLD handler that reaps everything, and children of the user's own: the
 * pool's deaths are still seen, the user's children still reaped by the user. */
static void test_local_sigchld_handler(void)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = reap_all;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGCHLD, &sa, &old);
    atomic_store(&reaped, 0);

    rp_pool_t *p = tu_local_pool(2, NULL);
    if (p) {
        long *in = tu_iota(100), out[100];
        rp_map_opts_t mo = { .chunksize = 4 };
        rp_error_t e;
        CU_ASSERT_EQUAL(rp_map(p, crash_on_5, in, 100, sizeof(long), out, sizeof(long), &mo, &e),
                        RP_EWORKER);
        CU_ASSERT_EQUAL(e.index, 5);
        CU_ASSERT_EQUAL(e.signal, SIGSEGV);
        for (int i = 0; i < 100; i++)
            if (i != 5)
                CU_ASSERT_EQUAL(out[i], (long)i * i);
        /* The user's own children. */
        for (int k = 0; k < 3; k++) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            CU_ASSERT(c > 0);
        }
        for (int t = 0; t < 500 && atomic_load(&reaped) < 3; t++)
            usleep(2000);
        CU_ASSERT(atomic_load(&reaped) >= 3);
        CU_ASSERT_EQUAL(rp_map(p, square, in, 100, sizeof(long), out, sizeof(long), NULL, NULL),
                        RP_OK);
        CU_ASSERT_EQUAL(tu_wrong_squares(out, 100), 0);
        free(in);
        tu_pool_done(p);
    }
    sigaction(SIGCHLD, &old, NULL);
}

/* A child forked by the user cannot use its parent's pool (RP_EFORK), and its
 * life does not disturb the parent's pool. */
static void test_local_user_fork(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(100), out[100];
    pid_t c = fork();
    if (c == 0) {
        int rc = rp_map(p, square, in, 100, sizeof(long), out, sizeof(long), NULL, NULL);
        rp_pool_free(p);  /* a no-op in the child */
        _exit(rc == RP_EFORK ? 0 : 1);
    }
    CU_ASSERT_FATAL(c > 0);
    int st = 0;
    CU_ASSERT_EQUAL(waitpid(c, &st, 0), c);
    CU_ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 100, sizeof(long), out, sizeof(long), NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 100), 0);
    free(in);
    tu_pool_done(p);
}

/* Threads mapping on one pool at once, while another thread creates and frees
 * pools of its own. */
struct thr {
    rp_pool_t *p;
    int wrong, rc;
};

static void *mapper(void *arg)
{
    struct thr *t = arg;
    size_t n = 5000;
    long *in = tu_iota(n), *out = malloc(n * sizeof(long));
    for (int k = 0; k < 20; k++) {
        rp_map_opts_t mo = { .chunksize = (size_t)(k % 3) * 7 };
        int rc = rp_map(t->p, square, in, n, sizeof(long), out, sizeof(long), &mo, NULL);
        if (rc != RP_OK)
            t->rc = rc;
        t->wrong += tu_wrong_squares(out, n);
    }
    free(in);
    free(out);
    return NULL;
}

static void *creator(void *arg)
{
    struct thr *t = arg;
    for (int k = 0; k < 10; k++) {
        rp_pool_opts_t o;
        memset(&o, 0, sizeof o);
        o.backend = "local";
        o.workers = 1;
        rp_pool_t *q;
        int rc = rp_pool_create(&q, &o);
        if (rc != RP_OK) {
            t->rc = rc;
            continue;
        }
        long x = k, y = -1;
        if (rp_apply(q, square, &x, sizeof x, &y, sizeof y, NULL) != RP_OK || y != x * x)
            t->wrong++;
        rp_pool_close(q);
        rp_pool_join(q);
        rp_pool_free(q);
    }
    return NULL;
}

static void test_local_threads(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    pthread_t th[4];
    struct thr t[4];
    memset(t, 0, sizeof t);
    for (int i = 0; i < 4; i++) {
        t[i].p = p;
        pthread_create(&th[i], NULL, i == 3 ? creator : mapper, &t[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(t[i].rc, RP_OK);
        CU_ASSERT_EQUAL(t[i].wrong, 0);
    }
    tu_pool_done(p);
}

/* Callbacks run on the pool's own thread, not the caller's. */
static pthread_t cb_thread;
static _Atomic int cb_calls;

static void on_done(rp_result_t *r, void *ud)
{
    cb_thread = pthread_self();
    atomic_fetch_add(&cb_calls, 1);
}

static void test_local_callback_thread(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(100), out[100];
    atomic_store(&cb_calls, 0);
    rp_map_opts_t mo = { .callback = on_done };
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 100, sizeof(long), out, sizeof(long), &mo, &r),
                    RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 30, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&cb_calls), 1);
    CU_ASSERT(!pthread_equal(cb_thread, pthread_self()));
    rp_result_free(r);
    free(in);
    tu_pool_done(p);
}

/* progress() counts items while a job runs. */
static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(2e-3);
    return square(in, out, ctx);
}

static void test_local_progress(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(200), out[200];
    rp_map_opts_t one = { .chunksize = 1 };
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map_async(p, slow_square, in, 200, sizeof(long), out, sizeof(long), &one,
                                 &r),
                    RP_OK);
    size_t done = 0, total = 0, last = 0;
    int monotone = 1;
    while (!rp_result_ready(r)) {
        rp_result_progress(r, &done, &total);
        monotone &= done >= last && done <= 200;
        last = done;
        usleep(5000);
    }
    rp_result_progress(r, &done, &total);
    CU_ASSERT(monotone);
    CU_ASSERT_EQUAL(done, 200);
    CU_ASSERT_EQUAL(total, 200);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    CU_ASSERT_EQUAL(tu_wrong_squares(out, 200), 0);
    rp_result_free(r);
    free(in);
    tu_pool_done(p);
}

/* terminate during an imap: every item is still yielded once, the ones never
 * run with RP_ECANCELED, then RP_DONE. */
static int nap_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(20e-3);
    return square(in, out, ctx);
}

static void test_local_terminate_imap(void)
{
    for (int ordered = 0; ordered < 2; ordered++) {
        rp_pool_t *p = tu_local_pool(2, NULL);
        if (!p)
            return;
        size_t n = 200;
        long *in = tu_iota(n);
        rp_iter_t *it;
        rp_map_opts_t one = { .chunksize = 1 };
        int rc = ordered ? rp_imap(p, nap_square, in, n, sizeof(long), sizeof(long), &one, &it)
                         : rp_imap_unordered(p, nap_square, in, n, sizeof(long), sizeof(long),
                                             &one, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        size_t idx;
        long v;
        rp_error_t e;
        CU_ASSERT_EQUAL(rp_iter_next(it, 30, &idx, &v, &e), RP_OK);
        CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
        unsigned char *seen = calloc(n, 1);
        size_t count = 1, ok = 1, canceled = 0;
        seen[idx] = 1;
        int bad = 0;
        while ((rc = rp_iter_next(it, 10, &idx, &v, &e)) != RP_DONE) {
            if (rc == RP_ETIMEDOUT) {
                bad++;
                break;
            }
            bad += idx >= n || seen[idx];
            if (idx < n)
                seen[idx] = 1;
            if (rc == RP_OK) {
                ok++;
                bad += v != (long)(idx * idx);
            } else {
                canceled += rc == RP_ECANCELED;
                bad += rc != RP_ECANCELED || e.code != RP_ECANCELED;
            }
            count++;
        }
        CU_ASSERT_EQUAL(bad, 0);
        CU_ASSERT_EQUAL(count, n);
        CU_ASSERT(canceled > 0);
        CU_ASSERT_EQUAL(ok + canceled, n);
        rp_iter_free(it);
        free(seen);
        free(in);
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        rp_pool_free(p);
    }
}

/* Several threads, every kind of call, failures and worker deaths mixed in, more
 * jobs than slots: every output and every error where it belongs. */
static int soak_task(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 1009 == 0 && x > 0)
        return rp_raise(ctx, 9, "fail %ld", x);
    if (x == 61777)
        raise(SIGKILL);
    *(long *)out = x * x;
    return 0;
}

static int soak_var(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 1009 == 0 && x > 0)
        return rp_raise(ctx, 9, "fail %ld", x);
    long *o = rp_output(ctx, (size_t)(x % 5) * sizeof(long));
    if (!o && x % 5)
        return rp_raise(ctx, 1, "no output room");
    for (long k = 0; k < x % 5; k++)
        o[k] = x + k;
    return 0;
}

struct soak {
    rp_pool_t *p;
    unsigned   seed;
    int        bad;
};

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 16) & 0x7fff;
}

/* Items expected to fail in [0, n) with input base + i. */
static size_t expected_failures(long base, size_t n)
{
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        long x = base + (long)i;
        k += (x % 1009 == 0 && x > 0) || x == 61777;
    }
    return k;
}

static void *soaker(void *arg)
{
    struct soak *t = arg;
    for (int it = 0; it < 40; it++) {
        size_t n = rnd(&t->seed) % 3000;
        long base = (long)(rnd(&t->seed) % 4) * 30000;
        size_t chunks[] = { 0, 1, 3, 64 };
        rp_map_opts_t mo = { .chunksize = chunks[rnd(&t->seed) % 4] };
        long *in = malloc((n + 1) * sizeof(long)), *out = calloc(n + 1, sizeof(long));
        for (size_t i = 0; i < n; i++)
            in[i] = base + (long)i;
        size_t fails = expected_failures(base, n);
        switch (rnd(&t->seed) % 3) {
        case 0: {
            rp_result_t *r;
            if (rp_map_async(t->p, soak_task, in, n, sizeof(long), out, sizeof(long), &mo, &r)) {
                t->bad++;
                break;
            }
            rp_result_wait(r, RP_FOREVER);
            t->bad += rp_result_nerrors(r) != fails;
            for (size_t i = 0; i < n; i++) {
                long x = in[i];
                if (!((x % 1009 == 0 && x > 0) || x == 61777))
                    t->bad += out[i] != x * x;
            }
            rp_result_free(r);
            break;
        }
        case 1: {
            rp_iter_t *iter;
            if (rp_imap_unordered(t->p, soak_task, in, n, sizeof(long), sizeof(long), &mo,
                                  &iter)) {
                t->bad++;
                break;
            }
            size_t idx, count = 0, nf = 0;
            long v;
            int rc;
            while ((rc = rp_iter_next(iter, 30, &idx, &v, NULL)) != RP_DONE) {
                if (rc == RP_ETIMEDOUT) {
                    t->bad++;
                    break;
                }
                count++;
                if (rc != RP_OK)
                    nf++;
                else
                    t->bad += v != in[idx] * in[idx];
            }
            t->bad += count != n || nf != fails;
            rp_iter_free(iter);
            break;
        }
        default: {
            rp_varout_t *vo = NULL;
            int rc = rp_map_var(t->p, soak_var, in, n, sizeof(long), &mo, &vo, NULL);
            if (!vo) {
                t->bad++;
                break;
            }
            (void)rc;
            for (size_t i = 0; i < n; i++) {
                long x = in[i];
                size_t size;
                const long *o = rp_varout_item(vo, i, &size);
                if (x % 1009 == 0 && x > 0)
                    continue;
                t->bad += size != (size_t)(x % 5) * sizeof(long);
                for (long k = 0; o && k < x % 5; k++)
                    t->bad += o[k] != x + k;
            }
            rp_varout_free(vo);
            break;
        }
        }
        free(in);
        free(out);
    }
    return NULL;
}

static void test_local_soak(void)
{
    rp_pool_t *p = tu_local_pool(3, NULL);
    if (!p)
        return;
    enum { T = 4 };
    pthread_t th[T];
    struct soak t[T];
    for (int i = 0; i < T; i++) {
        t[i].p = p;
        t[i].seed = 1234u + (unsigned)i * 77u;
        t[i].bad = 0;
        pthread_create(&th[i], NULL, soaker, &t[i]);
    }
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CU_ASSERT_EQUAL(t[i].bad, 0);
    }
    tu_pool_done(p);
}

/* An idle pool burns no CPU: its workers sleep (after a short spin), so does the
 * pool thread. A polling design would show hundreds of ms here. */
static double cpu_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    unsigned long ut = 0, st = 0;
    /* fields after the name: state ppid pgrp session tty tpgid flags minflt
     * cminflt majflt cmajflt utime stime */
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static int own_pid(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = (int)getpid();
    tu_sleep(1e-3);
    return 0;
}

static void test_local_idle_sleeps(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long *in = tu_iota(40);
    int pids[40];
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, own_pid, in, 40, sizeof(long), pids, sizeof(int), &one, NULL),
                    RP_OK);
    int w0 = pids[0], w1 = w0;
    for (int i = 0; i < 40; i++)
        if (pids[i] != w0)
            w1 = pids[i];
    tu_sleep(20e-3); /* settle */
    double c0 = cpu_of(w0), c1 = cpu_of(w1), m = cpu_of(getpid());
    tu_sleep(0.4); /* idle */
    double d0 = cpu_of(w0) - c0, d1 = cpu_of(w1) - c1, dm = cpu_of(getpid()) - m;
    CU_ASSERT(c0 >= 0 && c1 >= 0);
    CU_ASSERT(d0 < 0.05);
    CU_ASSERT(d1 < 0.05);
    CU_ASSERT(dm < 0.05);
    free(in);
    tu_pool_done(p);
}

/* ---- dispatch: an idle worker takes new work at once ---------------------------- */

/* A task that returns when it started (CLOCK_MONOTONIC, the same clock in every
 * process) and on which worker, then sleeps its input's milliseconds. */
struct started {
    double at, end;
    int    worker;
};

static int note_start(const void *in, void *out, rp_ctx_t *ctx)
{
    struct started *s = out;
    s->at = tu_now();
    s->worker = rp_ctx_worker(ctx);
    tu_sleep(*(const long *)in * 1e-3);
    s->end = tu_now();
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* A job submitted while one worker runs a long task and the other idles starts
 * on the idle one at once (within a millisecond: the wake of a sleeping process),
 * both when the long task started a while ago (the idle worker is asleep) and
 * when it was submitted just before, as the one worker that was spinning took it
 * (the idle one is asleep, and the spinner may still count as looking for work);
 * waiting behind the busy worker would take 300 ms. */
static void idle_worker_rounds(rp_pool_t *p, bool back_to_back)
{
    enum { ROUNDS = 20 };
    double lat[ROUNDS];
    int elsewhere = 0, before_free = 0;
    for (int k = 0; k < ROUNDS; k++) {
        long busy_ms = 300, short_ms = 0;
        struct started busy, quick;
        rp_result_t *rb, *rq;
        if (back_to_back) /* the worker that runs this one spins after it */
            CU_ASSERT_EQUAL(rp_apply(p, note_start, &short_ms, sizeof short_ms, &quick,
                                     sizeof quick, NULL),
                            RP_OK);
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, note_start, &busy_ms, sizeof busy_ms, &busy,
                                             sizeof busy, NULL, &rb),
                              RP_OK);
        if (!back_to_back)
            tu_sleep(20e-3); /* the long task runs; the other worker went to sleep */
        double t0 = tu_now();
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, note_start, &short_ms, sizeof short_ms, &quick,
                                             sizeof quick, NULL, &rq),
                              RP_OK);
        CU_ASSERT_EQUAL(rp_result_get(rq, 30, NULL), RP_OK);
        CU_ASSERT_EQUAL(rp_result_get(rb, 30, NULL), RP_OK);
        lat[k] = quick.at - t0;
        elsewhere += quick.worker != busy.worker;
        before_free += quick.at < busy.end;
        rp_result_free(rq);
        rp_result_free(rb);
    }
    qsort(lat, ROUNDS, sizeof *lat, cmp_double);
    printf("\n    %s: start on the idle worker after median %.0f us, max %.0f us ",
           back_to_back ? "right after another" : "alone", lat[ROUNDS / 2] * 1e6,
           lat[ROUNDS - 1] * 1e6);
    CU_ASSERT_EQUAL(elsewhere, ROUNDS);
    /* every one started while the busy worker was still busy: its own clock, not
     * a bound on wake-up time (a machine at load 100 delayed single wakes by
     * 0.3 s); queued behind the busy worker it would start after busy.end */
    CU_ASSERT_EQUAL(before_free, ROUNDS);
    /* tens of microseconds on a quiet machine, a few milliseconds under others'
     * load; the defect is 280 ms */
    CU_ASSERT(lat[ROUNDS / 2] < 50e-3);
}

static void test_local_idle_worker_starts_job(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    idle_worker_rounds(p, false);
    idle_worker_rounds(p, true);
    tu_pool_done(p);
}

/* Bursts of one-item jobs keep both workers busy: 4 apply_async of 0.15 s on 2
 * workers run two on each and take 0.30 s, in every round (not 0.60 s with all
 * four on the worker that happened to be spinning when the burst came).
 *
 * Every round of every series must share the work evenly: that is what the
 * defect breaks. The time is the pool's: a round takes, on its busier worker,
 * 0.15 s per task plus the time its tasks waited (its first start after the
 * submit, each next start after the previous end), measured by the tasks
 * themselves; a task that overslept on a loaded machine is not the pool's doing. A series of 20 rounds
 * must all be within 1.1 x 0.30 s; a machine that stalls every process for tens
 * of milliseconds (others' load) can spoil a series, so up to five are run. */
static int burst_series(rp_pool_t *p, int rounds, int *uneven, double *worst, double *worst_raw)
{
    enum { BURST = 4 };
    int slow = 0;
    for (int k = 0; k < rounds; k++) {
        long ms = 150;
        struct started s[BURST];
        rp_result_t *r[BURST];
        double t0 = tu_now();
        for (int i = 0; i < BURST; i++)
            CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, note_start, &ms, sizeof ms, &s[i],
                                                 sizeof s[i], NULL, &r[i]),
                                  RP_OK);
        double end = 0, wait[2] = { 0, 0 }, last_end[2] = { t0, t0 };
        int ran[2] = { 0, 0 };
        for (int i = 0; i < BURST; i++) {
            CU_ASSERT_EQUAL(rp_result_get(r[i], 30, NULL), RP_OK);
            rp_result_free(r[i]);
        }
        /* each worker's tasks in start order (the submit order is the claim order) */
        for (int i = 0; i < BURST; i++) {
            int w = s[i].worker == 0 ? 0 : 1;
            ran[w]++;
            wait[w] += s[i].at > last_end[w] ? s[i].at - last_end[w] : 0;
            last_end[w] = s[i].end;
            end = s[i].end > end ? s[i].end : end;
        }
        double dt0 = ran[0] * 0.15 + wait[0], dt1 = ran[1] * 0.15 + wait[1];
        double dt = dt0 > dt1 ? dt0 : dt1;
        *uneven += ran[0] != BURST / 2;
        slow += dt > 1.1 * 0.30;
        *worst = dt > *worst ? dt : *worst;
        *worst_raw = end - t0 > *worst_raw ? end - t0 : *worst_raw;
    }
    return slow;
}

static void test_local_apply_burst_uses_every_worker(void)
{
    enum { ROUNDS = 20 };
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    int slow = ROUNDS;
    for (int series = 1; series <= 5 && slow > 0; series++) {
        int uneven = 0;
        double worst = 0, raw = 0;
        slow = burst_series(p, ROUNDS, &uneven, &worst, &raw);
        printf("\n    series %d: %d of %d rounds over 0.33 s, %d uneven, slowest %.3f s "
               "(%.3f s with the tasks' own delays) ",
               series, slow, ROUNDS, uneven, worst, raw);
        CU_ASSERT_EQUAL(uneven, 0);
    }
    CU_ASSERT_EQUAL(slow, 0);
    tu_pool_done(p);
}

/* A worker killed while it idles (spinning, or asleep): the pool still wakes an
 * idle worker for the next job. The idle counts a submit reads to decide whom to
 * wake must not keep the dead one (counted as spinning, it would keep every
 * sleeper asleep for a one-item job). */
static int own_pid_now(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = (int)getpid();
    return 0;
}

static void test_local_killed_idle_worker_keeps_wakes(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    int late = 0;
    for (int k = 0; k < 20; k++) {
        long x = k;
        int pid = 0;
        CU_ASSERT_EQUAL_FATAL(rp_apply(p, own_pid_now, &x, sizeof x, &pid, sizeof pid, NULL),
                              RP_OK);
        kill(pid, SIGKILL); /* as it starts spinning for more work */
        tu_sleep(k % 2 ? 0.1 : 0.002); /* the replacement starts; everyone falls asleep */
        rp_result_t *r;
        CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, own_pid_now, &x, sizeof x, &pid, sizeof pid,
                                             NULL, &r),
                              RP_OK);
        if (rp_result_wait(r, 5.0) != RP_OK) {
            late = k + 1; /* nothing would ever wake a worker for it */
            rp_pool_terminate(p);
            rp_result_free(r);
            break;
        }
        rp_result_free(r);
    }
    if (late)
        printf("\n    round %d: the job was never started ", late);
    CU_ASSERT_EQUAL(late, 0);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_local_worker_numbers),
        TU_TEST(test_local_default_size),
        TU_TEST(test_local_many_jobs),
        TU_TEST(test_local_large),
        TU_TEST(test_local_bind),
        TU_TEST(test_local_sigchld_handler),
        TU_TEST(test_local_user_fork),
        TU_TEST(test_local_threads),
        TU_TEST(test_local_callback_thread),
        TU_TEST(test_local_progress),
        TU_TEST(test_local_terminate_imap),
        TU_TEST(test_local_soak),
        TU_TEST(test_local_idle_sleeps),
        TU_TEST(test_local_idle_worker_starts_job),
        TU_TEST(test_local_apply_burst_uses_every_worker),
        TU_TEST(test_local_killed_idle_worker_keeps_wakes),
        TU_END,
    };
    return tu_run("local", tests, argc, argv);
}
