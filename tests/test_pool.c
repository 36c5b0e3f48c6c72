/* Every bad argument through the public API, against the real library: each is a
 * clear error code, never a crash or a hang. */
#include "testutil.h"

#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static void test_pool_create_bad_options(void)
{
    rp_pool_t *p = (rp_pool_t *)&p;
    rp_pool_opts_t o;
    rp_error_t e;

    CU_ASSERT_EQUAL(rp_pool_create(NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_create_ex(NULL, NULL, &e), RP_EINVAL);
    CU_ASSERT_EQUAL(e.code, RP_EINVAL);

    o = (rp_pool_opts_t){ .backend = "local", .workers = -1 };
    CU_ASSERT_EQUAL(rp_pool_create(&p, &o), RP_EINVAL);
    CU_ASSERT_PTR_NULL(p);

    o = (rp_pool_opts_t){ .backend = "local", .max_tasks_per_worker = -5 };
    CU_ASSERT_EQUAL(rp_pool_create(&p, &o), RP_EINVAL);

    o = (rp_pool_opts_t){ .backend = "local", .initarg = NULL, .initarg_size = 8 };
    CU_ASSERT_EQUAL(rp_pool_create(&p, &o), RP_EINVAL);

    p = (rp_pool_t *)&p;
    o = (rp_pool_opts_t){ .backend = "no-such-backend" };
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EBACKEND);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(e.code, RP_EBACKEND);
    CU_ASSERT_TRUE(strlen(e.message) > 0);
}

static void test_pool_create_unknown_backend_from_env(void)
{
    rp_pool_t *p = NULL;
    setenv("RP_BACKEND", "bogus", 1);
    CU_ASSERT_EQUAL(rp_pool_create(&p, NULL), RP_EBACKEND);
    CU_ASSERT_PTR_NULL(p);
    unsetenv("RP_BACKEND");
}

static void test_pool_default_is_local(void)
{
    if (getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_SIZE"))
        return; /* under a launcher the default is mpi */
    unsetenv("RP_BACKEND");
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    CU_ASSERT_STRING_EQUAL(rp_pool_backend(p), "local");
    CU_ASSERT_TRUE(rp_pool_size(p) >= 1);
    CU_ASSERT_TRUE(rp_pool_is_master(p));
    tu_pool_done(p);
}

static void test_pool_null_handles(void)
{
    CU_ASSERT_EQUAL(rp_pool_size(NULL), RP_EINVAL);
    CU_ASSERT_FALSE(rp_pool_is_master(NULL));
    CU_ASSERT_STRING_EQUAL(rp_pool_backend(NULL), "");
    CU_ASSERT_EQUAL(rp_pool_close(NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_join(NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_pool_terminate(NULL), RP_EINVAL);
    rp_pool_free(NULL);

    size_t done = 9, total = 9;
    CU_ASSERT_EQUAL(rp_result_wait(NULL, 0), RP_EINVAL);
    CU_ASSERT_FALSE(rp_result_ready(NULL));
    CU_ASSERT_EQUAL(rp_result_successful(NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_get(NULL, 0, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_result_nerrors(NULL), 0);
    CU_ASSERT_PTR_NULL(rp_result_error(NULL, 0));
    rp_result_progress(NULL, &done, &total);
    CU_ASSERT_EQUAL(done, 0);
    CU_ASSERT_EQUAL(total, 0);
    rp_result_free(NULL);

    CU_ASSERT_EQUAL(rp_iter_next(NULL, 0, NULL, NULL, NULL), RP_EINVAL);
    rp_iter_free(NULL);
    CU_ASSERT_EQUAL(rp_varout_count(NULL), 0);
    size_t sz = 3;
    CU_ASSERT_PTR_NULL(rp_varout_item(NULL, 0, &sz));
    CU_ASSERT_EQUAL(sz, 0);
    rp_varout_free(NULL);
    CU_ASSERT_PTR_NULL(rp_output(NULL, 1));
    CU_ASSERT_EQUAL(rp_raise(NULL, 0, "x"), RP_ETASK);
    CU_ASSERT_EQUAL(rp_ctx_worker(NULL), -1);
    CU_ASSERT_EQUAL(rp_ctx_index(NULL), 0);

    long x = 1, y;
    rp_result_t *r = (rp_result_t *)&r;
    CU_ASSERT_EQUAL(rp_map(NULL, square, &x, 1, sizeof x, &y, sizeof y, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_async(NULL, square, &x, 1, sizeof x, &y, sizeof y, NULL, &r),
                    RP_EINVAL);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(rp_apply(NULL, square, &x, sizeof x, &y, sizeof y, NULL), RP_EINVAL);
}

static void test_pool_map_bad_arguments(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in[4] = { 1, 2, 3, 4 }, out[4];
    rp_result_t *r = (rp_result_t *)&r;
    rp_iter_t *it = (rp_iter_t *)&it;
    rp_varout_t *vo = (rp_varout_t *)&vo;
    const size_t huge = SIZE_MAX / 2 + 1;

    CU_ASSERT_EQUAL(rp_map(p, NULL, in, 4, sizeof *in, out, sizeof *out, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, NULL, 4, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, 0, out, sizeof *out, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof *in, NULL, sizeof *out, NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, huge, 4, out, sizeof *out, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, huge, out, sizeof *out, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map(p, square, in, huge, 1, out, 4, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 4, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_async(p, NULL, in, 4, sizeof *in, out, sizeof *out, NULL, &r),
                    RP_EINVAL);
    CU_ASSERT_PTR_NULL(r);

    CU_ASSERT_EQUAL(rp_apply(p, NULL, in, sizeof *in, out, sizeof *out, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_apply(p, square, NULL, sizeof *in, out, sizeof *out, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_apply(p, square, in, 0, out, sizeof *out, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_apply(p, square, in, sizeof *in, NULL, sizeof *out, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_apply_async(p, square, in, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_EINVAL);

    CU_ASSERT_EQUAL(rp_imap(p, square, in, 4, sizeof *in, sizeof *out, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_imap(p, NULL, in, 4, sizeof *in, sizeof *out, NULL, &it), RP_EINVAL);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(rp_imap(p, square, NULL, 4, sizeof *in, sizeof *out, NULL, &it), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_imap(p, square, in, 4, 0, sizeof *out, NULL, &it), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_imap(p, square, in, huge, 2, sizeof *out, NULL, &it), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_imap_unordered(p, square, in, 4, sizeof *in, huge, NULL, &it),
                    RP_EINVAL);
    CU_ASSERT_EQUAL(rp_imap_unordered(NULL, square, in, 4, sizeof *in, 8, NULL, &it),
                    RP_EINVAL);

    CU_ASSERT_EQUAL(rp_map_var(p, square, in, 4, sizeof *in, NULL, NULL, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_var(p, NULL, in, 4, sizeof *in, NULL, &vo, NULL), RP_EINVAL);
    CU_ASSERT_PTR_NULL(vo);
    CU_ASSERT_EQUAL(rp_map_var(p, square, in, 4, 0, NULL, &vo, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_var(p, square, in, huge, 4, NULL, &vo, NULL), RP_EINVAL);
    CU_ASSERT_EQUAL(rp_map_var_async(p, square, in, 4, sizeof *in, NULL, &vo, NULL), RP_EINVAL);

    /* The pool still works after all that. */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof *in, out, sizeof *out, NULL, NULL), RP_OK);
    CU_ASSERT_EQUAL(out[3], 16);
    tu_pool_done(p);
}

static void test_pool_empty_map_is_valid(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    CU_ASSERT_EQUAL(rp_map(p, square, NULL, 0, sizeof(long), NULL, sizeof(long), NULL, NULL),
                    RP_OK);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, square, NULL, 0, sizeof(long), NULL, 0, NULL, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_OK);
    CU_ASSERT_EQUAL(rp_result_successful(r), 1);
    rp_result_free(r);
    tu_pool_done(p);
}

static void test_pool_calls_after_close(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in[2] = { 1, 2 }, out[2];
    rp_result_t *r = (rp_result_t *)&r;
    rp_iter_t *it = (rp_iter_t *)&it;
    rp_varout_t *vo = (rp_varout_t *)&vo;

    CU_ASSERT_EQUAL(rp_pool_join(p), RP_EINVAL); /* before close */
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);    /* idempotent */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 2, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_ECLOSED);
    CU_ASSERT_EQUAL(rp_map_async(p, square, in, 2, sizeof *in, out, sizeof *out, NULL, &r),
                    RP_ECLOSED);
    CU_ASSERT_PTR_NULL(r);
    CU_ASSERT_EQUAL(rp_apply(p, square, in, sizeof *in, out, sizeof *out, NULL), RP_ECLOSED);
    CU_ASSERT_EQUAL(rp_imap(p, square, in, 2, sizeof *in, sizeof *out, NULL, &it), RP_ECLOSED);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(rp_map_var(p, square, in, 2, sizeof *in, NULL, &vo, NULL), RP_ECLOSED);
    CU_ASSERT_PTR_NULL(vo);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);     /* idempotent */
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK); /* harmless after join */
    CU_ASSERT_EQUAL(rp_map(p, square, in, 2, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_ECLOSED);
    rp_pool_free(p);
}

static void test_pool_calls_after_terminate(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in = 3, out;
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL(rp_apply(p, square, &in, sizeof in, &out, sizeof out, NULL), RP_ECLOSED);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

static void test_pool_free_unjoined(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    long in = 3, out = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &in, sizeof in, &out, sizeof out, NULL), RP_OK);
    CU_ASSERT_EQUAL(out, 9);
    rp_pool_free(p); /* open: terminates, joins */
}

static void test_pool_used_from_forked_child(void)
{
    rp_pool_t *p = tu_local_pool(2, NULL);
    if (!p)
        return;
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        long in = 2, out;
        int bad = 0;
        bad += rp_apply(p, square, &in, sizeof in, &out, sizeof out, NULL) != RP_EFORK;
        bad += rp_pool_close(p) != RP_EFORK;
        bad += rp_pool_terminate(p) != RP_EFORK;
        rp_pool_free(p); /* must not touch the parent's workers */
        _exit(bad);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
    /* The parent's pool is untouched. */
    long in = 4, out = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &in, sizeof in, &out, sizeof out, NULL), RP_OK);
    CU_ASSERT_EQUAL(out, 16);
    tu_pool_done(p);
}

static long init_seen = -1; /* per worker process */

static int init_store(const void *arg, rp_ctx_t *ctx)
{
    init_seen = *(const long *)arg;
    return 0;
}

static int init_fail(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 5, "cannot start: %ld", *(const long *)arg);
}

static int report_init(const void *in, void *out, rp_ctx_t *ctx)
{
    *(long *)out = init_seen;
    return 0;
}

/* initarg is copied at creation: workers started later (max_tasks_per_worker
 * replaces them) still see the value it had then. */
static void test_pool_initarg_copied(void)
{
    long arg = 1234;
    rp_pool_opts_t o = { .backend = "local", .workers = 2, .initializer = init_store,
                         .initarg = &arg, .initarg_size = sizeof arg,
                         .max_tasks_per_worker = 1 };
    rp_pool_t *p = tu_pool(2, &o);
    if (!p)
        return;
    arg = -7; /* the caller's buffer changes (or goes away) */
    long in[8] = { 0 }, out[8];
    rp_map_opts_t mo = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, report_init, in, 8, sizeof *in, out, sizeof *out, &mo, NULL),
                    RP_OK);
    int bad = 0;
    for (int i = 0; i < 8; i++)
        bad += out[i] != 1234;
    CU_ASSERT_EQUAL(bad, 0);
    tu_pool_done(p);
}

static void test_pool_initializer_failure_reported(void)
{
    long arg = 77;
    rp_pool_opts_t o = { .backend = "local", .workers = 2, .initializer = init_fail,
                         .initarg = &arg, .initarg_size = sizeof arg };
    rp_pool_t *p = (rp_pool_t *)&p;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINIT);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_EQUAL(e.code, RP_EINIT);
    CU_ASSERT_EQUAL(e.task_code, 5);
    CU_ASSERT_STRING_EQUAL(e.message, "cannot start: 77");
}

static void test_pool_strerror_odd_values(void)
{
    CU_ASSERT_PTR_NOT_NULL(rp_strerror(-12345));
    CU_ASSERT_PTR_NOT_NULL(rp_strerror(12345));
    CU_ASSERT_STRING_EQUAL(rp_strerror(RP_ECLOSED), "the pool is closed to new work");
    CU_ASSERT_STRING_EQUAL(rp_err_name(-12345), "RP_UNKNOWN");
}

/* rp_raise_str: rp_raise without a format (for Fortran): the message is taken as
 * it is, '%' included; code 0 still fails the item; no text at all still says
 * what failed. */
static int raise_plain(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x;
    if (x == 1)
        return rp_raise_str(ctx, 0, "100% wrong %s");
    if (x == 2)
        return rp_raise_str(ctx, 12, NULL);
    return 0;
}

static void test_pool_raise_str(void)
{
    CU_ASSERT_EQUAL(rp_raise_str(NULL, 5, "x"), 5); /* no context: just the code */
    rp_pool_t *p = tu_local_pool(2, NULL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    long in[4] = { 0, 1, 2, 3 }, out[4] = { 0 };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, raise_plain, in, 4, sizeof in[0], out,
                                       sizeof out[0], NULL, &r), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, &e), RP_ETASK);
    CU_ASSERT_EQUAL_FATAL(rp_result_nerrors(r), 2);
    const rp_error_t *e1 = rp_result_error(r, 0), *e2 = rp_result_error(r, 1);
    CU_ASSERT_EQUAL(e1->index, 1);
    CU_ASSERT_EQUAL(e1->task_code, RP_ETASK);
    CU_ASSERT_STRING_EQUAL(e1->message, "100% wrong %s");
    CU_ASSERT_EQUAL(e2->index, 2);
    CU_ASSERT_EQUAL(e2->task_code, 12);
    CU_ASSERT_STRING_EQUAL(e2->message, "task raised 12 without a message");
    CU_ASSERT_EQUAL(out[3], 3);
    rp_result_free(r);
    rp_pool_free(p);
}

/* rankpool-run -n N sets RP_WORKERS: the local default worker count. */
static void test_pool_workers_from_env(void)
{
    rp_pool_opts_t o = { .backend = "local" };
    rp_pool_t *p = NULL;
    setenv("RP_WORKERS", "3", 1);
    CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_size(p), 3);
    rp_pool_free(p);

    o.workers = 1; /* an explicit count wins */
    CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_size(p), 1);
    rp_pool_free(p);

    o.workers = 0;
    const char *bad[] = { "0", "-2", "two", "3x", "99999999999", "2000" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        rp_error_t e;
        setenv("RP_WORKERS", bad[i], 1);
        p = (rp_pool_t *)&p;
        CU_ASSERT_EQUAL(rp_pool_create_ex(&p, &o, &e), RP_EINVAL);
        CU_ASSERT_PTR_NULL(p);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "RP_WORKERS"));
    }
    unsetenv("RP_WORKERS");
}

/* Under Slurm the local default is at most the task's CPUs (SLURM_CPUS_PER_TASK),
 * even where hwloc sees the whole node (no task binding); RP_WORKERS still wins. */
static void test_pool_workers_from_slurm(void)
{
    rp_pool_opts_t o = { .backend = "local" };
    rp_pool_t *p = NULL;
    unsetenv("RP_WORKERS");
    unsetenv("SLURM_CPUS_PER_TASK");
    CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
    int ncores = rp_pool_size(p);
    rp_pool_free(p);

    const struct { const char *cpus, *rp_workers; int want; } cases[] = {
        { "1", NULL, 1 },
        { "1000", NULL, ncores },   /* no more workers than cores */
        { "two", NULL, ncores },    /* not a count: ignored */
        { "0", NULL, ncores },
        { "1", "2", 2 },            /* RP_WORKERS wins */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("SLURM_CPUS_PER_TASK", cases[i].cpus, 1);
        if (cases[i].rp_workers)
            setenv("RP_WORKERS", cases[i].rp_workers, 1);
        else
            unsetenv("RP_WORKERS");
        p = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
        if (rp_pool_size(p) != cases[i].want)
            printf("SLURM_CPUS_PER_TASK=%s RP_WORKERS=%s: %d workers, want %d\n",
                   cases[i].cpus, cases[i].rp_workers ? cases[i].rp_workers : "(unset)",
                   rp_pool_size(p), cases[i].want);
        CU_ASSERT_EQUAL(rp_pool_size(p), cases[i].want);
        rp_pool_free(p);
    }
    o.workers = 2; /* an explicit count wins over both */
    setenv("SLURM_CPUS_PER_TASK", "1", 1);
    CU_ASSERT_EQUAL_FATAL(rp_pool_create(&p, &o), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_size(p), 2);
    rp_pool_free(p);
    unsetenv("SLURM_CPUS_PER_TASK");
    unsetenv("RP_WORKERS");
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_pool_create_bad_options),
        TU_TEST(test_pool_create_unknown_backend_from_env),
        TU_TEST(test_pool_default_is_local),
        TU_TEST(test_pool_null_handles),
        TU_TEST(test_pool_map_bad_arguments),
        TU_TEST(test_pool_empty_map_is_valid),
        TU_TEST(test_pool_calls_after_close),
        TU_TEST(test_pool_calls_after_terminate),
        TU_TEST(test_pool_free_unjoined),
        TU_TEST(test_pool_used_from_forked_child),
        TU_TEST(test_pool_initarg_copied),
        TU_TEST(test_pool_initializer_failure_reported),
        TU_TEST(test_pool_strerror_odd_values),
        TU_TEST(test_pool_workers_from_env),
        TU_TEST(test_pool_workers_from_slurm),
        TU_TEST(test_pool_raise_str),
        TU_END
    };
    return tu_run("pool", tests, argc, argv);
}
