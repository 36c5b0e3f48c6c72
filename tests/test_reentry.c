/* Calls that come back into the pool: from the pool's own callbacks (a callback
 * that runs more work on its pool, or waits for it), and what a blocking call
 * tells its caller when it refuses the work before running any of it. The same
 * on both backends: this program runs as is on the local backend and under
 * mpirun with RP_BACKEND=mpi (tests/mpi-np2.sh). */
#include "testutil.h"

#include <stdatomic.h>

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Slow enough that a job of a few items outlasts any brief polling by its waiter. */
static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.01);
    return square(in, out, ctx);
}

/* Whether *err describes a failure of the call itself, not of an item. */
static bool call_error(const rp_error_t *err, int code)
{
    return err->code == code && err->worker == -1 && err->signal == 0 &&
           err->exit_status == -1 && err->task_code == 0 && err->index == 0 &&
           memchr(err->message, '\0', sizeof err->message) != NULL && err->message[0] != '\0';
}

/* ---- *err of a call refused before it ran --------------------------------------- */

static void test_reentry_err_filled_when_refused(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    long in[4] = { 1, 2, 3, 4 }, out[4];
    rp_error_t err;
    memset(&err, 0x55, sizeof err); /* what an uninitialised variable may hold */
    CU_ASSERT_EQUAL(rp_map(p, NULL, in, 4, sizeof *in, out, sizeof *out, NULL, &err), RP_EINVAL);
    CU_ASSERT(call_error(&err, RP_EINVAL));
    memset(&err, 0x55, sizeof err);
    CU_ASSERT_EQUAL(rp_apply(p, square, in, 0, out, sizeof *out, &err), RP_EINVAL);
    CU_ASSERT(call_error(&err, RP_EINVAL));
    /* a success leaves *err alone, as before */
    memset(&err, 0x55, sizeof err);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof *in, out, sizeof *out, NULL, &err), RP_OK);
    CU_ASSERT_EQUAL(out[3], 16);
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    memset(&err, 0x55, sizeof err);
    CU_ASSERT_EQUAL(rp_map(p, square, in, 4, sizeof *in, out, sizeof *out, NULL, &err),
                    RP_ECLOSED);
    CU_ASSERT(call_error(&err, RP_ECLOSED));
    memset(&err, 0x55, sizeof err);
    CU_ASSERT_EQUAL(rp_apply(p, square, in, sizeof *in, out, sizeof *out, &err), RP_ECLOSED);
    CU_ASSERT(call_error(&err, RP_ECLOSED));
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* ---- a callback runs more work on its own pool ---------------------------------- */

#define NESTED 20
static rp_pool_t *nest_pool;
static atomic_int nest_rc = 1, nest_wrong = -1, nest_done;

static void map_in_callback(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    long in[NESTED], out[NESTED];
    for (int i = 0; i < NESTED; i++)
        in[i] = i;
    rp_error_t err;
    atomic_store(&nest_rc, rp_map(nest_pool, slow_square, in, NESTED, sizeof *in, out,
                                  sizeof *out, NULL, &err));
    atomic_store(&nest_wrong, tu_wrong_squares(out, NESTED));
    atomic_store(&nest_done, 1);
}

/* Python's callbacks may submit work; a blocking map of a job without callbacks
 * completes there too (it needs no callback of the pool thread). */
static void test_reentry_map_in_callback(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    nest_pool = p;
    long x = 3, y = 0;
    rp_map_opts_t o = { .callback = map_in_callback };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &x, sizeof x, &y, sizeof y, &o, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK); /* after the callback */
    CU_ASSERT_EQUAL(atomic_load(&nest_done), 1);
    CU_ASSERT_EQUAL(atomic_load(&nest_rc), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&nest_wrong), 0);
    CU_ASSERT_EQUAL(y, 9);
    rp_result_free(r);
    tu_pool_done(p);
}

static atomic_int iter_got = -1, iter_wrong = -1, iter_end;

static void imap_in_callback(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    long in[NESTED];
    for (int i = 0; i < NESTED; i++)
        in[i] = i;
    rp_iter_t *it;
    if (rp_imap_unordered(nest_pool, slow_square, in, NESTED, sizeof *in, sizeof(long), NULL,
                          &it) != RP_OK)
        return;
    int got = 0, wrong = 0, rc;
    size_t index;
    long out;
    while ((rc = rp_iter_next(it, 30.0, &index, &out, NULL)) == RP_OK) {
        got++;
        wrong += out != (long)(index * index);
    }
    rp_iter_free(it);
    atomic_store(&iter_got, got);
    atomic_store(&iter_wrong, wrong);
    atomic_store(&iter_end, rc);
}

/* An iterator consumed inside a callback yields every item (mpi: the pool
 * thread moves the messages that bring them while it waits). */
static void test_reentry_imap_in_callback(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    nest_pool = p;
    long x = 3, y = 0;
    rp_map_opts_t o = { .callback = imap_in_callback };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &x, sizeof x, &y, sizeof y, &o, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&iter_got), NESTED);
    CU_ASSERT_EQUAL(atomic_load(&iter_wrong), 0);
    CU_ASSERT_EQUAL(atomic_load(&iter_end), RP_DONE);
    rp_result_free(r);
    tu_pool_done(p);
}

static int half_second(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.5);
    return square(in, out, ctx);
}

#define LONG_NESTED 40 /* 10 s of work on 2 workers */
static atomic_int long_started, long_rc = 1;

static void long_map_in_callback(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    static long in[LONG_NESTED], out[LONG_NESTED];
    atomic_store(&long_started, 1);
    atomic_store(&long_rc, rp_map(nest_pool, half_second, in, LONG_NESTED, sizeof *in, out,
                                  sizeof *out, NULL, NULL));
}

/* rp_pool_terminate from another thread returns promptly while a callback waits
 * in a map of its pool, and that map ends canceled. */
static void test_reentry_terminate_during_map_in_callback(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    nest_pool = p;
    long x = 3, y = 0;
    rp_map_opts_t o = { .callback = long_map_in_callback };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &x, sizeof x, &y, sizeof y, &o, &r), RP_OK);
    double end = tu_now() + 60;
    while (!atomic_load(&long_started) && tu_now() < end)
        tu_sleep(0.01);
    tu_sleep(0.3);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    double took = tu_now() - t0;
    CU_ASSERT(took < 5.0); /* the nested map alone would take 10 s */
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&long_rc), RP_ECANCELED);
    rp_result_free(r);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* ---- a callback waits for a result only the pool's thread can complete ---------- */

static long inner_out[NESTED];
static atomic_int inner_calls, waited_done;
static atomic_int got_wait = 1, got_get = 1, got_poll = 1, got_all = 1, got_any = 1,
                  got_map = 1, map_wrote = -1;

static void inner_callback(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    atomic_fetch_add(&inner_calls, 1);
}

static void wait_in_callback(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    static long in[NESTED];
    for (int i = 0; i < NESTED; i++)
        in[i] = i;
    rp_map_opts_t o = { .callback = inner_callback };
    rp_result_t *inner;
    if (rp_map_async(nest_pool, slow_square, in, NESTED, sizeof *in, inner_out,
                     sizeof *inner_out, &o, &inner) != RP_OK)
        return;
    /* Its callback runs on this thread, which is busy here: it cannot complete
     * while this callback waits. A wait says so at once instead of hanging. */
    atomic_store(&got_wait, rp_result_wait(inner, 2.0));
    atomic_store(&got_get, rp_result_get(inner, RP_FOREVER, NULL));
    atomic_store(&got_all, rp_result_wait_all(&inner, 1, RP_FOREVER));
    size_t which;
    atomic_store(&got_any, rp_result_wait_any(&inner, 1, RP_FOREVER, &which));
    int poll = rp_result_wait(inner, 0); /* polling is allowed */
    atomic_store(&got_poll, poll == RP_ETIMEDOUT || poll == RP_OK ? RP_OK : poll);
    /* A blocking map with a callback would wait for this thread too: refused
     * before anything runs (its outputs untouched). */
    long out[NESTED];
    for (int i = 0; i < NESTED; i++)
        out[i] = -1;
    rp_error_t err;
    atomic_store(&got_map, rp_map(nest_pool, square, in, NESTED, sizeof *in, out, sizeof *out,
                                  &o, &err));
    int wrote = 0;
    for (int i = 0; i < NESTED; i++)
        wrote += out[i] != -1;
    atomic_store(&map_wrote, wrote);
    rp_result_free(inner); /* does not wait: freed once it is complete */
    atomic_store(&waited_done, 1);
}

static void test_reentry_wait_in_callback(void)
{
    rp_pool_t *p = tu_pool(2, NULL);
    if (!p)
        return;
    nest_pool = p;
    long x = 3, y = 0;
    rp_map_opts_t o = { .callback = wait_in_callback };
    rp_result_t *r;
    CU_ASSERT_EQUAL_FATAL(rp_apply_async(p, square, &x, sizeof x, &y, sizeof y, &o, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&waited_done), 1);
    CU_ASSERT_EQUAL(atomic_load(&got_wait), RP_EDEADLK);
    CU_ASSERT_EQUAL(atomic_load(&got_get), RP_EDEADLK);
    CU_ASSERT_EQUAL(atomic_load(&got_all), RP_EDEADLK);
    CU_ASSERT_EQUAL(atomic_load(&got_any), RP_EDEADLK);
    CU_ASSERT_EQUAL(atomic_load(&got_poll), RP_OK);
    CU_ASSERT_EQUAL(atomic_load(&got_map), RP_EDEADLK);
    CU_ASSERT_EQUAL(atomic_load(&map_wrote), 0);
    rp_result_free(r);
    /* the inner job completes once the callback has returned, its callback once */
    double end = tu_now() + 60;
    while (atomic_load(&inner_calls) == 0 && tu_now() < end)
        tu_sleep(0.01);
    CU_ASSERT_EQUAL(atomic_load(&inner_calls), 1);
    CU_ASSERT_EQUAL(tu_wrong_squares(inner_out, NESTED), 0);
    tu_pool_done(p);
    CU_ASSERT_EQUAL(atomic_load(&inner_calls), 1);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_reentry_err_filled_when_refused),
        TU_TEST(test_reentry_map_in_callback),
        TU_TEST(test_reentry_imap_in_callback),
        TU_TEST(test_reentry_terminate_during_map_in_callback),
        TU_TEST(test_reentry_wait_in_callback),
        TU_END,
    };
    return tu_run("reentry", tests, argc, argv);
}
