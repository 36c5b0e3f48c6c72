/* divisors: tasks whose output size depends on their input.
 *
 * Python:
 *     def divisors(n): return [d for d in range(1, n + 1) if n % d == 0]
 *     pool.map(divisors, [1, 12, 28, 97, 360, 720720])
 *
 * rp_map_var passes out == NULL to the task, which asks for exactly the room it
 * needs with rp_output(ctx, bytes). The outputs come back in an rp_varout_t, read
 * with rp_varout_item(). Nobody has to guess a maximum size.
 */
#include <stdio.h>

#include <rankpool.h>

/* Writes the divisors of n in increasing order: 1 .. n. */
static int divisors(const void *in, void *out, rp_ctx_t *ctx)
{
    long n = *(const long *)in;
    size_t count = 0;
    (void)out; /* NULL in a variable-size map */

    if (n < 1)
        return rp_raise(ctx, RP_ETASK, "%ld has no finite list of positive divisors", n);
    for (long d = 1; d * d <= n; d++)
        if (n % d == 0)
            count += d * d == n ? 1 : 2;

    long *div = rp_output(ctx, count * sizeof *div);
    if (!div)
        return rp_raise(ctx, RP_ENOMEM, "no room for %zu divisors", count);
    /* small divisors from the front, their partners n/d from the back */
    size_t lo = 0, hi = count;
    for (long d = 1; d * d <= n; d++)
        if (n % d == 0) {
            div[lo++] = d;
            if (d * d != n)
                div[--hi] = n / d;
        }
    return 0;
}

int main(void)
{
    const long in[] = {1, 12, 28, 97, 360, 720720};
    enum { N = sizeof in / sizeof in[0] };
    rp_pool_t *pool = NULL;
    rp_varout_t *out = NULL;
    rp_error_t err;
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "divisors: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    rc = rp_map_var(pool, divisors, in, N, sizeof in[0], NULL, &out, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "divisors: item %zu: %s: %s\n", err.index, rp_strerror(rc),
                err.message);
        goto done;
    }
    if (rp_varout_count(out) != N) {
        fprintf(stderr, "divisors: %zu outputs for %d items\n", rp_varout_count(out), N);
        goto done;
    }
    for (size_t i = 0; i < N; i++) {
        size_t size;
        const long *div = rp_varout_item(out, i, &size);
        size_t count = size / sizeof *div;

        /* check against a plain loop */
        size_t expected = 0;
        for (long d = 1; d <= in[i]; d++)
            expected += in[i] % d == 0;
        printf("divisors: %ld has %zu:", in[i], count);
        for (size_t k = 0; k < count && k < 12; k++)
            printf(" %ld", div[k]);
        printf("%s\n", count > 12 ? " ..." : "");
        if (!div || count != expected) {
            fprintf(stderr, "divisors: expected %zu divisors\n", expected);
            goto done;
        }
        for (size_t k = 0; k < count; k++)
            if (in[i] % div[k] != 0 || (k > 0 && div[k] <= div[k - 1])) {
                fprintf(stderr, "divisors: wrong divisor %ld\n", div[k]);
                goto done;
            }
    }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "divisors: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_varout_free(out); /* NULL is fine */
    rp_pool_free(pool);
    return status;
}
