/* timelimit: a parameter sweep where some items never finish. Each item iterates
 * the logistic map x <- r x (1 - x) until it settles on its fixed point 1 - 1/r.
 * For r < 3 it does (slowly near 3); for r > 3 it never does (it oscillates), and
 * the iteration would run forever. A per-item time limit (task_timeout) stops
 * those: the pool kills the worker running one, replaces it, and the item fails
 * with RP_ETASKTIMEOUT while the rest of the sweep goes on.
 *
 * Python's multiprocessing has no such limit: a runaway item holds its worker
 * until pool.terminate() ends everything. */
#include <math.h>
#include <stdio.h>

#include <rankpool.h>

#define N 12

static int settle(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    double r = *(const double *)in, x = 0.5;
    for (;;) { /* no iteration cap: the pool's time limit is the cap */
        double next = r * x * (1 - x);
        if (fabs(next - x) < 1e-12)
            break;
        x = next;
    }
    *(double *)out = x;
    return 0;
}

int main(void)
{
    double r[N], x[N];
    for (int i = 0; i < N; i++)
        r[i] = 2.5 + 0.08 * i; /* 2.50 ... 3.38: from 3.06 on they never settle */
    rp_pool_t *pool = NULL;
    int rc = rp_pool_create(&pool, NULL);
    if (rc != RP_OK) {
        fprintf(stderr, "timelimit: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }
    /* 0.3 s per item, one item per dispatch (so one runaway item holds nothing else) */
    rp_map_opts_t opts = { .chunksize = 1, .task_timeout = 0.3 };
    rp_result_t *res = NULL;
    rc = rp_map_async(pool, settle, r, N, sizeof r[0], x, sizeof x[0], &opts, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "timelimit: rp_map_async: %s\n", rp_strerror(rc));
        rp_pool_free(pool);
        return 1;
    }
    rp_result_wait(res, RP_FOREVER);
    int wrong = 0;
    size_t k = 0, nerr = rp_result_nerrors(res);
    const rp_error_t *e = nerr ? rp_result_error(res, 0) : NULL;
    for (int i = 0; i < N; i++) {
        bool failed = e && e->index == (size_t)i;
        if (failed) {
            printf("r = %.2f: %s (%s)\n", r[i], rp_err_name(e->code), e->message);
            wrong += e->code != RP_ETASKTIMEOUT || r[i] < 3;
            e = ++k < nerr ? rp_result_error(res, k) : NULL;
        } else {
            printf("r = %.2f: x* = %.6f\n", r[i], x[i]);
            wrong += r[i] > 3 || fabs(x[i] - (1 - 1 / r[i])) > 1e-6;
        }
    }
    printf("%zu of %d items ran past their time limit\n", nerr, N);
    rp_result_free(res);
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    return wrong == 0 && nerr == 5 ? 0 : 1;
}
