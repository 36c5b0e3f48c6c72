/* imap / imap_unordered: a tracked job (RP__JOB_TRACK) whose items the iterator
 * consumes through ops->arrivals() as they are processed.
 *
 * The iterator owns the job's output buffer (n * out_size). An item is available
 * once arrivals() returned it, or once the result is ready (finish() delivered
 * every item arrivals() had not). A failed item is yielded as its code with *err
 * filled; iteration goes on after it. One iterator is used by one thread at a
 * time. */
#include "result.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARRIVALS_BATCH 256

struct rp_iter {
    rp_result_t *r;
    char        *buf;      /* n * out_size outputs (job->out), NULL if out_size 0 */
    size_t       n;
    size_t       out_size;
    bool         ordered;
    unsigned char *seen;   /* per item: 1 once returned by arrivals() */
    size_t       yielded;  /* items handed to the caller */
    size_t       next;     /* ordered: next index to yield; unordered: scan position
                              over items never returned by arrivals() */
    size_t      *queue;    /* unordered: arrived, not yet yielded */
    size_t       qhead, qtail;
};

static int create(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                  size_t out_size, const rp_map_opts_t *opts, bool ordered, rp_iter_t **itp)
{
    if (!itp)
        return RP_EINVAL;
    *itp = NULL;
    /* out is the iterator's own buffer: pass a dummy non-NULL for the check. */
    int rc = rp__check_map_args(pool, fn, in, n, in_size, "", out_size);
    if (rc != RP_OK)
        return rc;
    rp_iter_t *it = calloc(1, sizeof *it);
    if (!it)
        return RP_ENOMEM;
    it->n = n;
    it->out_size = out_size;
    it->ordered = ordered;
    rc = RP_ENOMEM;
    if (n > 0 && out_size > 0 && !(it->buf = malloc(n * out_size)))
        goto fail;
    if (!(it->seen = calloc(n ? n : 1, 1)))
        goto fail;
    if (!ordered && !(it->queue = malloc((n ? n : 1) * sizeof *it->queue)))
        goto fail;
    rc = rp__result_submit(pool, fn, in, n, in_size, it->buf, out_size, opts,
                           RP__JOB_TRACK, &it->r);
    if (rc != RP_OK)
        goto fail;
    *itp = it;
    return RP_OK;
fail:
    free(it->buf);
    free(it->seen);
    free(it->queue);
    free(it);
    return rc;
}

int rp_imap(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
            size_t out_size, const rp_map_opts_t *opts, rp_iter_t **it)
{
    return create(pool, fn, in, n, in_size, out_size, opts, true, it);
}

int rp_imap_unordered(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                      size_t in_size, size_t out_size, const rp_map_opts_t *opts,
                      rp_iter_t **it)
{
    return create(pool, fn, in, n, in_size, out_size, opts, false, it);
}

static bool is_ready(const rp_iter_t *it)
{
    return atomic_load(&it->r->state) == RP__RES_READY;
}

/* Hands item i to the caller. */
static int yield(rp_iter_t *it, size_t i, size_t *index, void *out_item, rp_error_t *err)
{
    it->yielded++;
    if (index)
        *index = i;
    rp_error_t e;
    if (rp__result_find_error(it->r, i, &e)) {
        if (err)
            *err = e;
        return e.code;
    }
    if (out_item && it->out_size)
        memcpy(out_item, it->buf + i * it->out_size, it->out_size);
    return RP_OK;
}

/* Waits up to `timeout` for more items: takes arrivals, or notices the result
 * became ready. \return true if something changed. */
static bool pull(rp_iter_t *it, double timeout)
{
    size_t batch[ARRIVALS_BATCH];
    size_t *dst = it->ordered ? batch : it->queue + it->qtail;
    size_t max = it->ordered ? ARRIVALS_BATCH : it->n - it->qtail;
    size_t got = max ? rp__result_take_arrivals(it->r, dst, max) : 0;
    if (got == 0 && max > 0 && !is_ready(it)) {
        rp__result_await_arrival(it->r, timeout);
        got = rp__result_take_arrivals(it->r, dst, max);
    }
    for (size_t k = 0; k < got; k++)
        if (dst[k] < it->n)
            it->seen[dst[k]] = 1;
    if (!it->ordered)
        it->qtail += got;
    if (got > 0)
        return true;
    /* Nothing arrived: the job may be complete (its last items delivered at
     * finalization, e.g. by a join in another thread). */
    if (atomic_load(&it->r->state) == RP__RES_FINALIZING)
        rp__result_wait(it->r, timeout);
    else
        rp__result_wait(it->r, 0);
    return is_ready(it);
}

int rp_iter_next(rp_iter_t *it, double timeout, size_t *index, void *out_item,
                 rp_error_t *err)
{
    if (!it)
        return RP_EINVAL;
    if (it->yielded >= it->n)
        return RP_DONE;
    double deadline = rp__deadline(timeout);
    for (;;) {
        if (it->ordered) {
            if (it->seen[it->next] || is_ready(it)) {
                size_t i = it->next++;
                return yield(it, i, index, out_item, err);
            }
        } else {
            if (it->qhead < it->qtail)
                return yield(it, it->queue[it->qhead++], index, out_item, err);
            if (is_ready(it)) {
                while (it->next < it->n && it->seen[it->next])
                    it->next++;
                if (it->next < it->n) {
                    size_t i = it->next++;
                    return yield(it, i, index, out_item, err);
                }
                return RP_DONE; /* not reached: yielded < n implies an item left */
            }
        }
        double left = isinf(deadline) ? RP_FOREVER : deadline - rp__now();
        if (!isinf(deadline) && left < 0)
            left = 0;
        if (!pull(it, left) && left == 0)
            return RP_ETIMEDOUT;
        if (!isinf(deadline) && rp__now() >= deadline && !is_ready(it) &&
            !(it->ordered ? it->seen[it->next] : it->qhead < it->qtail))
            return RP_ETIMEDOUT;
    }
}

int rp_iter_cancel(rp_iter_t *it, int flags)
{
    if (!it)
        return RP_EINVAL;
    return rp_result_cancel(it->r, flags);
}

void rp_iter_free(rp_iter_t *it)
{
    if (!it)
        return;
    rp_result_free(it->r);
    free(it->buf);
    free(it->seen);
    free(it->queue);
    free(it);
}
