/* imap_unordered: results streamed as they are produced, each with its index.
 *
 * Python:
 *     for x in pool.imap_unordered(slow_square, range(12)):
 *         print(x)
 *
 * rp_iter_next also gives the item's input index, so the caller knows which
 * result arrived without carrying the input inside the output.
 * (rp_imap is the same, but yields in input order.)
 */
#include <stdbool.h>
#include <stdio.h>
#include <time.h>

#include <rankpool.h>

#define N 12

/* Squares x after a nap whose length varies, so items finish out of order. */
static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    struct timespec nap = {0, (long)((N - x) % 4) * 5000000L}; /* 0 to 15 ms */
    nanosleep(&nap, NULL);
    *(long *)out = x * x;
    return 0;
}

int main(void)
{
    long in[N];
    bool seen[N] = {false};
    rp_pool_t *pool = NULL;
    rp_iter_t *it = NULL;
    int rc, status = 1, count = 0;

    for (long i = 0; i < N; i++)
        in[i] = i;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "imap_unordered: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* chunksize 1: each item is sent on its own, so each arrives on its own. */
    rp_map_opts_t opts = {.chunksize = 1};
    rc = rp_imap_unordered(pool, slow_square, in, N, sizeof in[0], sizeof(long), &opts, &it);
    if (rc != RP_OK) {
        fprintf(stderr, "imap_unordered: %s\n", rp_strerror(rc));
        goto done;
    }

    /* RP_OK: an item; RP_DONE: no more; a failed item's code (iteration goes on). */
    for (;;) {
        size_t index;
        long y;
        rp_error_t err;

        rc = rp_iter_next(it, 30.0, &index, &y, &err);
        if (rc == RP_DONE)
            break;
        if (rc != RP_OK) {
            fprintf(stderr, "imap_unordered: %s: %s\n", rp_strerror(rc),
                    rc == RP_ETIMEDOUT ? "nothing came" : err.message);
            goto done;
        }
        printf("imap_unordered: item %2zu -> %3ld\n", index, y);
        if (index >= N || seen[index] || y != in[index] * in[index]) {
            fprintf(stderr, "imap_unordered: unexpected item %zu\n", index);
            goto done;
        }
        seen[index] = true;
        count++;
    }
    printf("imap_unordered: %d of %d items received\n", count, N);
    if (count != N)
        goto done;

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "imap_unordered: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_iter_free(it); /* waits for outstanding items first; NULL is fine */
    rp_pool_free(pool);
    return status;
}
