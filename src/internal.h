/* Internal declarations shared by the library's files. Nothing here is API.
 * Internal non-static names are rp__*; they are hidden by -fvisibility=hidden. */
#ifndef RP_INTERNAL_H
#define RP_INTERNAL_H

#include "config.h" /* first: _GNU_SOURCE and RP_HAVE_MPI */

#define RP_BUILDING 1
#include "rankpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

struct rp__backend_ops;
struct rp__job;

/* ---- the pool object (pool.c) ------------------------------------------------ */

struct rp_pool {
    const struct rp__backend_ops *ops;
    void           *bdata;        /* backend's state */
    int             nworkers;     /* set by the backend's start() */
    bool            is_master;    /* false on serving MPI ranks */
    pid_t           owner_pid;    /* getpid() at creation: a forked child is refused */
    rp_pool_opts_t  opts;         /* copy of the creator's options */
    void           *initarg_copy; /* opts.initarg copied (initarg_size > 0) */
    char            host[64];

    /* Lock order: pool->lock, then a result's lock, then backend locks. */
    pthread_mutex_t lock;
    int             state;        /* RP__POOL_OPEN, _CLOSED, _TERMINATED, _JOINED */
    uint64_t        next_job_id;
    struct rp_result *live;       /* results not yet finished (doubly linked) */
    pthread_cond_t  idle;         /* signalled when a live result finishes */
    struct rp__monitor *monitor;    /* monitor.c: bars and journals (NULL until used) */
    /* rp_pool_alloc's buffers (buffers.c): set under pool->lock; NULL until the
     * first, so that maps of a pool without buffers take no lock to ask */
    _Atomic(struct rp__buffers *) buffers;
};

enum { RP__POOL_OPEN, RP__POOL_CLOSED, RP__POOL_TERMINATED, RP__POOL_JOINED };

/* Checks a pool handle for the calls that submit or control work: NULL, a
 * non-master rank, use from a forked child. RP_OK or the code to return. */
int rp__pool_check(const rp_pool_t *pool);

/* The worker count from $RP_WORKERS (rankpool-run -n N): *workers is left alone
 * when it is unset; RP_EINVAL when it is not a whole number from 1 to 4096. */
int rp__env_workers(int *workers);
/* The local default when neither opts.workers nor $RP_WORKERS gives one: the
 * cores this process may use, but no more than $SLURM_CPUS_PER_TASK. */
int rp__default_workers(void);

/* Creates a pool on the given backend (rp_pool_create_ex after choosing one);
 * lets tests run the core on a backend of their own. */
int rp__pool_create_ops(rp_pool_t **pool, const rp_pool_opts_t *opts,
                        const struct rp__backend_ops *ops, rp_error_t *err);

/* ---- the task context (worker.c) --------------------------------------------- */

/* Where a variable-size output goes: a backend's allocator, called by rp_output(). */
typedef void *(*rp__output_fn)(void *arg, size_t index, size_t size);

struct rp_ctx {
    size_t        index;       /* input index of the running item (in its job) */
    size_t        index_base;  /* its job's index_base: rp_ctx_index adds it */
    int           worker;      /* this worker's number */
    const char   *host;
    /* set by rp_raise() during the current item */
    bool          raised;
    int           raised_code;
    char          message[256];
    /* variable-size maps */
    rp__output_fn output;      /* NULL outside a variable-size map */
    void         *output_arg;
    bool          output_set;  /* rp_output() was called for the current item */
    /* rp_result_cancel: rp__worker_run stops before an item when *stop is
     * non-zero (NULL: never), and says in `ran` how many items it ran */
    const _Atomic uint32_t *stop;
    size_t        ran;
    /* batch tasks (batch.c): the call running, and the items rp_raise_at named */
    bool          in_batch;
    size_t        batch_first, batch_count;
    struct rp__named *named;
    size_t        nnamed, capnamed;
};

/* Receives a failed item's description from rp__worker_run(). */
typedef void (*rp__fail_fn)(void *arg, const rp_error_t *e);

/* Runs fn on count consecutive items, the first being input index start: in points
 * to that item's input, out to its output slot (NULL when out_size is 0). Before each
 * item, *cur (if not NULL) is set to its index (release store), so a backend can tell
 * which item a dead worker was running. Failures (non-zero return) are described
 * to on_fail. Stops early when ctx->stop is set and non-zero; ctx->ran gets the
 * number of items run. \return the number of failed items. */
size_t rp__worker_run(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                      char *out, size_t out_size, size_t start, size_t count,
                      _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg);

/* Per-item control of a job with a time limit or retries (worker.c): */
typedef struct rp__runctl {
    /* Before each item (each attempt): set to 0, *cur to its index, then to the
     * monotonic nanoseconds past which it is late (now + limit_ns); 0 again after
     * the last. NULL, or limit_ns 0: not published. The backend's watcher kills
     * a worker whose deadline has passed. */
    _Atomic uint64_t *deadline;
    uint64_t          limit_ns;
    /* A task's own failure (non-zero return) runs again in place, at most this
     * many more times; the failure kept is the last, its message saying after
     * how many attempts. */
    unsigned          retries;
} rp__runctl;

/* rp__worker_run, one item at a time under the control of rc. */
size_t rp__worker_run_ctl(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                          char *out, size_t out_size, size_t start, size_t count,
                          _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg,
                          const rp__runctl *rc);
/* rp__worker_run for a job of batch tasks (RP__JOB_BATCH: fn is an rp_batch_fn):
 * one call per run of items; *cur is the first item of the call running. */
size_t rp__worker_run_batch(rp_ctx_t *ctx, rp_task_fn fn, const char *in, size_t in_size,
                            char *out, size_t out_size, size_t start, size_t count,
                            _Atomic size_t *cur, rp__fail_fn on_fail, void *fail_arg);
/* Fills e for the failure of item index: code, what the task returned (rc), and
 * the message it raised, else "<what> returned <rc>". */
void rp__worker_fill_failure(rp_error_t *e, rp_ctx_t *ctx, int code, int rc, size_t index,
                             const char *what);

/* Buffers of rp_pool_alloc (buffers.c). Whether [p, p + bytes) lies in one live
 * buffer the backend shares with its workers (never on a backend without
 * buf_alloc). Takes pool->lock. */
bool rp__pool_shares(rp_pool_t *pool, const void *p, size_t bytes);
/* Whether [p, p + bytes) lies in one live buffer of the pool, shared or not (the
 * memory is the library's to free: ops->buf_release). Takes pool->lock. */
bool rp__pool_owns(rp_pool_t *pool, const void *p, size_t bytes);
/* rp_pool_free: forgets every buffer (frees those the core allocated, through
 * ops->buf_release when the backend has one). */
void rp__pool_drop_buffers(rp_pool_t *pool);

/* Runs an initializer in a worker; fills *err (code RP_EINIT) on failure. */
int rp__worker_init(rp_ctx_t *ctx, rp_init_fn fn, const void *arg, rp_error_t *err);

/* Fills e for a failure of item index with code and message (printf-style). */
void rp__error_set(rp_error_t *e, int code, size_t index, int worker, const char *host,
                   const char *fmt, ...) RP_PRINTF(6, 7);

/* ---- small helpers (util.c) ---------------------------------------------------- */

double rp__now(void);                         /* monotonic seconds */
/* A condition variable whose timed waits count on CLOCK_MONOTONIC (rp__now's). */
void rp__cond_init_monotonic(pthread_cond_t *cond);
struct timespec;
/* *ts = CLOCK_MONOTONIC now + seconds (>= 0): a deadline for a condition variable
 * made with CLOCK_MONOTONIC. */
void rp__abstime(struct timespec *ts, double seconds);
uint64_t rp__now_ns(void);                    /* monotonic nanoseconds (> 0) */
/* The longest task_timeout accepted (seconds): its nanoseconds fit 63 bits. */
#define RP__TIMEOUT_MAX 1e9
/* A caller's timeout as the library reads it: RP_FOREVER for exactly RP_FOREVER,
 * +inf or more than 1e9 s; 0 (poll) for NaN and every other negative value. */
double rp__timeout(double timeout);
/* Absolute monotonic deadline for a timeout (rp__timeout's RP_FOREVER -> +inf). */
double rp__deadline(double timeout);
/* a * b into *res, or RP_EINVAL when it overflows. */
int rp__mul_size(size_t a, size_t b, size_t *res);
void rp__hostname(char *buf, size_t len);
/* Seconds from environment variable name (envtime.c): a number > 0; with never_ok,
 * `0`, `inf`, `off` or `never` give +inf (no limit). Unset, empty or unusable: def
 * (an unusable value is reported under RP_DEBUG). */
double rp__env_seconds(const char *name, double def, bool never_ok);
/* Debug trace to stderr when RP_DEBUG is set in the environment. */
void rp__trace(const char *fmt, ...) RP_PRINTF(1, 2);

/* ---- topology (topo.c, hwloc) -------------------------------------------------- */

/* Cores this process may run on (affinity and cgroup limits honoured), >= 1. */
int rp__topo_ncores(void);
/* Binds the calling process to the k-th of those cores (modulo their count). */
int rp__topo_bind(int k);

/* ---- this process on its node (nodeinfo.c) ------------------------------------- */

/* The node-local rank and the ranks on this node, from mpirun's or srun's
 * environment. \return RP_OK, or RP_EINVAL (both left alone) when neither says. */
int rp__local_rank_size(int *rank, int *size);

#endif /* RP_INTERNAL_H */
