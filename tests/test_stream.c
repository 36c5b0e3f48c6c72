/* Streams (imap over a producer or an array, fixed or variable-size outputs), the
 * same on both backends: this program runs as is on the local backend and under
 * mpirun with RP_BACKEND=mpi (tests/mpi-np2.sh). The producers count what they
 * have read against what the consumer has taken. */
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>

/* ---- tasks (static: they must work without being exported) ------------------- */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Fails for multiples of 1000 (but not 0) with code 3. */
static int square_or_fail(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x % 1000 == 0 && x != 0)
        return rp_raise(ctx, 3, "refusing %ld", x);
    *(long *)out = x * x;
    return 0;
}

static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.001);
    return square(in, out, ctx);
}

/* Item x outputs x % 97 bytes, byte k being (x + k) & 0xff; multiples of 501 fail
 * after writing an output. */
static int var_bytes(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    size_t len = (size_t)(x % 97);
    unsigned char *p = rp_output(ctx, len);
    if (!p)
        return rp_raise(ctx, 2, "no room for %zu bytes", len);
    for (size_t k = 0; k < len; k++)
        p[k] = (unsigned char)((size_t)x + k);
    if (x % 501 == 0)
        return rp_raise(ctx, 4, "item %ld fails", x);
    return 0;
}

static size_t var_wrong(long x, const unsigned char *p, size_t size)
{
    if (size != (size_t)(x % 97) || (size && !p))
        return 1;
    for (size_t k = 0; k < size; k++)
        if (p[k] != (unsigned char)((size_t)x + k))
            return 1;
    return 0;
}

/* Outputs rp_ctx_index(ctx), which must be the item's input value (its index in
 * the whole stream, the input being 0, 1, 2, ...): fails with code 9 otherwise. */
static int own_index(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    size_t i = rp_ctx_index(ctx);
    *(long *)out = (long)i;
    return i == (size_t)x ? 0 : rp_raise(ctx, 9, "item %ld told index %zu", x, i);
}

/* The same with a variable-size output: the index, 8 bytes. */
static int own_index_var(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    size_t i = rp_ctx_index(ctx);
    long *p = rp_output(ctx, sizeof *p);
    if (!p)
        return rp_raise(ctx, 2, "no room");
    *p = (long)i;
    return i == (size_t)x ? 0 : rp_raise(ctx, 9, "item %ld told index %zu", x, i);
}

/* Kills its own worker on item 2613 (in a later segment of a 1,000-item window). */
#define DIE_AT 2613
static int die_at(const void *in, void *out, rp_ctx_t *ctx)
{
    long x = *(const long *)in;
    if (x == DIE_AT)
        raise(SIGKILL);
    *(long *)out = x * x;
    return 0;
}

/* ---- a counting producer --------------------------------------------------------- */

struct counter {
    long      n;          /* items to produce */
    long      fail_at;    /* returns fail_code instead of this item (-1: never) */
    int       fail_code;
    long      produced;   /* items written */
    long      calls;      /* calls, the end and the error included */
    long      calls_after_end;
    bool      ended;
    size_t    consumed;   /* the consumer's count, updated after each item it takes */
    size_t    bound;      /* read and not consumed may not exceed this */
    size_t    worst;      /* the most read and not consumed seen */
    pthread_t thread;     /* the thread that must call it */
    int       other_thread;
};

static int count_producer(void *item, void *userdata)
{
    struct counter *c = userdata;
    c->calls++;
    if (!pthread_equal(pthread_self(), c->thread))
        c->other_thread++;
    if (c->ended) {
        c->calls_after_end++;
        return 0;
    }
    if (c->produced == c->fail_at) {
        c->ended = true;
        return c->fail_code;
    }
    if (c->produced == c->n) {
        c->ended = true;
        return 0;
    }
    *(long *)item = c->produced++;
    size_t ahead = (size_t)c->produced - c->consumed;
    if (ahead > c->worst)
        c->worst = ahead;
    return 1;
}

static void counter_init(struct counter *c, long n)
{
    memset(c, 0, sizeof *c);
    c->n = n;
    c->fail_at = -1;
    c->thread = pthread_self();
}

/* ---- tests ----------------------------------------------------------------------- */

/* 10^6 items through a window of 1,000: never more than 1,000 + workers x chunk
 * items read and not consumed; every item once, with its output. */
static void test_stream_producer_window(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    const long n = 1000000;
    const size_t chunk = 10;
    rp_map_opts_t mo = { .chunksize = chunk, .buffersize = 1000 };
    for (int ordered = 1; ordered >= 0; ordered--) {
        struct counter c;
        counter_init(&c, n);
        c.bound = 1000 + (size_t)rp_pool_size(p) * chunk;
        rp_iter_t *it;
        int rc = ordered ? rp_imap_producer(p, square, count_producer, &c, sizeof(long),
                                            sizeof(long), &mo, &it)
                         : rp_imap_unordered_producer(p, square, count_producer, &c,
                                                      sizeof(long), sizeof(long), &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        unsigned char *seen = calloc((size_t)n, 1);
        size_t idx, wrong = 0;
        long v;
        while ((rc = rp_iter_next(it, 60, &idx, &v, NULL)) == RP_OK) {
            wrong += idx >= (size_t)n || seen[idx] || v != (long)(idx * idx) ||
                     (ordered && idx != c.consumed);
            if (idx < (size_t)n)
                seen[idx] = 1;
            c.consumed++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(c.consumed, (size_t)n);
        CU_ASSERT_EQUAL(wrong, 0);
        CU_ASSERT(c.worst <= c.bound);
        CU_ASSERT(c.worst >= 500); /* it did read ahead */
        CU_ASSERT_EQUAL(c.calls_after_end, 0);
        CU_ASSERT_EQUAL(c.other_thread, 0);
        if (c.worst > c.bound || c.consumed != (size_t)n)
            printf("\n  ordered %d: %zu consumed, at worst %zu read ahead (bound %zu)\n",
                   ordered, c.consumed, c.worst, c.bound);
        CU_ASSERT_EQUAL(rp_iter_next(it, 0, NULL, NULL, NULL), RP_DONE);
        rp_iter_free(it);
        free(seen);
    }
    tu_pool_done(p);
}

/* The producer fails at item 5,000: the 5,000 items before it are yielded, then its
 * code once (index 5,000), then RP_DONE; it is not called again. */
static void test_stream_producer_error(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    rp_map_opts_t mo = { .buffersize = 1000 };
    for (int ordered = 1; ordered >= 0; ordered--) {
        struct counter c;
        counter_init(&c, 100000);
        c.fail_at = 5000;
        c.fail_code = -1234;
        rp_iter_t *it;
        int rc = ordered ? rp_imap_producer(p, square, count_producer, &c, sizeof(long),
                                            sizeof(long), &mo, &it)
                         : rp_imap_unordered_producer(p, square, count_producer, &c,
                                                      sizeof(long), sizeof(long), &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        size_t idx, wrong = 0, ok = 0;
        long v;
        rp_error_t e;
        while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) == RP_OK) {
            wrong += idx >= 5000 || v != (long)(idx * idx);
            ok++;
        }
        CU_ASSERT_EQUAL(ok, 5000);
        CU_ASSERT_EQUAL(wrong, 0);
        CU_ASSERT_EQUAL(rc, -1234);
        CU_ASSERT_EQUAL(e.code, -1234);
        CU_ASSERT_EQUAL(e.index, 5000);
        CU_ASSERT_EQUAL(idx, 5000);
        CU_ASSERT_EQUAL(e.worker, -1);
        CU_ASSERT_PTR_NOT_NULL(strstr(e.message, "producer"));
        CU_ASSERT_EQUAL(rp_iter_next(it, 60, &idx, &v, &e), RP_DONE);
        CU_ASSERT_EQUAL(rp_iter_next(it, 0, &idx, &v, &e), RP_DONE);
        CU_ASSERT_EQUAL(c.calls, 5001);
        CU_ASSERT_EQUAL(c.calls_after_end, 0);
        rp_iter_free(it);
    }
    tu_pool_done(p);
}

/* Task failures keep their global index across segments; the iteration goes on. */
static void test_stream_array_failures(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 20000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 700 };
    for (int ordered = 1; ordered >= 0; ordered--) {
        rp_iter_t *it;
        int rc = ordered ? rp_imap(p, square_or_fail, in, n, sizeof(long), sizeof(long), &mo,
                                   &it)
                         : rp_imap_unordered(p, square_or_fail, in, n, sizeof(long),
                                             sizeof(long), &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        unsigned char *seen = calloc(n, 1);
        size_t idx, k = 0, wrong = 0, failed = 0;
        long v;
        rp_error_t e;
        while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) != RP_DONE && rc != RP_ETIMEDOUT) {
            wrong += idx >= n || seen[idx] || (ordered && idx != k);
            if (idx < n)
                seen[idx] = 1;
            if (idx % 1000 == 0 && idx != 0) {
                wrong += rc != RP_ETASK || e.index != idx || e.task_code != 3;
                failed++;
            } else {
                wrong += rc != RP_OK || v != (long)(idx * idx);
            }
            k++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(failed, n / 1000 - 1);
        CU_ASSERT_EQUAL(wrong, 0);
        rp_iter_free(it);
        free(seen);
    }
    free(in);
    tu_pool_done(p);
}

/* A variable-size imap of 10^5 items, ordered over an array and unordered over a
 * producer: every output's bytes, failures without output. */
static void test_stream_var(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 100000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 4000 };
    for (int ordered = 1; ordered >= 0; ordered--) {
        struct counter c;
        counter_init(&c, (long)n);
        rp_iter_t *it;
        int rc = ordered ? rp_imap_var(p, var_bytes, in, n, sizeof(long), &mo, &it)
                         : rp_imap_var_unordered_producer(p, var_bytes, count_producer, &c,
                                                          sizeof(long), &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        unsigned char *seen = calloc(n, 1);
        size_t idx, k = 0, wrong = 0, failed = 0, size;
        const void *data;
        rp_error_t e;
        while ((rc = rp_iter_next_var(it, 60, &idx, &data, &size, &e)) != RP_DONE &&
               rc != RP_ETIMEDOUT) {
            wrong += idx >= n || seen[idx] || (ordered && idx != k);
            if (idx < n)
                seen[idx] = 1;
            if (idx % 501 == 0) {
                wrong += rc != RP_ETASK || e.task_code != 4 || e.index != idx || data != NULL ||
                         size != 0;
                failed++;
            } else {
                wrong += rc != RP_OK || var_wrong((long)idx, data, size);
            }
            k++;
            c.consumed++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(failed, (n + 500) / 501);
        CU_ASSERT_EQUAL(wrong, 0);
        if (!ordered)
            CU_ASSERT(c.worst <= 4000);
        /* a fixed-size read of a variable-size stream is refused */
        long v;
        CU_ASSERT_EQUAL(rp_iter_next(it, 0, NULL, &v, NULL), RP_EINVAL);
        rp_iter_free(it);
        free(seen);
    }
    free(in);
    tu_pool_done(p);
}

/* rp_iter_next_var on a fixed-size stream hands out the output in place. */
static void test_stream_next_var_fixed(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 3000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 100 };
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square, in, n, sizeof(long), sizeof(long), &mo, &it),
                          RP_OK);
    size_t idx, size, wrong = 0, k = 0;
    const void *data;
    int rc;
    while ((rc = rp_iter_next_var(it, 60, &idx, &data, &size, NULL)) == RP_OK) {
        wrong += idx != k || size != sizeof(long) || *(const long *)data != (long)(k * k);
        k++;
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(k, n);
    CU_ASSERT_EQUAL(wrong, 0);
    rp_iter_free(it);
    free(in);
    tu_pool_done(p);
}

/* A consumer that stops early and frees the iterator: the free returns (it waits
 * only for what was submitted), the producer is not read further, and the pool
 * goes on working. */
static void test_stream_stop_early(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    rp_map_opts_t mo = { .buffersize = 200 };
    for (int kind = 0; kind < 3; kind++) {
        struct counter c;
        counter_init(&c, 1000000);
        rp_iter_t *it;
        int rc = kind == 0   ? rp_imap_producer(p, slow_square, count_producer, &c,
                                                sizeof(long), sizeof(long), &mo, &it)
                 : kind == 1 ? rp_imap_unordered_producer(p, slow_square, count_producer, &c,
                                                          sizeof(long), sizeof(long), &mo, &it)
                             : rp_imap_var_producer(p, var_bytes, count_producer, &c,
                                                    sizeof(long), &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        for (int k = 0; k < 10; k++) {
            CU_ASSERT_NOT_EQUAL(rp_iter_next_var(it, 60, NULL, NULL, NULL, NULL), RP_ETIMEDOUT);
            c.consumed++;
        }
        long calls = c.calls;
        double t0 = tu_now();
        rp_iter_free(it);
        CU_ASSERT(tu_now() - t0 < 30);
        CU_ASSERT_EQUAL(c.calls, calls);
        CU_ASSERT(c.produced <= 200 + 10);
        rp_iter_free(NULL);
    }
    long x = 7, y = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
    CU_ASSERT_EQUAL(y, 49);
    tu_pool_done(p);
}

/* Bad arguments are RP_EINVAL, with *it NULL and the producer never called. */
static void test_stream_bad_arguments(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    struct counter c;
    counter_init(&c, 10);
    rp_iter_t *it = (rp_iter_t *)&c;
    size_t huge = (size_t)PTRDIFF_MAX + 1;
    rp_map_opts_t cb = { .callback = (rp_callback_fn)1 };
    rp_map_opts_t big = { .buffersize = SIZE_MAX };
    int rc[] = {
        rp_imap_producer(p, square, NULL, &c, sizeof(long), sizeof(long), NULL, &it),
        rp_imap_producer(p, NULL, count_producer, &c, sizeof(long), sizeof(long), NULL, &it),
        rp_imap_producer(NULL, square, count_producer, &c, sizeof(long), sizeof(long), NULL,
                         &it),
        rp_imap_producer(p, square, count_producer, &c, 0, sizeof(long), NULL, &it),
        rp_imap_producer(p, square, count_producer, &c, sizeof(long), huge, NULL, &it),
        rp_imap_producer(p, square, count_producer, &c, sizeof(long), sizeof(long), NULL, NULL),
        rp_imap_producer(p, square, count_producer, &c, sizeof(long), sizeof(long), &cb, &it),
        rp_imap_producer(p, square, count_producer, &c, 1024, sizeof(long), &big, &it),
        rp_imap_unordered_producer(p, square, NULL, &c, sizeof(long), sizeof(long), NULL, &it),
        rp_imap_var_producer(p, square, NULL, &c, sizeof(long), NULL, &it),
        rp_imap_var_unordered_producer(p, square, count_producer, &c, 0, NULL, &it),
        rp_imap_var(p, square, NULL, 4, sizeof(long), NULL, &it),
        rp_imap_var_unordered(p, NULL, &c, 4, sizeof(long), NULL, &it),
        rp_imap(p, square, &c, 4, sizeof(long), sizeof(long), &cb, &it),
        rp_iter_next_var(NULL, 0, NULL, NULL, NULL, NULL),
    };
    int wrong = 0;
    for (size_t k = 0; k < sizeof rc / sizeof *rc; k++)
        if (rc[k] != RP_EINVAL) {
            printf("\n  call %zu: %s\n", k, rp_err_name(rc[k]));
            wrong++;
        }
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT_PTR_NULL(it);
    CU_ASSERT_EQUAL(c.calls, 0);
    if (c.calls)
        printf("\n  producer called %ld times\n", c.calls);
    /* a closed pool: RP_ECLOSED before anything is read */
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_imap_producer(p, square, count_producer, &c, sizeof(long), sizeof(long),
                                     NULL, &it),
                    RP_ECLOSED);
    CU_ASSERT_EQUAL(c.calls, 0);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* Closed while a stream is half consumed: what was submitted is yielded as usual,
 * the rest with RP_ECLOSED; every item once, nothing hangs. */
static void test_stream_close_midway(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    size_t n = 5000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 400 };
    rp_iter_t *it;
    CU_ASSERT_EQUAL_FATAL(rp_imap(p, square, in, n, sizeof(long), sizeof(long), &mo, &it),
                          RP_OK);
    size_t idx, k = 0, ok = 0, closed = 0, wrong = 0;
    long v;
    rp_error_t e;
    int rc;
    while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) != RP_DONE && rc != RP_ETIMEDOUT) {
        if (k == 1000)
            CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
        wrong += idx != k;
        if (rc == RP_OK) {
            wrong += v != (long)(idx * idx) || closed > 0;
            ok++;
        } else {
            wrong += rc != RP_ECLOSED || e.code != RP_ECLOSED || e.index != idx;
            closed++;
        }
        k++;
    }
    CU_ASSERT_EQUAL(rc, RP_DONE);
    CU_ASSERT_EQUAL(k, n);
    CU_ASSERT_EQUAL(wrong, 0);
    CU_ASSERT(ok >= 1000 && ok <= 1000 + 400);
    CU_ASSERT_EQUAL(ok + closed, n);
    rp_iter_free(it);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
    free(in);
}

/* Terminated while a stream is half consumed: every item is yielded once, those
 * that did not run with RP_ECANCELED (submitted or not); nothing hangs. */
static void test_stream_terminate_midway(void)
{
    size_t n = 3000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 200, .chunksize = 1 };
    for (int ordered = 1; ordered >= 0; ordered--) {
        rp_pool_t *p = tu_pool(0, NULL); /* one each: every rank creates both */
        if (!p)
            continue;
        rp_iter_t *it;
        int rc = ordered ? rp_imap(p, slow_square, in, n, sizeof(long), sizeof(long), &mo, &it)
                         : rp_imap_unordered(p, slow_square, in, n, sizeof(long), sizeof(long),
                                             &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        unsigned char *seen = calloc(n, 1);
        size_t idx, k = 0, ok = 0, canceled = 0, wrong = 0;
        long v;
        rp_error_t e;
        while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) != RP_DONE && rc != RP_ETIMEDOUT) {
            if (k == 300)
                CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
            wrong += idx >= n || seen[idx] || (ordered && idx != k);
            if (idx < n)
                seen[idx] = 1;
            if (rc == RP_OK) {
                wrong += v != (long)(idx * idx);
                ok++;
            } else {
                wrong += rc != RP_ECANCELED || e.code != RP_ECANCELED || e.index != idx;
                canceled++;
            }
            k++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(wrong, 0);
        CU_ASSERT(ok >= 300 && ok <= 300 + 200);
        CU_ASSERT_EQUAL(ok + canceled, n);
        if (wrong || k != n)
            printf("\n  ordered %d: %zu yielded, %zu ok, %zu canceled, %zu wrong\n", ordered,
                   k, ok, canceled, wrong);
        rp_iter_free(it);
        free(seen);
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        rp_pool_free(p);
    }
    free(in);
}

/* Large maps submitted from one thread, until the pool refuses them: a terminate
 * waits for a submit in flight (its inputs being copied), and meanwhile refuses
 * other submits. */
struct big_submits {
    rp_pool_t *pool;
    long      *in, *out;
    size_t     n;
};

static void *submit_big_maps(void *arg)
{
    struct big_submits *b = arg;
    rp_result_t *r;
    while (rp_map_async(b->pool, square, b->in, b->n, sizeof(long), b->out, sizeof(long), NULL,
                        &r) == RP_OK) {
        rp_result_get(r, RP_FOREVER, NULL);
        rp_result_free(r);
    }
    return NULL;
}

static void *terminate_soon(void *arg)
{
    tu_sleep(0.02);
    rp_pool_terminate(arg);
    return NULL;
}

/* Terminated by another thread while a stream refills and a large submit is in
 * flight: the stream's segments refused by the terminating pool are canceled
 * (RP_ECANCELED), never RP_ECLOSED, in every one of 10 rounds. */
static void test_stream_terminate_from_another_thread(void)
{
    size_t n = 200000, nbig = 1 << 22;
    long *in = tu_iota(n);
    struct big_submits b = { NULL, tu_iota(nbig), malloc(nbig * sizeof(long)), nbig };
    rp_map_opts_t mo = { .buffersize = 64, .chunksize = 8 };
    for (int round = 0; round < 10; round++) {
        rp_pool_t *p = tu_pool(0, NULL);
        if (!p)
            continue;
        rp_iter_t *it;
        CU_ASSERT_EQUAL_FATAL(rp_imap_unordered(p, square, in, n, sizeof(long), sizeof(long),
                                                &mo, &it), RP_OK);
        b.pool = p;
        pthread_t sub, term;
        pthread_create(&sub, NULL, submit_big_maps, &b);
        pthread_create(&term, NULL, terminate_soon, p);
        size_t idx, k = 0, closed = 0, wrong = 0;
        long v;
        rp_error_t e;
        int rc;
        while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) != RP_DONE && rc != RP_ETIMEDOUT) {
            closed += rc == RP_ECLOSED;
            wrong += rc == RP_OK ? v != (long)(idx * idx) : rc != RP_ECANCELED && rc != RP_ECLOSED;
            k++;
        }
        pthread_join(term, NULL);
        pthread_join(sub, NULL);
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(wrong, 0);
        CU_ASSERT_EQUAL(closed, 0);
        if (closed)
            printf("\n  round %d: %zu items RP_ECLOSED after a terminate ", round, closed);
        rp_iter_free(it);
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
        rp_pool_free(p);
    }
    free(b.in);
    free(b.out);
    free(in);
}

/* Inside a task, rp_ctx_index is the item's index in the whole stream, not in its
 * segment: 10,000 items through a window of 1,000 (segments of 250), ordered and
 * unordered, over an array and over a producer, fixed and variable-size outputs. */
static void test_stream_ctx_index_global(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    const size_t n = 10000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 1000 };
    for (int kind = 0; kind < 8; kind++) {
        bool ordered = kind & 1, producer = kind & 2, var = kind & 4;
        struct counter c;
        counter_init(&c, (long)n);
        rp_iter_t *it = NULL;
        int rc;
        if (var && producer)
            rc = ordered ? rp_imap_var_producer(p, own_index_var, count_producer, &c,
                                                sizeof(long), &mo, &it)
                         : rp_imap_var_unordered_producer(p, own_index_var, count_producer,
                                                          &c, sizeof(long), &mo, &it);
        else if (var)
            rc = ordered ? rp_imap_var(p, own_index_var, in, n, sizeof(long), &mo, &it)
                         : rp_imap_var_unordered(p, own_index_var, in, n, sizeof(long), &mo,
                                                 &it);
        else if (producer)
            rc = ordered ? rp_imap_producer(p, own_index, count_producer, &c, sizeof(long),
                                            sizeof(long), &mo, &it)
                         : rp_imap_unordered_producer(p, own_index, count_producer, &c,
                                                      sizeof(long), sizeof(long), &mo, &it);
        else
            rc = ordered ? rp_imap(p, own_index, in, n, sizeof(long), sizeof(long), &mo, &it)
                         : rp_imap_unordered(p, own_index, in, n, sizeof(long), sizeof(long),
                                             &mo, &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        size_t idx, k = 0, wrong = 0, failed = 0;
        long v = -1;
        const void *data;
        size_t size;
        rp_error_t e = { 0 };
        for (;;) {
            if (var) {
                rc = rp_iter_next_var(it, 60, &idx, &data, &size, &e);
                if (rc == RP_OK)
                    memcpy(&v, data, sizeof v);
            } else {
                rc = rp_iter_next(it, 60, &idx, &v, &e);
            }
            if (rc == RP_DONE || rc == RP_ETIMEDOUT)
                break;
            if (rc != RP_OK) {
                if (failed++ == 0)
                    printf("\n  kind %d: item %zu: %s\n", kind, idx, e.message);
                wrong++;
            } else {
                wrong += v != (long)idx || (var && size != sizeof v);
            }
            k++;
            c.consumed++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(failed, 0);
        CU_ASSERT_EQUAL(wrong, 0);
        rp_iter_free(it);
    }
    free(in);
    tu_pool_done(p);
}

/* A worker killed while running item 2,613 of a stream (a later segment): the error
 * (code, index) and its message name that item; every other item is yielded. */
static void test_stream_worker_death_names_item(void)
{
    rp_pool_t *p = tu_pool(0, NULL);
    if (!p)
        return;
    const size_t n = 4000;
    long *in = tu_iota(n);
    rp_map_opts_t mo = { .buffersize = 1000 };
    char want[64];
    snprintf(want, sizeof want, "while running item %d", DIE_AT);
    for (int ordered = 1; ordered >= 0; ordered--) {
        rp_iter_t *it;
        int rc = ordered ? rp_imap(p, die_at, in, n, sizeof(long), sizeof(long), &mo, &it)
                         : rp_imap_unordered(p, die_at, in, n, sizeof(long), sizeof(long), &mo,
                                             &it);
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        size_t idx, k = 0, wrong = 0, died = 0;
        long v;
        rp_error_t e;
        while ((rc = rp_iter_next(it, 60, &idx, &v, &e)) != RP_DONE && rc != RP_ETIMEDOUT) {
            if (idx == DIE_AT) {
                died++;
                CU_ASSERT_EQUAL(rc, RP_EWORKER);
                CU_ASSERT_EQUAL(e.index, DIE_AT);
                CU_ASSERT_PTR_NOT_NULL(strstr(e.message, want));
                if (!strstr(e.message, want))
                    printf("\n  ordered %d: \"%s\"\n", ordered, e.message);
            } else {
                wrong += rc != RP_OK || v != (long)(idx * idx);
            }
            k++;
        }
        CU_ASSERT_EQUAL(rc, RP_DONE);
        CU_ASSERT_EQUAL(k, n);
        CU_ASSERT_EQUAL(died, 1);
        CU_ASSERT_EQUAL(wrong, 0);
        rp_iter_free(it);
    }
    free(in);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    struct rlimit nocore = { 0, 0 };
    setrlimit(RLIMIT_CORE, &nocore); /* a killed worker leaves no core file */
    static const tu_test tests[] = {
        TU_TEST(test_stream_producer_window),
        TU_TEST(test_stream_producer_error),
        TU_TEST(test_stream_array_failures),
        TU_TEST(test_stream_var),
        TU_TEST(test_stream_next_var_fixed),
        TU_TEST(test_stream_stop_early),
        TU_TEST(test_stream_bad_arguments),
        TU_TEST(test_stream_close_midway),
        TU_TEST(test_stream_terminate_midway),
        TU_TEST(test_stream_terminate_from_another_thread),
        TU_TEST(test_stream_ctx_index_global),
        TU_TEST(test_stream_worker_death_names_item),
        TU_END,
    };
    return tu_run("stream", tests, argc, argv);
}
