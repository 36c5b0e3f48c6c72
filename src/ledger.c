/* The job ledger: what the backends report, and what it means for the caller.
 *
 * A backend reports outputs (rp__job_deliver, rp__job_deliver_var), failures
 * (rp__job_fail*), items that will never run (rp__job_cancel), how many items are
 * processed (rp__job_processed) and dead workers (rp__job_worker_died). Here they
 * become the caller's outputs in input order, failures by index, arrivals for an
 * iterator, the job's completion, the callback's turn on the pool thread, and
 * the one dead-worker policy of both backends: the item a worker was running
 * fails with RP_EWORKER and its signal or exit status; the items it held but had
 * not started run again on other workers; when the pool is being terminated, or
 * the job canceled (rp_result_cancel), they are canceled instead. */
#include "result.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static inline rp_result_t *job_result(struct rp__job *job)
{
    return (rp_result_t *)job;
}

/* ---- arrivals (RP__JOB_TRACK) --------------------------------------------------------- */

/* Queues [a, b) for the iterator and wakes it. */
static void arrive(rp_result_t *r, size_t a, size_t b)
{
    if (!(r->job.flags & RP__JOB_TRACK) || b <= a)
        return;
    pthread_mutex_lock(&r->lock);
    struct rp__arrivals *q = &r->arr;
    if (q->len == q->cap) {
        size_t cap = q->cap ? 2 * q->cap : 16;
        struct rp__range *v = malloc(cap * sizeof *v);
        if (v) {
            for (size_t i = 0; i < q->len; i++)
                v[i] = q->v[(q->head + i) % q->cap];
            free(q->v);
            q->v = v;
            q->cap = cap;
            q->head = 0;
        }
    }
    if (q->len < q->cap) {
        q->v[(q->head + q->len) % q->cap] = (struct rp__range){ a, b };
        q->len++;
    } else {
        q->lost = true; /* out of memory: the iterator gets them at completion */
    }
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

size_t rp__result_take_arrivals(rp_result_t *r, size_t *idx, size_t max)
{
    size_t got = 0;
    pthread_mutex_lock(&r->lock);
    struct rp__arrivals *q = &r->arr;
    while (got < max && q->len > 0) {
        struct rp__range *rg = &q->v[q->head];
        idx[got++] = rg->a++;
        if (rg->a == rg->b) {
            q->head = (q->head + 1) % q->cap;
            q->len--;
        }
    }
    pthread_mutex_unlock(&r->lock);
    return got;
}

/* ---- outputs ----------------------------------------------------------------------------- */

void rp__job_deliver(struct rp__job *job, size_t a, size_t b, const void *src)
{
    if (b <= a || b > job->n)
        return;
    if (src && job->out_size && !(job->flags & RP__JOB_VAR)) {
        char *dst = job->out + a * job->out_size;
        if (dst != src)
            memcpy(dst, src, (b - a) * job->out_size);
    }
    arrive(job_result(job), a, b);
}

int rp__job_deliver_var(struct rp__job *job, size_t i, const void *data, size_t size)
{
    if (!(job->flags & RP__JOB_VAR) || i >= job->n || !job->out)
        return RP_EINVAL;
    rp__varslot *slot = (rp__varslot *)job->out + i;
    void *copy = malloc(size ? size : 1);
    if (!copy) {
        rp_error_t e;
        rp__error_set(&e, RP_ENOMEM, i, -1, NULL,
                      "out of memory receiving a variable-size output of %zu bytes", size);
        rp__job_fail(job, &e);
        return RP_ENOMEM;
    }
    if (size)
        memcpy(copy, data, size);
    free(slot->data);
    slot->data = copy;
    slot->size = size;
    return RP_OK;
}

/* ---- counting and completion --------------------------------------------------------- */

/* Every item is processed. A job with callbacks is finalized on the pool thread
 * (the callback runs there); any other one by whoever waits for it. A waiter may
 * see the done word set and free r before rp__done_set has read its sleepers, so
 * r is held until the word is set and its sleepers are woken. */
static void complete(rp_result_t *r)
{
    struct rp__job *job = &r->job;
    rp__result_hold(r);
    if (job->flags & RP__JOB_TRACK) { /* an iterator waiting for arrivals */
        pthread_mutex_lock(&r->lock);
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    rp__done_set(atomic_load(&job->done));
    if ((job->flags & RP__JOB_NOTIFY) || atomic_load(&r->watched))
        rp__pool_notify(r->pool, r); /* the result is READY only after its callback */
    rp__result_release(r);
}

bool rp__job_processed(struct rp__job *job, size_t count)
{
    if (count == 0)
        return false;
    uint64_t before = atomic_fetch_add(&job->processed, count);
    if (before + count < job->n || before >= job->n)
        return false;
    complete(job_result(job));
    return true;
}

void rp__job_completed(struct rp__job *job)
{
    rp_result_t *r = job_result(job);
    pthread_mutex_lock(&r->lock);
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if ((job->flags & RP__JOB_NOTIFY) || atomic_load(&r->watched))
        rp__pool_notify(r->pool, r);
}

void rp__job_move_done(struct rp__job *job, rp__done *d)
{
    rp__done *old = atomic_exchange(&job->done, d);
    /* Paired with the waiter's sleepers++ then re-read of job->done: either it
     * sees the new word, or we see it counted on the old one and wake it. */
    if (old && old != d && atomic_load(&old->sleepers) > 0)
        rp__futex_wake(&old->word, INT_MAX);
}

/* ---- failures the core decides -------------------------------------------------------------- */

void rp__job_cancel(struct rp__job *job, size_t a, size_t b, bool count)
{
    if (b <= a)
        return;
    rp_result_t *r = job_result(job);
    rp_error_t e;
    rp__cancel_error(&e, a, -1, r->pool ? r->pool->host : NULL,
                     rp__pool_terminating(r->pool) || !rp__job_canceled(job));
    rp__job_fail_range(job, a, b - a, &e);
    arrive(r, a, b);
    if (count)
        rp__job_processed(job, b - a);
}

void rp__describe_status(char *buf, size_t len, int status)
{
    if (status < 0) {
        snprintf(buf, len, "ended (how is not known)");
    } else if (WIFSIGNALED(status)) {
        const char *name = strsignal(WTERMSIG(status));
        snprintf(buf, len, "was killed by signal %d (%s)", WTERMSIG(status),
                 name ? name : "unknown signal");
    } else if (WIFEXITED(status)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    } else {
        snprintf(buf, len, "stopped (status 0x%x)", (unsigned)status);
    }
}

void rp__job_worker_died(struct rp__job *job, const rp__death *d, size_t a, size_t running,
                         size_t b, bool count, size_t *ra, size_t *rb)
{
    rp_result_t *r = job_result(job);
    if (running < a)
        running = a;
    if (running > b)
        running = b;
    *ra = *rb = b;
    int cancel = atomic_load(&job->cancel);
    if (rp__pool_terminating(r->pool)) {
        rp__job_cancel(job, running, b, count);
        return;
    }
    if (running == b)
        return; /* between items: nothing was running */
    if (cancel & RP_CANCEL_KILL) { /* killed by rp_result_cancel: canceled, all of it */
        rp_error_t e;
        rp__cancel_error(&e, running, d->worker, d->host, false);
        snprintf(e.message, sizeof e.message,
                 "canceled by rp_result_cancel (RP_CANCEL_KILL): worker %d was killed while "
                 "running item %zu", d->worker, job->index_base + running);
        rp__job_fail(job, &e);
        arrive(r, running, running + 1);
        rp__job_cancel(job, running + 1, b, false);
        if (count)
            rp__job_processed(job, b - running);
        return;
    }
    if ((job->flags & RP__JOB_VAR) && job->out) {
        rp__varslot *slot = (rp__varslot *)job->out + running;
        free(slot->data); /* an output the dead item may have begun */
        slot->data = NULL;
        slot->size = 0;
    }
    unsigned attempts = 1;
    if (cancel && d->requeue) { /* it had finished, and the rest is canceled */
        rp__job_cancel(job, running, b, count);
        return;
    }
    bool batch = (job->flags & RP__JOB_BATCH) != 0;
    if (!cancel && !batch && (d->requeue || rp__job_retry(r, running, &attempts))) {
        rp__trace("item %zu runs again (worker %d ended in it%s)", running, d->worker,
                  d->requeue ? " after it had finished" : "");
        *ra = running; /* it runs again, with the rest */
        return;
    }
    char how[128], where[160], tries[48] = "";
    rp__describe_status(how, sizeof how, d->status);
    if (d->rank >= 0)
        snprintf(where, sizeof where, "rank %d on %s, pid %d", d->rank,
                 d->host ? d->host : "?", d->pid);
    else
        snprintf(where, sizeof where, "pid %d", d->pid);
    if (job->retries > 0)
        snprintf(tries, sizeof tries, " (after %u attempts)", attempts);
    rp_error_t e;
    /* A batch task runs items [running, b) in one call: which of them it was on is
     * not known, so they all fail. */
    size_t end = batch ? b : running + 1;
    char items[96] = "";
    if (end > running + 1)
        snprintf(items, sizeof items, " (a batch task on items %zu to %zu)", running, end - 1);
    if (d->timeout > 0)
        rp__error_set(&e, RP_ETASKTIMEOUT, running, d->worker, d->host,
                      "item %zu ran past its time limit of %g s on worker %d (%s%s%s): "
                      "the worker was killed%s", job->index_base + running, d->timeout,
                      d->worker, where,
                      d->rank >= 0 ? "" : " on ", d->rank >= 0 ? "" : d->host ? d->host : "?",
                      tries);
    else
        rp__error_set(&e, RP_EWORKER, running, d->worker, d->host,
                      "worker %d (%s) %s while running item %zu%s%s%s%s", d->worker, where,
                      how, job->index_base + running, items, d->why ? ": " : "",
                      d->why ? d->why : "", tries);
    if (d->timeout <= 0 && d->status >= 0 && WIFSIGNALED(d->status))
        e.signal = WTERMSIG(d->status);
    if (d->timeout <= 0 && d->status >= 0 && WIFEXITED(d->status))
        e.exit_status = WEXITSTATUS(d->status);
    rp__trace("%s", e.message);
    if (end > running + 1)
        rp__job_fail_range(job, running, end - running, &e);
    else
        rp__job_fail(job, &e);
    arrive(r, running, end);
    if (cancel) { /* canceled meanwhile: the rest does not run again */
        if (end < b)
            rp__job_cancel(job, end, b, false);
        if (count)
            rp__job_processed(job, b - running);
        return;
    }
    if (count)
        rp__job_processed(job, end - running);
    *ra = end;
}
