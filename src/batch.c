/* Batch tasks: a task that runs a run of consecutive items in one call
 * (rp_batch_fn), submitted by rp_map_batch / rp_map_batch_async as a job flagged
 * RP__JOB_BATCH, and run in a worker by rp__worker_run_batch, which turns the
 * task's verdicts into per-item failures:
 *  - rp_raise_at(ctx, i, ...) names item i (an index of the whole map) as failed;
 *  - a call that returns 0 succeeded for every item it did not name;
 *  - a call that returns non-zero after naming items stopped at the last one it
 *    named: the items after it are given to the task again in a new call;
 *  - a call that returns non-zero without naming an item (or after rp_raise, or
 *    rp_raise_at outside its items) fails every item it did not name.
 * So every item that can succeed does, as with an ordinary task. The named
 * failures are reported when the call has returned: a crash inside a call fails
 * the whole call (the backend's *cur is its first item) and nothing twice. */
#include "result.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* An item a batch task named as failed. */
struct rp__named {
    size_t index;
    size_t order;    /* when it was named: the later of two for one item wins */
    int    code;
    char   message[256];
};

/* ---- submitting ---------------------------------------------------------------------- */

int rp_map_batch_async(rp_pool_t *pool, rp_batch_fn fn, const void *in, size_t n,
                       size_t in_size, void *out, size_t out_size, const rp_map_opts_t *opts,
                       rp_result_t **res)
{
    if (!res)
        return RP_EINVAL;
    *res = NULL;
    /* The job carries it as a task pointer; only rp__worker_run_batch calls it,
     * with its own type. */
    rp_task_fn task = (rp_task_fn)(void (*)(void))fn;
    int rc = rp__check_map_args(pool, task, in, n, in_size, out, out_size);
    if (rc != RP_OK)
        return rc;
    /* A call runs many items: no per-item time limit, retry or journal applies */
    if (opts && (opts->task_timeout != 0 || opts->retries != 0 || opts->retry_raised ||
                 opts->journal))
        return RP_EINVAL;
    return rp__result_submit(pool, task, in, n, in_size, out, out_size, opts, RP__JOB_BATCH,
                             res);
}

int rp_map_batch(rp_pool_t *pool, rp_batch_fn fn, const void *in, size_t n, size_t in_size,
                 void *out, size_t out_size, const rp_map_opts_t *opts, rp_error_t *err)
{
    rp_result_t *r;
    int rc = rp__blocking_check(pool, opts);
    if (rc == RP_OK)
        rc = rp_map_batch_async(pool, fn, in, n, in_size, out, out_size, opts, &r);
    if (rc != RP_OK)
        return rp__call_refused(err, rc, "rp_map_batch");
    rc = rp_result_get(r, RP_FOREVER, err);
    rp_result_free(r);
    return rc;
}

/* ---- inside a task ----------------------------------------------------------------- */

int rp_raise_at(rp_ctx_t *ctx, size_t i, int code, const char *fmt, ...)
{
    if (code == 0)
        code = RP_ETASK;
    if (!ctx)
        return code;
    char msg[256] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    bool inside = ctx->in_batch && i >= ctx->batch_first
                  && i - ctx->batch_first < ctx->batch_count;
    if (inside && ctx->nnamed == ctx->capnamed) {
        size_t cap = ctx->capnamed ? 2 * ctx->capnamed : 8;
        struct rp__named *v = realloc(ctx->named, cap * sizeof *v);
        if (v) {
            ctx->named = v;
            ctx->capnamed = cap;
        }
    }
    if (!inside || ctx->nnamed == ctx->capnamed) {
        /* an ordinary task, an item outside the call, or no memory to name it:
         * the running item (or the whole call) fails with this message */
        if (ctx->in_batch && !inside)
            return rp_raise(ctx, code, "item %zu is not one of this call's [%zu, %zu): %s", i,
                            ctx->batch_first, ctx->batch_first + ctx->batch_count, msg);
        return rp_raise(ctx, code, "%s", msg);
    }
    struct rp__named *nm = &ctx->named[ctx->nnamed];
    nm->index = i;
    nm->order = ctx->nnamed++;
    nm->code = code;
    memcpy(nm->message, msg, sizeof msg);
    return code;
}

/* ---- running (in a worker) --------------------------------------------------------- */

static int by_index(const void *a, const void *b)
{
    const struct rp__named *x = a, *y = b;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

/* Reports the named failures of the call over [first, first + count) (one per
 * item: the last named), and, with `rest`, fails every other item of the call
 * with what the task returned. \return the items failed. */
static size_t report(rp_ctx_t *ctx, size_t first, size_t count, int rc, bool rest,
                     rp__fail_fn on_fail, void *fail_arg)
{
    struct rp__named *v = ctx->named;
    size_t nv = ctx->nnamed, failed = 0, next = first;
    if (nv > 1)
        qsort(v, nv, sizeof *v, by_index);
    rp_error_t e;
    for (size_t k = 0; k <= nv; k++) {
        if (k < nv && ((k + 1 < nv && v[k + 1].index == v[k].index)
                       || v[k].index - first >= count))
            continue; /* named again later, or after where the call stopped */
        size_t upto = k < nv ? v[k].index : first + count;
        for (; rest && next < upto; next++) { /* not named: the call's own failure */
            rp__worker_fill_failure(&e, ctx, RP_ETASK, rc, next, "batch task");
            failed++;
            if (on_fail)
                on_fail(fail_arg, &e);
        }
        if (k == nv)
            break;
        rp__error_set(&e, RP_ETASK, v[k].index, ctx->worker, ctx->host, "%s", v[k].message);
        e.task_code = v[k].code;
        failed++;
        if (on_fail)
            on_fail(fail_arg, &e);
        next = v[k].index + 1;
    }
    return failed;
}

size_t rp__worker_run_batch(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                            char *out, size_t out_size, size_t start, size_t count,
                            _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg)
{
    rp_batch_fn bfn = (rp_batch_fn)(void (*)(void))fn;
    size_t nfailed = 0, k = 0;
    while (k < count) {
        size_t first = start + k, len = count - k;
        if (cur)
            atomic_store_explicit(cur, first, memory_order_release);
        ctx->index = first;
        ctx->raised = false;
        ctx->output_set = false;
        ctx->in_batch = true;
        ctx->batch_first = first;
        ctx->batch_count = len;
        ctx->nnamed = 0;
        int rc = bfn(in + k * in_size, out ? out + k * out_size : NULL, len, first, ctx);
        ctx->in_batch = false;
        if (__builtin_expect(rc == 0 && ctx->nnamed == 0, 1))
            break;
        if (rc != 0 && ctx->nnamed > 0 && !ctx->raised) {
            /* stopped at the item it named last: the items after it run again */
            size_t last = ctx->named[ctx->nnamed - 1].index;
            nfailed += report(ctx, first, last + 1 - first, rc, false, on_fail, fail_arg);
            k = last + 1 - start;
            continue;
        }
        nfailed += report(ctx, first, len, rc, rc != 0, on_fail, fail_arg);
        break;
    }
    /* the named list lives for one run: a worker keeps no memory between chunks */
    free(ctx->named);
    ctx->named = NULL;
    ctx->nnamed = ctx->capnamed = 0;
    return nfailed;
}
