/* cancel: stop a search once the answer is found, and stop a runaway item.
 *
 * Python (concurrent.futures):
 *     f = ex.submit(...); f.cancel()            # queued work only
 *     ex.shutdown(cancel_futures=True)
 * rankpool also stops a map half-way (items not started fail with RP_ECANCELED,
 * finished outputs stay) and, with RP_CANCEL_KILL, items already running.
 */
#include <stdio.h>
#include <time.h>

#include <rankpool.h>

#define N 20000

/* Whether x is the number we look for (slowly: 100 us per candidate). */
static int is_target(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    struct timespec ts = { 0, 100000 };
    nanosleep(&ts, NULL);
    *(int *)out = x * x == 1522756; /* 1234 */
    return 0;
}

/* An item that never ends. */
static int runaway(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)in;
    (void)out;
    (void)ctx;
    for (volatile long i = 0;; i++)
        ;
    return 0;
}

int main(void)
{
    static long in[N];
    static int found[N];
    rp_pool_t *pool = NULL;
    int rc, status = 1;
    for (long i = 0; i < N; i++)
        in[i] = i;
    if ((rc = rp_pool_create(&pool, NULL)) != RP_OK) {
        fprintf(stderr, "cancel: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI worker rank: it has served its tasks */
        rp_pool_free(pool);
        return 0;
    }

    /* 1. An imap over the candidates; once the answer comes, the rest is canceled. */
    rp_iter_t *it = NULL;
    rp_map_opts_t small = { .chunksize = 16 };
    if ((rc = rp_imap_unordered(pool, is_target, in, N, sizeof in[0], sizeof found[0], &small,
                                &it)) != RP_OK) {
        fprintf(stderr, "cancel: rp_imap_unordered: %s\n", rp_strerror(rc));
        goto done;
    }
    size_t i, ran = 0, canceled = 0;
    long answer = -1;
    int hit;
    while ((rc = rp_iter_next(it, RP_FOREVER, &i, &hit, NULL)) != RP_DONE) {
        if (rc == RP_ECANCELED) {
            canceled++;
            continue;
        }
        if (rc != RP_OK)
            goto done;
        ran++;
        if (hit && answer < 0) {
            answer = (long)i;
            rp_iter_cancel(it, 0); /* items running finish; the others never start */
        }
    }
    rp_iter_free(it);
    printf("cancel: found %ld after %zu candidates; %zu never ran\n", answer, ran, canceled);
    if (answer != 1234 || canceled == 0 || ran + canceled != N)
        goto done;

    /* 2. A runaway item: RP_CANCEL_KILL kills its worker (which is replaced). */
    rp_result_t *r = NULL;
    int out;
    if ((rc = rp_apply_async(pool, runaway, in, sizeof in[0], &out, sizeof out, NULL, &r)) !=
        RP_OK)
        goto done;
    rp_error_t err;
    if (rp_result_get(r, 0.2, NULL) == RP_ETIMEDOUT) /* still running after 0.2 s */
        rp_result_cancel(r, RP_CANCEL_KILL);
    rc = rp_result_get(r, RP_FOREVER, &err);
    rp_result_free(r);
    printf("cancel: the runaway item: %s (%s)\n", rp_err_name(rc), err.message);
    if (rc != RP_ECANCELED)
        goto done;

    /* 3. The pool goes on: a map, then a close that cancels what is queued. */
    if (rp_map(pool, is_target, in, 2000, sizeof in[0], found, sizeof found[0], NULL, NULL) !=
            RP_OK ||
        !found[1234])
        goto done;
    if ((rc = rp_map_async(pool, is_target, in, N, sizeof in[0], found, sizeof found[0], NULL,
                           &r)) != RP_OK)
        goto done;
    rp_pool_close_cancel(pool, 0); /* shutdown(cancel_futures=True) */
    rp_pool_join(pool);
    printf("cancel: close_cancel: %zu of %d items canceled\n", rp_result_nerrors(r), N);
    rp_result_free(r);
    status = 0;
done:
    rp_pool_free(pool);
    if (status)
        fprintf(stderr, "cancel: FAILED (%s)\n", rp_strerror(rc));
    return status;
}
