/* square: the main example. Squares 0..N-1 on a pool of workers and checks the sum.
 *
 * Python:
 *     with Pool() as p:
 *         squares = p.map(square, range(N))
 *     print(sum(squares))
 *
 * The same binary runs on one machine or across a cluster, unchanged:
 *     ./examples/square                   # "local" backend: forked workers
 *     mpirun -np 3 ./examples/square      # "mpi" backend: rank 0 + 2 worker ranks
 */
#include <stdio.h>

#include <rankpool.h>

#define N 100000

/* A task reads one input item and writes one output item; 0 means success. */
static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

int main(void)
{
    static long in[N], out[N];
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    for (long i = 0; i < N; i++)
        in[i] = i;

    /* NULL options: the defaults (one worker per core, or every other MPI rank). */
    rc = rp_pool_create(&pool, NULL);
    if (rc != RP_OK) {
        fprintf(stderr, "square: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    /* Under mpirun, the worker ranks serve tasks inside rp_pool_create and come out
     * here once the master is done with the pool: their part is over. */
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
    printf("square: backend %s, %d workers\n", rp_pool_backend(pool), rp_pool_size(pool));

    /* Blocks until every item is done; out[] is in input order. */
    rc = rp_map(pool, square, in, N, sizeof in[0], out, sizeof out[0], NULL, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "square: item %zu failed: %s: %s\n", err.index, rp_strerror(rc),
                err.message);
        goto done;
    }

    long sum = 0;
    for (long i = 0; i < N; i++)
        sum += out[i];
    long expected = (long)(N - 1) * N * (2L * N - 1) / 6; /* sum of i^2, i < N */
    printf("square: %d items, first %ld %ld %ld %ld, last %ld\n", N, out[0], out[1], out[2],
           out[3], out[N - 1]);
    printf("square: checksum %ld (expected %ld): %s\n", sum, expected,
           sum == expected ? "ok" : "WRONG");
    if (sum != expected)
        goto done;

    /* close: no more work; join: wait for the workers to exit. */
    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "square: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool); /* terminates the workers if still running, then releases */
    return status;
}
