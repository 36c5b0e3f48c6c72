/* square_async: map_async returns at once; get() waits for the results.
 *
 * Python:
 *     with Pool() as p:
 *         r = p.map_async(square, range(10))
 *         ...                       # the caller is free meanwhile
 *         print(r.get(timeout=30))
 */
#include <stdio.h>

#include <rankpool.h>

#define N 10

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    int x = *(const int *)in;
    *(int *)out = x * x;
    return 0;
}

int main(void)
{
    int in[N], out[N];
    rp_pool_t *pool = NULL;
    rp_result_t *res = NULL;
    rp_error_t err;
    int rc, status = 1;

    for (int i = 0; i < N; i++)
        in[i] = i;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "square_async: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* Returns at once. in[] and out[] belong to the pool until the result is ready. */
    rc = rp_map_async(pool, square, in, N, sizeof in[0], out, sizeof out[0], NULL, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "square_async: rp_map_async: %s\n", rp_strerror(rc));
        goto done;
    }

    /* ... the caller's own work would go here; the workers compute meanwhile ... */
    size_t ndone, total;
    rp_result_progress(res, &ndone, &total);
    printf("square_async: submitted, %zu of %zu done so far\n", ndone, total);

    /* get() waits up to the timeout (seconds); RP_ETIMEDOUT leaves res valid. */
    rc = rp_result_get(res, 30.0, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "square_async: get: %s (%s)\n", rp_strerror(rc),
                rc == RP_ETIMEDOUT ? "still running" : err.message);
        goto done;
    }
    printf("square_async: ready %d, successful %d\n", rp_result_ready(res),
           rp_result_successful(res));
    printf("square_async: [");
    for (int i = 0; i < N; i++)
        printf("%s%d", i ? ", " : "", out[i]);
    printf("]\n");
    for (int i = 0; i < N; i++)
        if (out[i] != i * i) {
            fprintf(stderr, "square_async: out[%d] = %d, expected %d\n", i, out[i], i * i);
            goto done;
        }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "square_async: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_result_free(res); /* NULL is fine */
    rp_pool_free(pool);
    return status;
}
