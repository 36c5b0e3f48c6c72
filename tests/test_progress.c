/* Progress, the same on both backends (this program runs locally and under
 * mpirun with RP_BACKEND=mpi): rp_result_progress counts items as they finish,
 * also inside a chunk of automatic chunking; the bar goes to stderr only, as
 * plain lines when stderr is not a terminal, redrawn in place on a terminal,
 * and only when asked for (opts.progress or $RP_PROGRESS). */
#include "testutil.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>

#include "monitor.h"

/* Sleeps 1 ms; the output is the input. */
static int ms_task(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    tu_sleep(1e-3);
    *(long *)out = *(const long *)in;
    return 0;
}

/* About 2 s of 1 ms items over the pool's workers, automatic chunking: the count
 * rises at least 20 times while the first half of the items runs (chunk by chunk,
 * the first chunks holding a quarter of the items each, it stayed at 0 for the
 * first half), never goes down, never passes the total, and ends at the total. */
static void test_progress_counts_items_inside_chunks(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    size_t n = 2000 * (size_t)rp_pool_size(p);
    long *in = tu_iota(n), *out = calloc(n, sizeof *out);
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, ms_task, in, n, sizeof *in, out, sizeof *out, NULL, &r),
                          RP_OK);
    size_t last = 0, rises_first_half = 0, rises = 0, total = 0, done = 0;
    bool down = false, over = false;
    double t_end = tu_now() + 60;
    while (!rp_result_ready(r) && tu_now() < t_end) {
        rp_result_progress(r, &done, &total);
        down |= done < last;
        over |= done > total;
        if (done > last) {
            rises++;
            if (done < n / 2)
                rises_first_half++;
            last = done;
        }
        tu_sleep(5e-3);
    }
    CU_ASSERT_EQUAL(rp_result_get(r, 60, NULL), RP_OK);
    rp_result_progress(r, &done, &total);
    printf("\n    %zu items: the count rose %zu times (%zu in the first half)\n", n, rises,
           rises_first_half);
    CU_ASSERT_TRUE(rises_first_half >= 20);
    CU_ASSERT_FALSE(down);
    CU_ASSERT_FALSE(over);
    CU_ASSERT_EQUAL(done, n);
    CU_ASSERT_EQUAL(total, n);
    for (size_t i = 0; i < n; i++)
        if (out[i] != (long)i) {
            CU_FAIL("wrong output");
            break;
        }
    rp_result_free(r);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* Reads what is in fd now (non-blocking) into buf (NUL-terminated). */
static size_t drain(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    for (;;) {
        struct pollfd pf = { fd, POLLIN, 0 };
        if (len + 1 >= cap || poll(&pf, 1, 50) <= 0)
            break;
        ssize_t k = read(fd, buf + len, cap - 1 - len);
        if (k <= 0)
            break;
        len += (size_t)k;
    }
    buf[len] = '\0';
    return len;
}

static size_t count_of(const char *s, const char *what)
{
    size_t c = 0;
    for (const char *q = s; (q = strstr(q, what)) != NULL; q += strlen(what))
        c++;
    return c;
}

/* Runs a 1 s map with stdout and stderr on pipes (or stderr on a terminal) and
 * $RP_PROGRESS set as given; what each received goes to out/err. */
static void run_captured(rp_pool_t *p, const char *env, bool ask, bool pty, char *out,
                         char *err, size_t cap)
{
    size_t n = 1000 * (size_t)rp_pool_size(p);
    long *in = tu_iota(n), *res = calloc(n, sizeof *res);
    int po[2], pe[2] = { -1, -1 };
    CU_ASSERT_EQUAL_FATAL(pipe(po), 0);
    if (pty)
        CU_ASSERT_EQUAL_FATAL(openpty(&pe[0], &pe[1], NULL, NULL, NULL), 0)
    else
        CU_ASSERT_EQUAL_FATAL(pipe(pe), 0);
    fflush(stdout);
    fflush(stderr);
    int o1 = dup(1), o2 = dup(2);
    dup2(po[1], 1);
    dup2(pe[1], 2);
    if (env)
        setenv("RP_PROGRESS", env, 1);
    setenv("RP_PROGRESS_INTERVAL", "0.2", 1);
    rp_map_opts_t o = { .progress = ask };
    int rc = rp_map(p, ms_task, in, n, sizeof *in, res, sizeof *res, &o, NULL);
    unsetenv("RP_PROGRESS");
    unsetenv("RP_PROGRESS_INTERVAL");
    fflush(stdout);
    fflush(stderr);
    dup2(o1, 1);
    dup2(o2, 2);
    close(o1);
    close(o2);
    close(po[1]);
    close(pe[1]);
    drain(po[0], out, cap);
    drain(pe[0], err, cap);
    close(po[0]);
    close(pe[0]);
    CU_ASSERT_EQUAL(rc, RP_OK);
    free(in);
    free(res);
}

/* With $RP_PROGRESS=1 and stderr a pipe: plain lines (no "\r") on stderr, at
 * least two while it runs and a last one with every item; nothing on stdout.
 * Without it (and without opts.progress): nothing at all. */
static void test_progress_bar_plain_lines_on_stderr(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    static char out[1 << 16], err[1 << 16];
    size_t n = 1000 * (size_t)rp_pool_size(p);
    char last[64];
    snprintf(last, sizeof last, "%zu/%zu items (100%%)", n, n);

    run_captured(p, "1", false, false, out, err, sizeof out);
    printf("\n    stderr:\n%s    stdout: %zu bytes\n", err, strlen(out));
    CU_ASSERT_EQUAL(strlen(out), 0);
    CU_ASSERT_TRUE(count_of(err, "rankpool: ") >= 3);
    CU_ASSERT_TRUE(count_of(err, "\n") >= 3);
    CU_ASSERT_PTR_NULL(strchr(err, '\r'));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, last));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "items/s"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "ETA"));

    run_captured(p, NULL, false, false, out, err, sizeof out);
    CU_ASSERT_EQUAL(strlen(out), 0);
    CU_ASSERT_EQUAL(strlen(err), 0);
    run_captured(p, "0", false, false, out, err, sizeof out);
    CU_ASSERT_EQUAL(strlen(err), 0);
    tu_pool_done(p);
}

/* opts.progress with stderr a terminal: one line redrawn in place ("\r", erase
 * to the end of the line), several times, ending with every item and a newline. */
static void test_progress_bar_redrawn_on_terminal(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    static char out[1 << 16], err[1 << 16];
    size_t n = 1000 * (size_t)rp_pool_size(p);
    char last[64];
    snprintf(last, sizeof last, "%zu/%zu items (100%%)", n, n);
    run_captured(p, NULL, true, true, out, err, sizeof out);
    CU_ASSERT_EQUAL(strlen(out), 0);
    CU_ASSERT_TRUE(count_of(err, "\r") >= 3);
    CU_ASSERT_TRUE(count_of(err, "\033[K") >= 3);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, last));
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "] "));
    printf("\n    %zu redraws\n", count_of(err, "\r"));
    tu_pool_done(p);
}

/* $RP_PROGRESS as every submit reads it (rp__progress_env, which remembers where
 * it looked last): each change between two calls is seen, as getenv sees it,
 * whether it adds, replaces or removes the variable or another one before it,
 * or edits a putenv string in place. */
static bool getenv_says(void)
{
    const char *v = getenv("RP_PROGRESS");
    return v && *v && strcmp(v, "0") != 0;
}

#define SAYS(want)                                                                         \
    do {                                                                                   \
        CU_ASSERT_EQUAL(getenv_says(), (want));                                            \
        CU_ASSERT_EQUAL(rp__progress_env(), (want));                                       \
        CU_ASSERT_EQUAL(rp__progress_env(), (want)); /* the remembered answer */           \
    } while (0)

static void test_progress_env_follows_every_change(void)
{
    static char own[] = "RP_PROGRESS=1"; /* putenv: becomes part of the environment */
    unsetenv("RP_PROGRESS");
    SAYS(false);
    setenv("RP_PROGRESS", "1", 1); /* added at the end */
    SAYS(true);
    setenv("RP_PROGRESS", "0", 1); /* replaced in place */
    SAYS(false);
    setenv("RP_PROGRESS", "", 1);
    SAYS(false);
    setenv("RP_PROGRESS", "yes", 1);
    SAYS(true);
    setenv("RP_TEST_OTHER_A", "1", 1); /* another one after it */
    SAYS(true);
    unsetenv("RP_TEST_OTHER_A");
    SAYS(true);
    unsetenv("RP_PROGRESS");
    SAYS(false);
    setenv("RP_TEST_OTHER_A", "1", 1); /* absent, the environment grows */
    SAYS(false);
    unsetenv("RP_TEST_OTHER_A"); /* ... and shrinks back */
    SAYS(false);
    setenv("RP_TEST_OTHER_A", "1", 1);
    SAYS(false);
    unsetenv("RP_TEST_OTHER_A"); /* one out, the variable in: the same length */
    setenv("RP_PROGRESS", "1", 1);
    SAYS(true);
    setenv("RP_TEST_OTHER_B", "1", 1);
    unsetenv("RP_PROGRESS"); /* the later entries move down over it */
    SAYS(false);
    putenv(own);
    SAYS(true);
    own[sizeof own - 2] = '0'; /* the putenv string edited in place */
    SAYS(false);
    own[sizeof own - 2] = '1';
    SAYS(true);
    unsetenv("RP_PROGRESS");
    unsetenv("RP_TEST_OTHER_B");
    SAYS(false);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_progress_counts_items_inside_chunks),
        TU_TEST(test_progress_bar_plain_lines_on_stderr),
        TU_TEST(test_progress_bar_redrawn_on_terminal),
        TU_TEST(test_progress_env_follows_every_change),
        TU_END,
    };
    return tu_run("progress", tests, argc, argv);
}
