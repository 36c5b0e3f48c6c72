/* The worker side shared by both backends: run a chunk of items, turn a task's
 * non-zero return into an rp_error_t, and the calls a running task can make
 * (rp_raise, rp_ctx_*, rp_output). This runs for every item, so the success path
 * is a store, a call and a test. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void fill_failure(rp_error_t *e, rp_ctx_t *ctx, int code, int rc, size_t index,
                         const char *what)
{
    rp__error_set(e, code, index, ctx->worker, ctx->host, "%s", "");
    e->task_code = rc;
    if (ctx->raised)
        memcpy(e->message, ctx->message, sizeof e->message);
    else
        snprintf(e->message, sizeof e->message, "%s returned %d", what, rc);
    e->message[sizeof e->message - 1] = '\0';
}

size_t rp__worker_run(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                      char *out, size_t out_size, size_t start, size_t count,
                      _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg)
{
    size_t nfailed = 0;
    for (size_t k = 0; k < count; k++) {
        size_t index = start + k;
        if (cur)
            atomic_store_explicit(cur, index, memory_order_release);
        ctx->index = index;
        ctx->raised = false;
        ctx->output_set = false;
        int rc = fn(in + k * in_size, out ? out + k * out_size : NULL, ctx);
        if (__builtin_expect(rc != 0, 0)) {
            rp_error_t e;
            fill_failure(&e, ctx, RP_ETASK, rc, index, "task");
            nfailed++;
            if (on_fail)
                on_fail(fail_arg, &e);
        }
    }
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
        fill_failure(err, ctx, RP_EINIT, rc, 0, "initializer");
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
