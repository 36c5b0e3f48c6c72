/* error_callback: a function called with the failure when a map fails.
 *
 * Python:
 *     def check(x):
 *         if x == 7: raise ValueError("7 is unlucky")
 *         return x
 *     r = pool.map_async(check, range(20), callback=on_ok, error_callback=on_error)
 *     r.wait()
 *
 * Exactly one of the two callbacks runs, once: callback when every item succeeded,
 * error_callback with the lowest failing item otherwise. It has finished before
 * rp_result_wait/get returns.
 */
#include <stdio.h>

#include <rankpool.h>

#define N 20

struct calls {
    int        ok, failed;
    rp_error_t first; /* copy of what error_callback was given */
};

static int check(const void *in, void *out, rp_ctx_t *ctx)
{
    int x = *(const int *)in;
    if (x == 7 || x == 13)
        return rp_raise(ctx, RP_ETASK, "%d is unlucky", x);
    *(int *)out = x;
    return 0;
}

static void on_ok(rp_result_t *res, void *userdata)
{
    (void)res;
    ((struct calls *)userdata)->ok++;
}

/* Gets the failure of the lowest failing index; valid during the call only. */
static void on_error(const rp_error_t *e, void *userdata)
{
    struct calls *calls = userdata;
    calls->failed++;
    calls->first = *e;
    printf("error_callback: item %zu failed on worker %d (%s): %s\n", e->index, e->worker,
           e->host, e->message);
}

int main(void)
{
    int in[N], out[N];
    struct calls calls = {0};
    rp_pool_t *pool = NULL;
    rp_result_t *res = NULL;
    int rc, status = 1;

    for (int i = 0; i < N; i++)
        in[i] = i;

    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "error_callback: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    rp_map_opts_t opts = {.callback = on_ok, .error_callback = on_error, .userdata = &calls};
    rc = rp_map_async(pool, check, in, N, sizeof in[0], out, sizeof out[0], &opts, &res);
    if (rc != RP_OK) {
        fprintf(stderr, "error_callback: rp_map_async: %s\n", rp_strerror(rc));
        goto done;
    }
    /* wait() only waits: it says nothing about success (that is get/successful). */
    if ((rc = rp_result_wait(res, 30.0)) != RP_OK) {
        fprintf(stderr, "error_callback: wait: %s\n", rp_strerror(rc));
        goto done;
    }
    printf("error_callback: callback ran %d times, error_callback %d times, "
           "successful %d, %zu failed items\n",
           calls.ok, calls.failed, rp_result_successful(res), rp_result_nerrors(res));
    if (calls.ok != 0 || calls.failed != 1 || calls.first.index != 7 ||
        calls.first.code != RP_ETASK || rp_result_successful(res) != 0 ||
        rp_result_nerrors(res) != 2) {
        fprintf(stderr, "error_callback: expected one error_callback, for item 7\n");
        goto done;
    }

    if ((rc = rp_pool_close(pool)) != RP_OK || (rc = rp_pool_join(pool)) != RP_OK) {
        fprintf(stderr, "error_callback: close/join: %s\n", rp_strerror(rc));
        goto done;
    }
    status = 0;
done:
    rp_result_free(res);
    rp_pool_free(pool);
    return status;
}
