/* rankpool: Python's multiprocessing.Pool for C, on forked workers or MPI ranks.
 *
 * One pool API, two backends chosen at run time: "local" (worker processes forked
 * on this machine) and "mpi" (MPI ranks started by mpirun/srun). This header is
 * the whole public contract; what is not here is not API.
 *
 * Conventions
 *  - Every call that can fail returns an int: RP_OK (0) or a negative RP_E* code.
 *    rp_strerror() gives a text for any int, rp_err_name() its symbolic name.
 *  - Destructors accept NULL and do nothing.
 *  - Buffers of an asynchronous call (in, out) belong to the pool until its result
 *    is ready, as with MPI's non-blocking calls.
 *  - Timeouts are seconds as a double: RP_FOREVER (exactly -1.0) and +INFINITY
 *    wait without limit; 0 polls, and so do NaN and every other negative value
 *    (a computed `deadline - now` that has just passed never waits forever).
 *  - Sizes: an item size, or n times it, above PTRDIFF_MAX is RP_EINVAL (no
 *    buffer can be that large); one the backend cannot hold is RP_ENOMEM.
 */
#ifndef RANKPOOL_H
#define RANKPOOL_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(RP_BUILDING) && defined(__GNUC__)
#define RP_API __attribute__((visibility("default")))
#else
#define RP_API
#endif

#if defined(__GNUC__)
#define RP_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RP_PRINTF(f, a)
#endif

#define RP_VERSION_MAJOR 0
#define RP_VERSION_MINOR 1
#define RP_VERSION_PATCH 0

/* The status codes: XX(NAME, value, text). RP_DONE is positive: not a failure. */
#define RP_ERRNO_MAP(XX)                                                            \
    XX(OK,         0,   "success")                                                  \
    XX(DONE,       1,   "iteration finished: no more items")                        \
    XX(EINVAL,    -1,   "invalid argument")                                         \
    XX(ENOMEM,    -2,   "out of memory")                                            \
    XX(ETIMEDOUT, -3,   "timed out")                                                \
    XX(ENOTREADY, -4,   "result not ready yet")                                     \
    XX(ETASK,     -5,   "a task failed")                                            \
    XX(EWORKER,   -6,   "a worker died while running a task")                       \
    XX(ECANCELED, -7,   "canceled (by rp_result_cancel or pool terminate)")         \
    XX(ECLOSED,   -8,   "the pool is closed to new work")                           \
    XX(EINIT,     -9,   "the worker initializer failed")                            \
    XX(EBACKEND,  -10,  "unknown or unavailable backend")                           \
    XX(ESYS,      -11,  "a system call failed")                                     \
    XX(EMPI,      -12,  "an MPI call failed")                                       \
    XX(EPROTO,    -13,  "malformed message between processes")                     \
    XX(EFNREF,    -14,  "function cannot be found in the worker's program")         \
    XX(ENOTMASTER,-15,  "only the master may call this")                            \
    XX(EBROKEN,   -16,  "the pool has no working worker left")                      \
    XX(EFORK,     -17,  "pool used from a process forked from its owner")           \
    XX(EDEADLK,   -18,  "called from one of the pool's own callbacks: would wait for itself") \
    XX(ETASKTIMEOUT,-19, "a task ran past its time limit") \
    XX(EJOURNAL,  -20,  "the journal file does not match this job or is unreadable")

enum {
#define RP__ERR_ENUM(name, value, text) RP_##name = value,
    RP_ERRNO_MAP(RP__ERR_ENUM)
#undef RP__ERR_ENUM
};

#define RP_FOREVER (-1.0)

typedef struct rp_pool   rp_pool_t;    /* opaque */
typedef struct rp_result rp_result_t;  /* opaque: Python's AsyncResult */
typedef struct rp_iter   rp_iter_t;    /* opaque: imap / imap_unordered */
typedef struct rp_ctx    rp_ctx_t;     /* opaque: what a running task can ask */
typedef struct rp_varout rp_varout_t;  /* opaque: outputs of a variable-size map */

/* A failure, with where it happened. */
typedef struct rp_error {
    int    code;          /* RP_ETASK, RP_EWORKER, RP_ECANCELED, RP_EINIT, ... */
    int    task_code;     /* what the task (or initializer) returned, else 0 */
    size_t index;         /* which input item */
    int    worker;        /* which worker (0..size-1), -1 if none */
    int    signal;        /* RP_EWORKER: the signal that killed the worker, else 0 */
    int    exit_status;   /* RP_EWORKER: its exit status if it exited, else -1 */
    char   host[64];      /* host the worker ran on */
    char   message[256];  /* the task's rp_raise() text, or what the pool knows */
} rp_error_t;

/* A task reads one input item and writes one output item. Return 0 for success;
 * anything else is a failure, best described with `return rp_raise(ctx, ...)`. */
typedef int (*rp_task_fn)(const void *in, void *out, rp_ctx_t *ctx);
/* Runs once in each worker before its first task; non-zero fails pool creation. */
typedef int (*rp_init_fn)(const void *arg, rp_ctx_t *ctx);
typedef void (*rp_callback_fn)(rp_result_t *result, void *userdata);
typedef void (*rp_error_callback_fn)(const rp_error_t *error, void *userdata);

/* Limits of the mpi backend. An item of a map (in_size + out_size bytes; in_size
 * for rp_map_var) travels through a worker's transfer area of 256 MiB: larger items
 * are refused at once (every item fails with RP_EINVAL, the message names the
 * limit), and a chunk larger than the area travels in parts. The initializer's
 * argument goes to every rank in one MPI message: a larger initarg_size makes
 * rp_pool_create fail with RP_EINVAL on every rank. (The local backend has no such
 * limits.) */
#define RP_MPI_ITEM_MAX    (((size_t)256 << 20) - ((size_t)64 << 10))
#define RP_MPI_INITARG_MAX (((size_t)2 << 30) - ((size_t)1 << 20))

/* Pool options: a zeroed struct (or NULL) means the defaults. */
typedef struct rp_pool_opts {
    const char *backend;        /* "local", "mpi", or NULL: $RP_BACKEND, else mpi under
                                   mpirun/srun with more than one rank, else local */
    int         workers;        /* local: 0 = $RP_WORKERS, else one per core this
                                   process may use (at most $SLURM_CPUS_PER_TASK),
                                   at most 1024; mpi: 0 = every rank but the master,
                                   at most 1024 per serving rank (and what
                                   RLIMIT_NPROC and pid_max of each node allow); a
                                   negative count, or more than that, is RP_EINVAL */
    rp_init_fn  initializer;    /* optional, run once per worker */
    const void *initarg;        /* its argument; copied at creation */
    size_t      initarg_size;   /* bytes at initarg (0: initarg passed as is, local only;
                                   mpi: at most RP_MPI_INITARG_MAX) */
    long        max_tasks_per_worker; /* 0 = unlimited; else a worker is replaced
                                         after that many items */
    bool        bind;           /* bind worker k to core k (hwloc) */
    void       *comm;           /* mpi: pointer to an MPI_Comm, NULL = MPI_COMM_WORLD
                                   (see rankpool_mpi.h) */
    double      task_timeout;   /* the per-item time limit (seconds) of every map
                                   whose own task_timeout is 0; 0 = none; negative
                                   or NaN: RP_EINVAL (see rp_map_opts_t) */
} rp_pool_opts_t;

/* Per-call options: a zeroed struct (or NULL) means the defaults. */
typedef struct rp_map_opts {
    size_t               chunksize;       /* items per dispatch; 0 = automatic */
    rp_callback_fn       callback;        /* once, if every item succeeded */
    rp_error_callback_fn error_callback;  /* once, with the lowest failing item */
    void                *userdata;        /* given to both callbacks */
    /* Control of running work (see "time limits and retries" below). */
    double               task_timeout;    /* seconds one item may run (wall clock,
                                             measured by the pool); past it the
                                             worker is killed and replaced and the
                                             item fails with RP_ETASKTIMEOUT; 0 =
                                             the pool's task_timeout; negative or
                                             NaN: RP_EINVAL */
    int                  retries;         /* an item whose worker died or that ran
                                             past its limit runs again, up to this
                                             many more times; 0 = never; negative:
                                             RP_EINVAL */
    bool                 retry_raised;    /* retry items that failed by the task's
                                             own return/rp_raise too */
    /* ---- progress and resume (see "progress and resume" below) ---- */
    bool                 progress;        /* draw a progress bar on stderr (also for
                                             every call: $RP_PROGRESS=1); an imap
                                             stream draws one for the stream, its
                                             total once the input is known */
    const char          *journal;         /* rp_map*, rp_map_var*, rp_apply_async: a
                                             file where finished items are kept; a
                                             rerun skips them. NULL: none */
    size_t               buffersize;      /* imap streams: items read ahead and not yet
                                             consumed, at most; 0 = about 16 MiB of
                                             items, from 4 per worker to 262144
                                             (variable-size outputs: to 4096) */
} rp_map_opts_t;

/* ---- errors ---------------------------------------------------------------- */

/** \return a static text for any code (never NULL; unknown codes too). */
RP_API const char *rp_strerror(int code);
/** \return the code's symbolic name, e.g. "RP_ETIMEDOUT" ("RP_UNKNOWN" if none). */
RP_API const char *rp_err_name(int code);

/* ---- pool ------------------------------------------------------------------ */

/** Creates a pool and starts its workers. For the mpi backend this is collective:
 * the master returns at once; the other ranks serve tasks inside this call and
 * return when the master's pool is closed and joined, or freed.
 * \param opts NULL or zeroed for defaults.
 * \return RP_OK; RP_EINVAL, RP_EBACKEND, RP_EINIT (initializer failed: *pool is
 * NULL; rp_pool_create_ex() says why), RP_ESYS, RP_EMPI (mpi: also when not every
 * rank called it within $RP_MPI_START_TIMEOUT seconds, default 60; the master's
 * message names the missing ranks). */
RP_API int  rp_pool_create(rp_pool_t **pool, const rp_pool_opts_t *opts);
/** Like rp_pool_create, and fills *err (may be NULL) with why it failed. */
RP_API int  rp_pool_create_ex(rp_pool_t **pool, const rp_pool_opts_t *opts, rp_error_t *err);
/** \return true on the process that submits work (always true for "local"). */
RP_API bool rp_pool_is_master(const rp_pool_t *pool);
/** \return the number of workers, or RP_EINVAL for NULL. */
RP_API int  rp_pool_size(const rp_pool_t *pool);
/** \return the backend's name, "local" or "mpi" ("" for NULL). */
RP_API const char *rp_pool_backend(const rp_pool_t *pool);
/** Refuses new work from now on (RP_ECLOSED); queued work still finishes. */
RP_API int  rp_pool_close(rp_pool_t *pool);
/** Waits for all work and for the workers to exit (mpi: until every serving rank
 * has sent SIGKILL to its worker processes, which none survives; the ranks reap
 * them after answering). Only after close or terminate (else RP_EINVAL). From one
 * of the pool's callbacks it would wait for itself: RP_EDEADLK. */
RP_API int  rp_pool_join(rp_pool_t *pool);
/** Stops the workers at once; every unfinished result becomes ready, its
 * unprocessed items failing with RP_ECANCELED. Returns promptly; the local backend
 * also when a worker or its fork server is stopped or hung (it kills them by pid);
 * on the mpi backend a serving rank that does not answer within 0.5 s (stopped,
 * hung) is given up: its items fail with RP_ECANCELED too (one that answers at
 * once but is still killing its many worker processes is waited for up to 3 s
 * plus 10 ms per worker process of that rank).
 * Allowed in a callback. */
RP_API int  rp_pool_terminate(rp_pool_t *pool);
/** Terminates if needed, joins, releases everything. Results still held by the
 * caller stay valid (ready) and must still be freed with rp_result_free.
 * Called from one of the pool's own callbacks it does nothing (it would wait for
 * itself): the pool stays as it is, to be freed from another thread. */
RP_API void rp_pool_free(rp_pool_t *pool);

/* ---- work ------------------------------------------------------------------ */

/** Applies fn to each of the n items of in[] (in_size bytes each) and writes the
 * outputs to out[] (out_size bytes each) in input order; blocks until done.
 * out may be NULL when out_size is 0; in_size 0 is RP_EINVAL. *err (may be NULL)
 * gets the lowest failing item, or, for a call refused before anything ran
 * (RP_EINVAL, RP_ECLOSED, ...), that code and a message (index 0, worker -1).
 * In a callback of the same pool, opts with callbacks: RP_EDEADLK (they would
 * run on the thread that waits), nothing run.
 * \return RP_OK, or the lowest failing item's code (RP_ETASK, RP_EWORKER, ...);
 * every successful item's output is in out[] either way. */
RP_API int rp_map(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                  void *out, size_t out_size, const rp_map_opts_t *opts, rp_error_t *err);
/** Like rp_map but returns at once with *res; in and out belong to the pool until
 * *res is ready. Free *res with rp_result_free. */
RP_API int rp_map_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                        size_t in_size, void *out, size_t out_size,
                        const rp_map_opts_t *opts, rp_result_t **res);
/** Runs fn once on one item in a worker and waits. \return as rp_map. */
RP_API int rp_apply(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t in_size,
                    void *out, size_t out_size, rp_error_t *err);
/** Runs fn once on one item in a worker; returns at once with *res. */
RP_API int rp_apply_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t in_size,
                          void *out, size_t out_size, const rp_map_opts_t *opts,
                          rp_result_t **res);
/** Lazily yields outputs in input order through rp_iter_next. in belongs to the pool
 * until the iterator is freed. Items are submitted as the iterator is consumed (at
 * most opts->buffersize ahead, see "streams" below), so memory does not grow with n;
 * opts may not set callbacks (RP_EINVAL). */
RP_API int rp_imap(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n, size_t in_size,
                   size_t out_size, const rp_map_opts_t *opts, rp_iter_t **it);
/** Like rp_imap, but yields each output as soon as it is ready, with its index. */
RP_API int rp_imap_unordered(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                             size_t in_size, size_t out_size, const rp_map_opts_t *opts,
                             rp_iter_t **it);
/** Next output: copies it to out_item (out_size bytes, may be NULL) and its input
 * index to *index (may be NULL). \return RP_OK; a failed item's code with *err
 * filled (iteration goes on); RP_DONE after the last item; RP_ETIMEDOUT. */
RP_API int rp_iter_next(rp_iter_t *it, double timeout, size_t *index, void *out_item,
                        rp_error_t *err);
/** Frees an iterator; waits for the items already submitted first (at most twice
 * the buffersize; a stream's producer is not called again). */
RP_API void rp_iter_free(rp_iter_t *it);

/* ---- variable-size outputs ------------------------------------------------- */

/** Map whose tasks produce outputs of any length: the task is called with out ==
 * NULL and gets room for its output with rp_output(). *out receives the outputs
 * (read with rp_varout_item, free with rp_varout_free); it is filled even when some
 * items fail. \return as rp_map. */
RP_API int rp_map_var(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                      size_t in_size, const rp_map_opts_t *opts, rp_varout_t **out,
                      rp_error_t *err);
/** Asynchronous rp_map_var: *out is usable once *res is ready. */
RP_API int rp_map_var_async(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                            size_t in_size, const rp_map_opts_t *opts, rp_varout_t **out,
                            rp_result_t **res);
/** Inside a task of rp_map_var: room for this item's output of size bytes (0 is
 * allowed). Calling it again replaces the earlier output. \return NULL when out of
 * memory (a size no output can have, e.g. SIZE_MAX, included; nothing else is
 * affected) or outside a variable-size map. */
RP_API void *rp_output(rp_ctx_t *ctx, size_t size);
/** \return item i's output and its length in *size; NULL (and *size 0) for a failed
 * item or i out of range. Valid until rp_varout_free. */
RP_API const void *rp_varout_item(const rp_varout_t *out, size_t i, size_t *size);
/** \return the number of items. */
RP_API size_t rp_varout_count(const rp_varout_t *out);
RP_API void rp_varout_free(rp_varout_t *out);

/* ---- results (AsyncResult) ------------------------------------------------- */

/** Waits until ready or timeout. \return RP_OK (ready) or RP_ETIMEDOUT; RP_EDEADLK
 * (at once, unless timeout polls) in a callback of the result's pool when only
 * that callback's thread can complete it (it has callbacks, or is watched by
 * rp_result_wait_any): it becomes ready once the callback returns. The same for
 * rp_result_get, rp_result_wait_all and rp_result_wait_any. */
RP_API int  rp_result_wait(rp_result_t *res, double timeout);
/** \return true once every item has been processed, failed ones included. */
RP_API bool rp_result_ready(const rp_result_t *res);
/** \return 1 if every item succeeded, 0 if some failed, RP_ENOTREADY before ready. */
RP_API int  rp_result_successful(const rp_result_t *res);
/** Waits (up to timeout) and returns RP_OK, RP_ETIMEDOUT (result stays valid), or
 * the lowest failing item's code with *err (may be NULL) filled. */
RP_API int  rp_result_get(rp_result_t *res, double timeout, rp_error_t *err);
/** \return how many items failed (0 before ready). */
RP_API size_t rp_result_nerrors(const rp_result_t *res);
/** \return the i-th failure in index order, or NULL. The record stays valid and
 * unchanged until rp_result_free (asking again gives the same pointer). */
RP_API const rp_error_t *rp_result_error(const rp_result_t *res, size_t i);
/** Items processed so far (failed included) and the total, counted as items
 * finish, also inside a running chunk (see "progress and resume" below). */
RP_API void rp_result_progress(const rp_result_t *res, size_t *done, size_t *total);
/** Frees a result; if it is not ready yet, waits for it first. Other threads may
 * be waiting on it meanwhile (rp_result_wait, rp_result_get, rp_result_ready):
 * they return as usual, and the memory goes when the last of them has. In a
 * callback of its pool, a result that thread completes (see rp_result_wait) is
 * not waited for: it goes once complete. No call on the result may start once
 * rp_result_free has been called. */
RP_API void rp_result_free(rp_result_t *res);

/* ---- progress and resume ---------------------------------------------------
 *
 * Progress. rp_result_progress counts items as they finish, also inside a chunk
 * (local: read from the workers' shared memory on demand; mpi: each serving rank
 * reports a running batch every 10 ms). opts.progress (or $RP_PROGRESS=1 for
 * every call) draws a bar on the master's stderr: items done/total, rate, ETA.
 * On a terminal one line is redrawn every 0.1 s; otherwise (a log, a pipe) a
 * plain line is written every $RP_PROGRESS_INTERVAL seconds (default 5). A final
 * line is written when the job ends (always with opts.progress; with only the
 * environment variable, when a line was drawn before). Never on stdout, never
 * on a serving rank; drawn by a thread of the master, not by the workers.
 *
 * Resume. opts.journal names a file. The master appends each finished item's
 * output (or failure: not RP_ECANCELED or RP_EBROKEN) to it as it arrives,
 * after a header naming the job: the task (its object's build-id or contents
 * hash, and offset: a rebuilt program is another job), n, in_size, out_size,
 * fixed or variable outputs, and a checksum of the inputs. A rerun with the same
 * file runs only the items it does not hold, and its result (outputs, failures,
 * callbacks) is that of the whole job; a last record cut short (the program was
 * killed while writing it) is dropped. A header that does not match, or a file
 * that cannot be read or written: RP_EJOURNAL at submission, nothing run.
 * Records are written with one write() per batch (a killed program loses
 * nothing written) and flushed to disk (fdatasync) at most once a second and
 * when the job ends. rp_imap and rp_imap_unordered refuse a journal (RP_EINVAL).
 * Local: items arrive (and are journaled) as their chunk ends. */

/* ---- inside a task --------------------------------------------------------- */

/** Describes a task's failure; use as `return rp_raise(ctx, code, "...", ...)`.
 * fmt NULL or "": the message says "task raised <code> without a message".
 * \return code, or RP_ETASK when code is 0 (a raise is always a failure). */
RP_API int rp_raise(rp_ctx_t *ctx, int code, const char *fmt, ...) RP_PRINTF(3, 4);
/** rp_raise with a plain message instead of a format, for callers that cannot call
 * a variadic function (Fortran's bind(C), other languages' FFIs). msg may be NULL;
 * it is copied (truncated to rp_error_t's message). \return as rp_raise. */
RP_API int rp_raise_str(rp_ctx_t *ctx, int code, const char *msg);
/** \return the running worker's number (0..size-1). */
RP_API int rp_ctx_worker(const rp_ctx_t *ctx);
/** \return the input index of the running item (0 in an initializer). */
RP_API size_t rp_ctx_index(const rp_ctx_t *ctx);

/* ---- control (cancel, wait for any, on_ready) ---------------------------- */

/** rp_result_cancel / rp_iter_cancel / rp_pool_close_cancel flag: also kill the
 * workers running an item of the job (they are replaced; those items fail with
 * RP_ECANCELED). Without it (the default) items already running finish. */
#define RP_CANCEL_KILL 1

/** Cancels a result's work: every item not yet started fails with RP_ECANCELED
 * (a worker stops before its next item of the job); items running finish and
 * keep their outputs, unless flags has RP_CANCEL_KILL. Returns at once; the result
 * becomes ready when the running items are done (at once for those killed), and
 * its callback runs as usual. Outputs of finished items stay. Other jobs and the
 * pool are not affected. A ready result is left as it is. (mpi with
 * RP_MPI_ISOLATE=0, tasks in the ranks: a batch running is not stopped or killed.)
 * \return RP_OK, or RP_EINVAL (NULL, unknown flags). Any thread, callbacks too. */
RP_API int rp_result_cancel(rp_result_t *res, int flags);
/** rp_result_cancel for an iterator's work (every stream: arrays, producers, var
 * imaps). The iterator still yields every item once: finished ones with their
 * output or failure, canceled ones as RP_ECANCELED with *err filled (an array's
 * items not yet submitted too); then RP_DONE. A producer is not read again. Call
 * it from the thread that consumes the iterator. */
RP_API int rp_iter_cancel(rp_iter_t *it, int flags);
/** Closes the pool (as rp_pool_close) and cancels every result it still holds
 * (as rp_result_cancel with flags): Python's shutdown(cancel_futures=True).
 * rp_pool_join then waits only for the items that were running. */
RP_API int rp_pool_close_cancel(rp_pool_t *pool, int flags);

/** Waits until at least one of res[0..n) is ready: Python's
 * concurrent.futures.wait(FIRST_COMPLETED). NULL entries are skipped (an
 * as-completed loop sets the ones it has taken to NULL). Sleeps (no polling).
 * \param index gets the lowest index of a ready result (may be NULL).
 * \return RP_OK, RP_ETIMEDOUT (timeout as rp_result_wait), RP_EINVAL (res NULL,
 * n 0, or every entry NULL). */
RP_API int rp_result_wait_any(rp_result_t *const *res, size_t n, double timeout,
                              size_t *index);
/** Waits until every one of res[0..n) is ready (ALL_COMPLETED). \return RP_OK,
 * RP_ETIMEDOUT, RP_EINVAL (res NULL, n 0, a NULL entry). */
RP_API int rp_result_wait_all(rp_result_t *const *res, size_t n, double timeout);
/** Adds a callback, called once with (res, userdata) when res is ready, on the
 * pool's thread, after the waiters were woken (so rp_result_wait may return
 * before it runs). A result that is already ready calls it at once, on the
 * calling thread. Callbacks run in the order added, after the rp_map_opts_t
 * callback of the result, if any. rp_result_free does not remove it: the result
 * stays valid until every callback returned (a callback may free it). Rules as
 * for rp_map_opts_t callbacks: no rp_pool_join/free of the pool inside.
 * \return RP_OK, RP_EINVAL (NULL res or fn), RP_ENOMEM. */
RP_API int rp_result_on_ready(rp_result_t *res, rp_callback_fn fn, void *userdata);

/* ---- time limits and retries ------------------------------------------------
 * rp_map_opts_t.task_timeout (else rp_pool_opts_t.task_timeout) limits the wall
 * clock time of each item, measured by the pool from the moment a worker starts
 * it (not while it waits). An item past its limit has its worker killed and
 * replaced (mpi: the worker's process, never its rank; not enforced with
 * RP_MPI_ISOLATE=0, where the rank runs tasks itself) and fails with
 * RP_ETASKTIMEOUT, the limit, worker and host in its message; the items that
 * worker held and had not started run on other workers; the rest of the job goes
 * on. Never earlier than the limit; locally within 10 ms + 1% of it on an idle
 * machine. A worker stopped by SIGSTOP inside an item is timed out the same way.
 *
 * rp_map_opts_t.retries: an item whose worker died (RP_EWORKER) or that ran past
 * its limit runs again, up to `retries` more times, with the unstarted rest of
 * what that worker held (on whichever worker takes it next: another one when one
 * is free). With retry_raised, a task's own failure (non-zero return, rp_raise)
 * runs again too, at once, in the same worker. An item that succeeds on a retry
 * leaves no error; one that does not keeps its last error, its message ending in
 * "(after N attempts)". Each attempt has the full time limit. Callbacks run once,
 * after every item's last attempt. max_tasks_per_worker counts every attempt run
 * by a worker process except the in-place retries of retry_raised.
 *
 * rp_pool_terminate and rp_pool_free return within a second even when a worker,
 * the local fork server or an mpi serving rank is stopped or hung (a rank that
 * does not answer within 0.5 s is given up). */

/* ---- shared buffers and batch tasks ---------------------------------------- */

/** Memory the pool's workers share with the caller: a map whose in and/or out lie
 * wholly inside one such buffer moves no bytes on the local backend (workers read
 * the inputs and write the outputs in place, at the same address in every worker,
 * replacements included). On mpi it is ordinary memory of the master (items
 * travel as usual, large inputs straight from the buffer, not copied), so the
 * same program runs on both. Contents are undefined, as
 * with malloc. The buffer belongs to the caller until rp_pool_free_buffer or
 * rp_pool_free, which releases it: after rp_pool_free it is gone.
 * \return the buffer (64-byte aligned), or NULL with errno EINVAL (bytes 0, a
 * NULL or non-master pool, used from a forked child) or ENOMEM (more than the pool
 * can share: locally its arena, up to 16 GiB, shared with the copies of maps over ordinary
 * memory; on mpi more than the machine's memory). */
RP_API void *rp_pool_alloc(rp_pool_t *pool, size_t bytes);
/** Releases a buffer of rp_pool_alloc (NULL: nothing). No map may still use it.
 * The pointer is invalid from then on (on mpi the memory itself is freed once no
 * send from it is pending: a rank that stopped answering may take one late).
 * \return RP_OK, or RP_EINVAL (nothing freed) for a pointer that is not the start
 * of a live buffer of this pool. */
RP_API int rp_pool_free_buffer(rp_pool_t *pool, void *ptr);

/** A batch task: runs count consecutive items at once (in, out point to the first;
 * first_index is its index in the map's input). Return 0 for success. A failure
 * names its item: `return rp_raise_at(ctx, i, ...)` (i is an index of the whole
 * map, first_index <= i < first_index + count): items before i succeeded, i
 * failed, and the items after it are given to the task again in a new call. Items
 * named by rp_raise_at in a call that returns 0 fail, the others succeed. A
 * non-zero return without rp_raise_at fails every item of the call. A crash fails
 * every item of the call that had not failed before it (RP_EWORKER). */
typedef int (*rp_batch_fn)(const void *in, void *out, size_t count, size_t first_index,
                           rp_ctx_t *ctx);
/** rp_map with a batch task: the same scheduling, chunking (each call gets at most
 * one chunk), callbacks, errors and crashes. Per-item controls do not apply to a
 * call of many items: task_timeout, retries, retry_raised and journal in opts are
 * RP_EINVAL, and the pool's default task_timeout is not applied; rp_result_cancel
 * lets a running call finish (RP_CANCEL_KILL kills it: its items are canceled).
 * \return as rp_map. */
RP_API int rp_map_batch(rp_pool_t *pool, rp_batch_fn fn, const void *in, size_t n,
                        size_t in_size, void *out, size_t out_size,
                        const rp_map_opts_t *opts, rp_error_t *err);
/** Asynchronous rp_map_batch, as rp_map_async. */
RP_API int rp_map_batch_async(rp_pool_t *pool, rp_batch_fn fn, const void *in, size_t n,
                              size_t in_size, void *out, size_t out_size,
                              const rp_map_opts_t *opts, rp_result_t **res);
/** Inside a batch task: item i (an index of the whole map) failed with code and a
 * message; use as `return rp_raise_at(ctx, i, code, "...", ...)` or call it and
 * go on. An i outside the call's items fails the whole call. Inside an ordinary
 * task it is rp_raise (the item is the running one). \return code (RP_ETASK for 0). */
RP_API int rp_raise_at(rp_ctx_t *ctx, size_t i, int code, const char *fmt, ...)
    RP_PRINTF(4, 5);

/* ---- streams: lazy input, bounded memory -------------------------------------
 * Every imap is a stream: its items are read (from the array, or a producer) and
 * submitted only as the iterator is consumed, at most opts->buffersize items read
 * and not yet yielded (0: a default of about 16 MiB of items, from 4 per worker to
 * 262144; to 4096 for variable-size outputs, whose sizes are not known ahead). The
 * master's memory stays flat however many items pass. The producer is
 * called only on the thread that creates or advances the iterator (rp_iter_next*),
 * never concurrently, never after it returned 0 or an error. A producer error ends
 * the stream: the items read before it are yielded as usual, then one call returns
 * the producer's code (*err: index = the item it failed to produce, worker -1), then
 * RP_DONE. After rp_pool_close, items not yet submitted are yielded with RP_ECLOSED
 * (RP_ECANCELED after rp_pool_terminate; a producer is not read further). A stream
 * uses its pool until its input has all been read: free the pool after the
 * iterator. Inside a stream's task, rp_ctx_index() is the item's index in the whole
 * stream (as rp_iter_next reports it), and so is the item a dead worker's error
 * message names. */

/** Writes the next input item (in_size bytes) at item. \return 1 when it wrote
 * one, 0 at the end of the input, a negative code to fail the stream. */
typedef int (*rp_producer_fn)(void *item, void *userdata);

/** rp_imap whose items come from producer (in_size bytes each) instead of an array.
 * \return RP_OK; RP_EINVAL (a NULL argument, sizes, callbacks in opts), RP_ECLOSED,
 * RP_ENOMEM. */
RP_API int rp_imap_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                            void *userdata, size_t in_size, size_t out_size,
                            const rp_map_opts_t *opts, rp_iter_t **it);
/** rp_imap_unordered whose items come from producer. */
RP_API int rp_imap_unordered_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                                      void *userdata, size_t in_size, size_t out_size,
                                      const rp_map_opts_t *opts, rp_iter_t **it);
/** imap of a variable-size map (tasks get room with rp_output()): read the outputs
 * with rp_iter_next_var (rp_iter_next works with out_item NULL, else RP_EINVAL). */
RP_API int rp_imap_var(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                       size_t in_size, const rp_map_opts_t *opts, rp_iter_t **it);
RP_API int rp_imap_var_unordered(rp_pool_t *pool, rp_task_fn fn, const void *in, size_t n,
                                 size_t in_size, const rp_map_opts_t *opts, rp_iter_t **it);
RP_API int rp_imap_var_producer(rp_pool_t *pool, rp_task_fn fn, rp_producer_fn producer,
                                void *userdata, size_t in_size, const rp_map_opts_t *opts,
                                rp_iter_t **it);
RP_API int rp_imap_var_unordered_producer(rp_pool_t *pool, rp_task_fn fn,
                                          rp_producer_fn producer, void *userdata,
                                          size_t in_size, const rp_map_opts_t *opts,
                                          rp_iter_t **it);
/** Like rp_iter_next, without a copy: *data and *size (each may be NULL) get where
 * the output is and its length (NULL and 0 for a failed item). Valid until the next
 * call on the iterator or rp_iter_free. Any iterator (fixed-size outputs too). */
RP_API int rp_iter_next_var(rp_iter_t *it, double timeout, size_t *index, const void **data,
                            size_t *size, rp_error_t *err);

#ifdef __cplusplus
}
#endif
#endif /* RANKPOOL_H */
