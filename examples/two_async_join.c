/* two_async_join: two map_async in flight at once, then close() and join().
 *
 * Python:
 *     pool = Pool()
 *     r1 = pool.map_async(square, range(1000))
 *     r2 = pool.map_async(cube, range(1000))
 *     pool.close()                  # no more work
 *     pool.join()                   # wait for all of it, and for the workers to exit
 *     print(sum(r1.get()), sum(r2.get()))
 */
#include <stdio.h>

#include <rankpool.h>

#define N 1000

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int cube(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x * x;
    return 0;
}

int main(void)
{
    static long in[N], squares[N], cubes[N];
    rp_pool_t *pool = NULL;
    rp_result_t *r1 = NULL, *r2 = NULL, *late = NULL;
    rp_error_t err;
    int rc, status = 1;

    for (long i = 0; i < N; i++)
        in[i] = i;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "two_async_join: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* Both jobs share the workers; the same input may feed both (it is only read). */
    if ((rc = rp_map_async(pool, square, in, N, sizeof in[0], squares, sizeof squares[0],
                           NULL, &r1)) != RP_OK ||
        (rc = rp_map_async(pool, cube, in, N, sizeof in[0], cubes, sizeof cubes[0], NULL,
                           &r2)) != RP_OK) {
        fprintf(stderr, "two_async_join: rp_map_async: %s\n", rp_strerror(rc));
        goto done;
    }

    /* close: queued work still runs; new work is refused with RP_ECLOSED. */
    if ((rc = rp_pool_close(pool)) != RP_OK) {
        fprintf(stderr, "two_async_join: close: %s\n", rp_strerror(rc));
        goto done;
    }
    rc = rp_map_async(pool, square, in, N, sizeof in[0], squares, sizeof squares[0], NULL,
                      &late);
    printf("two_async_join: a map after close: %s\n", rp_err_name(rc));
    if (rc != RP_ECLOSED)
        goto done;

    /* join: returns when both jobs are done and the workers have exited. */
    if ((rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "two_async_join: join: %s\n", rp_strerror(rc));
        goto done;
    }
    printf("two_async_join: after join: r1 ready %d, r2 ready %d\n", rp_result_ready(r1),
           rp_result_ready(r2));

    /* Both are ready, so get() with timeout 0 does not wait. */
    if ((rc = rp_result_get(r1, 0, &err)) != RP_OK ||
        (rc = rp_result_get(r2, 0, &err)) != RP_OK) {
        fprintf(stderr, "two_async_join: get: %s\n", rp_strerror(rc));
        goto done;
    }
    long s2 = 0, s3 = 0;
    for (long i = 0; i < N; i++) {
        s2 += squares[i];
        s3 += cubes[i];
    }
    long e2 = (long)(N - 1) * N * (2 * N - 1) / 6, e3 = (long)(N - 1) * N / 2;
    e3 *= e3; /* sum of cubes = (sum of i)^2 */
    printf("two_async_join: sum of squares %ld (expected %ld), sum of cubes %ld "
           "(expected %ld)\n", s2, e2, s3, e3);
    if (s2 == e2 && s3 == e3)
        status = 0;
done:
    rp_result_free(r1);
    rp_result_free(r2);
    rp_result_free(late); /* stays NULL: that map was refused */
    rp_pool_free(pool);
    return status;
}
