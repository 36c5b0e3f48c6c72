/* A test-only backend: workers are threads of the test process. It is transport
 * only, like the real backends: the core's scheduler decides what each thread
 * runs (rp__sched_next), the core's ledger is told what happened (rp__job_*).
 * Threads cannot be killed, so terminate cancels what is not yet claimed and
 * waits for the running chunks. */
#include "thread_backend.h"

#include <stdlib.h>
#include <string.h>

struct tb_worker {
    struct tb      *tb;
    pthread_t       thread;
    pthread_cond_t  go;        /* a batch was assigned, or stop */
    rp__pick        batch;     /* valid while has_batch */
    bool            has_batch;
    rp_ctx_t        ctx;
    /* variable-size output of the running item */
    void           *vbuf;
    size_t          vsize;
};

struct tb {
    pthread_mutex_t  lock;      /* the scheduler, the job list, the flags */
    pthread_cond_t   idle;      /* a worker finished a batch */
    pthread_cond_t   kicked;    /* the pool thread has callbacks to run */
    rp__sched        sched;
    struct tb_worker *workers;
    int              nworkers;
    int              busy;
    bool             stop, kick;
    rp_pool_t       *pool;
    pthread_t        pool_thread;
    char             host[64];
    struct rp__job **jobs;      /* submitted, not released (for terminate) */
    size_t           njobs, capjobs;
};

int tb_chunks_claimed; /* for tests: batches handed out */

static struct tb *tb_of(rp_pool_t *pool)
{
    return pool->bdata;
}

/* Under lock: hands out what the scheduler decides. */
static void dispatch(struct tb *tb)
{
    rp__pick p;
    while (!tb->stop && rp__sched_next(&tb->sched, &p)) {
        struct tb_worker *w = &tb->workers[p.worker];
        w->batch = p;
        w->has_batch = true;
        tb->busy++;
        tb_chunks_claimed++;
        pthread_cond_signal(&w->go);
    }
}

static void on_fail(void *arg, const rp_error_t *e)
{
    rp__job_fail(arg, e);
}

static void *var_output(void *arg, size_t index, size_t size)
{
    struct tb_worker *w = arg;
    void *p = realloc(w->vbuf, size ? size : 1);
    if (!p)
        return NULL;
    w->vbuf = p;
    w->vsize = size;
    return p;
}

/* Runs items [a, b) of job; outputs go straight to the caller's buffer. */
static void run(struct tb_worker *w, struct rp__job *job, size_t a, size_t b)
{
    w->ctx.index_base = job->index_base;
    if (!(job->flags & RP__JOB_VAR)) {
        rp__worker_run(&w->ctx, job->fn, job->in + a * job->in_size, job->in_size,
                       job->out ? job->out + a * job->out_size : NULL, job->out_size, a, b - a,
                       NULL, on_fail, job);
        rp__job_deliver(job, a, b, job->out ? job->out + a * job->out_size : NULL);
        return;
    }
    w->ctx.output = var_output;
    w->ctx.output_arg = w;
    for (size_t i = a; i < b; i++) {
        size_t failed = rp__worker_run(&w->ctx, job->fn, job->in + i * job->in_size,
                                       job->in_size, NULL, 0, i, 1, NULL, on_fail, job);
        if (!failed && w->ctx.output_set)
            rp__job_deliver_var(job, i, w->vbuf, w->vsize);
    }
    w->ctx.output = NULL;
    rp__job_deliver(job, a, b, NULL);
}

static void *worker_main(void *arg)
{
    struct tb_worker *w = arg;
    struct tb *tb = w->tb;
    pthread_mutex_lock(&tb->lock);
    for (;;) {
        while (!w->has_batch && !tb->stop)
            pthread_cond_wait(&w->go, &tb->lock);
        if (!w->has_batch)
            break;
        rp__pick p = w->batch;
        pthread_mutex_unlock(&tb->lock);
        struct rp__job *job = (struct rp__job *)((char *)p.job - offsetof(struct rp__job, sched));
        double t0 = rp__now();
        run(w, job, (size_t)p.start, (size_t)(p.start + p.len));
        double dt = rp__now() - t0;
        pthread_mutex_lock(&tb->lock);
        w->has_batch = false;
        rp__sched_finished(&tb->sched, p.worker, p.job, p.len, dt);
        dispatch(tb);
        pthread_mutex_unlock(&tb->lock);
        /* counted last: once the job is complete a waiter may release it */
        rp__job_processed(job, (size_t)p.len);
        pthread_mutex_lock(&tb->lock);
        tb->busy--;
        pthread_cond_broadcast(&tb->idle);
    }
    pthread_mutex_unlock(&tb->lock);
    return NULL;
}

static void *pool_main(void *arg)
{
    struct tb *tb = arg;
    pthread_mutex_lock(&tb->lock);
    for (;;) {
        if (tb->kick) {
            tb->kick = false;
            pthread_mutex_unlock(&tb->lock);
            rp__pool_service(tb->pool);
            pthread_mutex_lock(&tb->lock);
            continue;
        }
        if (tb->stop && tb->busy == 0)
            break;
        pthread_cond_wait(&tb->kicked, &tb->lock);
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
    rp__sched_conf conf = { .depth = 1 };
    if (!tb->workers || rp__sched_open(&tb->sched, &conf, (uint32_t)n) != 0) {
        free(tb->workers);
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
            rp__sched_close(&tb->sched);
            free(tb->workers);
            free(tb);
            return RP_EINIT;
        }
    }
    pthread_mutex_init(&tb->lock, NULL);
    pthread_cond_init(&tb->idle, NULL);
    pthread_cond_init(&tb->kicked, NULL);
    tb->nworkers = n;
    tb->pool = pool;
    pool->bdata = tb;
    pool->nworkers = n;
    for (int i = 0; i < n; i++) {
        pthread_cond_init(&tb->workers[i].go, NULL);
        pthread_create(&tb->workers[i].thread, NULL, worker_main, &tb->workers[i]);
    }
    pthread_create(&tb->pool_thread, NULL, pool_main, tb);
    return RP_OK;
}

static int tb_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    if (tb->njobs == tb->capjobs) {
        size_t cap = tb->capjobs ? 2 * tb->capjobs : 8;
        struct rp__job **v = realloc(tb->jobs, cap * sizeof *v);
        if (!v) {
            pthread_mutex_unlock(&tb->lock);
            return RP_ENOMEM;
        }
        tb->jobs = v;
        tb->capjobs = cap;
    }
    if (rp__sched_add(&tb->sched, &job->sched, job->id, job->n, job->chunksize,
                      job->in_size + job->out_size) != 0) {
        pthread_mutex_unlock(&tb->lock);
        return RP_ENOMEM;
    }
    tb->jobs[tb->njobs++] = job;
    if (tb->stop) {
        /* terminated: nothing will run it */
        rp__sched_remove(&tb->sched, &job->sched);
        pthread_mutex_unlock(&tb->lock);
        rp__job_cancel(job, 0, job->n, true);
        return RP_OK;
    }
    dispatch(tb);
    pthread_mutex_unlock(&tb->lock);
    return RP_OK;
}

static void tb_release(rp_pool_t *pool, struct rp__job *job)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    rp__sched_remove(&tb->sched, &job->sched);
    for (size_t i = 0; i < tb->njobs; i++)
        if (tb->jobs[i] == job) {
            tb->jobs[i] = tb->jobs[--tb->njobs];
            break;
        }
    pthread_mutex_unlock(&tb->lock);
}

static void tb_kick(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    tb->kick = true;
    pthread_cond_signal(&tb->kicked);
    pthread_mutex_unlock(&tb->lock);
}

static void stop_threads(struct tb *tb)
{
    pthread_mutex_lock(&tb->lock);
    tb->stop = true;
    for (int i = 0; i < tb->nworkers; i++)
        pthread_cond_signal(&tb->workers[i].go);
    pthread_cond_signal(&tb->kicked);
    pthread_mutex_unlock(&tb->lock);
    for (int i = 0; i < tb->nworkers; i++)
        pthread_join(tb->workers[i].thread, NULL);
    pthread_mutex_lock(&tb->lock);
    pthread_cond_signal(&tb->kicked);
    pthread_mutex_unlock(&tb->lock);
    pthread_join(tb->pool_thread, NULL);
    tb->nworkers = 0;
}

static int tb_join(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    if (tb->nworkers > 0)
        stop_threads(tb);
    return RP_OK;
}

struct cancel_arg {
    struct rp__job *job;
    rp__span       *v;
    size_t          n;
};

static void withdrawn(void *arg, uint64_t a, uint64_t b)
{
    struct cancel_arg *c = arg;
    rp__span *v = realloc(c->v, (c->n + 1) * sizeof *v);
    if (v) {
        c->v = v;
        c->v[c->n++] = (rp__span){ a, b };
    }
}

static int tb_terminate(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    pthread_mutex_lock(&tb->lock);
    tb->stop = true;
    for (int i = 0; i < tb->nworkers; i++)
        pthread_cond_signal(&tb->workers[i].go);
    /* what nobody claimed: canceled (the core records why) */
    size_t n = tb->njobs;
    struct rp__job **jobs = malloc((n ? n : 1) * sizeof *jobs);
    if (jobs)
        memcpy(jobs, tb->jobs, n * sizeof *jobs);
    struct cancel_arg *cs = calloc(n ? n : 1, sizeof *cs);
    for (size_t k = 0; jobs && cs && k < n; k++) {
        cs[k].job = jobs[k];
        rp__sched_withdraw(&tb->sched, &jobs[k]->sched, withdrawn, &cs[k]);
    }
    /* running chunks finish (threads cannot be killed) */
    while (tb->busy > 0)
        pthread_cond_wait(&tb->idle, &tb->lock);
    pthread_mutex_unlock(&tb->lock);
    for (size_t k = 0; jobs && cs && k < n; k++) {
        for (size_t i = 0; i < cs[k].n; i++)
            rp__job_cancel(cs[k].job, (size_t)cs[k].v[i].a, (size_t)cs[k].v[i].b, true);
        free(cs[k].v);
    }
    free(cs);
    free(jobs);
    return RP_OK;
}

static void tb_destroy(rp_pool_t *pool)
{
    struct tb *tb = tb_of(pool);
    if (!tb)
        return;
    int n = tb->nworkers;
    if (n > 0)
        stop_threads(tb);
    for (uint32_t i = 0; i < tb->sched.nworkers; i++) {
        pthread_cond_destroy(&tb->workers[i].go);
        free(tb->workers[i].vbuf);
    }
    pthread_mutex_destroy(&tb->lock);
    pthread_cond_destroy(&tb->idle);
    pthread_cond_destroy(&tb->kicked);
    rp__sched_close(&tb->sched);
    free(tb->jobs);
    free(tb->workers);
    free(tb);
    pool->bdata = NULL;
}

const struct rp__backend_ops tb_backend = {
    .name = "threads",
    .start = tb_start,
    .submit = tb_submit,
    .release = tb_release,
    .kick = tb_kick,
    .join = tb_join,
    .terminate = tb_terminate,
    .destroy = tb_destroy,
};
