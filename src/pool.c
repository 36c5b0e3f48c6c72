/* The pool object: options, choice of backend, life cycle (close, join, terminate,
 * free), and the submitting calls (rp_map*, rp_apply*), which check their
 * arguments and hand a job to result.c.
 *
 * Locks: pool->lock guards state, the live list and the submit count; `ctl`
 * serializes the backend's close/terminate/join so that several threads may call
 * them at once. Never hold pool->lock across a backend call that may finalize a
 * result (finalization unlinks under pool->lock). */
#include "result.h"
#include "monitor.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The pool as allocated: the shared struct plus what only the core uses. */
struct pool_core {
    struct rp_pool  pub;
    pthread_mutex_t ctl;        /* serializes close/terminate/join/destroy */
    int             submitting; /* submits between state check and ops->submit,
                                   under pub.lock */
    bool            backend_joined;
    _Atomic bool    terminating;
    /* Complete RP__JOB_NOTIFY jobs waiting for the pool thread (FIFO). */
    pthread_mutex_t nlock;
    rp_result_t    *nhead, *ntail;
};

static struct pool_core *core_of(rp_pool_t *pool)
{
    return (struct pool_core *)pool;
}

/* ---- choosing a backend -------------------------------------------------------- */

static const struct rp__backend_ops *const backends[] = {
    &rp__backend_local,
#if RP_HAVE_MPI
    &rp__backend_mpi,
#endif
};

static const struct rp__backend_ops *backend_named(const char *name)
{
    for (size_t i = 0; i < sizeof backends / sizeof *backends; i++)
        if (strcmp(name, backends[i]->name) == 0)
            return backends[i];
    return NULL;
}

static bool env_more_than_one(const char *var)
{
    const char *v = getenv(var);
    return v && atol(v) > 1;
}

/* Started by mpirun/srun with more than one rank? */
static bool under_mpi_launcher(void)
{
    if (env_more_than_one("OMPI_COMM_WORLD_SIZE") || env_more_than_one("PMI_SIZE") ||
        env_more_than_one("PMIX_SIZE") || env_more_than_one("MPI_LOCALNRANKS"))
        return true;
    return getenv("SLURM_PROCID") && env_more_than_one("SLURM_NTASKS") &&
           getenv("SLURM_STEP_ID");
}

/* The default worker count from $RP_WORKERS (set by rankpool-run -n N):
 * *workers is left 0 when it is unset, RP_EINVAL when it is not a count. */
#define RP__MAX_ENV_WORKERS 4096
int rp__env_workers(int *workers)
{
    const char *v = getenv("RP_WORKERS");
    if (!v || !*v)
        return RP_OK;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno != 0 || *end != '\0' || n < 1 || n > RP__MAX_ENV_WORKERS)
        return RP_EINVAL;
    *workers = (int)n;
    return RP_OK;
}

/* The local default worker count when neither opts.workers nor RP_WORKERS gives
 * one: the cores this process may use, but no more than a Slurm task's CPUs
 * (SLURM_CPUS_PER_TASK: without Slurm's task binding, hwloc sees the whole node). */
int rp__default_workers(void)
{
    int n = rp__topo_ncores();
    const char *v = getenv("SLURM_CPUS_PER_TASK");
    if (v && *v) {
        char *end;
        errno = 0;
        long c = strtol(v, &end, 10);
        if (errno == 0 && *end == '\0' && c >= 1 && c < n)
            n = (int)c;
    }
    return n;
}

static int choose_backend(const char *name, const struct rp__backend_ops **ops)
{
    if (!name || !*name) {
        name = getenv("RP_BACKEND");
        if (!name || !*name)
            name = under_mpi_launcher() ? "mpi" : "local";
    }
    *ops = backend_named(name);
    return *ops ? RP_OK : RP_EBACKEND;
}

/* This process's id, without a system call on every submit: refreshed in the
 * child of every fork() (pthread_atfork), the only way a process id changes. */
static _Atomic pid_t self_pid;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void refresh_pid(void)
{
    atomic_store(&self_pid, getpid());
}

static void pid_init(void)
{
    refresh_pid();
    pthread_atfork(NULL, NULL, refresh_pid);
}

static pid_t current_pid(void)
{
    pthread_once(&pid_once, pid_init);
    return atomic_load_explicit(&self_pid, memory_order_relaxed);
}

/* ---- creation --------------------------------------------------------------------- */

static void set_err(rp_error_t *err, int code, const char *msg)
{
    if (err)
        rp__error_set(err, code, 0, -1, NULL, "%s", msg);
}

static void pool_destroy(struct pool_core *c)
{
    pthread_mutex_destroy(&c->ctl);
    pthread_mutex_destroy(&c->nlock);
    pthread_mutex_destroy(&c->pub.lock);
    pthread_cond_destroy(&c->pub.idle);
    free(c->pub.initarg_copy);
    free(c);
}

int rp__pool_create_ops(rp_pool_t **pool, const rp_pool_opts_t *opts,
                        const struct rp__backend_ops *ops, rp_error_t *err)
{
    if (!pool || !ops)
        return RP_EINVAL;
    *pool = NULL;
    rp_pool_opts_t o;
    if (opts)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    if (o.workers < 0 || o.max_tasks_per_worker < 0 || o.initarg_size > PTRDIFF_MAX ||
        !(o.task_timeout >= 0) || o.task_timeout > RP__TIMEOUT_MAX ||
        (o.initarg_size > 0 && o.initarg == NULL)) {
        set_err(err, RP_EINVAL, "invalid pool options");
        return RP_EINVAL;
    }
    struct pool_core *c = calloc(1, sizeof *c);
    if (!c) {
        set_err(err, RP_ENOMEM, "out of memory");
        return RP_ENOMEM;
    }
    rp_pool_t *p = &c->pub;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->idle, NULL);
    pthread_mutex_init(&c->ctl, NULL);
    pthread_mutex_init(&c->nlock, NULL);
    atomic_init(&c->terminating, false);
    if (o.initarg_size > 0 && !(ops->initarg_max && o.initarg_size > ops->initarg_max)) {
        p->initarg_copy = malloc(o.initarg_size);
        if (!p->initarg_copy) {
            pool_destroy(c);
            set_err(err, RP_ENOMEM, "out of memory");
            return RP_ENOMEM;
        }
        memcpy(p->initarg_copy, o.initarg, o.initarg_size);
        o.initarg = p->initarg_copy;
    }
    o.backend = ops->name;
    p->ops = ops;
    p->opts = o;
    p->owner_pid = current_pid();
    p->is_master = true;
    p->state = RP__POOL_OPEN;
    p->next_job_id = 1;
    rp__hostname(p->host, sizeof p->host);

    rp_error_t e;
    memset(&e, 0, sizeof e);
    int rc = ops->start(p, &p->opts, &e);
    if (rc != RP_OK) {
        if (e.code == 0)
            rp__error_set(&e, rc, 0, -1, p->host, "%s", rp_strerror(rc));
        if (err)
            *err = e;
        pool_destroy(c);
        return rc;
    }
    *pool = p;
    return RP_OK;
}

int rp_pool_create_ex(rp_pool_t **pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    if (err)
        memset(err, 0, sizeof *err);
    if (!pool) {
        set_err(err, RP_EINVAL, "pool is NULL");
        return RP_EINVAL;
    }
    *pool = NULL;
    const struct rp__backend_ops *ops;
    if (choose_backend(opts ? opts->backend : NULL, &ops) != RP_OK) {
        set_err(err, RP_EBACKEND,
#if RP_HAVE_MPI
                "unknown backend (expected \"local\" or \"mpi\")"
#else
                "unknown or unavailable backend (this build has \"local\" only: "
                "rankpool was configured --without-mpi)"
#endif
        );
        return RP_EBACKEND;
    }
    return rp__pool_create_ops(pool, opts, ops, err);
}

int rp_pool_create(rp_pool_t **pool, const rp_pool_opts_t *opts)
{
    return rp_pool_create_ex(pool, opts, NULL);
}

/* ---- queries ------------------------------------------------------------------------ */

int rp__pool_check(const rp_pool_t *pool)
{
    if (!pool)
        return RP_EINVAL;
    if (!pool->is_master)
        return RP_ENOTMASTER;
    if (current_pid() != pool->owner_pid)
        return RP_EFORK;
    return RP_OK;
}

bool rp_pool_is_master(const rp_pool_t *pool)
{
    return pool && pool->is_master;
}

int rp_pool_size(const rp_pool_t *pool)
{
    return pool ? pool->nworkers : RP_EINVAL;
}

const char *rp_pool_backend(const rp_pool_t *pool)
{
    return pool && pool->ops ? pool->ops->name : "";
}

/* ---- the live list and the submit gate (used by result.c) ----------------------------- */

int rp__pool_enter_submit(rp_pool_t *pool, rp_result_t *r)
{
    pthread_mutex_lock(&pool->lock);
    if (pool->state != RP__POOL_OPEN) {
        pthread_mutex_unlock(&pool->lock);
        return RP_ECLOSED;
    }
    core_of(pool)->submitting++;
    r->job.id = pool->next_job_id++;
    r->prev = NULL;
    r->next = pool->live;
    if (pool->live)
        pool->live->prev = r;
    pool->live = r;
    r->linked = true;
    pthread_mutex_unlock(&pool->lock);
    return RP_OK;
}

void rp__pool_leave_submit(rp_pool_t *pool)
{
    pthread_mutex_lock(&pool->lock);
    if (--core_of(pool)->submitting == 0)
        pthread_cond_broadcast(&pool->idle);
    pthread_mutex_unlock(&pool->lock);
}

void rp__pool_unlink(rp_pool_t *pool, rp_result_t *r)
{
    pthread_mutex_lock(&pool->lock);
    if (r->linked) {
        if (r->prev)
            r->prev->next = r->next;
        else
            pool->live = r->next;
        if (r->next)
            r->next->prev = r->prev;
        r->prev = r->next = NULL;
        r->linked = false;
    }
    pthread_cond_broadcast(&pool->idle);
    pthread_mutex_unlock(&pool->lock);
}

void rp__pool_notify(rp_pool_t *pool, rp_result_t *r)
{
    struct pool_core *c = core_of(pool);
    /* Once: a watched job may be reported by its completion and by its watcher.
     * The queue holds a reference until the pool thread has finalized it. */
    if (atomic_exchange(&r->notified, true))
        return;
    rp__result_hold(r);
    pthread_mutex_lock(&c->nlock);
    r->nnext = NULL;
    if (c->ntail)
        c->ntail->nnext = r;
    else
        c->nhead = r;
    c->ntail = r;
    pthread_mutex_unlock(&c->nlock);
    pool->ops->kick(pool);
}

/* The pool whose completions this thread is running (rp__pool_service), if any:
 * while it runs one of their callbacks, a result only it can complete waits for
 * itself (rp__pool_serviced_here). */
static _Thread_local const rp_pool_t *serviced_pool;

bool rp__pool_serviced_here(const rp_pool_t *pool)
{
    return pool && serviced_pool == pool;
}

void rp__pool_service(rp_pool_t *pool)
{
    struct pool_core *c = core_of(pool);
    const rp_pool_t *outer = serviced_pool;
    serviced_pool = pool;
    for (;;) {
        pthread_mutex_lock(&c->nlock);
        rp_result_t *r = c->nhead;
        if (r) {
            c->nhead = r->nnext;
            if (!c->nhead)
                c->ntail = NULL;
        }
        pthread_mutex_unlock(&c->nlock);
        if (!r)
            break;
        rp__result_finalize(r);
        rp__result_release(r);
    }
    serviced_pool = outer;
}

bool rp__pool_terminating(const rp_pool_t *pool)
{
    return pool && atomic_load(&core_of((rp_pool_t *)pool)->terminating);
}

/* Under pool->lock: waits until no submit is between its check and ops->submit. */
static void wait_submits_locked(rp_pool_t *pool)
{
    while (core_of(pool)->submitting > 0)
        pthread_cond_wait(&pool->idle, &pool->lock);
}

/* Waits until every live result is finalized (finalizing lazily-observed ones). */
static void wait_live(rp_pool_t *pool)
{
    for (;;) {
        pthread_mutex_lock(&pool->lock);
        rp_result_t *r = pool->live;
        if (r)
            rp__result_hold(r);
        pthread_mutex_unlock(&pool->lock);
        if (!r)
            return;
        rp__result_wait(r, RP_FOREVER);
        rp__result_release(r);
    }
}

/* ---- life cycle ---------------------------------------------------------------------- */

/* Moves the pool to `to` (RP__POOL_CLOSED or RP__POOL_TERMINATED) the first time
 * it applies, once submits in flight have landed, and tells the backend. Later
 * calls, and a close after a terminate, do nothing and succeed. */
static int stop_pool(rp_pool_t *pool, int to)
{
    int rc = rp__pool_check(pool);
    if (rc != RP_OK)
        return rc;
    struct pool_core *c = core_of(pool);
    pthread_mutex_lock(&c->ctl);
    pthread_mutex_lock(&pool->lock);
    bool first = pool->state == RP__POOL_OPEN ||
                 (to == RP__POOL_TERMINATED && pool->state == RP__POOL_CLOSED);
    if (first) {
        pool->state = to;
        /* with the state, under the lock: a submit refused from now on (a
         * stream's next segment) must see why, canceled, not closed */
        if (to == RP__POOL_TERMINATED)
            atomic_store(&c->terminating, true);
        wait_submits_locked(pool);
    }
    pthread_mutex_unlock(&pool->lock);
    if (first && to == RP__POOL_TERMINATED) {
        rc = pool->ops->terminate(pool);
    } else if (first && pool->ops->close) {
        rc = pool->ops->close(pool);
    }
    pthread_mutex_unlock(&c->ctl);
    return rc;
}

int rp_pool_close(rp_pool_t *pool)
{
    return stop_pool(pool, RP__POOL_CLOSED);
}

int rp_pool_terminate(rp_pool_t *pool)
{
    return stop_pool(pool, RP__POOL_TERMINATED);
}

int rp_pool_join(rp_pool_t *pool)
{
    int rc = rp__pool_check(pool);
    if (rc != RP_OK)
        return rc;
    /* The callback's own result stays live until the callback returns. */
    if (rp__in_callback_of(pool))
        return RP_EDEADLK;
    pthread_mutex_lock(&pool->lock);
    int state = pool->state;
    pthread_mutex_unlock(&pool->lock);
    if (state == RP__POOL_OPEN)
        return RP_EINVAL;
    /* Not under ctl: a terminate from another thread must be able to cut this short. */
    wait_live(pool);
    struct pool_core *c = core_of(pool);
    pthread_mutex_lock(&c->ctl);
    if (!c->backend_joined) {
        rc = pool->ops->join(pool);
        rp__pool_service(pool); /* callbacks of jobs completed as the thread stopped */
        c->backend_joined = true;
        pthread_mutex_lock(&pool->lock);
        pool->state = RP__POOL_JOINED;
        pthread_mutex_unlock(&pool->lock);
    }
    pthread_mutex_unlock(&c->ctl);
    return rc;
}

void rp_pool_free(rp_pool_t *pool)
{
    if (!pool)
        return;
    /* A copy inherited by a forked child: the workers belong to the parent. */
    if (current_pid() != pool->owner_pid)
        return;
    /* From a callback: join would wait for that callback, and the backend would
     * stop the thread it runs on. The pool stays as it is. */
    if (rp__in_callback_of(pool)) {
        rp__trace("rp_pool_free called from a callback of the pool: ignored");
        return;
    }
    struct pool_core *c = core_of(pool);
    if (pool->is_master) {
        pthread_mutex_lock(&pool->lock);
        int state = pool->state;
        pthread_mutex_unlock(&pool->lock);
        if (state == RP__POOL_OPEN || state == RP__POOL_CLOSED)
            rp_pool_terminate(pool);
        rp_pool_join(pool);
    }
    rp__monitor_stop(pool);
    rp__pool_drop_buffers(pool);
    pool->ops->destroy(pool);
    pool_destroy(c);
}

/* ---- submitting work ------------------------------------------------------------------- */

int rp__check_map_args(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                       size_t in_size, const void *out, size_t out_size)
{
    int rc = rp__pool_check(pool);
    if (rc != RP_OK)
        return rc;
    size_t in_bytes, out_bytes;
    if (!fn || in_size == 0 || (n > 0 && !in) || (n > 0 && out_size > 0 && !out))
        return RP_EINVAL;
    /* No object is larger than PTRDIFF_MAX bytes: such sizes can only be wrong,
     * and below it the backends' round-ups to an alignment cannot wrap. */
    if (in_size > PTRDIFF_MAX || out_size > PTRDIFF_MAX ||
        rp__mul_size(n, in_size, &in_bytes) != RP_OK || in_bytes > PTRDIFF_MAX ||
        rp__mul_size(n, out_size, &out_bytes) != RP_OK || out_bytes > PTRDIFF_MAX)
        return RP_EINVAL;
    return RP_OK;
}

int rp_map_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                 void *out, size_t out_size, const rp_map_opts_t *opts, rp_result_t **res)
{
    if (!res)
        return RP_EINVAL;
    *res = NULL;
    int rc = rp__check_map_args(pool, fn, in, n, in_size, out, out_size);
    if (rc != RP_OK)
        return rc;
    if (opts && opts->journal)
        return rp__journal_submit(pool, fn, in, n, in_size, out, out_size, opts, 0, res);
    return rp__result_submit(pool, fn, in, n, in_size, out, out_size, opts, 0, res);
}

/* Waits for a result, takes its verdict, frees it. */
static int wait_get_free(rp_result_t *r, rp_error_t *err)
{
    int rc = rp_result_get(r, RP_FOREVER, err);
    rp__result_release(r);
    return rc;
}

int rp__blocking_check(const rp_pool_t *pool, const rp_map_opts_t *opts)
{
    if (opts && (opts->callback || opts->error_callback) && rp__pool_serviced_here(pool))
        return RP_EDEADLK;
    return RP_OK;
}

int rp__call_refused(rp_error_t *err, int rc, const char *call)
{
    if (err)
        rp__error_set(err, rc, 0, -1, NULL, "%s: %s", call,
                      rc == RP_EDEADLK ? "its callback would run on this thread, which "
                                         "waits for it (a callback of the same pool)"
                                       : rp_strerror(rc));
    return rc;
}

int rp_map(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
           void *out, size_t out_size, const rp_map_opts_t *opts, rp_error_t *err)
{
    rp_result_t *r;
    int rc = rp__blocking_check(pool, opts);
    if (rc == RP_OK)
        rc = rp_map_async(pool, fn, in, n, in_size, out, out_size, opts, &r);
    if (rc != RP_OK)
        return rp__call_refused(err, rc, "rp_map");
    return wait_get_free(r, err);
}

int rp_apply_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t in_size,
                   void *out, size_t out_size, const rp_map_opts_t *opts, rp_result_t **res)
{
    return rp_map_async(pool, fn, in, 1, in_size, out, out_size, opts, res);
}

int rp_apply(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t in_size, void *out,
             size_t out_size, rp_error_t *err)
{
    rp_result_t *r;
    int rc = rp_map_async(pool, fn, in, 1, in_size, out, out_size, NULL, &r);
    if (rc != RP_OK)
        return rp__call_refused(err, rc, "rp_apply");
    return wait_get_free(r, err);
}
