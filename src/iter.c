/* One segment of an imap stream (stream.c): a tracked job (RP__JOB_TRACK) whose
 * items are consumed through the ledger's arrivals as they are processed.
 *
 * The segment owns the job's output buffer (n * out_size, or n rp__varslot for
 * variable-size outputs). An item is available once it arrived, or once the
 * result is ready (finalization delivered every item that had not). A failed
 * item is yielded as its code with *err filled; iteration goes on after it.
 * Indexes are the segment's own (0..n-1). Used by one thread at a time. */
#include "result.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ARRIVALS_BATCH 256

struct rp__seg {
    rp_result_t *r;
    char        *buf;      /* n * out_size outputs (job->out), NULL if out_size 0;
                              var: n rp__varslot */
    size_t       n;
    size_t       out_size;
    bool         ordered;
    bool         var;
    unsigned char *seen;   /* per item: 1 once returned by arrivals() */
    size_t       yielded;  /* items handed to the caller */
    size_t       next;     /* ordered: next index to yield; unordered: scan position
                              over items never returned by arrivals() */
    size_t      *queue;    /* unordered: arrived, not yet yielded */
    size_t       qhead, qtail;
};

int rp__seg_open(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                 size_t out_size, const rp_map_opts_t *opts, bool ordered, bool var,
                 size_t base, rp__seg **itp)
{
    *itp = NULL;
    if (var)
        out_size = sizeof(rp__varslot);
    /* out is the segment's own buffer: pass a dummy non-NULL for the check. */
    int rc = rp__check_map_args(pool, fn, in, n, in_size, "", out_size);
    if (rc != RP_OK)
        return rc;
    rp__seg *it = calloc(1, sizeof *it);
    if (!it)
        return RP_ENOMEM;
    it->n = n;
    it->out_size = out_size;
    it->ordered = ordered;
    it->var = var;
    rc = RP_ENOMEM;
    if (n > 0 && out_size > 0 &&
        !(it->buf = var ? calloc(n, out_size) : malloc(n * out_size)))
        goto fail;
    if (!(it->seen = calloc(n ? n : 1, 1)))
        goto fail;
    if (!ordered && !(it->queue = malloc((n ? n : 1) * sizeof *it->queue)))
        goto fail;
    rc = rp__result_submit_at(pool, fn, in, n, in_size, it->buf, out_size, opts,
                              RP__JOB_TRACK | (var ? RP__JOB_VAR : 0u), base, &it->r);
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

static bool is_ready(const rp__seg *it)
{
    return atomic_load(&it->r->state) == RP__RES_READY;
}

/* Hands item i to the caller: where its output is (not copied). */
static int yield(rp__seg *it, size_t i, size_t *index, const void **out, size_t *size,
                 rp_error_t *err)
{
    it->yielded++;
    *index = i;
    *out = NULL;
    *size = 0;
    rp_error_t e;
    if (rp__result_find_error(it->r, i, &e)) {
        if (err)
            *err = e;
        return e.code;
    }
    if (it->var) {
        const rp__varslot *slot = (const rp__varslot *)it->buf + i;
        *out = slot->data;
        *size = slot->size;
    } else if (it->out_size) {
        *out = it->buf + i * it->out_size;
        *size = it->out_size;
    }
    return RP_OK;
}

/* Waits up to `timeout` for more items: takes arrivals, or notices the result
 * became ready. \return true if something changed. */
static bool pull(rp__seg *it, double timeout)
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

int rp__seg_next(rp__seg *it, double timeout, size_t *index, const void **out, size_t *size,
                 rp_error_t *err)
{
    if (it->yielded >= it->n)
        return RP_DONE;
    double deadline = rp__deadline(timeout);
    for (;;) {
        if (it->ordered) {
            if (it->seen[it->next] || is_ready(it)) {
                size_t i = it->next++;
                return yield(it, i, index, out, size, err);
            }
        } else {
            if (it->qhead < it->qtail)
                return yield(it, it->queue[it->qhead++], index, out, size, err);
            if (is_ready(it)) {
                while (it->next < it->n && it->seen[it->next])
                    it->next++;
                if (it->next < it->n) {
                    size_t i = it->next++;
                    return yield(it, i, index, out, size, err);
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

void rp__seg_drop(rp__seg *it, size_t i)
{
    if (!it->var || i >= it->n)
        return;
    rp__varslot *slot = (rp__varslot *)it->buf + i;
    free(slot->data);
    slot->data = NULL;
    slot->size = 0;
}

rp_result_t *rp__seg_result(rp__seg *it)
{
    return it->r;
}

size_t rp__seg_left(const rp__seg *it)
{
    return it->n - it->yielded;
}

void rp__seg_free(rp__seg *it)
{
    if (!it)
        return;
    rp_result_free(it->r);
    if (it->var)
        for (size_t i = 0; i < it->n; i++)
            free(((rp__varslot *)it->buf)[i].data);
    free(it->buf);
    free(it->seen);
    free(it->queue);
    free(it);
}
