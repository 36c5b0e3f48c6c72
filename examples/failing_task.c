/* failing_task: some tasks fail; the failure is caught at get(), and - unlike
 * Python, where one exception throws every result away - the other results survive
 * and every failure is listed.
 *
 * Python:
 *     r = pool.map_async(int, ["12", "7", "x", ...])
 *     try:
 *         r.get()
 *     except ValueError as e:
 *         print(e)                  # the first failure; all other results are lost
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <rankpool.h>

#define N 8

/* A task's own failure codes: any non-zero int; rp_raise attaches a message. */
enum { ERR_NOT_A_NUMBER = 1, ERR_OUT_OF_RANGE = 2 };

static int parse(const void *in, void *out, rp_ctx_t *ctx)
{
    const char *s = in;
    char *end;

    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0')
        return rp_raise(ctx, ERR_NOT_A_NUMBER, "not a number: \"%s\"", s);
    if (errno == ERANGE)
        return rp_raise(ctx, ERR_OUT_OF_RANGE, "out of range: \"%s\"", s);
    *(long *)out = v;
    return 0;
}

int main(void)
{
    /* Items are fixed-size: strings travel as char[24]. */
    const char in[N][24] = {"12", "7", "x", "40", "", "-3", "99999999999999999999", "8"};
    const int bad[] = {2, 4, 6}; /* the items expected to fail */
    long out[N] = {0};
    rp_pool_t *pool = NULL;
    rp_result_t *res = NULL;
    rp_error_t err = {0};
    int rc, status = 1;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "failing_task: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    rc = rp_map_async(pool, parse, in, N, sizeof in[0], out, sizeof out[0], NULL, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "failing_task: rp_map_async: %s\n", rp_strerror(rc));
        goto done;
    }

    /* get() reports the lowest failing item... */
    rc = rp_result_get(res, 30.0, &err);
    printf("failing_task: get: %s (%s), item %zu, task code %d: %s\n", rp_err_name(rc),
           rp_strerror(rc), err.index, err.task_code, err.message);
    if (rc != RP_ETASK || err.index != 2 || err.task_code != ERR_NOT_A_NUMBER) {
        fprintf(stderr, "failing_task: expected RP_ETASK for item 2\n");
        goto done;
    }

    /* ...every failure is listed, in index order... */
    size_t nerr = rp_result_nerrors(res);
    printf("failing_task: %zu of %d items failed:\n", nerr, N);
    if (nerr != sizeof bad / sizeof bad[0]) {
        fprintf(stderr, "failing_task: expected %zu failures\n", sizeof bad / sizeof bad[0]);
        goto done;
    }
    for (size_t i = 0; i < nerr; i++) {
        const rp_error_t *e = rp_result_error(res, i);
        printf("  item %zu (worker %d on %s): %s\n", e->index, e->worker, e->host,
               e->message);
        if (e->index != (size_t)bad[i] || e->code != RP_ETASK) {
            fprintf(stderr, "failing_task: unexpected failure of item %zu\n", e->index);
            goto done;
        }
    }

    /* ...and every other item's result is in out[]. */
    const long expected[N] = {12, 7, 0, 40, 0, -3, 0, 8};
    printf("failing_task: results:");
    for (int i = 0; i < N; i++) {
        int failed = i == bad[0] || i == bad[1] || i == bad[2];
        if (failed) {
            printf(" -");
            continue;
        }
        printf(" %ld", out[i]);
        if (out[i] != expected[i]) {
            fprintf(stderr, "\nfailing_task: out[%d] = %ld, expected %ld\n", i, out[i],
                    expected[i]);
            goto done;
        }
    }
    printf("\n");

    /* A failed task does not harm the pool: it takes more work. */
    const char more[2][24] = {"1", "2"};
    long sum[2];
    if ((rc = rp_map(pool, parse, more, 2, sizeof more[0], sum, sizeof sum[0], NULL, &err)) !=
            RP_OK ||
        sum[0] + sum[1] != 3) {
        fprintf(stderr, "failing_task: the pool is broken after a failure: %s\n",
                rp_strerror(rc));
        goto done;
    }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "failing_task: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_result_free(res);
    rp_pool_free(pool);
    return status;
}
