/* map: the first example of Python's multiprocessing documentation.
 *
 * Python:
 *     def f(x):
 *         return x*x
 *
 *     with Pool(5) as p:
 *         print(p.map(f, [1, 2, 3]))
 */
#include <stdio.h>

#include <rankpool.h>

static int f(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    int x = *(const int *)in;
    *(int *)out = x * x;
    return 0;
}

int main(void)
{
    const int in[] = {1, 2, 3};
    int out[3];
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "map: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* in: 3 items of sizeof(int); out: 3 items of sizeof(int), in input order. */
    rc = rp_map(pool, f, in, 3, sizeof in[0], out, sizeof out[0], NULL, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "map: item %zu: %s: %s\n", err.index, rp_strerror(rc), err.message);
        goto done;
    }
    printf("[%d, %d, %d]\n", out[0], out[1], out[2]);
    if (out[0] != 1 || out[1] != 4 || out[2] != 9)
        goto done;

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "map: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
