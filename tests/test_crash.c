/* Failures and crashes of real workers, the same on both backends: this program
 * runs locally and under mpirun with RP_BACKEND=mpi (tests/mpi-np2.sh). Every rank
 * runs the same pool creations (tu_pool); serving ranks get NULL and skip the
 * body. The tasks themselves crash their worker process (segfault, abort, _exit,
 * SIGKILL), inside chunks and variable-size maps, in an iterator, on every item,
 * and initializers fail. The one dead-worker policy of both backends
 * (doc/semantics.md): the item running fails with RP_EWORKER and its signal or
 * exit status, exactly one item per death; the unstarted rest of what the worker
 * held runs on other workers and succeeds; a replacement runs the initializer
 * again; nothing hangs, and later jobs work. Tests that need worker pids from
 * outside (kill from the test, /proc, the fork server) are the local backend's:
 * tests/test_crash_local.c. */
#define _GNU_SOURCE 1
#include "testutil.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- tasks --------------------------------------------------------------------- */

static long target;  /* the item that misbehaves (set on every rank before the pool) */
static long offset;  /* set by init_offset in each worker process */

static int square_or_fail(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 10 == 3)
        return rp_raise(ctx, 40 + (int)(x % 7), "item %ld refused", x);
    *(long *)out = x * x;
    return 0;
}

static int square_segv(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target)
        raise(SIGSEGV);
    *(long *)out = x * x + offset;
    return 0;
}

static int square_abort(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target)
        abort();
    *(long *)out = x * x;
    return 0;
}

static int square_exit3(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target)
        _exit(3);
    *(long *)out = x * x;
    return 0;
}

static int square_kill9(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == target)
        raise(SIGKILL);
    *(long *)out = x * x;
    return 0;
}

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int always_segv(const void *in, void *out, rp_ctx_t *ctx)
{
    volatile int *p = NULL;
    *p = 1;
    return 0;
}

static int worker_number(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = rp_ctx_worker(ctx);
    return 0;
}

static int init_offset(const void *arg, rp_ctx_t *ctx)
{
    offset = *(const long *)arg;
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

/* Every item but `bad` holds its square plus add. */
static int wrong_outputs(const long *out, size_t n, long bad, long add)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++)
        if ((long)i != bad && out[i] != (long)(i * i) + add)
            wrong++;
    return wrong;
}

/* The one failure of a map where item `target` killed its worker: RP_EWORKER,
 * the signal or the exit status, and a message that says which. */
static void check_failure(rp_result_t *r, int sig, int status)
{
    rp_error_t e;
    memset(&e, 0, sizeof e);
    CU_ASSERT_EQUAL(rp_result_get(r, 60.0, &e), RP_EWORKER);
    CU_ASSERT_EQUAL(e.code, RP_EWORKER);
    CU_ASSERT_EQUAL(e.index, (size_t)target);
    CU_ASSERT_EQUAL(e.signal, sig);
    CU_ASSERT_EQUAL(e.exit_status, status);
    CU_ASSERT(e.worker >= 0 && e.worker < 2);
    char want[64];
    if (sig)
        snprintf(want, sizeof want, "killed by signal %d (", sig);
    else
        snprintf(want, sizeof want, "exited with status %d", status);
    CU_ASSERT_PTR_NOT_NULL(strstr(e.message, want));
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 1);
    CU_ASSERT_EQUAL(rp_result_successful(r), 0);
}

/* Runs fn over N items where item `target` kills its worker: that item alone fails
 * (the rest of its chunk runs elsewhere and succeeds); then the pool goes on. */
static void check_death(rp_task_fn fn, size_t chunksize, int sig, int status)
{
    fill_in();
    target = 37;
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long out[N];
    memset(out, 0, sizeof out);
    rp_map_opts_t mo = { .chunksize = chunksize };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL(rp_map_async(p, fn, in_items, N, sizeof(long), out, sizeof(long), &mo, &r),
                    RP_OK);
    check_failure(r, sig, status);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, target, 0), 0);
    rp_result_free(r);

    /* The replacement works, keeps numbers in 0..size-1, and later jobs complete. */
    memset(out, 0, sizeof out);
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, N, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, -1, 0), 0);
    int who[N];
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, worker_number, in_items, N, sizeof(long), who, sizeof(int), &one,
                           NULL),
                    RP_OK);
    for (int i = 0; i < N; i++)
        CU_ASSERT(who[i] >= 0 && who[i] < 2);
    CU_ASSERT_EQUAL(rp_pool_size(p), 2);
    tu_pool_done(p);
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_crash_task_failure(void)
{
    fill_in();
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long out[N];
    memset(out, 0, sizeof out);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, square_or_fail, in_items, N, sizeof(long), out, sizeof(long), NULL,
                           &e),
                    RP_ETASK);
    CU_ASSERT_EQUAL(e.code, RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 3);
    CU_ASSERT_EQUAL(e.task_code, 43);
    CU_ASSERT_STRING_EQUAL(e.message, "item 3 refused");
    for (long i = 0; i < N; i++)
        if (i % 10 != 3)
            CU_ASSERT_EQUAL(out[i], i * i);

    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map_async(p, square_or_fail, in_items, N, sizeof(long), out, sizeof(long),
                                 NULL, &r),
                    RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, RP_FOREVER), RP_OK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), N / 10);
    for (size_t k = 0; k < N / 10; k++) {
        const rp_error_t *x = rp_result_error(r, k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        CU_ASSERT_EQUAL(x->index, 10 * k + 3);
        CU_ASSERT_EQUAL(x->task_code, 40 + (int)((10 * k + 3) % 7));
    }
    rp_result_free(r);
    tu_pool_done(p);
}

static void test_crash_segfault(void) { check_death(square_segv, 0, SIGSEGV, -1); }
static void test_crash_segfault_mid_chunk(void) { check_death(square_segv, 16, SIGSEGV, -1); }
static void test_crash_abort(void) { check_death(square_abort, 0, SIGABRT, -1); }
static void test_crash_exit_status_mid_chunk(void) { check_death(square_exit3, 5, 0, 3); }
static void test_crash_sigkill_mid_chunk(void) { check_death(square_kill9, 7, SIGKILL, -1); }

/* A program that ignores SIGCHLD (its children reaped for it), or reaps every
 * child in its own handler, still learns how a worker died: the signal and the
 * exit status. Its setting is its own again after the pool. */
static void reap_all(int sig)
{
    (void)sig;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

static void check_death_with_sigchld(void (*action)(int))
{
    struct sigaction user = { .sa_handler = action }, before, after;
    sigemptyset(&user.sa_mask);
    sigaction(SIGCHLD, &user, &before);
    check_death(square_segv, 0, SIGSEGV, -1);
    check_death(square_exit3, 5, 0, 3);
    sigaction(SIGCHLD, &before, &after);
    CU_ASSERT(after.sa_handler == action);
}

static void test_crash_sigchld_ignored(void) { check_death_with_sigchld(SIG_IGN); }
static void test_crash_sigchld_reaped_by_program(void) { check_death_with_sigchld(reap_all); }

/* One chunk of all the items: the worker holding it dies at item 37; the 162
 * items after it were held by the dead worker and not started: they run on the
 * others and succeed. */
static void test_crash_rest_of_chunk_runs_elsewhere(void)
{
    fill_in();
    target = 37;
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long out[N];
    memset(out, 0, sizeof out);
    rp_map_opts_t mo = { .chunksize = N };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_segv, in_items, N, sizeof(long), out,
                                       sizeof(long), &mo, &r), RP_OK);
    check_failure(r, SIGSEGV, -1);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, target, 0), 0);
    rp_result_free(r);
    tu_pool_done(p);
}

/* Every item kills its worker: each fails alone, the pool survives. */
static void test_crash_every_item(void)
{
    fill_in();
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long out[20];
    rp_result_t *r;
    CU_ASSERT_EQUAL(rp_map_async(p, always_segv, in_items, 20, sizeof(long), out, sizeof(long),
                                 NULL, &r),
                    RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 20);
    for (size_t i = 0; i < 20; i++) {
        const rp_error_t *x = rp_result_error(r, i);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        CU_ASSERT_EQUAL(x->index, i);
        CU_ASSERT_EQUAL(x->code, RP_EWORKER);
        CU_ASSERT_EQUAL(x->signal, SIGSEGV);
    }
    rp_result_free(r);
    long sq[N];
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, N, sizeof(long), sq, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(wrong_outputs(sq, N, -1, 0), 0);
    tu_pool_done(p);
}

/* A worker dying inside an imap: the item is yielded with RP_EWORKER, the
 * iteration goes on, in order. */
static void test_crash_imap(void)
{
    fill_in();
    target = 11;
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    rp_iter_t *it;
    rp_map_opts_t mo = { .chunksize = 3 };
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square_segv, in_items, 50, sizeof(long), sizeof(long), &mo,
                                  &it),
                          RP_OK);
    size_t idx, count = 0;
    long v;
    rp_error_t e;
    int rc;
    while ((rc = rp_iter_next(it, 30, &idx, &v, &e)) != RP_DONE) {
        CU_ASSERT_EQUAL(idx, count);
        if (idx == 11) {
            CU_ASSERT_EQUAL(rc, RP_EWORKER);
            CU_ASSERT_EQUAL(e.signal, SIGSEGV);
        } else {
            CU_ASSERT_EQUAL(rc, RP_OK);
            CU_ASSERT_EQUAL(v, (long)(idx * idx));
        }
        if (rc == RP_ETIMEDOUT)
            break;
        count++;
    }
    CU_ASSERT_EQUAL(count, 50);
    rp_iter_free(it);
    tu_pool_done(p);
}

/* ---- variable-size outputs --------------------------------------------------------- */

/* Item n's output: n % 50 + 1 longs, each n; multiples of 97 fail; n == 500
 * writes its output, then dies. */
static int repeat_or_die(const void *in, void *out, rp_ctx_t *ctx)
{
    long n = *(const long *)in;
    size_t k = (size_t)(n % 50 + 1);
    long *d = n % 97 == 0 ? NULL : rp_output(ctx, k * sizeof(long));
    if (n % 97 == 0)
        return rp_raise(ctx, 97, "%ld is a multiple of 97", n);
    if (!d)
        return rp_raise(ctx, 1, "rp_output failed");
    for (size_t i = 0; i < k; i++)
        d[i] = n;
    if (n == 500)
        raise(SIGSEGV);
    return 0;
}

/* A worker dies in a variable-size map after writing an output: that item fails
 * and has no output; every other item has its own. */
static void test_crash_var_map(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    size_t n = 800;
    long *in = malloc(n * sizeof *in);
    for (size_t i = 0; i < n; i++)
        in[i] = (long)i + 1;
    rp_varout_t *vo = NULL;
    rp_result_t *r;
    rp_map_opts_t mo = { .chunksize = 10 };
    CU_ASSERT_EQUAL_FATAL(rp_map_var_async(p, repeat_or_die, in, n, sizeof(long), &mo, &vo, &r),
                          RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 60, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 96);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), n / 97 + 1);
    int deaths = 0;
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *x = rp_result_error(r, k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(x);
        if (x->code != RP_EWORKER)
            continue;
        deaths++;
        CU_ASSERT_EQUAL(x->index, 499);
        CU_ASSERT_EQUAL(x->signal, SIGSEGV);
    }
    CU_ASSERT_EQUAL(deaths, 1);
    int wrong = 0;
    for (size_t i = 0; i < n; i++) {
        size_t size = 7;
        const long *d = rp_varout_item(vo, i, &size);
        long x = in[i];
        if (x == 500 || x % 97 == 0) {
            wrong += d != NULL || size != 0;
            continue;
        }
        size_t k = (size_t)(x % 50 + 1);
        wrong += !d || size != k * sizeof(long) || d[0] != x || d[k - 1] != x;
    }
    CU_ASSERT_EQUAL(wrong, 0);
    rp_result_free(r);
    rp_varout_free(vo);
    free(in);
    tu_pool_done(p);
}

/* ---- initializers ------------------------------------------------------------------ */

/* A worker dies; its replacement runs the initializer before taking any item:
 * every item that succeeded, before and after the death, saw the offset. */
static void test_crash_replacement_runs_initializer(void)
{
    fill_in();
    target = 37;
    long off = 1000;
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.initializer = init_offset;
    o.initarg = &off;
    o.initarg_size = sizeof off;
    rp_pool_t *p = tu_pool(2, &o);
    if (!p)
        return;
    long out[N];
    rp_map_opts_t mo = { .chunksize = 4 };
    rp_result_t *r;
    for (int round = 0; round < 3; round++) { /* each round kills a worker */
        memset(out, 0, sizeof out);
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_segv, in_items, N, sizeof(long), out,
                                           sizeof(long), &mo, &r), RP_OK);
        check_failure(r, SIGSEGV, -1);
        CU_ASSERT_EQUAL(wrong_outputs(out, N, target, off), 0);
        rp_result_free(r);
    }
    CU_ASSERT_EQUAL(offset, 0); /* it ran in the workers, not here */
    tu_pool_done(p);
}

static int init_fail(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 7, "cannot open %s", (const char *)arg);
}

static int init_fail_on_1(const void *arg, rp_ctx_t *ctx)
{
    if (rp_ctx_worker(ctx) == 1)
        return rp_raise(ctx, 9, "worker one says no");
    return 0;
}

static int init_segv(const void *arg, rp_ctx_t *ctx)
{
    raise(SIGSEGV);
    return 0;
}

/* An initializer that fails, or kills its worker: creation fails with RP_EINIT,
 * the initializer's message, the worker, the signal (on every rank; the master
 * has the details). */
static void test_crash_init_failure(void)
{
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.workers = 2;
    o.initializer = init_fail;
    o.initarg = "the database";
    o.initarg_size = strlen("the database") + 1;
    rp_pool_t *p = (rp_pool_t *)1;
    rp_error_t e;
    bool master = tu_master_rank();
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINIT);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(e.code, RP_EINIT);
    if (master) {
        CU_ASSERT_EQUAL(e.task_code, 7);
        CU_ASSERT_STRING_EQUAL(e.message, "cannot open the database");
    }

    o.initializer = init_fail_on_1;
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINIT);
    if (master) {
        CU_ASSERT_EQUAL(e.worker, 1);
        CU_ASSERT_STRING_EQUAL(e.message, "worker one says no");
    }

    o.initializer = init_segv;
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINIT);
    if (master) {
        CU_ASSERT_EQUAL(e.signal, SIGSEGV);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "killed by signal 11"));
    }
}

/* Replacement workers whose initializer fails are not retried forever: with no
 * worker left, the pending items fail with RP_EBROKEN, and so does later work. */
static int init_fails_once_flagged(const void *arg, rp_ctx_t *ctx)
{
    if (access((const char *)arg, F_OK) == 0)
        return rp_raise(ctx, 1, "replacement refused");
    return 0;
}

static void test_crash_replacement_init_fails(void)
{
    fill_in();
    char flag_path[64];
    snprintf(flag_path, sizeof flag_path, "/tmp/rp_test_flag_%d", (int)getpid());
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.initializer = init_fails_once_flagged;
    o.initarg = flag_path; /* the master's, on every worker */
    o.initarg_size = sizeof flag_path;
    rp_pool_t *p = tu_pool(2, &o);
    if (!p)
        return;
    int fd = open(flag_path, O_CREAT | O_WRONLY, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    long out[40];
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map_async(p, always_segv, in_items, 40, sizeof(long), out, sizeof(long),
                                 &one, &r),
                    RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 30, &e), RP_EWORKER);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 40);
    const rp_error_t *last = rp_result_error(r, 39);
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT_EQUAL(last->code, RP_EBROKEN);
    rp_result_free(r);
    /* Later work fails at once rather than hanging. */
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, 10, sizeof(long), out, sizeof(long), NULL, &e),
                    RP_EBROKEN);
    tu_pool_done(p);
    unlink(flag_path);
}

/* Once a flag file exists, the next worker process to run this initializer is
 * killed inside it (SIGKILL, once: it leaves a second file); every other run sets
 * the offset. */
struct die_once_paths {
    char flag[64], once[72];
};

static int init_killed_once_flagged(const void *arg, rp_ctx_t *ctx)
{
    const struct die_once_paths *d = arg;
    if (access(d->flag, F_OK) == 0) {
        int fd = open(d->once, O_CREAT | O_EXCL | O_WRONLY, 0600);
        if (fd >= 0) {
            close(fd);
            raise(SIGKILL);
        }
    }
    offset = 1000;
    return 0;
}

/* A replacement killed by a signal while it runs its initializer is not a failing
 * initializer: it is replaced again, and the pool keeps its workers. With one
 * worker, only the item that killed the first process fails; every other item
 * runs on the third process, initialised. */
static void test_crash_replacement_killed_in_initializer(void)
{
    fill_in();
    target = 3;
    struct die_once_paths d;
    snprintf(d.flag, sizeof d.flag, "/tmp/rp_test_kinit_%d", (int)getpid());
    snprintf(d.once, sizeof d.once, "%s.once", d.flag);
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.initializer = init_killed_once_flagged;
    o.initarg = &d; /* the master's paths, on every worker */
    o.initarg_size = sizeof d;
    rp_pool_t *p = tu_pool(1, &o);
    if (!p)
        return;
    int fd = open(d.flag, O_CREAT | O_WRONLY, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    long out[40];
    memset(out, 0, sizeof out);
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_segv, in_items, 40, sizeof(long), out,
                                       sizeof(long), &one, &r),
                          RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 60, &e), RP_EWORKER);
    CU_ASSERT_EQUAL(e.index, 3);
    CU_ASSERT_EQUAL(e.signal, SIGSEGV);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 1);
    CU_ASSERT_EQUAL(wrong_outputs(out, 40, 3, 1000), 0);
    rp_result_free(r);
    CU_ASSERT_EQUAL(access(d.once, F_OK), 0); /* the replacement was killed */
    CU_ASSERT_EQUAL(rp_map(p, square_segv, in_items + 10, 10, sizeof(long), out, sizeof(long),
                           NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(out[0], 10 * 10 + 1000);
    tu_pool_done(p);
    unlink(d.flag);
    unlink(d.once);
}

/* Once the flag file exists, every process that runs this initializer is killed
 * inside it. */
static int init_killed_when_flagged(const void *arg, rp_ctx_t *ctx)
{
    if (access((const char *)arg, F_OK) == 0)
        raise(SIGKILL);
    return 0;
}

/* An initializer that kills its process every time is not restarted forever: after
 * a few replacements died in it in a row, the worker is gone; with no worker
 * left, the remaining items fail with RP_EBROKEN, and so does later work. */
static void test_crash_replacement_always_killed_in_initializer(void)
{
    fill_in();
    target = 3;
    char flag_path[64];
    snprintf(flag_path, sizeof flag_path, "/tmp/rp_test_kall_%d", (int)getpid());
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.initializer = init_killed_when_flagged;
    o.initarg = flag_path;
    o.initarg_size = sizeof flag_path;
    rp_pool_t *p = tu_pool(1, &o);
    if (!p)
        return;
    int fd = open(flag_path, O_CREAT | O_WRONLY, 0600);
    CU_ASSERT_FATAL(fd >= 0);
    close(fd);
    long out[40];
    rp_result_t *r;
    rp_map_opts_t one = { .chunksize = 1 };
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square_segv, in_items, 40, sizeof(long), out,
                                       sizeof(long), &one, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 0, &e), RP_EWORKER);
    CU_ASSERT_EQUAL(e.index, 3);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 37);
    const rp_error_t *last = rp_result_error(r, 36);
    CU_ASSERT_PTR_NOT_NULL_FATAL(last);
    CU_ASSERT_EQUAL(last->index, 39);
    CU_ASSERT_EQUAL(last->code, RP_EBROKEN);
    CU_ASSERT_EQUAL(wrong_outputs(out, 3, -1, 0), 0);
    rp_result_free(r);
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, 10, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_EBROKEN);
    tu_pool_done(p);
    unlink(flag_path);
}

/* max_tasks_per_worker: workers are replaced after that many items, without any
 * error; every item is still right. */
static int pid_of_worker(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = (int)getpid();
    return 0;
}

static void test_crash_max_tasks(void)
{
    fill_in();
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.max_tasks_per_worker = 5;
    rp_pool_t *p = tu_pool(2, &o);
    if (!p)
        return;
    int pids[100];
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, pid_of_worker, in_items, 100, sizeof(long), pids, sizeof(int),
                           NULL, &e),
                    RP_OK);
    /* Each process ran at most 5 items: at least 20 distinct pids. */
    int distinct = 0;
    for (int i = 0; i < 100; i++) {
        int seen = 0;
        for (int k = 0; k < i; k++)
            seen |= pids[k] == pids[i];
        distinct += !seen;
        int same = 0;
        for (int k = 0; k < 100; k++)
            same += pids[k] == pids[i];
        CU_ASSERT(same <= 5);
    }
    CU_ASSERT(distinct >= 20);
    long out[N];
    CU_ASSERT_EQUAL(rp_map(p, square, in_items, N, sizeof(long), out, sizeof(long), NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(wrong_outputs(out, N, -1, 0), 0);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore);  /* abort() and SIGSEGV without core files */
    static const tu_test tests[] = {
        TU_TEST(test_crash_task_failure),
        TU_TEST(test_crash_segfault),
        TU_TEST(test_crash_segfault_mid_chunk),
        TU_TEST(test_crash_abort),
        TU_TEST(test_crash_exit_status_mid_chunk),
        TU_TEST(test_crash_sigkill_mid_chunk),
        TU_TEST(test_crash_sigchld_ignored),
        TU_TEST(test_crash_sigchld_reaped_by_program),
        TU_TEST(test_crash_rest_of_chunk_runs_elsewhere),
        TU_TEST(test_crash_every_item),
        TU_TEST(test_crash_imap),
        TU_TEST(test_crash_var_map),
        TU_TEST(test_crash_replacement_runs_initializer),
        TU_TEST(test_crash_init_failure),
        TU_TEST(test_crash_replacement_init_fails),
        TU_TEST(test_crash_replacement_killed_in_initializer),
        TU_TEST(test_crash_replacement_always_killed_in_initializer),
        TU_TEST(test_crash_max_tasks),
        TU_END,
    };
    return tu_run("crash", tests, argc, argv);
}
