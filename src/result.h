/* The AsyncResult object, private to the core (pool.c, result.c, ledger.c,
 * iter.c, stream.c, varout.c). Backends see only the embedded struct rp__job. */
#ifndef RP_RESULT_H
#define RP_RESULT_H

#include "backend.h"

/* Failures are stored as ranges: one failed item is a range of one; terminate
 * cancels a million items with one record. e.index is the range's start. */
typedef struct rp__fail {
    size_t     start;
    size_t     count;
    rp_error_t e;
} rp__fail;

enum { RP__RES_PENDING, RP__RES_FINALIZING, RP__RES_READY };

/* RP__JOB_TRACK: items delivered and not yet taken by the iterator, as ranges in
 * a ring (under the result's lock). */
struct rp__range {
    size_t a, b;
};
struct rp__arrivals {
    struct rp__range *v;
    size_t            head, len, cap;
    bool              lost;   /* a range could not be queued (out of memory) */
};

struct rp_result {
    struct rp__job   job;        /* first member: (rp_result_t *)job is the result */
    rp_pool_t       *pool;       /* valid while not ready */
    rp_map_opts_t    opts;       /* callbacks and userdata */
    bool             submitted;  /* ops->submit accepted the job */

    /* Lock order: pool->lock, then this lock, then backend locks. The lock and
     * cond stay initialised while the record is reused (result.c: record_new
     * zeroes what lies before lock and from state on). */
    pthread_mutex_t  lock;
    pthread_cond_t   cond;       /* broadcast when state becomes READY */
    _Atomic int      state;      /* RP__RES_* */
    _Atomic int      refs;       /* the caller's handle + transient holders (join) */
    _Atomic int      opsbusy;    /* threads inside ops->drive/collect/progress */
    pthread_t        cb_thread;  /* the thread running this result's callback */
    _Atomic bool     in_callback;
    _Atomic bool     free_pending; /* rp_result_free() called from the callback */

    /* Failures, under lock until ready; sorted by start at finalization. */
    rp__fail        *fails;
    size_t           nfails, capfails;
    size_t           nerrors;    /* failed items (sum of counts) */
    bool             sorted;
    size_t          *cum;        /* after sorting: failed items before fails[k] */
    size_t          *failidx;    /* RP__JOB_TRACK: 1 + position in fails, per item,
                                    while unsorted (lazily allocated) */
    /* rp_result_error() inside a range: a record per failure position asked
     * for, made on the first ask, kept until destruction (hash table, under lock) */
    size_t          *memo_key;   /* position + 1; 0 marks an empty slot */
    rp_error_t     **memo_val;
    size_t           memo_cap, memo_n;

    struct rp__arrivals arr;     /* RP__JOB_TRACK */
    /* rp_result_on_ready and rp_result_wait_any (watch.c): once watched, the job's
     * completion goes to the pool thread, which finalizes it (no waiter finalizes
     * it lazily); at READY the waiters' words are set and woken, then the
     * callbacks run. Under lock. */
    _Atomic bool     watched;
    _Atomic bool     notified;   /* queued for the pool thread (once) */
    struct rp__watcher *watchers;
    struct rp_result *prev, *next; /* pool->live */
    bool             linked;
    struct rp_result *nnext;     /* the pool's queue of jobs to notify */
    struct rp__attempts *attempts; /* retry.c: failed attempts per item (under lock) */
    struct rp__monitorres *monitor; /* progress bar, journal (monitor.h); NULL: none */
};

/* Something waiting for a result to become READY (watch.c): a callback
 * (rp_result_on_ready), or a thread in rp_result_wait_any sleeping on `word`. */
struct rp__watcher {
    struct rp__watcher *next;
    rp_callback_fn      fn;       /* NULL: a waiter */
    void               *userdata;
    _Atomic uint32_t   *word;     /* a waiter's: set to 1 and woken at READY */
};

/* Creates a result for a job and submits it. n == 0 is finalized at once (its
 * callback runs on the calling thread). Arguments were checked by the caller.
 * \return RP_OK, RP_ECLOSED, RP_ENOMEM, or what ops->submit returned. */
int rp__result_submit(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                      size_t in_size, void *out, size_t out_size,
                      const rp_map_opts_t *opts, unsigned flags, rp_result_t **res);
/* The same for a job whose item 0 is item index_base of the caller's call (a
 * stream's segment): see rp__job.index_base. */
int rp__result_submit_at(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                         size_t in_size, void *out, size_t out_size,
                         const rp_map_opts_t *opts, unsigned flags, size_t index_base,
                         rp_result_t **res);
/* rp__result_submit_at with a monitor state already made (monitor.h: a journal),
 * which the result takes over (freed with it, or here on failure). */
struct rp__monitorres;
int rp__result_submit_monitored(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                                size_t in_size, void *out, size_t out_size,
                                const rp_map_opts_t *opts, unsigned flags, size_t index_base,
                                struct rp__monitorres *monitor, rp_result_t **res);
/* The ops gate for code outside result.c (journal.c): false when the result is
 * being finalized (no backend call may be made then). */
bool rp__result_ops_enter(rp_result_t *r);
void rp__result_ops_leave(rp_result_t *r);
/* Waits up to timeout and finalizes. RP_OK or RP_ETIMEDOUT. */
int rp__result_wait(rp_result_t *r, double timeout);
/* Takes / drops a reference; the last drop frees the result. */
void rp__result_hold(rp_result_t *r);
void rp__result_release(rp_result_t *r);
/* Finalizes a complete job (pool thread, for RP__JOB_NOTIFY jobs). */
void rp__result_finalize(rp_result_t *r);
/* RP__JOB_TRACK: up to max delivered items not yet taken, into idx[]. */
size_t rp__result_take_arrivals(rp_result_t *r, size_t *idx, size_t max);
/* For iterators: copies the failure of item index into *e; false if it did not
 * fail (or no record is known). Any time, ready or not. */
bool rp__result_find_error(rp_result_t *r, size_t index, rp_error_t *e);
/* Whether this thread is running one of pool's callbacks (where join and free
 * would wait for the callback itself to return). */
bool rp__in_callback_of(const rp_pool_t *pool);
/* pool.c: whether this thread runs pool's completions and callbacks (its pool
 * thread, in rp__pool_service): a result only that thread completes (with
 * callbacks, or watched) cannot become ready while it waits. */
bool rp__pool_serviced_here(const rp_pool_t *pool);
/* pool.c: RP_EDEADLK when a blocking map with callbacks in opts is called where
 * they would have to run (a callback of the same pool), else RP_OK. */
int rp__blocking_check(const rp_pool_t *pool, const rp_map_opts_t *opts);
/* pool.c: a blocking call ran nothing: fills *err (may be NULL) with rc and a
 * message naming the call (no item, worker -1). \return rc. */
int rp__call_refused(rp_error_t *err, int rc, const char *call);
/* RP__JOB_TRACK: waits up to timeout for an item to arrive (or the job to
 * complete), letting the backend collect what has arrived. */
void rp__result_await_arrival(rp_result_t *r, double timeout);
/* The ops gate (result.c): true when the job is not being finalized and the
 * caller may call the backend about it until rp__result_ops_leave. */
bool rp__result_ops_enter(rp_result_t *r);
void rp__result_ops_leave(rp_result_t *r);
/* READY (without finalizing anything)? */
bool rp__result_is_ready(const rp_result_t *r);
/* Whether the job's done word is set. */
bool rp__result_job_done(const rp_result_t *r);
/* watch.c: the job's completion goes to the pool thread from now on. */
void rp__result_watch(rp_result_t *r);
/* watch.c: at READY (finalize, under r->lock): wakes the waiters, detaches
 * the callbacks and returns them (the caller runs them with rp__watchers_run). */
struct rp__watcher *rp__watchers_ready(rp_result_t *r);
void rp__watchers_run(rp_result_t *r, struct rp__watcher *list);

/* retry.c: checks a map's task_timeout, retries and retry_raised and sets the
 * job's (the pool's task_timeout when the map's is 0). RP_OK or RP_EINVAL. */
int  rp__job_control(rp_result_t *r, const rp_map_opts_t *opts);
/* retry.c: item i of r failed by a death or a timeout: counts the attempt in
 * *attempts (1 for the first) and says whether it runs again. */
bool rp__job_retry(rp_result_t *r, size_t i, unsigned *attempts);
/* retry.c: frees the attempt counts. */
void rp__attempts_free(rp_result_t *r);

/* iter.c: one segment of an imap stream (stream.c): a tracked job over n items
 * whose outputs (n * out_size bytes, or n variable-size outputs) the segment owns.
 * Indexes are the segment's own, 0..n-1 (only rp_ctx_index inside the task and a
 * dead worker's message add base, the index of its item 0 in the stream). */
typedef struct rp__seg rp__seg;
/* Checks the arguments and submits the segment's job, whose item 0 is item base
 * of the stream. RP_OK or what a map returns (RP_EINVAL, RP_ECLOSED, RP_ENOMEM,
 * ...). n may be 0. */
int rp__seg_open(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                 size_t out_size, const rp_map_opts_t *opts, bool ordered, bool var,
                 size_t base, rp__seg **seg);
/* The next item (in input order, or as it arrives): its index, where its output is
 * (*out, *size: valid until rp__seg_drop or rp__seg_free; NULL, 0 for a failed
 * item). \return as rp_iter_next. */
int rp__seg_next(rp__seg *seg, double timeout, size_t *index, const void **out,
                 size_t *size, rp_error_t *err);
/* The segment's result (rp_iter_cancel cancels it). */
rp_result_t *rp__seg_result(rp__seg *seg);
/* Variable-size segment: frees the output of item i, already yielded. */
void rp__seg_drop(rp__seg *seg, size_t i);
/* Items not yielded yet. */
size_t rp__seg_left(const rp__seg *seg);
/* Waits for the segment's job, frees it and its outputs. NULL does nothing. */
void rp__seg_free(rp__seg *seg);

/* pool.c: the argument checks shared by every submitting call: pool usable, fn
 * set, in_size > 0, in (and out when out_size > 0) non-NULL when n > 0, no size
 * overflow. RP_OK or the code to return. */
int rp__check_map_args(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                       size_t in_size, const void *out, size_t out_size);

/* pool.c: the live list and the submit gate (close waits for submits in flight). */
int  rp__pool_enter_submit(rp_pool_t *pool, rp_result_t *r);
void rp__pool_leave_submit(rp_pool_t *pool);
void rp__pool_unlink(rp_pool_t *pool, rp_result_t *r);
/* pool.c: queues a complete RP__JOB_NOTIFY job for the pool thread and kicks it. */
void rp__pool_notify(rp_pool_t *pool, rp_result_t *r);
/* pool.c: is the pool being terminated (work not yet done is canceled)? */
bool rp__pool_terminating(const rp_pool_t *pool);

#endif /* RP_RESULT_H */
