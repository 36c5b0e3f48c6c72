/* callback: a function called with each result once it is ready.
 *
 * Python:
 *     results = []
 *     with Pool() as pool:
 *         for i in range(10):
 *             pool.apply_async(square, (i,), callback=results.append)
 *         pool.close()
 *         pool.join()
 *
 * Callbacks run on the pool's own thread (as in Python), so what they share with
 * the caller needs a lock. A callback has finished before rp_result_wait/get
 * returns; it must be quick and must not wait for results of the same pool.
 */
#include <pthread.h>
#include <stdio.h>

#include <rankpool.h>

#define N 10

/* What the callbacks fill, shared with main(). */
struct collector {
    pthread_mutex_t lock;
    long            values[N];
    int             count;
};

/* One call: its input, where its output lands, and the collector. */
struct call {
    int               x;
    long              y;
    struct collector *c;
};

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const int *)in;
    *(long *)out = x * x;
    return 0;
}

/* Runs once the call's result is ready: its output is already in call->y. */
static void collect(rp_result_t *res, void *userdata)
{
    struct call *call = userdata;
    (void)res;
    pthread_mutex_lock(&call->c->lock);
    if (call->c->count < N)
        call->c->values[call->c->count++] = call->y;
    pthread_mutex_unlock(&call->c->lock);
}

int main(void)
{
    struct collector c = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct call calls[N];
    rp_result_t *res[N] = {0};
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "callback: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    for (int i = 0; i < N; i++) {
        calls[i] = (struct call){.x = i, .c = &c};
        rp_map_opts_t opts = {.callback = collect, .userdata = &calls[i]};
        rc = rp_apply_async(pool, square, &calls[i].x, sizeof calls[i].x, &calls[i].y,
                            sizeof calls[i].y, &opts, &res[i]);
        if (rc != RP_OK) {
            fprintf(stderr, "callback: rp_apply_async: %s\n", rp_strerror(rc));
            goto done;
        }
    }

    /* No more work; join waits until every call is done and the workers exited. */
    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "callback: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    /* Every result is ready now: get() with timeout 0 does not wait. */
    for (int i = 0; i < N; i++)
        if ((rc = rp_result_get(res[i], 0, &err)) != RP_OK) {
            fprintf(stderr, "callback: call %d: %s\n", i, rp_strerror(rc));
            goto done;
        }

    /* The callbacks ran in completion order; every square must be there once. */
    pthread_mutex_lock(&c.lock);
    int count = c.count;
    long seen = 0, sum = 0;
    printf("callback: results in the order the callbacks ran:");
    for (int i = 0; i < count; i++) {
        printf(" %ld", c.values[i]);
        for (int k = 0; k < N; k++)
            if (c.values[i] == (long)k * k)
                seen |= 1L << k;
        sum += c.values[i];
    }
    printf("\n");
    pthread_mutex_unlock(&c.lock);
    printf("callback: %d callbacks, sum %ld\n", count, sum);
    if (count != N || seen != (1L << N) - 1) {
        fprintf(stderr, "callback: expected each of the %d squares once\n", N);
        goto done;
    }
    status = 0;
done:
    for (int i = 0; i < N; i++)
        rp_result_free(res[i]);
    rp_pool_free(pool);
    return status;
}
