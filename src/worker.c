/* The worker side shared by both backends: run a chunk of items, turn a task's
 * non-zero return into an rp_error_t, and the calls a running task can make
 * (rp_raise, rp_ctx_*, rp_output). This runs for every item, so the success path
 * is a store, a call and a test. */
#include "internal.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void rp__worker_fill_failure(rp_error_t *e, rp_ctx_t *ctx, int code, int rc, size_t index,
                             const char *what)
{
    rp__error_set(e, code, index, ctx->worker, ctx->host, "%s", "");
    e->task_code = rc;
    if (ctx->raised && ctx->message[0])
        memcpy(e->message, ctx->message, sizeof e->message);
    else if (ctx->raised) /* rp_raise with no text (NULL or "") */
        snprintf(e->message, sizeof e->message, "%s raised %d without a message", what, rc);
    else
        snprintf(e->message, sizeof e->message, "%s returned %d", what, rc);
    e->message[sizeof e->message - 1] = '\0';
}

/* The per-item path of an ordinary task: items [index, end) until one fails
 * (*rc = what the task returned) or *stop is set; returns where it stopped (end:
 * all ran). Its speed depends on where its code falls on 64-byte lines: the
 * former loop (inside rp__worker_run, with the failure path) took 2.47, 2.78 or
 * 3.08 ns per trivial item on this machine's cores depending on where the code
 * before it in the library happened to end; this one, with the next item's stores
 * after the call, took 2.78 at each of the four 16-byte placements. Aligned, it
 * also keeps one place whatever the rest of the library becomes. */
__attribute__((noinline, aligned(64)))
static size_t run_items(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                        uintptr_t out, size_t out_step, size_t index, size_t end,
                        _Atomic size_t *cur, const _Atomic uint32_t *stop, int *rc)
{
    if (index >= end || atomic_load_explicit(stop, memory_order_relaxed) != 0)
        return index;
    for (;;) {
        atomic_store_explicit(cur, index, memory_order_release);
        ctx->index = index;
        ctx->raised = false;
        ctx->output_set = false;
        int r = fn(in, (void *)out, ctx);
        if (__builtin_expect(r != 0, 0)) {
            *rc = r;
            return index;
        }
        if (++index == end
            || __builtin_expect(atomic_load_explicit(stop, memory_order_relaxed) != 0, 0))
            return index;
        in += in_size;
        out += out_step;
    }
}

size_t rp__worker_run(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                      char *out, size_t out_size, size_t start, size_t count,
                      _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg)
{
    static const _Atomic uint32_t never = 0;
    _Atomic size_t nowhere;
    const _Atomic uint32_t *stop = ctx->stop ? ctx->stop : &never; /* one load per item */
    size_t out_step = out ? out_size : 0, end = start + count, nfailed = 0;
    ctx->ran = count;
    for (size_t i = start; i < end;) {
        int rc = 0;
        size_t k = i - start;
        size_t at = run_items(ctx, fn, in + k * in_size, in_size, (uintptr_t)out + k * out_step,
                              out_step, i, end, cur ? cur : &nowhere, stop, &rc);
        if (at == end)
            break;
        if (rc == 0) { /* stopped before item at */
            ctx->ran = at - start;
            break;
        }
        rp_error_t e;
        rp__worker_fill_failure(&e, ctx, RP_ETASK, rc, at, "task");
        nfailed++;
        if (on_fail)
            on_fail(fail_arg, &e);
        i = at + 1;
    }
    return nfailed;
}

size_t rp__worker_run_ctl(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                          char *out, size_t out_size, size_t start, size_t count,
                          _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg,
                          const rp__runctl *rc)
{
    static const _Atomic uint32_t never = 0;
    const _Atomic uint32_t *stop = ctx->stop ? ctx->stop : &never; /* rp_result_cancel */
    _Atomic uint64_t *dl = rc->limit_ns ? rc->deadline : NULL;
    size_t nfailed = 0;
    ctx->ran = count;
    for (size_t k = 0; k < count; k++) {
        size_t index = start + k;
        if (__builtin_expect(atomic_load_explicit(stop, memory_order_relaxed) != 0, 0)) {
            ctx->ran = k;
            break;
        }
        const char *ip = in + k * in_size;
        char *op = out ? out + k * out_size : NULL;
        for (unsigned attempt = 1;; attempt++) {
            /* 0 first: a watcher that reads (deadline, cur, deadline) unchanged
             * has a deadline of item cur */
            if (dl)
                atomic_store(dl, 0);
            if (cur)
                atomic_store_explicit(cur, index, memory_order_release);
            if (dl)
                atomic_store(dl, rp__now_ns() + rc->limit_ns);
            ctx->index = index;
            ctx->raised = false;
            ctx->output_set = false;
            int r = fn(ip, op, ctx);
            if (__builtin_expect(r == 0, 1))
                break;
            if (attempt <= rc->retries)
                continue;
            rp_error_t e;
            rp__worker_fill_failure(&e, ctx, RP_ETASK, r, index, "task");
            if (rc->retries) {
                size_t len = strlen(e.message);
                snprintf(e.message + len, sizeof e.message - len, " (after %u attempts)",
                         attempt);
            }
            nfailed++;
            if (on_fail)
                on_fail(fail_arg, &e);
            break;
        }
    }
    if (dl)
        atomic_store(dl, 0);
    return nfailed;
}

int rp__worker_init(rp_ctx_t *ctx, rp_init_fn fn, const void *arg, rp_error_t *err)
{
    if (!fn)
        return RP_OK;
    ctx->index = 0;
    ctx->index_base = 0;
    ctx->raised = false;
    ctx->output_set = false;
    int rc = fn(arg, ctx);
    if (rc == 0)
        return RP_OK;
    if (err)
        rp__worker_fill_failure(err, ctx, RP_EINIT, rc, 0, "initializer");
    return RP_EINIT;
}

void rp__error_set(rp_error_t *e, int code, size_t index, int worker, const char *host,
                   const char *fmt, ...)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->index = index;
    e->worker = worker;
    e->exit_status = -1;
    if (host) {
        strncpy(e->host, host, sizeof e->host - 1);
        e->host[sizeof e->host - 1] = '\0';
    }
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->message, sizeof e->message, fmt, ap);
        va_end(ap);
    }
}

int rp_raise(rp_ctx_t *ctx, int code, const char *fmt, ...)
{
    if (code == 0)
        code = RP_ETASK;
    if (!ctx)
        return code;
    ctx->raised = true;
    ctx->raised_code = code;
    ctx->message[0] = '\0';
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(ctx->message, sizeof ctx->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

int rp_raise_str(rp_ctx_t *ctx, int code, const char *msg)
{
    return msg ? rp_raise(ctx, code, "%s", msg) : rp_raise(ctx, code, NULL);
}

int rp_ctx_worker(const rp_ctx_t *ctx)
{
    return ctx ? ctx->worker : -1;
}

size_t rp_ctx_index(const rp_ctx_t *ctx)
{
    return ctx ? ctx->index + ctx->index_base : 0;
}

void *rp_output(rp_ctx_t *ctx, size_t size)
{
    if (!ctx || !ctx->output)
        return NULL;
    void *p = ctx->output(ctx->output_arg, ctx->index, size);
    if (p)
        ctx->output_set = true;
    return p;
}
