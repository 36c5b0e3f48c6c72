/* starmap: functions of several arguments. An item is a plain struct holding them.
 *
 * Python:
 *     pool.starmap(pow, [(2, 10), (3, 4), (10, -2), (2.25, 0.5)])
 *
 * What Python packs into a tuple is, in C, a struct: any struct without pointers.
 */
#include <math.h>
#include <stdio.h>

#include <rankpool.h>

struct pow_args {
    double a, b;
};

static int power(const void *in, void *out, rp_ctx_t *ctx)
{
    const struct pow_args *args = in;
    if (args->a < 0 && args->b != floor(args->b))
        return rp_raise(ctx, RP_ETASK, "pow(%g, %g) is not real", args->a, args->b);
    *(double *)out = pow(args->a, args->b);
    return 0;
}

int main(void)
{
    const struct pow_args args[] = {{2, 10}, {3, 4}, {10, -2}, {2.25, 0.5}, {-2, 3}};
    const double expected[] = {1024, 81, 0.01, 1.5, -8};
    enum { N = sizeof args / sizeof args[0] };
    double out[N];
    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "starmap: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    rc = rp_map(pool, power, args, N, sizeof args[0], out, sizeof out[0], NULL, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "starmap: item %zu: %s: %s\n", err.index, rp_strerror(rc),
                err.message);
        goto done;
    }
    for (int i = 0; i < N; i++) {
        printf("starmap: pow(%g, %g) = %g\n", args[i].a, args[i].b, out[i]);
        if (fabs(out[i] - expected[i]) > 1e-12 * fabs(expected[i])) {
            fprintf(stderr, "starmap: expected %g\n", expected[i]);
            goto done;
        }
    }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "starmap: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_pool_free(pool);
    return status;
}
