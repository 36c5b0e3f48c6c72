/* Resume from a journal (opts.journal), the same on both backends (this program
 * runs locally and under mpirun with RP_BACKEND=mpi): a rerun runs only the items
 * the journal lacks and returns what the whole job returns; a map killed half-way
 * (SIGKILL) resumes; a record cut short is dropped; a journal of another job is
 * RP_EJOURNAL; variable-size outputs and failures come back too.
 *
 * Each run of a task appends its item to the file named by $RP_TEST_COUNTER (set
 * on every rank before the pool starts, so worker processes and serving ranks
 * see it), which counts what really ran. */
#include "testutil.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define N_KILL 400

static void count_run(long v)
{
    const char *p = getenv("RP_TEST_COUNTER");
    if (!p)
        return;
    int fd = open(p, O_WRONLY | O_APPEND | O_CREAT, 0644);
    if (fd >= 0) {
        ssize_t w = write(fd, &v, sizeof v);
        (void)w;
        close(fd);
    }
}

/* v -> v * v; items v % 13 == 5 fail with task code 7. */
static int sq_task(const void *in, void *out, rp_ctx_t *ctx)
{
    long v = *(const long *)in;
    count_run(v);
    if (v % 13 == 5)
        return rp_raise(ctx, 7, "item %ld refused", v);
    *(long *)out = v * v;
    return 0;
}

/* The same, taking 5 ms. */
static int slow_sq_task(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(5e-3);
    return sq_task(in, out, ctx);
}

/* Another task (for a header that names another function). */
static int cube_task(const void *in, void *out, rp_ctx_t *ctx)
{
    long v = *(const long *)in;
    count_run(v);
    *(long *)out = v * v * v;
    return 0;
}

/* v -> v % 50 bytes of 'a' + v % 26; items v % 7 == 3 fail. */
static int var_task(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)out;
    long v = *(const long *)in;
    count_run(v);
    if (v % 7 == 3)
        return rp_raise(ctx, 9, "var item %ld refused", v);
    size_t len = (size_t)(v % 50);
    char *o = rp_output(ctx, len);
    if (!o)
        return rp_raise(ctx, RP_ENOMEM, "no room");
    memset(o, 'a' + (int)(v % 26), len);
    return 0;
}

/* A path for this test run, the same on every rank of the job (its ranks share
 * their parent, mpirun's daemon; alone, the parent is the shell). */
static void path_of(char *buf, size_t len, const char *what)
{
    snprintf(buf, len, "/tmp/rp-journal-test-%d-%s", (int)getppid(), what);
}

/* Sets $RP_TEST_COUNTER (every rank, before the pool starts) and, on the master,
 * removes the old counter file. */
static void use_counter(const char *path)
{
    setenv("RP_TEST_COUNTER", path, 1);
    if (tu_master_rank())
        unlink(path);
}

/* The items counted in the file: how many runs, and whether one ran twice. */
static size_t counted(const char *path, size_t n, bool *twice)
{
    *twice = false;
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    char *seen = calloc(n, 1);
    size_t runs = 0;
    long v;
    while (fread(&v, sizeof v, 1, f) == 1) {
        runs++;
        if (v >= 0 && (size_t)v < n) {
            *twice |= seen[v] != 0;
            seen[v] = 1;
        }
    }
    fclose(f);
    free(seen);
    return runs;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Checks outputs and failures of sq_task over 0..n-1 as one whole run gives them. */
static void check_sq(rp_result_t *r, const long *out, size_t n)
{
    size_t fails = 0, wrong = 0;
    for (size_t i = 0; i < n; i++) {
        if (i % 13 == 5)
            fails++;
        else
            wrong += out[i] != (long)(i * i);
    }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), fails);
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *e = rp_result_error(r, k);
        CU_ASSERT_PTR_NOT_NULL_FATAL(e);
        CU_ASSERT_EQUAL(e->index, 13 * k + 5);
        CU_ASSERT_EQUAL(e->task_code, 7);
        char msg[64];
        snprintf(msg, sizeof msg, "item %zu refused", e->index);
        CU_ASSERT_STRING_EQUAL(e->message, msg);
    }
    size_t done, total;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, n);
    CU_ASSERT_EQUAL(total, n);
}

/* Runs sq_task (or fn) over in with the journal; checks the whole job's result. */
static void map_journaled(rp_pool_t *p, rp_task_fn fn, const long *in, size_t n,
                          const char *journal)
{
    long *out = calloc(n, sizeof *out);
    rp_map_opts_t o = { .journal = journal };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fn, in, n, sizeof *in, out, sizeof *out, &o, &r), RP_OK);
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_result_get(r, 120, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 5);
    check_sq(r, out, n);
    rp_result_free(r);
    free(out);
}

/* A run with a new journal runs every item; a rerun runs none and returns the
 * same outputs and failures; a blocking rp_map sees the same. */
static void test_journal_rerun_runs_nothing(void)
{
    char counter[128], journal[128];
    path_of(counter, sizeof counter, "count1");
    path_of(journal, sizeof journal, "j1");
    use_counter(counter);
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    unlink(journal);
    size_t n = 300;
    long *in = tu_iota(n);
    bool twice;
    map_journaled(p, sq_task, in, n, journal);
    CU_ASSERT_EQUAL(counted(counter, n, &twice), n);
    CU_ASSERT_FALSE(twice);
    long size = file_size(journal);
    unlink(counter);
    map_journaled(p, sq_task, in, n, journal);
    CU_ASSERT_EQUAL(counted(counter, n, &twice), 0);
    CU_ASSERT_EQUAL(file_size(journal), size);
    long *out = calloc(n, sizeof *out);
    rp_map_opts_t o = { .journal = journal };
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map(p, sq_task, in, n, sizeof *in, out, sizeof *out, &o, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 5);
    CU_ASSERT_EQUAL(out[299], 299 * 299);
    CU_ASSERT_EQUAL(counted(counter, n, &twice), 0);
    /* not for an iterator */
    rp_iter_t *it;
    CU_ASSERT_EQUAL(rp_imap(p, sq_task, in, n, sizeof *in, sizeof *out, &o, &it), RP_EINVAL);
    free(out);
    free(in);
    unlink(journal);
    unlink(counter);
    tu_pool_done(p);
}

/* A map killed by SIGKILL half-way (its whole program: a child process running
 * the map on its own local pool, killed by this one) and rerun with its journal
 * on this test's pool runs only the items the journal lacks, each once, and
 * returns what an uninterrupted run returns; a third run runs nothing. */
static void test_journal_killed_map_resumes(void)
{
    char c1[128], c2[128], journal[128];
    path_of(c1, sizeof c1, "kill-first");
    path_of(c2, sizeof c2, "kill-rerun");
    path_of(journal, sizeof journal, "jkill");
    use_counter(c2);
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    unlink(journal);
    unlink(c1);
    long *in = tu_iota(N_KILL);
    fflush(stdout);
    pid_t child = fork();
    CU_ASSERT_TRUE_FATAL(child >= 0);
    if (child == 0) {
        setenv("RP_TEST_COUNTER", c1, 1);
        rp_pool_opts_t po = { .backend = "local", .workers = 2 };
        rp_pool_t *lp;
        if (rp_pool_create(&lp, &po) != RP_OK)
            _exit(2);
        long *out = calloc(N_KILL, sizeof *out);
        rp_map_opts_t o = { .journal = journal };
        rp_map(lp, slow_sq_task, in, N_KILL, sizeof *in, out, sizeof *out, &o, NULL);
        _exit(3); /* finished before it was killed */
    }
    bool twice;
    double end = tu_now() + 60;
    /* half-way: half the items ran, and the journal holds at least ~100 records
     * (40 bytes each; a failure's is larger) */
    while ((counted(c1, N_KILL, &twice) < N_KILL / 2 || file_size(journal) < 4000) &&
           tu_now() < end)
        tu_sleep(2e-3);
    kill(child, SIGKILL);
    int status;
    waitpid(child, &status, 0);
    CU_ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    tu_sleep(0.3); /* its workers go with their fork server */
    size_t first = counted(c1, N_KILL, &twice);

    long *out = calloc(N_KILL, sizeof *out);
    rp_map_opts_t o = { .journal = journal };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_sq_task, in, N_KILL, sizeof *in, out,
                                       sizeof *out, &o, &r), RP_OK);
    size_t done0, total;
    rp_result_progress(r, &done0, &total);
    CU_ASSERT_EQUAL(rp_result_get(r, 120, NULL), RP_ETASK);
    check_sq(r, out, N_KILL);
    rp_result_free(r);
    size_t rerun = counted(c2, N_KILL, &twice);
    printf("\n    killed after %zu runs; the rerun restored >= %zu items, ran %zu\n", first,
           done0, rerun);
    CU_ASSERT_FALSE(twice);
    CU_ASSERT_TRUE(rerun > 0);
    CU_ASSERT_TRUE(rerun < N_KILL); /* what the journal held was not run again */
    CU_ASSERT_TRUE(done0 >= N_KILL - rerun); /* restored items count as done at once */
    CU_ASSERT_EQUAL(total, N_KILL);
    unlink(c2);
    memset(out, 0, N_KILL * sizeof *out);
    CU_ASSERT_EQUAL(rp_map(p, slow_sq_task, in, N_KILL, sizeof *in, out, sizeof *out, &o, NULL),
                    RP_ETASK);
    CU_ASSERT_EQUAL(counted(c2, N_KILL, &twice), 0);
    CU_ASSERT_EQUAL(out[N_KILL - 1], (long)(N_KILL - 1) * (N_KILL - 1));
    free(out);
    free(in);
    unlink(journal);
    unlink(c1);
    unlink(c2);
    tu_pool_done(p);
}

/* The last record cut short (killed while writing it) is dropped: the rerun runs
 * that one item again, and the file is whole again afterwards. Bytes of a record
 * that never checks (a torn header) are dropped the same way. */
static void test_journal_truncated_last_record(void)
{
    char counter[128], journal[128];
    path_of(counter, sizeof counter, "count-trunc");
    path_of(journal, sizeof journal, "jtrunc");
    use_counter(counter);
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    unlink(journal);
    size_t n = 60;
    long *in = tu_iota(n);
    bool twice;
    map_journaled(p, sq_task, in, n, journal);
    long size = file_size(journal);
    CU_ASSERT_TRUE(size > 0);
    CU_ASSERT_EQUAL(truncate(journal, size - 5), 0);
    unlink(counter);
    map_journaled(p, sq_task, in, n, journal);
    CU_ASSERT_EQUAL(counted(counter, n, &twice), 1);
    /* the rerun item's record may be an output or a failure: same length as the cut one */
    CU_ASSERT_EQUAL(file_size(journal), size);
    FILE *f = fopen(journal, "ab");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fwrite("RPJR\001\0\0\0garbage", 1, 15, f);
    fclose(f);
    unlink(counter);
    map_journaled(p, sq_task, in, n, journal);
    CU_ASSERT_EQUAL(counted(counter, n, &twice), 0);
    CU_ASSERT_EQUAL(file_size(journal), size);
    free(in);
    unlink(journal);
    unlink(counter);
    tu_pool_done(p);
}

/* A journal of another job is RP_EJOURNAL, and nothing runs: other inputs,
 * another n, another item size, another function, a file that is not a journal,
 * a path that cannot be opened. The journal is left as it was. */
static void test_journal_mismatch_is_ejournal(void)
{
    char counter[128], journal[128], junk[128];
    path_of(counter, sizeof counter, "count-mis");
    path_of(journal, sizeof journal, "jmis");
    path_of(junk, sizeof junk, "junk");
    use_counter(counter);
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    unlink(journal);
    size_t n = 40;
    long *in = tu_iota(n), *out = calloc(n + 1, sizeof *out);
    int *small = calloc(n, sizeof *small);
    map_journaled(p, sq_task, in, n, journal);
    long size = file_size(journal);
    unlink(counter);
    rp_map_opts_t o = { .journal = journal };
    rp_result_t *r = NULL;
    in[17] = 1000;
    CU_ASSERT_EQUAL(rp_map_async(p, sq_task, in, n, sizeof *in, out, sizeof *out, &o, &r),
                    RP_EJOURNAL);
    CU_ASSERT_PTR_NULL(r);
    in[17] = 17;
    CU_ASSERT_EQUAL(rp_map(p, sq_task, in, n - 1, sizeof *in, out, sizeof *out, &o, NULL),
                    RP_EJOURNAL);
    CU_ASSERT_EQUAL(rp_map(p, sq_task, in, n, sizeof *in, small, sizeof *small, &o, NULL),
                    RP_EJOURNAL);
    CU_ASSERT_EQUAL(rp_map(p, cube_task, in, n, sizeof *in, out, sizeof *out, &o, NULL),
                    RP_EJOURNAL);
    rp_varout_t *vo = NULL;
    CU_ASSERT_EQUAL(rp_map_var(p, var_task, in, n, sizeof *in, &o, &vo, NULL), RP_EJOURNAL);
    CU_ASSERT_PTR_NULL(vo);
    FILE *f = fopen(junk, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs("this is not a journal, but it is long enough to hold a header.......\n"
          "..................................................................\n", f);
    fclose(f);
    rp_map_opts_t oj = { .journal = junk };
    CU_ASSERT_EQUAL(rp_map(p, sq_task, in, n, sizeof *in, out, sizeof *out, &oj, NULL),
                    RP_EJOURNAL);
    rp_map_opts_t od = { .journal = "/nonexistent-dir/rp-journal" };
    CU_ASSERT_EQUAL(rp_map(p, sq_task, in, n, sizeof *in, out, sizeof *out, &od, NULL),
                    RP_EJOURNAL);
    bool twice;
    CU_ASSERT_EQUAL(counted(counter, n, &twice), 0);
    CU_ASSERT_EQUAL(file_size(journal), size);
    CU_ASSERT_STRING_EQUAL(rp_err_name(RP_EJOURNAL), "RP_EJOURNAL");
    CU_ASSERT_STRING_EQUAL(rp_strerror(RP_EJOURNAL),
                           "the journal file does not match this job or is unreadable");
    free(in);
    free(out);
    free(small);
    unlink(journal);
    unlink(junk);
    unlink(counter);
    tu_pool_done(p);
}

/* Checks var_task's outputs and failures over 0..n-1. */
static void check_var(const rp_varout_t *vo, size_t n)
{
    size_t wrong = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *d = rp_varout_item(vo, i, &len);
        if (i % 7 == 3) {
            wrong += d != NULL || len != 0;
            continue;
        }
        wrong += !d || len != i % 50;
        for (size_t k = 0; d && k < len; k++)
            wrong += d[k] != 'a' + (int)(i % 26);
    }
    CU_ASSERT_EQUAL(wrong, 0);
}

/* Variable-size outputs and their failures are journaled: with half the file
 * cut away (records and a torn one), the rerun runs exactly the items it lost
 * and returns every output and failure as the whole run did. */
static void test_journal_var_outputs(void)
{
    char counter[128], journal[128];
    path_of(counter, sizeof counter, "count-var");
    path_of(journal, sizeof journal, "jvar");
    use_counter(counter);
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    unlink(journal);
    size_t n = 500, fails = 0;
    for (size_t i = 0; i < n; i++)
        fails += i % 7 == 3;
    long *in = tu_iota(n);
    rp_map_opts_t o = { .journal = journal };
    rp_varout_t *vo;
    rp_error_t e;
    CU_ASSERT_EQUAL(rp_map_var(p, var_task, in, n, sizeof *in, &o, &vo, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 3);
    check_var(vo, n);
    rp_varout_free(vo);
    long size = file_size(journal);
    CU_ASSERT_EQUAL(truncate(journal, size / 2), 0);
    unlink(counter);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_var_async(p, var_task, in, n, sizeof *in, &o, &vo, &r), RP_OK);
    size_t done0, total;
    rp_result_progress(r, &done0, &total);
    CU_ASSERT_EQUAL(rp_result_get(r, 120, &e), RP_ETASK);
    CU_ASSERT_EQUAL(e.index, 3);
    CU_ASSERT_STRING_EQUAL(e.message, "var item 3 refused");
    CU_ASSERT_EQUAL(rp_result_nerrors(r), fails);
    for (size_t k = 0; k < rp_result_nerrors(r); k++)
        CU_ASSERT_EQUAL(rp_result_error(r, k)->index, 7 * k + 3);
    check_var(vo, n);
    bool twice;
    size_t rerun = counted(counter, n, &twice);
    printf("\n    %zu items: %zu restored at submission, %zu ran again\n", n, done0, rerun);
    CU_ASSERT_FALSE(twice);
    CU_ASSERT_TRUE(rerun > 0 && rerun < n);
    CU_ASSERT_TRUE(done0 + rerun >= n);
    CU_ASSERT_EQUAL(total, n);
    CU_ASSERT_EQUAL(file_size(journal), size);
    rp_result_free(r);
    rp_varout_free(vo);
    free(in);
    unlink(journal);
    unlink(counter);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_journal_rerun_runs_nothing),
        TU_TEST(test_journal_killed_map_resumes),
        TU_TEST(test_journal_truncated_last_record),
        TU_TEST(test_journal_mismatch_is_ejournal),
        TU_TEST(test_journal_var_outputs),
        TU_END,
    };
    return tu_run("journal", tests, argc, argv);
}
