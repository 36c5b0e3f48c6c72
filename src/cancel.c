/* Canceling work: rp_result_cancel (one result), rp_pool_close_cancel (close the
 * pool and cancel what it holds), and the record of a canceled item.
 *
 * The core marks the job canceled (job->cancel) and asks the backend to take
 * back what has not started (ops->cancel). From then on the ledger cancels,
 * instead of running again, what a backend would put back (a dead worker's
 * unstarted items, a batch handed back), and with RP_CANCEL_KILL the item a
 * killed worker was running (rp__job_worker_died). The job completes as usual,
 * when every item is accounted for, so the result is finalized, and its
 * callbacks run, as for any other job. */
#include "result.h"

#include <stdlib.h>

void rp__cancel_error(rp_error_t *e, size_t index, int worker, const char *host,
                      bool terminated)
{
    rp__error_set(e, RP_ECANCELED, index, worker, host, "%s",
                  terminated ? "canceled: the pool was terminated"
                             : "canceled by rp_result_cancel before it started");
}

int rp_result_cancel(rp_result_t *res, int flags)
{
    if (!res || (flags & ~RP_CANCEL_KILL))
        return RP_EINVAL;
    if (rp__result_is_ready(res) || !res->submitted)
        return RP_OK;
    if ((flags & RP_CANCEL_KILL) && !res->pool->ops->kills)
        return RP_EBACKEND;
    if (!res->pool->ops->cancel)
        return RP_EBACKEND;
    rp__result_hold(res);
    struct rp__job *job = &res->job;
    int was = atomic_fetch_or(&job->cancel, RP__CANCELED | flags);
    /* a second cancel only matters when it adds the kill */
    bool act = !(was & RP__CANCELED) || ((flags & RP_CANCEL_KILL) && !(was & RP_CANCEL_KILL));
    if (act && rp__result_ops_enter(res)) {
        rp_pool_t *pool = res->pool;
        pool->ops->cancel(pool, job, flags);
        rp__result_ops_leave(res);
    }
    rp__result_release(res);
    return RP_OK;
}

int rp_pool_close_cancel(rp_pool_t *pool, int flags)
{
    if (flags & ~RP_CANCEL_KILL)
        return RP_EINVAL;
    int rc = rp_pool_close(pool);
    if (rc != RP_OK)
        return rc;
    /* Every result live now: no new one can come (closed). Held while canceled. */
    pthread_mutex_lock(&pool->lock);
    size_t n = 0;
    for (rp_result_t *r = pool->live; r; r = r->next)
        n++;
    rp_result_t **v = malloc((n ? n : 1) * sizeof *v);
    if (!v) {
        pthread_mutex_unlock(&pool->lock);
        return RP_ENOMEM;
    }
    n = 0;
    for (rp_result_t *r = pool->live; r; r = r->next) {
        rp__result_hold(r);
        v[n++] = r;
    }
    pthread_mutex_unlock(&pool->lock);
    for (size_t i = 0; i < n; i++) {
        rp_result_cancel(v[i], flags);
        rp__result_release(v[i]);
    }
    free(v);
    return RP_OK;
}
