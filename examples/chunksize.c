/* chunksize: how many consecutive items a worker takes at a time.
 *
 * Python:
 *     pool.map(f, range(1000), chunksize=50)
 *
 * A chunk is the unit of dispatch: bigger chunks cost less per item, smaller ones
 * balance uneven tasks better. chunksize 0 (the default) is automatic: large
 * chunks first, single items at the end, so it suits both cases.
 */
#include <stdio.h>
#include <time.h>

#include <rankpool.h>

#define N 1000

struct item_out {
    long value;
    int  worker; /* who ran the item */
};

/* Doubles a number, slowly enough (50 us) for every worker to get a share. */
static int twice(const void *in, void *out, rp_ctx_t *ctx)
{
    struct item_out *o = out;
    struct timespec nap = {0, 50000};
    nanosleep(&nap, NULL);
    o->value = 2 * *(const long *)in;
    o->worker = rp_ctx_worker(ctx);
    return 0;
}

/* Runs the map with one chunksize, prints how the items were shared, and checks
 * that an explicit chunksize was honoured. \return 0 if all is well. */
static int run(rp_pool_t *pool, const long *in, size_t chunksize)
{
    static struct item_out out[N];
    int count[64] = {0};
    rp_map_opts_t opts = {.chunksize = chunksize};
    rp_error_t err;

    int rc = rp_map(pool, twice, in, N, sizeof in[0], out, sizeof out[0], &opts, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "chunksize: rp_map: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }

    /* A "run" is a stretch of consecutive items done by one worker: one chunk or
     * several chunks in a row taken by the same worker. */
    int runs = 0, bad = 0;
    printf("chunksize %4zu: first runs:", chunksize);
    for (size_t i = 0, start = 0; i < N; i++) {
        if (out[i].value != 2 * in[i] || out[i].worker < 0 || out[i].worker >= 64) {
            fprintf(stderr, "\nchunksize: item %zu is wrong\n", i);
            return 1;
        }
        count[out[i].worker]++;
        if (i + 1 == N || out[i + 1].worker != out[i].worker) {
            if (runs++ < 6)
                printf(" %zu", i + 1 - start);
            /* with an explicit chunksize, a worker change falls on a chunk boundary */
            if (chunksize && i + 1 < N && (i + 1) % chunksize != 0)
                bad++;
            start = i + 1;
        }
    }
    printf("%s; %d runs; items per worker:", runs > 6 ? " ..." : "", runs);
    for (int w = 0; w < rp_pool_size(pool) && w < 64; w++)
        printf(" %d", count[w]);
    printf("\n");
    if (bad) {
        fprintf(stderr, "chunksize: %d runs do not end on a multiple of %zu\n", bad,
                chunksize);
        return 1;
    }
    return 0;
}

int main(void)
{
    static long in[N];
    rp_pool_t *pool = NULL;
    int rc, status = 1;

    for (long i = 0; i < N; i++)
        in[i] = i;

    rp_pool_opts_t opts = {.workers = 2};
    if ((rc = rp_pool_create(&pool, &opts)) != RP_OK) {
        fprintf(stderr, "chunksize: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    if (run(pool, in, 0) || run(pool, in, 1) || run(pool, in, 50) || run(pool, in, 300))
        goto done;

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "chunksize: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
