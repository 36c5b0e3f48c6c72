/* Waiting for any of several results, and callbacks added after submission
 * (rp_result_wait_any, rp_result_wait_all, rp_result_on_ready).
 *
 * A result that someone watches is finalized on the pool's thread: its
 * completion is reported there (rp__pool_notify, once), whoever completes it
 * (the ledger's counting, or a backend's worker through ops->watch). Finalization
 * sets READY under the result's lock, sets and wakes the word of each thread in
 * rp_result_wait_any (rp__watchers_ready), then runs the rp_result_on_ready
 * callbacks (rp__watchers_run). A waiter sleeps on its own futex word: no polling,
 * however many results it waits for.
 *
 * Watching races with completion: the watcher sets `watched`, then looks at the
 * done word; the completer sets the done word, then looks at `watched` (both
 * sequentially consistent). At least one of them sees the other and reports the
 * job to the pool thread; rp__pool_notify makes a second report harmless. */
#include "result.h"

#include <math.h>
#include <stdlib.h>

void rp__result_watch(rp_result_t *r)
{
    if (rp__result_is_ready(r) || atomic_load(&r->watched))
        return;
    atomic_store(&r->watched, true);
    if (!r->submitted || !rp__result_ops_enter(r))
        return; /* ready, or being finalized by another thread: it wakes the watchers */
    rp_pool_t *pool = r->pool;
    if (pool->ops->watch)
        pool->ops->watch(pool, &r->job);
    if (rp__result_job_done(r))
        rp__pool_notify(pool, r); /* completed before the watch took hold */
    rp__result_ops_leave(r);
}

struct rp__watcher *rp__watchers_ready(rp_result_t *r)
{
    struct rp__watcher *cbs = NULL, **tail = &cbs, **p = &r->watchers;
    while (*p) {
        struct rp__watcher *w = *p;
        if (w->fn) { /* a callback: leaves the list, runs after READY */
            *p = w->next;
            w->next = NULL;
            *tail = w;
            tail = &w->next;
        } else { /* a waiter: it removes its entry itself */
            atomic_store(w->word, 1);
            rp__futex_wake(w->word, 1);
            p = &w->next;
        }
    }
    return cbs;
}

void rp__watchers_run(rp_result_t *r, struct rp__watcher *list)
{
    while (list) {
        struct rp__watcher *w = list;
        list = w->next;
        w->fn(r, w->userdata);
        free(w);
    }
}

int rp_result_on_ready(rp_result_t *res, rp_callback_fn fn, void *userdata)
{
    if (!res || !fn)
        return RP_EINVAL;
    struct rp__watcher *w = calloc(1, sizeof *w);
    if (!w)
        return RP_ENOMEM;
    w->fn = fn;
    w->userdata = userdata;
    pthread_mutex_lock(&res->lock);
    bool ready = rp__result_is_ready(res);
    if (!ready) { /* at the end: callbacks run in the order added */
        struct rp__watcher **p = &res->watchers;
        while (*p)
            p = &(*p)->next;
        *p = w;
    }
    pthread_mutex_unlock(&res->lock);
    if (ready) { /* at once, here: a ready result no longer has a pool thread to go to */
        fn(res, userdata);
        free(w);
        return RP_OK;
    }
    rp__result_hold(res);
    rp__result_watch(res);
    rp__result_release(res);
    return RP_OK;
}

/* Takes waiter w off r's list (it may not be on it: r was ready). */
static void unwatch(rp_result_t *r, struct rp__watcher *w)
{
    pthread_mutex_lock(&r->lock);
    for (struct rp__watcher **p = &r->watchers; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    pthread_mutex_unlock(&r->lock);
}

/* The first non-NULL result of res[0..n) that is ready (finalizing it if a
 * waiter would), or n. */
static size_t first_ready(rp_result_t *const *res, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (res[i] && rp_result_ready(res[i]))
            return i;
    return n;
}

/* Whether every non-NULL result of res[0..n) belongs to the pool whose callback
 * this thread runs: watched, they could only become ready once it returned. */
static bool all_serviced_here(rp_result_t *const *res, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (res[i] && !rp__pool_serviced_here(res[i]->pool))
            return false;
    return true;
}

int rp_result_wait_any(rp_result_t *const *res, size_t n, double timeout, size_t *index)
{
    if (!res || n == 0)
        return RP_EINVAL;
    size_t live = 0;
    for (size_t i = 0; i < n; i++)
        live += res[i] != NULL;
    if (live == 0)
        return RP_EINVAL;
    double deadline = rp__deadline(timeout);
    size_t got = first_ready(res, n);
    if (got == n && rp__now() < deadline && all_serviced_here(res, n))
        return RP_EDEADLK;
    if (got == n && rp__now() < deadline) {
        struct rp__watcher *ws = calloc(n, sizeof *ws);
        if (!ws)
            return RP_ENOMEM;
        _Atomic uint32_t word = 0;
        for (size_t i = 0; i < n; i++) {
            rp_result_t *r = res[i];
            if (!r)
                continue;
            rp__result_hold(r);
            ws[i].word = &word;
            pthread_mutex_lock(&r->lock);
            if (rp__result_is_ready(r)) {
                atomic_store(&word, 1);
            } else {
                ws[i].next = r->watchers;
                r->watchers = &ws[i];
            }
            pthread_mutex_unlock(&r->lock);
            rp__result_watch(r);
        }
        for (;;) {
            got = first_ready(res, n);
            double now = rp__now();
            if (got < n || now >= deadline)
                break;
            if (atomic_exchange(&word, 0) == 0)
                rp__futex_wait(&word, 0, isinf(deadline) ? -1.0 : deadline - now);
        }
        for (size_t i = 0; i < n; i++)
            if (res[i]) {
                unwatch(res[i], &ws[i]);
                rp__result_release(res[i]);
            }
        free(ws);
    }
    if (got == n)
        return RP_ETIMEDOUT;
    if (index)
        *index = got;
    return RP_OK;
}

int rp_result_wait_all(rp_result_t *const *res, size_t n, double timeout)
{
    if (!res || n == 0)
        return RP_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (!res[i])
            return RP_EINVAL;
    double deadline = rp__deadline(timeout);
    for (size_t i = 0; i < n; i++) {
        double left = isinf(deadline) ? RP_FOREVER : fmax(0, deadline - rp__now());
        int rc = rp_result_wait(res[i], left);
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}
