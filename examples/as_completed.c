/* as_completed: handle results in the order they become ready.
 *
 * Python (concurrent.futures):
 *     futures = [ex.submit(work, d) for d in durations]
 *     for f in as_completed(futures):
 *         print(f.result())
 * rankpool: rp_result_wait_any over the results not taken yet (a taken one is set
 * to NULL, which wait_any skips). It sleeps until one is ready: no polling.
 */
#include <stdio.h>
#include <time.h>

#include <rankpool.h>

#define N 4

/* Sleeps in[0] milliseconds, returns it doubled. */
static int work(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long ms = *(const long *)in;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
    *(long *)out = 2 * ms;
    return 0;
}

static int done_count;

static void on_ready(rp_result_t *r, void *userdata)
{
    (void)r;
    (void)userdata;
    done_count++; /* runs on the pool's thread */
}

int main(void)
{
    long ms[N] = { 400, 100, 300, 200 }, out[N];
    rp_result_t *res[N], *left[N];
    rp_pool_opts_t opts = { .workers = N };
    rp_pool_t *pool = NULL;
    int rc, status = 1;
    if ((rc = rp_pool_create(&pool, &opts)) != RP_OK) {
        fprintf(stderr, "as_completed: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }
    for (int i = 0; i < N; i++) {
        if ((rc = rp_apply_async(pool, work, &ms[i], sizeof ms[i], &out[i], sizeof out[i],
                                 NULL, &res[i])) != RP_OK)
            goto done;
        rp_result_on_ready(res[i], on_ready, NULL); /* a callback added afterwards */
        left[i] = res[i];
    }
    long prev = 0;
    for (int k = 0; k < N; k++) { /* as_completed */
        size_t i;
        if ((rc = rp_result_wait_any(left, N, 10.0, &i)) != RP_OK)
            goto done;
        left[i] = NULL;
        if ((rc = rp_result_get(res[i], 0, NULL)) != RP_OK)
            goto done;
        printf("as_completed: item %zu (%ld ms) ready: %ld\n", i, ms[i], out[i]);
        if (ms[i] < prev) /* they come shortest first */
            goto done;
        prev = ms[i];
    }
    rc = rp_result_wait_all(res, N, 10.0);
    for (int i = 0; i < N; i++)
        rp_result_free(res[i]);
    rp_pool_close(pool);
    rp_pool_join(pool); /* the pool's thread has run every callback by now */
    printf("as_completed: %d on_ready callbacks\n", done_count);
    status = rc == RP_OK && done_count == N ? 0 : 1;
done:
    rp_pool_free(pool);
    if (status)
        fprintf(stderr, "as_completed: FAILED (%s)\n", rp_strerror(rc));
    return status;
}
