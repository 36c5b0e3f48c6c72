/* The contract between the core and a backend.
 *
 * The core decides, a backend moves bytes. The core (pool.c, result.c, ledger.c,
 * iter.c, varout.c, scheduler.c) owns every decision about a job: which items go
 * next and where (scheduler.h), what an item's outcome means, when a job is
 * complete, where outputs land, what a dead worker's items become, callbacks,
 * cancellation. A backend starts and stops workers, moves inputs and outputs
 * between processes, and reports what happened with the rp__job_* calls below.
 *
 * Threads. The core calls the ops from any user thread, several at once; a
 * backend protects its own state. Each backend owns one thread in the master
 * (the "pool thread"): it calls rp__pool_service() whenever ops->kick() asked it
 * to, which runs callbacks there, as Python does.
 *
 * Ops that may be NULL say so. */
#ifndef RP_BACKEND_H
#define RP_BACKEND_H

#include "futex.h"
#include "internal.h"
#include "scheduler.h"

enum {
    RP__JOB_VAR    = 1u << 0, /* variable-size outputs: out_size is sizeof(rp__varslot) */
    RP__JOB_TRACK  = 1u << 1, /* imap: the core hands items out as they arrive */
    RP__JOB_NOTIFY = 1u << 2, /* has callbacks: completed on the pool thread */
    RP__JOB_BATCH  = 1u << 3, /* fn is an rp_batch_fn: rp__worker_run_batch runs it */
};

/* A job's completion word. Shareable by processes (no pointers): a backend whose
 * workers count in shared memory points job->done into it, so the worker that
 * completes a job wakes its waiters itself. word: 0 pending, 1 complete; waiters
 * sleep on it with a futex after counting themselves in sleepers. */
typedef struct rp__done {
    _Atomic uint32_t word;
    _Atomic uint32_t sleepers;
} rp__done;

/* One map/apply/imap call. Owned by its rp_result; valid from submit() until
 * release() returns. */
struct rp__job {
    uint64_t    id;        /* unique within the pool, increasing: older is lower */
    rp_task_fn  fn;
    const char *in;        /* n items of in_size bytes (the caller's memory) */
    size_t      in_size;
    char       *out;       /* n items of out_size bytes, or NULL when out_size is 0 */
    size_t      out_size;
    size_t      n;
    size_t      chunksize; /* 0 = automatic */
    unsigned    flags;     /* RP__JOB_* */
    /* What rp_ctx_index() and a dead worker's message add to an item's index: the
     * index of item 0 in the caller's whole call (a stream's segment, stream.c);
     * 0 for every other job. Every other index here is the job's own. */
    size_t      index_base;
    rp_result_t *result;   /* the core's handle */
    void       *bdata;     /* the backend's per-job state */
    /* The completion word waiters sleep on: &own_done unless the backend moves it
     * (rp__job_move_done). Read with rp__job_done_word(). */
    _Atomic(rp__done *) done;
    rp__done    own_done;
    _Atomic uint64_t processed; /* items counted with rp__job_processed */
    rp__sjob    sched;     /* the scheduler's part (dispatching backends) */
    /* rp_result_cancel: 0, or RP__CANCELED | its flags (RP_CANCEL_KILL). Set
     * before ops->cancel is called; read with rp__job_canceled(). */
    _Atomic int cancel;
    /* Control of running work (retry.c): set at submit, read-only after. */
    double      timeout;   /* seconds one item may run; 0 = no limit. The backend
                              kills a worker whose item runs longer and reports
                              its death with rp__death.timeout set */
    int         retries;   /* runs again after a death or a timeout, at most */
    bool        retry_raised; /* workers retry a task's own failure in place
                                 (rp__worker_run_ctl) */
};

enum { RP__CANCELED = 1 << 8 }; /* in job->cancel, above the public RP_CANCEL_* flags */

/* Variable-size outputs: the slot of each item of an RP__JOB_VAR job in job->out.
 * data is malloc'd by the core (rp__job_deliver_var) or NULL with size 0. */
typedef struct rp__varslot {
    void  *data;
    size_t size;
} rp__varslot;

/* ops->runs_on: where a job runs, seen from the thread that waits for it. */
enum {
    RP__RUNS_ELSEWHERE, /* on another CPU (or about to be taken there) */
    RP__RUNS_HERE,      /* it waits for a worker on the caller's CPU, or for a
                           slot, and the pool has other CPUs */
    RP__RUNS_HERE_ONLY, /* the caller's CPU is the only one the pool has */
};

struct rp__backend_ops {
    const char *name;
    /* Starts the workers (runs the initializers) and the pool thread. On MPI ranks
     * other than the master it serves tasks until the master is done, then returns
     * RP_OK with pool->is_master false. On failure fills *err and cleans up. */
    int  (*start)(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err);
    /* Takes a job: its items may run from now on. The backend owns job->in and
     * job->out until release(). A job of 0 items is never submitted. */
    int  (*submit)(rp_pool_t *pool, struct rp__job *job);
    /* May be NULL. Moves the backend's messages on the calling thread until job is
     * complete or `until` (absolute, rp__now()) passes: a thread waiting for a
     * short job gets its result without a hand-off to the pool thread. */
    void (*drive)(rp_pool_t *pool, struct rp__job *job, double until);
    /* May be NULL (the backend delivers as items arrive). Delivers (rp__job_deliver,
     * rp__job_fail) what has arrived of job and not been delivered; `final`: the job
     * is complete, deliver everything. When nothing arrived and !final, waits up to
     * `timeout` seconds for something to (RP__JOB_TRACK). */
    void (*collect)(rp_pool_t *pool, struct rp__job *job, bool final, double timeout);
    /* May be NULL. Items of job processed so far that the backend has not counted
     * with rp__job_processed (a backend counting in shared memory). */
    size_t (*progress)(rp_pool_t *pool, struct rp__job *job);
    /* The job is complete and collected: free the backend's per-job state. Called
     * exactly once per submitted job. */
    void (*release)(rp_pool_t *pool, struct rp__job *job);
    /* Wakes the pool thread, which then calls rp__pool_service(). Any thread. */
    void (*kick)(rp_pool_t *pool);
    /* May be NULL. No more submits will come; running and queued jobs go on. */
    int  (*close)(rp_pool_t *pool);
    /* After close and after every job was released: stops the workers, waits for
     * them to exit (and, for mpi, releases the serving ranks). */
    int  (*join)(rp_pool_t *pool);
    /* Stops the workers now, whatever state they are in, and returns promptly.
     * Every unprocessed item of every submitted job is then reported: those a
     * worker held with rp__job_worker_died (the core cancels them, the pool being
     * terminated), the unclaimed ones with rp__job_cancel. */
    int  (*terminate)(rp_pool_t *pool);
    /* Frees everything the backend holds; the workers are gone by now. */
    void (*destroy)(rp_pool_t *pool);
    /* The largest initarg_size start() accepts (0: no limit). The core does not copy
     * a larger initarg: start() refuses it (on every MPI rank). */
    size_t initarg_max;
    /* rp_result_cancel (job->cancel is set): reports every item of job that has not
     * started with rp__job_cancel (counted), and makes the workers holding items of
     * it stop before their next item (their unstarted items canceled too). With
     * RP_CANCEL_KILL in flags it also kills the workers running an item of it
     * (reported as deaths: the core cancels those items). Returns promptly; the job
     * completes when the items running finish (or their workers are gone). Any
     * thread; the job is not released meanwhile. */
    void (*cancel)(rp_pool_t *pool, struct rp__job *job, int flags);
    /* Whether cancel() honours RP_CANCEL_KILL (else the core refuses the flag). */
    bool kills;
    /* May be NULL (the backend counts in the master, through rp__job_processed).
     * The core wants to hear when job completes: from now on, completing it must
     * lead to rp__job_completed() on the pool thread, as for RP__JOB_NOTIFY jobs.
     * (Completion before or during this call is the core's to notice.) */
    void (*watch)(rp_pool_t *pool, struct rp__job *job);
    /* May be NULL (rp_pool_alloc then mallocs: nothing is shared). Memory of bytes
     * that every worker sees at the same address, so that a job whose in or out
     * lies in it needs no copy; NULL when there is no room. Master, pool->lock held. */
    void *(*buf_alloc)(rp_pool_t *pool, size_t bytes);
    /* Gives back a buffer of buf_alloc (bytes as asked). pool->lock held. */
    void  (*buf_free)(rp_pool_t *pool, void *p, size_t bytes);
    /* May be NULL (free()). Without buf_alloc: takes a buffer rp_pool_alloc
     * malloc'd that the pool gives up (rp_pool_free_buffer, rp_pool_free) and
     * free()s it, at once or once nothing the backend started still reads it.
     * pool->lock not held. */
    void  (*buf_release)(rp_pool_t *pool, void *p, size_t bytes);
    /* May be NULL (waiters spin as if it said RP__RUNS_ELSEWHERE). Where job
     * runs, or is about to be taken, as far as the backend knows (the CPU its
     * worker was last seen on), seen from the calling thread: RP__RUNS_*. A
     * waiter spins on the done word only while it runs elsewhere. A hint, asked
     * often: a few loads, no lock. Any thread, between submit() and release(). */
    int   (*runs_on)(rp_pool_t *pool, struct rp__job *job);
};

extern const struct rp__backend_ops rp__backend_local;
#if RP_HAVE_MPI
extern const struct rp__backend_ops rp__backend_mpi;
#endif

/* ---- what a backend calls in the core (ledger.c) --------------------------------
 * Any thread unless said otherwise. For one job, deliveries and failures of
 * disjoint items may be reported concurrently. */

/* Outputs of items [a, b) are at src: (b - a) * out_size bytes, copied to the
 * caller's buffer (nothing to copy when src is already there). Records the
 * items' arrival for an iterator. Does not count them (rp__job_processed). */
void rp__job_deliver(struct rp__job *job, size_t a, size_t b, const void *src);
/* RP__JOB_VAR: item i's output is size bytes at data (copied; a second call for
 * the same item replaces the first). RP_OK or RP_ENOMEM (then the item fails). */
int  rp__job_deliver_var(struct rp__job *job, size_t i, const void *data, size_t size);
/* Records the failure of one item (e->index). */
void rp__job_fail(struct rp__job *job, const rp_error_t *e);
/* Records the same failure for items [start, start + count); e->index is ignored.
 * Stored compactly: no per-item memory. */
void rp__job_fail_range(struct rp__job *job, size_t start, size_t count, const rp_error_t *e);
/* Items [a, b) will never run: the pool was terminated (or the job canceled).
 * The core records why and counts them when counted is true. */
void rp__job_cancel(struct rp__job *job, size_t a, size_t b, bool count);
/* Whether rp_result_cancel was called on job: items a backend would put back
 * (a dead worker's, a batch handed back) are canceled instead. */
static inline bool rp__job_canceled(const struct rp__job *job)
{
    return atomic_load(&((struct rp__job *)job)->cancel) != 0;
}
/* The failure record of a canceled item (RP_ECANCELED), built in one place for
 * the core and for worker processes that cancel the rest of a chunk. */
void rp__cancel_error(rp_error_t *e, size_t index, int worker, const char *host,
                      bool terminated);
/* count more items are processed (their outputs delivered, their failures
 * recorded). The call that counts the last one completes the job: the done word
 * is set and waiters wake; for an RP__JOB_NOTIFY job the pool thread is kicked
 * to run the callback. \return true when this call completed the job. */
bool rp__job_processed(struct rp__job *job, size_t count);
/* A backend that counts in shared memory set the job's done word itself (with
 * rp__done_set): called on the pool thread for RP__JOB_NOTIFY jobs, it finalizes
 * the job and runs its callback. */
void rp__job_completed(struct rp__job *job);

/* How a worker ended, as a backend knows it. */
typedef struct rp__death {
    int         worker;    /* the pool's worker number */
    int         pid;       /* its process, 0 if unknown */
    int         status;    /* waitpid() status, or -1 if unknown (e.g. its rank is lost) */
    const char *host;
    int         rank;      /* mpi: the rank that hosted it, else -1 */
    const char *why;       /* NULL, or what the backend knows beyond the status */
    /* The pool killed it (task timeouts): */
    double      timeout;   /* > 0: item `running` ran past this limit (seconds) */
    bool        requeue;   /* it was killed for an item that ended just before: the
                              item running did not fail, it runs again */
} rp__death;

/* The dead-worker policy, the same for every backend. Worker d->worker died
 * while it held items [a, b) of job and ran item `running` (a <= running <= b;
 * b means between items: nothing was running); items [a, running) are done and
 * were delivered and counted by the caller. The core fails `running` with
 * RP_EWORKER (its signal or exit status in the error; RP_ETASKTIMEOUT when
 * d->timeout is set), or cancels [running, b) when the pool is terminating, and
 * returns in *ra, *rb the items that must run again on other workers: the
 * caller puts them back (rp__sched_putback, or its own claim ranges). *ra is
 * `running` itself when it runs again (job->retries left, or d->requeue): then
 * it is neither failed nor counted. `running` is counted when `count` is true
 * and it failed. The caller counts (b - running) - (*rb - *ra) items. An RP__JOB_BATCH
 * job's batch task was running all of [running, b) in one call: they all fail
 * (and are counted; never retried), nothing is handed back. */
void rp__job_worker_died(struct rp__job *job, const rp__death *d, size_t a, size_t running,
                         size_t b, bool count, size_t *ra, size_t *rb);
/* "killed by signal 11 (Segmentation fault)" or "exited with status 3". */
void rp__describe_status(char *buf, size_t len, int status);

/* Moves a job's done word (to shared memory): waiters sleeping on the old one
 * wake and sleep on the new one. The new word must be pending. */
void rp__job_move_done(struct rp__job *job, rp__done *d);

/* ---- the completion word (inline: worker processes use it too) ------------------ */

static inline bool rp__done_is(const rp__done *d)
{
    return atomic_load_explicit(&((rp__done *)d)->word, memory_order_acquire) != 0;
}

/* Completes d and wakes whoever sleeps on it. \return true for the one call
 * that completed it. */
static inline bool rp__done_set(rp__done *d)
{
    uint32_t zero = 0;
    if (!atomic_compare_exchange_strong(&d->word, &zero, 1))
        return false;
    if (atomic_load(&d->sleepers) > 0)
        rp__futex_wake(&d->word, INT_MAX);
    return true;
}

/* Pool thread: runs the callbacks of completed RP__JOB_NOTIFY jobs. */
void rp__pool_service(rp_pool_t *pool);

#endif /* RP_BACKEND_H */
