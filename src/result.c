/* AsyncResult: state, waiting, failures sorted by index, callbacks, readiness.
 *
 * Life cycle (doc/internals.md): a result is created and linked into pool->live,
 * its job submitted to the backend. It is *finalized* exactly once: the backend
 * collects what it has not delivered yet (ops->collect) and releases the job,
 * failures are sorted, the callback runs (NOTIFY jobs), the result is unlinked
 * from the pool, marked READY, and waiters wake. Jobs without callbacks are
 * finalized lazily by the first thread that sees the job's done word set; NOTIFY
 * jobs on the pool thread (rp__pool_service). A READY result never touches the
 * pool again, so it outlives rp_pool_free.
 *
 * Waiting: a thread spins briefly on the done word (or lets the backend move its
 * messages, ops->drive), then sleeps on it with a futex. The word may live in
 * memory the backend shares with its workers (rp__job_move_done).
 *
 * The ops gate: threads calling ops->drive/collect/progress count themselves in
 * `opsbusy`; the finalizer sets FINALIZING, then waits for `opsbusy` to drain
 * before it releases the job, so no backend call ever sees a released job. */
#include "result.h"
#include "monitor.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline rp_result_t *job_result(struct rp__job *job)
{
    return (rp_result_t *)job;
}

/* ---- the ops gate ------------------------------------------------------------ */

static bool ops_enter(rp_result_t *r)
{
    atomic_fetch_add(&r->opsbusy, 1);
    if (atomic_load(&r->state) != RP__RES_PENDING) {
        atomic_fetch_sub(&r->opsbusy, 1);
        return false;
    }
    return true;
}

static void ops_leave(rp_result_t *r)
{
    atomic_fetch_sub(&r->opsbusy, 1);
}

bool rp__result_ops_enter(rp_result_t *r)
{
    return ops_enter(r);
}

void rp__result_ops_leave(rp_result_t *r)
{
    ops_leave(r);
}

/* ---- failures ---------------------------------------------------------------- */

static void add_fail(rp_result_t *r, size_t start, size_t count, const rp_error_t *e)
{
    if (count == 0)
        return;
    pthread_mutex_lock(&r->lock);
    r->nerrors += count;
    if (r->nfails == r->capfails) {
        size_t cap = r->capfails ? 2 * r->capfails : 4;
        rp__fail *f = realloc(r->fails, cap * sizeof *f);
        if (!f) {
            /* Counted, but no record: rp_result_error() returns NULL for it. */
            pthread_mutex_unlock(&r->lock);
            return;
        }
        r->fails = f;
        r->capfails = cap;
    }
    rp__fail *f = &r->fails[r->nfails];
    f->start = start;
    f->count = count;
    f->e = *e;
    f->e.index = start;
    r->nfails++;
    if (r->job.flags & RP__JOB_TRACK) {
        if (!r->failidx && r->job.n > 0)
            r->failidx = calloc(r->job.n, sizeof *r->failidx);
        if (r->failidx)
            for (size_t i = start; i < start + count && i < r->job.n; i++)
                r->failidx[i] = r->nfails;
    }
    pthread_mutex_unlock(&r->lock);
}

void rp__job_fail(struct rp__job *job, const rp_error_t *e)
{
    if (!job || !e)
        return;
    add_fail(job_result(job), e->index, 1, e);
}

void rp__job_fail_range(struct rp__job *job, size_t start, size_t count, const rp_error_t *e)
{
    if (!job || !e)
        return;
    add_fail(job_result(job), start, count, e);
}

static int cmp_fail(const void *a, const void *b)
{
    const rp__fail *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

/* Under r->lock: sorts the failures and builds the cumulative counts. */
static void sort_fails(rp_result_t *r)
{
    if (r->sorted)
        return;
    if (r->nfails > 1)
        qsort(r->fails, r->nfails, sizeof *r->fails, cmp_fail);
    bool ranges = false;
    for (size_t k = 0; k < r->nfails; k++)
        ranges |= r->fails[k].count != 1;
    if (ranges) {
        r->cum = malloc(r->nfails * sizeof *r->cum);
        if (r->cum) {
            size_t c = 0;
            for (size_t k = 0; k < r->nfails; k++) {
                r->cum[k] = c;
                c += r->fails[k].count;
            }
        }
    }
    free(r->failidx);
    r->failidx = NULL;
    r->sorted = true;
}

/* Under r->lock, sorted: the record holding item index, or NULL. */
static const rp__fail *find_sorted(const rp_result_t *r, size_t index)
{
    size_t lo = 0, hi = r->nfails;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const rp__fail *f = &r->fails[mid];
        if (index < f->start)
            hi = mid;
        else if (index - f->start >= f->count)
            lo = mid + 1;
        else
            return f;
    }
    return NULL;
}

bool rp__result_find_error(rp_result_t *r, size_t index, rp_error_t *e)
{
    const rp__fail *f = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->sorted) {
        f = find_sorted(r, index);
    } else if (r->failidx) {
        if (index < r->job.n && r->failidx[index])
            f = &r->fails[r->failidx[index] - 1];
    } else {
        for (size_t k = 0; k < r->nfails && !f; k++)
            if (index >= r->fails[k].start && index - r->fails[k].start < r->fails[k].count)
                f = &r->fails[k];
    }
    if (f && e) {
        *e = f->e;
        e->index = index;
    }
    pthread_mutex_unlock(&r->lock);
    return f != NULL;
}

/* ---- finalization -------------------------------------------------------------- */

/* The pool whose callback this thread runs, if any (saved and restored around
 * each callback: one may run another pool's empty map, whose callback runs at once). */
static _Thread_local const rp_pool_t *callback_pool;

bool rp__in_callback_of(const rp_pool_t *pool)
{
    return pool && callback_pool == pool;
}

static void wait_ready_locked(rp_result_t *r)
{
    while (atomic_load(&r->state) != RP__RES_READY)
        pthread_cond_wait(&r->cond, &r->lock);
}

/* RP__JOB_VAR: a failed item has no output, whatever it set before failing. */
static void clear_failed_slots(rp_result_t *r)
{
    rp__varslot *slots = (rp__varslot *)r->job.out;
    for (size_t k = 0; k < r->nfails; k++) {
        const rp__fail *f = &r->fails[k];
        for (size_t i = f->start; i < f->start + f->count && i < r->job.n; i++) {
            free(slots[i].data);
            slots[i].data = NULL;
            slots[i].size = 0;
        }
    }
}

static void finalize(rp_result_t *r)
{
    /* (READY is set under the lock, for the condition's waiters; the step to
     * FINALIZING needs no lock: whoever wins it finalizes) */
    int pending = RP__RES_PENDING;
    if (!atomic_compare_exchange_strong(&r->state, &pending, RP__RES_FINALIZING)) {
        pthread_mutex_lock(&r->lock);
        wait_ready_locked(r);
        pthread_mutex_unlock(&r->lock);
        return;
    }

    /* Threads still inside a backend call for this job are about to return (the
     * job is done); finish() frees the backend's state, so let them out first. */
    while (atomic_load(&r->opsbusy) != 0)
        sched_yield();

    rp_pool_t *pool = r->pool;
    if (r->submitted) {
        if (pool->ops->collect)
            pool->ops->collect(pool, &r->job, true, 0);
        pool->ops->release(pool, &r->job);
    }
    if (r->monitor) /* the journal's last records, the caller's indices; the bar */
        rp__monitor_final(r);

    /* (the job is complete and released: no failure is added any more, and
     * with none there is nothing to sort) */
    if (r->nfails > 0 || r->failidx) {
        pthread_mutex_lock(&r->lock);
        sort_fails(r);
        pthread_mutex_unlock(&r->lock);
    }
    if ((r->job.flags & RP__JOB_VAR) && r->job.out)
        clear_failed_slots(r);

    if (r->opts.callback || r->opts.error_callback) {
        r->cb_thread = pthread_self();
        atomic_store(&r->in_callback, true);
        const rp_pool_t *outer = callback_pool;
        callback_pool = pool;
        if (r->nerrors == 0) {
            if (r->opts.callback)
                r->opts.callback(r, r->opts.userdata);
        } else if (r->opts.error_callback) {
            rp_error_t e;
            if (r->nfails > 0) {
                e = r->fails[0].e;
            } else {
                memset(&e, 0, sizeof e);
                e.code = RP_ENOMEM;
                e.worker = -1;
                e.exit_status = -1;
            }
            r->opts.error_callback(&e, r->opts.userdata);
        }
        callback_pool = outer;
        atomic_store(&r->in_callback, false);
    }

    if (pool)
        rp__pool_unlink(pool, r);
    /* Read before READY: once READY, a waiter may free r at any moment. Only the
     * callback (this thread) sets it. */
    bool release = atomic_load(&r->free_pending);
    pthread_mutex_lock(&r->lock);
    bool has_cbs = false;
    for (struct rp__watcher *w = r->watchers; w && !has_cbs; w = w->next)
        has_cbs = w->fn != NULL;
    if (has_cbs)
        rp__result_hold(r); /* (before READY) until its rp_result_on_ready callbacks return */
    atomic_store(&r->state, RP__RES_READY);
    pthread_cond_broadcast(&r->cond);
    struct rp__watcher *ready_cbs = rp__watchers_ready(r); /* after READY: waiters look */
    pthread_mutex_unlock(&r->lock);
    if (has_cbs) {
        const rp_pool_t *outer = callback_pool;
        callback_pool = pool;
        rp__watchers_run(r, ready_cbs);
        callback_pool = outer;
        rp__result_release(r);
    }
    if (release)
        rp__result_release(r);
}

void rp__result_finalize(rp_result_t *r)
{
    finalize(r);
}

/* ---- creation ------------------------------------------------------------------ */

/* The record of the last result destroyed, kept for the next submit: a program
 * of back-to-back rp_apply calls reuses one record instead of a calloc and a
 * free per call. Only a record nobody references any more (its last reference
 * dropped) is kept; at most one, so nothing grows. A record's lock and condition
 * variable are initialised once, when it is allocated, and kept with it (unlocked,
 * nobody waiting: fit for the next result as they are); they are destroyed only
 * when the record is freed. */
static _Atomic(rp_result_t *) spare_result;
/* record_new clears around the lock and the condition variable: nothing else may lie
 * between them and the state that follows them */
_Static_assert(offsetof(rp_result_t, cond) >= offsetof(rp_result_t, lock) &&
               offsetof(rp_result_t, state) >= offsetof(rp_result_t, cond) &&
               offsetof(rp_result_t, state) - offsetof(rp_result_t, lock) <=
                   sizeof(pthread_mutex_t) + sizeof(pthread_cond_t) + sizeof(int),
               "rp_result_t: lock, cond and state must be adjacent");

static rp_result_t *record_new(void)
{
    rp_result_t *r = atomic_exchange_explicit(&spare_result, NULL, memory_order_acquire);
    if (r) { /* everything but the lock and the condition variable starts at zero */
        memset(r, 0, offsetof(rp_result_t, lock));
        memset((char *)r + offsetof(rp_result_t, state), 0,
               sizeof *r - offsetof(rp_result_t, state));
        return r;
    }
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    rp__cond_init_monotonic(&r->cond);
    pthread_mutex_init(&r->lock, NULL);
    return r;
}

static void record_free(rp_result_t *r)
{
    rp_result_t *old = atomic_exchange_explicit(&spare_result, r, memory_order_acq_rel);
    if (old) {
        pthread_mutex_destroy(&old->lock);
        pthread_cond_destroy(&old->cond);
        free(old);
    }
}

static void destroy(rp_result_t *r)
{
    free(r->fails);
    free(r->cum);
    free(r->failidx);
    for (size_t k = 0; k < r->memo_cap; k++)
        if (r->memo_key[k])
            free(r->memo_val[k]);
    free(r->memo_key);
    free(r->memo_val);
    free(r->arr.v);
    rp__attempts_free(r);
    rp__monitor_free(r->monitor);
    record_free(r);
}

int rp__result_submit(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                      size_t in_size, void *out, size_t out_size,
                      const rp_map_opts_t *opts, unsigned flags, rp_result_t **res)
{
    if (opts && opts->journal) /* only the map calls keep one (journal.c) */
        return RP_EINVAL;
    return rp__result_submit_at(pool, fn, in, n, in_size, out, out_size, opts, flags, 0,
                                res);
}

int rp__result_submit_at(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                         size_t in_size, void *out, size_t out_size,
                         const rp_map_opts_t *opts, unsigned flags, size_t index_base,
                         rp_result_t **res)
{
    return rp__result_submit_monitored(pool, fn, in, n, in_size, out, out_size, opts, flags,
                                       index_base, NULL, res);
}

int rp__result_submit_monitored(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                                size_t in_size, void *out, size_t out_size,
                                const rp_map_opts_t *opts, unsigned flags, size_t index_base,
                                struct rp__monitorres *monitor, rp_result_t **res)
{
    rp_result_t *r = record_new();
    if (!r) {
        rp__monitor_free(monitor);
        return RP_ENOMEM;
    }
    r->monitor = monitor;
    atomic_init(&r->state, RP__RES_PENDING);
    atomic_init(&r->refs, 1);
    atomic_init(&r->opsbusy, 0);
    atomic_init(&r->in_callback, false);
    atomic_init(&r->free_pending, false);
    if (opts)
        r->opts = *opts;
    if (r->opts.callback || r->opts.error_callback)
        flags |= RP__JOB_NOTIFY;
    r->pool = pool;
    r->job.fn = fn;
    r->job.in = in;
    r->job.in_size = in_size;
    r->job.out = out_size ? out : NULL;
    r->job.out_size = out_size;
    r->job.n = n;
    r->job.chunksize = r->opts.chunksize;
    r->job.flags = flags;
    r->job.index_base = index_base;
    r->job.result = r;
    if (rp__job_control(r, opts) != RP_OK) {
        destroy(r);
        return RP_EINVAL;
    }
    atomic_init(&r->job.done, &r->job.own_done);
    atomic_init(&r->job.processed, 0);

    int rc = rp__monitor_attach(r, opts);
    if (rc != RP_OK) {
        destroy(r);
        return rc;
    }
    rc = rp__pool_enter_submit(pool, r);
    if (rc != RP_OK) {
        destroy(r);
        return rc;
    }
    if (n > 0) {
        /* Set first: the job may complete, and be finalized on the backend's
         * thread, before submit() even returns. Nobody sees r before the
         * submit gate is left (close and terminate wait for it). */
        r->submitted = true;
        rc = pool->ops->submit(pool, &r->job);
        if (rc != RP_OK)
            r->submitted = false;
    }
    rp__pool_leave_submit(pool);
    if (rc != RP_OK) {
        rp__pool_unlink(pool, r);
        destroy(r);
        return rc;
    }
    if (n == 0)
        finalize(r); /* nothing to run: ready now, callback included (on this
                        thread); until then waiters use the condition variable */
    else if (r->monitor)
        rp__monitor_add(pool, r); /* not watched (no thread): written at the end */
    *res = r;
    return RP_OK;
}

void rp__result_hold(rp_result_t *r)
{
    atomic_fetch_add(&r->refs, 1);
}

void rp__result_release(rp_result_t *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1)
        destroy(r);
}

/* ---- waiting --------------------------------------------------------------------- */

static bool is_ready(const rp_result_t *r)
{
    return atomic_load_explicit(&((rp_result_t *)r)->state, memory_order_acquire) ==
           RP__RES_READY;
}

bool rp__result_is_ready(const rp_result_t *r)
{
    return is_ready(r);
}

/* Finalized on the pool thread only: with callbacks (RP__JOB_NOTIFY), or watched
 * (rp_result_on_ready, rp_result_wait_any). Waiters sleep on the condition. */
static bool pool_finalizes(const rp_result_t *r)
{
    return (r->job.flags & RP__JOB_NOTIFY) || atomic_load(&((rp_result_t *)r)->watched);
}

/* True when called from inside this result's own callback: its outputs and
 * failures are final, so waiting would only deadlock. */
static bool in_own_callback(const rp_result_t *r)
{
    return atomic_load(&((rp_result_t *)r)->in_callback) &&
           pthread_equal(r->cb_thread, pthread_self());
}

/* Waits on the condition variable until READY or the deadline (timeout as read
 * by rp__timeout: RP_FOREVER or 0 to 1e9 seconds). */
static int wait_cond(rp_result_t *r, double timeout)
{
    int rc = RP_OK;
    pthread_mutex_lock(&r->lock);
    if (timeout == RP_FOREVER) {
        wait_ready_locked(r);
    } else {
        struct timespec ts;
        rp__abstime(&ts, timeout);
        while (atomic_load(&r->state) != RP__RES_READY) {
            if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == ETIMEDOUT) {
                if (atomic_load(&r->state) != RP__RES_READY)
                    rc = RP_ETIMEDOUT;
                break;
            }
        }
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

#define SPIN_SECONDS 50e-6 /* a futex wake costs ~40 us: spin a little first */

static bool job_done(const rp_result_t *r)
{
    return rp__done_is(atomic_load(&((rp_result_t *)r)->job.done));
}

bool rp__result_job_done(const rp_result_t *r)
{
    return job_done(r);
}

/* Spins on the done word until it is set or spin_until, while the job runs on
 * another CPU (ops->runs_on). A job waiting for this very CPU gets it: asleep
 * (woken, the scheduler may give this thread a CPU of its own), or, when the
 * pool has no other CPU, by yielding (cheaper than a sleep and a wake). */
static void spin_done(rp_result_t *r, double spin_until)
{
    rp_pool_t *pool = r->pool;
    for (unsigned i = 1; !job_done(r); i++) {
        rp__cpu_relax();
        if ((i & 15) != 0)
            continue;
        int at = pool->ops->runs_on ? pool->ops->runs_on(pool, &r->job) : RP__RUNS_ELSEWHERE;
        if (at == RP__RUNS_HERE)
            break;
        if (at == RP__RUNS_HERE_ONLY)
            sched_yield();
        if ((i & 63) == 0 && rp__now() >= spin_until)
            break;
    }
}

/* Waits until the job's done word is set, or the deadline. First briefly on the
 * CPU (letting the backend drive its messages when it can), then asleep. */
static int wait_done(rp_result_t *r, double deadline)
{
    struct rp__job *job = &r->job;
    rp_pool_t *pool = r->pool;
    double now = rp__now(), spin_until = fmin(deadline, now + SPIN_SECONDS);
    if (pool->ops->drive)
        pool->ops->drive(pool, job, deadline);
    else
        spin_done(r, spin_until);
    for (;;) {
        rp__done *d = atomic_load(&job->done);
        if (rp__done_is(d))
            return RP_OK;
        now = rp__now();
        if (now >= deadline)
            return RP_ETIMEDOUT;
        atomic_fetch_add(&d->sleepers, 1);
        /* the word may have moved (rp__job_move_done) before we were counted */
        if (!rp__done_is(d) && atomic_load(&job->done) == d)
            rp__futex_wait(&d->word, 0, isinf(deadline) ? -1.0 : deadline - now);
        atomic_fetch_sub(&d->sleepers, 1);
    }
}

int rp__result_wait(rp_result_t *r, double timeout)
{
    if (is_ready(r) || in_own_callback(r))
        return RP_OK;
    timeout = rp__timeout(timeout);
    /* Only this thread would complete it, once the callback it runs returns. */
    if (timeout != 0 && pool_finalizes(r) && rp__pool_serviced_here(r->pool))
        return RP_EDEADLK;
    if (pool_finalizes(r) || !r->submitted)
        return wait_cond(r, timeout);
    if (!ops_enter(r))
        return wait_cond(r, timeout); /* another thread is finalizing */
    double deadline = rp__deadline(timeout);
    int rc = wait_done(r, deadline);
    ops_leave(r);
    if (rc != RP_OK)
        return RP_ETIMEDOUT;
    if (atomic_load(&r->watched)) { /* watched meanwhile: the pool thread finalizes */
        double left = isinf(deadline) ? RP_FOREVER : fmax(0, deadline - rp__now());
        return wait_cond(r, left);
    }
    finalize(r);
    return RP_OK;
}

void rp__result_await_arrival(rp_result_t *r, double timeout)
{
    if (!r->submitted || !ops_enter(r))
        return;
    rp_pool_t *pool = r->pool;
    if (pool->ops->collect) {
        pool->ops->collect(pool, &r->job, false, timeout);
    } else if (pool->ops->drive && rp__pool_serviced_here(pool)) {
        /* The pool thread itself (an imap in one of its callbacks): nobody else
         * would move the messages that bring the arrivals. A slice; the caller
         * looks for arrivals and comes back. */
        double slice = timeout < 0 || isinf(timeout) ? 1e-3 : fmin(timeout, 1e-3);
        pool->ops->drive(pool, &r->job, rp__now() + slice);
    } else {
        pthread_mutex_lock(&r->lock);
        if (r->arr.len == 0 && !job_done(r) && atomic_load(&r->job.processed) < r->job.n) {
            if (timeout < 0 || isinf(timeout) || timeout > 1e6)
                timeout = 1e6;
            struct timespec ts;
            rp__abstime(&ts, timeout);
            pthread_cond_timedwait(&r->cond, &r->lock, &ts);
        }
        pthread_mutex_unlock(&r->lock);
    }
    ops_leave(r);
}

/* ---- the public calls -------------------------------------------------------------- */

/* The calls below that may wait or finalize hold a reference while they run:
 * rp_result_free() from another thread meanwhile leaves the destruction to the
 * last of them (the header's promise). */

int rp_result_wait(rp_result_t *res, double timeout)
{
    if (!res)
        return RP_EINVAL;
    rp__result_hold(res);
    int rc = rp__result_wait(res, timeout);
    rp__result_release(res);
    return rc;
}

static bool result_ready(rp_result_t *r)
{
    if (is_ready(r) || in_own_callback(r))
        return true;
    if (pool_finalizes(r) || !r->submitted)
        return false;
    if (!job_done(r))
        return false;
    finalize(r);
    return true;
}

bool rp_result_ready(const rp_result_t *res)
{
    if (!res)
        return false;
    rp_result_t *r = (rp_result_t *)res;
    if (is_ready(r))
        return true;
    rp__result_hold(r);
    bool ready = result_ready(r);
    rp__result_release(r);
    return ready;
}

int rp_result_successful(const rp_result_t *res)
{
    if (!res)
        return RP_EINVAL;
    if (!rp_result_ready(res))
        return RP_ENOTREADY;
    return res->nerrors == 0 ? 1 : 0;
}

static int result_get(rp_result_t *res, double timeout, rp_error_t *err)
{
    int rc = rp__result_wait(res, timeout);
    if (rc != RP_OK)
        return rc;
    if (res->nerrors == 0)
        return RP_OK;
    if (res->nfails == 0) { /* failures counted but not recorded: out of memory */
        if (err) {
            memset(err, 0, sizeof *err);
            err->code = RP_ENOMEM;
            err->worker = -1;
            err->exit_status = -1;
        }
        return RP_ENOMEM;
    }
    if (err)
        *err = res->fails[0].e;
    return res->fails[0].e.code;
}

int rp_result_get(rp_result_t *res, double timeout, rp_error_t *err)
{
    if (!res)
        return RP_EINVAL;
    rp__result_hold(res);
    int rc = result_get(res, timeout, err);
    rp__result_release(res);
    return rc;
}

size_t rp_result_nerrors(const rp_result_t *res)
{
    if (!res || !(is_ready(res) || in_own_callback(res)))
        return 0;
    return res->nerrors;
}

/* ---- failure records made on demand ------------------------------------------- */

/* The slot of key in a table of cap (a power of two) slots: where it is, or the
 * empty slot where it goes. */
static size_t memo_slot(const size_t *keys, size_t cap, size_t key)
{
    size_t h = (key * (size_t)UINT64_C(0x9E3779B97F4A7C15)) & (cap - 1);
    while (keys[h] != 0 && keys[h] != key)
        h = (h + 1) & (cap - 1);
    return h;
}

/* Under r->lock: doubles the table (the records themselves do not move). */
static bool memo_grow(rp_result_t *r)
{
    size_t cap = r->memo_cap ? 2 * r->memo_cap : 64;
    size_t *keys = calloc(cap, sizeof *keys);
    rp_error_t **vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return false;
    }
    for (size_t k = 0; k < r->memo_cap; k++) {
        if (!r->memo_key[k])
            continue;
        size_t h = memo_slot(keys, cap, r->memo_key[k]);
        keys[h] = r->memo_key[k];
        vals[h] = r->memo_val[k];
    }
    free(r->memo_key);
    free(r->memo_val);
    r->memo_key = keys;
    r->memo_val = vals;
    r->memo_cap = cap;
    return true;
}

/* The record of the i-th failure, item `index` of range f: made the first time
 * it is asked for, the same pointer afterwards, freed with the result. A range
 * of a million canceled items costs nothing until its items are asked for.
 * NULL when out of memory. */
static const rp_error_t *memo_error(rp_result_t *r, size_t i, const rp__fail *f, size_t index)
{
    rp_error_t *e = NULL;
    pthread_mutex_lock(&r->lock);
    size_t h = r->memo_cap ? memo_slot(r->memo_key, r->memo_cap, i + 1) : 0;
    if (r->memo_cap && r->memo_key[h] == i + 1) {
        e = r->memo_val[h];
        goto out;
    }
    if (2 * (r->memo_n + 1) > r->memo_cap) {
        if (!memo_grow(r))
            goto out;
        h = memo_slot(r->memo_key, r->memo_cap, i + 1);
    }
    e = malloc(sizeof *e);
    if (!e)
        goto out;
    *e = f->e;
    e->index = index;
    r->memo_key[h] = i + 1;
    r->memo_val[h] = e;
    r->memo_n++;
out:
    pthread_mutex_unlock(&r->lock);
    return e;
}

const rp_error_t *rp_result_error(const rp_result_t *res, size_t i)
{
    if (!res || !(is_ready(res) || in_own_callback(res)) || i >= res->nerrors)
        return NULL;
    rp_result_t *r = (rp_result_t *)res;
    if (!r->cum) /* every record is one item */
        return i < r->nfails ? &r->fails[i].e : NULL;
    /* The record k with cum[k] <= i < cum[k] + count. */
    size_t lo = 0, hi = r->nfails;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (r->cum[mid] <= i)
            lo = mid;
        else
            hi = mid;
    }
    if (lo >= r->nfails || i - r->cum[lo] >= r->fails[lo].count)
        return NULL;
    const rp__fail *f = &r->fails[lo];
    if (f->count == 1)
        return &f->e;
    return memo_error(r, i, f, f->start + (i - r->cum[lo]));
}

void rp_result_progress(const rp_result_t *res, size_t *done, size_t *total)
{
    size_t d = 0, t = 0;
    if (res) {
        rp_result_t *r = (rp_result_t *)res;
        size_t skipped = r->monitor ? r->monitor->skipped : 0; /* restored by a journal */
        t = r->monitor ? r->monitor->total : r->job.n;
        if (is_ready(r) || !r->submitted) {
            d = is_ready(r) ? t : skipped;
        } else if (ops_enter(r)) {
            d = skipped + atomic_load(&r->job.processed);
            if (r->pool->ops->progress)
                d += r->pool->ops->progress(r->pool, &r->job);
            ops_leave(r);
            if (d >= t && !job_done(r))
                d = t ? t - 1 : 0; /* counted, not yet complete */
            if (d > t)
                d = t;
        } else {
            d = t; /* being finalized: every item is processed */
        }
    }
    if (done)
        *done = d;
    if (total)
        *total = t;
}

void rp_result_free(rp_result_t *res)
{
    if (!res)
        return;
    if (in_own_callback(res)) { /* freed once the callback has returned */
        atomic_store(&res->free_pending, true);
        return;
    }
    /* In a callback of its pool, a result that thread completes: freed once it has. */
    if (rp__result_wait(res, RP_FOREVER) == RP_EDEADLK) {
        atomic_store(&res->free_pending, true);
        return;
    }
    rp__result_release(res);
}
