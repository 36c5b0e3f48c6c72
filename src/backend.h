/* The contract between the core (pool.c, result.c, iter.c) and a backend
 * (backend_local.c, backend_mpi.c). The core knows nothing of fork or MPI; a
 * backend knows nothing of AsyncResult semantics (callbacks, ordering of errors,
 * readiness): it runs jobs and reports items.
 *
 * Threads. The core calls submit/wait/done/finish/arrivals from any user thread,
 * several at once; a backend protects its own state. Each backend owns one thread
 * of its own in the master (the "pool thread"), on which it calls rp__job_done()
 * for jobs flagged RP__JOB_NOTIFY: callbacks run there, as in Python.
 */
#ifndef RP_BACKEND_H
#define RP_BACKEND_H

#include "internal.h"

enum {
    RP__JOB_VAR    = 1u << 0, /* variable-size outputs: out_size is sizeof(rp__varslot) */
    RP__JOB_TRACK  = 1u << 1, /* imap: the core consumes items through arrivals() */
    RP__JOB_NOTIFY = 1u << 2, /* has callbacks: the backend's own thread must call
                                 rp__job_done() once every item is processed */
};

/* One map/apply/imap call, as the backend sees it. Owned by its rp_result; valid
 * from submit() until finish() returns. */
struct rp__job {
    uint64_t    id;        /* unique within the pool, increasing */
    rp_task_fn  fn;
    const char *in;        /* n items of in_size bytes (the caller's memory) */
    size_t      in_size;
    char       *out;       /* n items of out_size bytes, or NULL when out_size is 0 */
    size_t      out_size;
    size_t      n;
    size_t      chunksize; /* 0 = automatic (rp__sched_*) */
    unsigned    flags;     /* RP__JOB_* */
    rp_result_t *result;   /* the core's handle; backends pass it back untouched */
    void       *bdata;     /* the backend's per-job state */
};

/* Variable-size outputs: the fixed-size slot of each item of an RP__JOB_VAR job,
 * as finish()/arrivals() must leave it in job->out. data is malloc'd in the master
 * (the core frees it) or NULL with size 0 for an item that set no output. */
typedef struct rp__varslot {
    void  *data;
    size_t size;
} rp__varslot;

struct rp__backend_ops {
    const char *name;
    /* Starts the workers (runs the initializers) and the pool thread. On MPI ranks
     * other than the master it serves tasks until the master is done, then returns
     * RP_OK with pool->is_master false. On failure fills *err and cleans up. */
    int  (*start)(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err);
    /* Makes a job runnable and returns at once. From now until finish() the backend
     * owns job->in and job->out. */
    int  (*submit)(rp_pool_t *pool, struct rp__job *job);
    /* Blocks until every item of job is processed (succeeded, failed, canceled),
     * or timeout seconds (RP_FOREVER: no limit). RP_OK or RP_ETIMEDOUT. Must not
     * burn a core for long: spin briefly, then sleep. */
    int  (*wait)(rp_pool_t *pool, struct rp__job *job, double timeout);
    /* Non-blocking: is every item of job processed? */
    bool (*done)(rp_pool_t *pool, struct rp__job *job);
    /* Non-blocking: how many items of job are processed so far (failed included). */
    size_t (*progress)(rp_pool_t *pool, struct rp__job *job);
    /* Called exactly once per job, after done() is true (or from rp__job_done):
     * every output not yet delivered is now copied to job->out, every failure not
     * yet reported is reported with rp__job_fail*(), the job's resources are freed.
     * For RP__JOB_TRACK jobs, items already returned by arrivals() are not again. */
    void (*finish)(rp_pool_t *pool, struct rp__job *job);
    /* RP__JOB_TRACK only: waits up to timeout for items processed since the last
     * call and returns how many (at most max) indexes it put in idx[]. Before it
     * returns, their outputs are in job->out and their failures were reported.
     * 0 means none within timeout (or all were already returned). */
    size_t (*arrivals)(rp_pool_t *pool, struct rp__job *job, size_t *idx, size_t max,
                       double timeout);
    /* No more submits will come; running and queued jobs go on. */
    int  (*close)(rp_pool_t *pool);
    /* After close and after every job was finished: stops the workers and waits
     * for them to exit (and, for mpi, releases the serving ranks). */
    int  (*join)(rp_pool_t *pool);
    /* Stops the workers now. Every unfinished job becomes done: its unprocessed
     * items are reported with code RP_ECANCELED (rp__job_fail_range), NOTIFY jobs
     * get their rp__job_done() call. Returns once no worker runs a task. */
    int  (*terminate)(rp_pool_t *pool);
    /* Frees everything the backend holds; the workers are gone by now. */
    void (*destroy)(rp_pool_t *pool);
    /* The largest initarg_size start() accepts (0: no limit). The core does not copy
     * a larger initarg: start() refuses it (on every MPI rank). */
    size_t initarg_max;
};

extern const struct rp__backend_ops rp__backend_local;
extern const struct rp__backend_ops rp__backend_mpi;

/* ---- what a backend calls in the core (result.c) ---------------------------- */

/* Records the failure of one item (e->index). Thread-safe; any thread. */
void rp__job_fail(struct rp__job *job, const rp_error_t *e);
/* Records the same failure for items [start, start+count) (e.g. RP_ECANCELED);
 * e->index is ignored. Stored compactly: no per-item memory. */
void rp__job_fail_range(struct rp__job *job, size_t start, size_t count, const rp_error_t *e);
/* RP__JOB_NOTIFY jobs: every item is processed. Called once, on the backend's own
 * thread; the core calls finish(), then the callback, then wakes the waiters. */
void rp__job_done(struct rp__job *job);

#endif /* RP_BACKEND_H */
