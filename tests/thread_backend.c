/* A test-only backend: workers are threads of the test process. It implements
 * struct rp__backend_ops faithfully enough (scheduler claims, per-item failures,
 * arrivals for tracked jobs, a pool thread for callbacks, cancellation on
 * terminate) to test the core's result, iterator and varout semantics in one
 * process. Threads cannot be killed, so terminate cancels what is not yet
 * claimed and waits for the running chunks. */
#include "thread_backend.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct tb_job {
    struct rp__job *job;
    rp__sched_t     sched;
    size_t          processed;
    size_t         *arrived;   /* TRACK: processed, not yet returned by arrivals() */
    size_t          ahead, atail;
    bool            notified;
    struct tb_job  *next;
};

struct tb_worker {
    struct tb      *tb;
    pthread_t       thread;
    rp_ctx_t        ctx;
};

struct tb {
    pthread_mutex_t  lock;
    pthread_cond_t   work;      /* new work or stop */
    pthread_cond_t   progress;  /* items processed */
    pthread_cond_t   notify;    /* pool thread: a NOTIFY job completed, or stop */
    struct tb_job   *jobs;
    struct tb_job  **notifyq;
    size_t           nnotify, capnotify;
    struct tb_worker *workers;
    int              nworkers;
    int              busy;      /* workers running a chunk */
    bool             closing, stop, pool_stop;
    pthread_t        pool_thread;
    char             host[64];
};

int tb_chunks_claimed; /* for tests: chunks handed out (under no lock; approximate) */

static struct tb *tb_of(rp_pool_t *pool)
{
    return pool->bdata;
}

static void timespec_after(struct timespec *ts, double timeout)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    double whole = (double)(time_t)timeout;
    ts->tv_sec += (time_t)whole;
    ts->tv_nsec += (long)((timeout - whole) * 1e9);
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Waits on cond; false once the deadline passed. timeout < 0: forever. */
static bool cond_wait_until(pthread_cond_t *c, pthread_mutex_t *m, double timeout,
                            const struct timespec *ts)
{
    if (timeout < 0) {
        pthread_cond_wait(c, m);
        return true;
    }
    return pthread_cond_timedwait(c, m, ts) != ETIMEDOUT;
}

static void init_cond(pthread_cond_t *c)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(c, &ca);
    pthread_condattr_destroy(&ca);
}

/* Under lock: counts items processed; queues the completion of NOTIFY jobs. */
static void account(struct tb *tb, struct tb_job *tj, size_t start, size_t count)
{
    if (tj->arrived)
        for (size_t i = start; i < start + count; i++)
            tj->arrived[tj->atail++] = i;
    tj->processed += count;
    if (tj->processed == tj->job->n && (tj->job->flags & RP__JOB_NOTIFY) && !tj->notified) {
        tj->notified = true;
        if (tb->nnotify == tb->capnotify) {
            size_t cap = tb->capnotify ? 2 * tb->capnotify : 8;
            tb->notifyq = realloc(tb->notifyq, cap * sizeof *tb->notifyq);
            tb->capnotify = cap;
        }
        tb->notifyq[tb->nnotify++] = tj;
        pthread_cond_signal(&tb->notify);
    }
    pthread_cond_broadcast(&tb->progress);
}

static void on_fail(void *arg, const rp_error_t *e)
{
    rp__job_fail(arg, e);
}

static void *var_output(void *arg, size_t index, size_t size)
{
    struct rp__job *job = arg;
    rp__varslot *slot = &((rp__varslot *)job->out)[index];
    free(slot->data);
    slot->data = malloc(size ? size : 1);
    slot->size = slot->data ? size : 0;
    return slot->data;
}

static void *worker_main(void *arg)
{
    struct tb_worker *w = arg;
    struct tb *tb = w->tb;
    pthread_mutex_lock(&tb->lock);
    for (;;) {
        struct tb_job *tj = NULL;
        size_t start = 0, count = 0;
        for (tj = tb->jobs; tj; tj = tj->next)
            if ((count = rp__sched_claim(&tj->sched, 0, &start)) > 0)
                break;
        if (!tj) {
            if (tb->stop || (tb->closing && !tb->jobs))
                break;
            pthread_cond_wait(&tb->work, &tb->lock);
            continue;
        }
        tb->busy++;
        tb_chunks_claimed++;
        pthread_mutex_unlock(&tb->lock);

        struct rp__job *job = tj->job;
        bool var = job->flags & RP__JOB_VAR;
        w->ctx.output = var ? var_output : NULL;
        w->ctx.output_arg = job;
        rp__worker_run(&w->ctx, job->fn, job->in + start * job->in_size, job->in_size,
                       var || !job->out ? NULL : job->out + start * job->out_size,
                       var ? 0 : job->out_size, start, count, NULL, on_fail, job);

        pthread_mutex_lock(&tb->lock);
        tb->busy--;
        account(tb, tj, start, count);
    }
    pthread_mutex_unlock(&tb->lock);
    return NULL;
}

static void *pool_main(void *arg)
{
    struct tb *tb = arg;
    pthread_mutex_lock(&tb->lock);
    for (;;) {
        if (tb->nnotify > 0) {
            struct tb_job *tj = tb->notifyq[0];
            memmove(tb->notifyq, tb->notifyq + 1, --tb->nnotify * sizeof *tb->notifyq);
            pthread_mutex_unlock(&tb->lock);
            rp__job_done(tj->job); /* finish() frees tj */
            pthread_mutex_lock(&tb->lock);
            continue;
        }
        if (tb->pool_stop)
            break;
        pthread_cond_wait(&tb->notify, &tb->lock);
    }
    pthread_mutex_unlock(&tb->lock);
    return NULL;
}

static int tb_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    struct tb *tb = calloc(1, sizeof *tb);
    if (!tb)
        return RP_ENOMEM;
    int n = opts->workers > 0 ? opts->workers : 2;
    tb->workers = calloc((size_t)n, sizeof *tb->workers);
    if (!tb->workers) {
        free(tb);
        return RP_ENOMEM;
    }
    snprintf(tb->host, sizeof tb->host, "threads");
    for (int i = 0; i < n; i++) {
        tb->workers[i].tb = tb;
        tb->workers[i].ctx.worker = i;
        tb->workers[i].ctx.host = tb->host;
        if (rp__worker_init(&tb->workers[i].ctx, opts->initializer, opts->initarg, err) !=
            RP_OK) {
            free(tb->workers);
            free(tb);
            return RP_EINIT;
        }
    }
    pthread_mutex_init(&tb->lock, NULL);
    init_cond(&tb->work);
    init_cond(&tb->progress);
    init_cond(&tb->notify);
    tb->nworkers = n;
    pool->bdata = tb;
    pool->nworkers = n;
    for (int i = 0; i < n; i++)
        pthread_create(&tb->workers[i].thread, NULL, worker_main, &tb->workers[i]);
    pthread_create(&tb->pool_thread, NULL, pool_main, tb);
    return RP_OK;
}

static int tb_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    struct tb_job *tj = calloc(1, sizeof *tj);
    if (!tj)
        return RP_ENOMEM;
    tj->job = job;
    rp__sched_init(&tj->sched, job->n, job->chunksize, tb->nworkers);
    if (job->flags & RP__JOB_TRACK) {
        tj->arrived = malloc((job->n ? job->n : 1) * sizeof *tj->arrived);
        if (!tj->arrived) {
            free(tj);
            return RP_ENOMEM;
        }
    }
    job->bdata = tj;
    pthread_mutex_lock(&tb->lock);
    if (tb->closing || tb->stop) {
        pthread_mutex_unlock(&tb->lock);
        free(tj->arrived);
        free(tj);
        return RP_ECLOSED;
    }
    struct tb_job **p = &tb->jobs;
    while (*p)
        p = &(*p)->next;
    *p = tj;
    pthread_cond_broadcast(&tb->work);
    pthread_mutex_unlock(&tb->lock);
    return RP_OK;
}

static int tb_wait(rp_pool_t *pool, struct rp__job *job, double timeout)
{
    struct tb *tb = tb_of(pool);
    struct tb_job *tj = job->bdata;
    struct timespec ts;
    if (timeout >= 0)
        timespec_after(&ts, timeout);
    int rc = RP_OK;
    pthread_mutex_lock(&tb->lock);
    while (tj->processed < job->n)
        if (!cond_wait_until(&tb->progress, &tb->lock, timeout, &ts)) {
            if (tj->processed < job->n)
                rc = RP_ETIMEDOUT;
            break;
        }
    pthread_mutex_unlock(&tb->lock);
    return rc;
}

static bool tb_done(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    bool done = ((struct tb_job *)job->bdata)->processed == job->n;
    pthread_mutex_unlock(&tb->lock);
    return done;
}

static size_t tb_progress(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    size_t d = ((struct tb_job *)job->bdata)->processed;
    pthread_mutex_unlock(&tb->lock);
    return d;
}

static void tb_finish(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    struct tb_job *tj = job->bdata;
    pthread_mutex_lock(&tb->lock);
    for (struct tb_job **p = &tb->jobs; *p; p = &(*p)->next)
        if (*p == tj) {
            *p = tj->next;
            break;
        }
    pthread_cond_broadcast(&tb->work); /* a closing worker may exit now */
    pthread_mutex_unlock(&tb->lock);
    free(tj->arrived);
    free(tj);
    job->bdata = NULL;
}

static size_t tb_arrivals(rp_pool_t *pool, struct rp__job *job, size_t *idx, size_t max,
                          double timeout)
{
    struct tb *tb = tb_of(pool);
    struct tb_job *tj = job->bdata;
    struct timespec ts;
    if (timeout >= 0)
        timespec_after(&ts, timeout);
    size_t got = 0;
    pthread_mutex_lock(&tb->lock);
    while (tj->ahead == tj->atail && tj->processed < job->n)
        if (!cond_wait_until(&tb->progress, &tb->lock, timeout, &ts))
            break;
    while (got < max && tj->ahead < tj->atail)
        idx[got++] = tj->arrived[tj->ahead++];
    pthread_mutex_unlock(&tb->lock);
    return got;
}

static int tb_close(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    tb->closing = true;
    pthread_cond_broadcast(&tb->work);
    pthread_mutex_unlock(&tb->lock);
    return RP_OK;
}

static int tb_join(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    tb->stop = true;
    tb->pool_stop = true;
    pthread_cond_broadcast(&tb->work);
    pthread_cond_broadcast(&tb->notify);
    pthread_mutex_unlock(&tb->lock);
    for (int i = 0; i < tb->nworkers; i++)
        pthread_join(tb->workers[i].thread, NULL);
    pthread_join(tb->pool_thread, NULL);
    tb->nworkers = 0;
    return RP_OK;
}

static int tb_terminate(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    tb->stop = true;
    pthread_cond_broadcast(&tb->work);
    /* Cancel what nobody claimed yet. */
    for (struct tb_job *tj = tb->jobs; tj; tj = tj->next) {
        /* Everything left at once: one range, whatever the chunk size. */
        size_t start = (size_t)atomic_exchange(&tj->sched.next, tj->sched.n);
        if (start < tj->job->n) {
            size_t count = tj->job->n - start;
            rp_error_t e;
            rp__error_set(&e, RP_ECANCELED, start, -1, tb->host, "canceled by terminate");
            pthread_mutex_unlock(&tb->lock);
            rp__job_fail_range(tj->job, start, count, &e);
            pthread_mutex_lock(&tb->lock);
            account(tb, tj, start, count);
        }
    }
    while (tb->busy > 0)
        pthread_cond_wait(&tb->progress, &tb->lock);
    pthread_mutex_unlock(&tb->lock);
    return RP_OK;
}

static void tb_destroy(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    if (!tb)
        return;
    pthread_mutex_destroy(&tb->lock);
    pthread_cond_destroy(&tb->work);
    pthread_cond_destroy(&tb->progress);
    pthread_cond_destroy(&tb->notify);
    while (tb->jobs) {
        struct tb_job *tj = tb->jobs;
        tb->jobs = tj->next;
        free(tj->arrived);
        free(tj);
    }
    free(tb->notifyq);
    free(tb->workers);
    free(tb);
    pool->bdata = NULL;
}

const struct rp__backend_ops tb_backend = {
    .name = "threads",
    .start = tb_start,
    .submit = tb_submit,
    .wait = tb_wait,
    .done = tb_done,
    .progress = tb_progress,
    .finish = tb_finish,
    .arrivals = tb_arrivals,
    .close = tb_close,
    .join = tb_join,
    .terminate = tb_terminate,
    .destroy = tb_destroy,
};
