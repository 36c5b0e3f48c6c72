/* The mpi backend's private header: its constants, message tags, the state of a
 * master and of a serving rank, the locks and their order, and what its files
 * call in each other. (Not "mpi.h": that is Open MPI's.)
 *
 * Roles. Rank 0 of the pool's communicator (a named duplicate of the one given) is
 * the master: rp_pool_create returns there at once, and a progress thread (the
 * backend's "pool thread") moves work. Every other rank serves inside
 * rp_pool_create until the master stops it. A serving rank hosts one or more
 * workers (worker w lives on rank 1 + w % nranks, or on that rank's node leader:
 * leader.c); each worker is a child process the rank forked, which runs the
 * tasks and never calls MPI. So a crashing task
 * never takes MPI down with it: the rank reports the death (the batch, the item
 * running, the wait status) and starts a replacement; the master hands the death
 * to the core's dead-worker policy (rp__job_worker_died) and the rest of the batch
 * back to the scheduler, for any worker.
 *
 * Data path. The master transports what the core's scheduler (scheduler.h) picks:
 * a *batch* (consecutive items of one job, the task as an rp__fnref), sent with
 * MPI_Isend, several in flight per worker, so workers never wait for a round
 * trip. Small inputs are copied into the batch message; large ones follow as a
 * second message, sent from a copy (send.c, outbox.c). A serving rank receives a
 * batch straight into a memory region it shares with the worker's child
 * (MPI_Mprobe + MPI_Mrecv), posts it, and the child runs it with rp__worker_run,
 * writing outputs and failure records into the same region. The rank then sends
 * the result from that region: a header with the records, and the outputs, which
 * the master receives straight into job->out (small outputs ride inline in the
 * header message; the header itself lands in a receive the master posts in
 * advance, recv.c). The master reports each result to the core's ledger
 * (rp__job_deliver*, rp__job_fail, rp__job_processed). Messages are framed and
 * checked by wire.c: a malformed one makes the master give up on that rank, never
 * crash.
 *
 * Files: init.c (MPI set-up, start-up, the process's pools, waiting helpers),
 * master.c (the ops), progress.c (the pool thread, dispatch, stop and terminate),
 * send.c (batches out), recv.c (results, deaths and given-up ranks in), server.c
 * (a serving rank's loop), slot.c (a batch's shared region and its results),
 * child.c (the worker process, its supervision, the in-process mode), leader.c
 * (node leaders: where the workers live), bundle.c (with leaders: several
 * batches, or several results, in one message).
 *
 * Locks of the master, in order: the core's (pool->lock, a result's lock), then
 * plock, then mp->lock.
 *  - plock: held by whoever moves messages: the pool thread; a user thread waiting
 *    for a result (ops->drive); a submitting thread sending its job's first
 *    batches. It guards the scheduler, the workers' batches in flight, the
 *    receive buffer and every MPI call of the master after start-up. User threads
 *    only ever trylock it (the pool thread alone blocks on it, holding nothing
 *    else), so its holder may call into the core's ledger, which takes result
 *    locks and the core's notify lock and calls ops->kick.
 *  - mp->lock: innermost. The jobs submitted and not yet taken into the scheduler,
 *    the pool thread's wake-up flags and its condition variables. Nothing is
 *    called while it is held.
 * A serving rank is single-threaded; it and its children share memory pages
 * (struct wctl, the batch regions, struct rankbell) synchronised with atomics and
 * futexes, as described at struct slotdesc. */
#ifndef RP_MPI_BACKEND_H
#define RP_MPI_BACKEND_H

#include "backend.h"
#include "fnref.h"
#include "wire.h"

#include "rankpool_mpi.h"

#include <sched.h>
#include <time.h>

/* Message tags, all on the pool's own communicator but TAG_START (start-up, on the
 * communicator the pool is created on, before its duplicate exists). TAG_WORK0 + i
 * routes a batch to the i-th worker of a rank (so it lands in that worker's
 * memory); what to run is in the payload. */
enum { TAG_START = 7300, TAG_CTL = 7301, TAG_DATA = 7302, TAG_WORK0 = 7310 };

#define DEPTH         4                   /* batches in flight per worker, at most */
#define DEPTH_LONG    2                   /* ... once batches are longer than SHORT_BATCH_S */
#define BATCH_BYTES   ((size_t)4 << 20)   /* input + output bytes per batch, soft */
#define BATCH_ITEMS   ((size_t)1 << 18)   /* items per batch, at most */
#define BATCH_MIN_S   200e-6              /* shortest batch once item cost is known */
#define SHORT_BATCH_S 100e-6              /* shorter batches need DEPTH in flight */
#define LONG_BATCH_S  1e-3                /* for longer ones the pool thread naps */
#define COPY_KEEP     ((size_t)2 << 20)   /* a slot keeps its input copy up to this */
#define COPY_BUDGET   ((size_t)64 << 20)  /* ... while the pool's copies stay within this */
#define INLINE_MAX    ((size_t)16 << 10)  /* outputs up to this ride in the header */
#define LEADERS_AUTO_RANKS 128           /* RP_MPI_LEADERS=auto: from this many ranks on
                                           * a node (measured: doc/mpi.md) */
#define BUNDLE_PART_MAX ((size_t)64 << 10) /* larger results go alone (bundle.c) */
#define BUNDLE_BYTES  ((size_t)4 << 20)   /* a bundle goes out once this large */
#define SLOT_BYTES    ((size_t)256 << 20) /* virtual size of a batch's shared region */
#define PRECV_BYTES   SLOT_BYTES          /* the largest TAG_CTL message: a result */
#define PRECV_KEEP    ((size_t)1 << 20)   /* ... pages kept after a larger one: this */
#define SPIN_IDLE_S   1e-3                /* poll this long before sleeping */
#define SPIN_BUSY_S   50e-6               /* ... while a child computes */
#define SPIN_POLL_S   50e-6               /* the pool thread, after an event */
#define CHECK_S       100e-6              /* a rank looks for dead children this often */
#define SLEEP_MAX_S   1e-3                /* longest idle sleep */
#define SPIN_WORKERS_MAX 8                /* a rank with more workers and its worker
                                           * processes do not poll (yielding) for each
                                           * other on an oversubscribed node: a worker's
                                           * next batch is a round trip to the master
                                           * away, and hundreds of yielding processes
                                           * took the cores their ranks needed */
#define CHILD_WAIT_S  2.0                 /* a worker process waiting for its next batch
                                           * wakes this often to see if its rank is gone
                                           * (PR_SET_PDEATHSIG kills it anyway): 10 per
                                           * second for each of 6,000 idle processes
                                           * were enough wake-ups to starve their ranks */
#define IDLE_SLEEP_S  0.1                 /* the pool thread's sleep with no job at all */
#define ANSWER_WAIT_S 3.0                 /* longest wait for a rank's BYE after STOP (join) */
#define STOP_WAIT_PER_WORKER_S 0.01      /* more for a rank that answered ALIVE: its kills */
#define TERMINATE_WAIT_S 0.5              /* ... after TERMINATE: terminate and free return
                                             within a second whatever a rank does */
#define RANK_WORKERS_MAX 1024             /* worker processes on one serving rank */
#define PROGRESS_S    10e-3               /* a rank reports a running batch's items this often */
#define INIT_DEATHS_MAX 8                 /* replacements killed in their initializer,
                                             in a row, before the worker is gone */
#define ALIVE_S       0.25                /* a rank with batches says ALIVE this often */
#define STRANDED_S    30.0                /* RP_MPI_STRANDED_TIMEOUT's default */
#define UNREACHABLE_S 120.0               /* RP_MPI_UNREACHABLE_TIMEOUT's default */
#define SILENT_CHECK_S 0.1                /* the master looks for silent ranks this often */
#define SILENT_CHECK_TURNS 16             /* ... at most once per this many polls (stranded.c) */
#define DRIVE_CLOCK_TURNS 16              /* a waiter's polls per clock read (master.c) */
#define RANK_CLOCK_TURNS 8                /* a rank's idle spins per clock read (server.c) */

/* =============================================================================== * A serving rank
 * ==================================================================================== */

/* One batch's region, shared by the rank and its worker's child:
 *   [0, msglen)                  the BATCH message as received
 *   [out_off, out_off + outbytes) fixed outputs, written by the child
 *   [res_off, ...)               the RESULT message: fixed part, records (child),
 *                                then inline outputs (rank)
 * The records (failures, variable-size outputs) need not fit all at once: before
 * running more items the child makes sure the record area has room for a failure
 * of each (piece_items); when it has not, the rank sends what is there as a result
 * for the items done so far, and the child goes on with an empty area. So a batch
 * may come back as several RESULT messages, each for the next items in order. */
struct slotdesc {
    /* set by the rank before posting */
    rp_task_fn fn;
    size_t     in_off, in_size, out_off, out_size, start, count, chunk;
    size_t     res_off, cap;
    uint32_t   flags;
    /* progress, written by whoever owns the slot (the child while running) */
    size_t     resume;      /* items [0, resume) of the batch are processed */
    size_t     sent;        /* items [0, sent) were reported in earlier results */
    _Atomic uint32_t flush; /* 1: the child waits for the rank to send the records */
    size_t     rec_len;     /* bytes of records after res_off + RP__RESULT_FIXED */
    size_t     nrec;
    size_t     var_last;    /* offset of the current item's VAR record + 1, or 0 */
    size_t     var_index;
    uint64_t   compute_ns;  /* time spent running it */
    _Atomic uint32_t stop;  /* its job was canceled: the child stops before the next
                               item; the rank reports the rest canceled */
    uint64_t   timeout_ns;  /* an item's time limit, 0 = none: the rank kills the child */
    uint32_t   retries;     /* a task's own failure runs again in place */
    char      *base;        /* the region the batch is in (rp__mpi_slot_pick) */
    bool       untimed;     /* the batch is its whole job: compute_ns stays 0 */
};

enum { CHILD_STARTING, CHILD_READY, CHILD_INIT_FAILED, CHILD_RETIRING };

/* The page a worker's child shares with its rank. */
struct wctl {
    _Atomic uint32_t posted;       /* batches posted by the rank (futex word) */
    _Atomic uint32_t child_sleeps;
    _Atomic uint32_t completed;    /* batches finished (by the child, or ended by its death) */
    _Atomic uint32_t running_seq;  /* the batch the child is in, + 1 (0: none) */
    _Atomic size_t   cur;          /* the item the child is running (SIZE_MAX: none yet) */
    _Atomic uint64_t deadline;     /* timed batches: when item cur is late (ns), else 0 */
    _Atomic int      state;        /* CHILD_* */
    /* RP_CANCEL_KILL: up while the rank decides whether to kill the child; a child
     * leaving a batch waits while it is up, so a child the rank sees in the
     * canceled batch is still in it when the kill lands */
    _Atomic uint32_t killreq;
    rp_error_t       init_err;
    struct slotdesc  slot[DEPTH];
};

#define DIRTY_WORDS (RANK_WORKERS_MAX / 64)
#define SCAN_S      10e-3  /* a rank looks at every worker this often, dirty or not */

/* The page all children of a rank share with it: the rank sleeps on `bell`, and
 * finds which workers have something for it in `dirty` (bit i: local worker i),
 * so that a turn of its loop costs what happened, not the number of workers. */
struct rankbell {
    _Atomic uint32_t bell;
    _Atomic uint32_t rank_sleeps;
    _Atomic uint64_t dirty[DIRTY_WORDS];
};

struct lworker {
    int            id;          /* global worker number */
    int            local;       /* index among this rank's workers */
    pid_t          pid;         /* 0: no child */
    bool           gone;        /* could not be (re)started: its batches go back */
    struct wctl   *ctl;
    char          *slot[DEPTH]; /* shared regions */
    uint64_t       seq[DEPTH];  /* the master's batch number in each slot */
    uint64_t       job[DEPTH];
    uint32_t       nposted;     /* == ctl->posted */
    uint32_t       nsent;       /* batches whose results were sent */
    MPI_Request    req[DEPTH][2];
    bool           sending[DEPTH];
    bool           leaked[DEPTH]; /* a send from it was abandoned: never unmapped */
    rp_ctx_t       ctx;         /* in-process mode: the worker's context */
    uint64_t       kill_deadline; /* the child was killed for passing this deadline */
    long           tasks;
    uint64_t       prog_seq;    /* the batch last reported with PROGRESS, */
    size_t         prog_items;  /* ... and the count reported */
    unsigned       spawns;      /* processes started for it so far */
    unsigned       init_deaths; /* its processes killed in their initializer, in a row */
    int            pidfd;       /* its process's pidfd in the rank's set (reap.c), or -1 */
    bool           unwatched;   /* its process has none: found by waitid (server.c) */
};

struct server {
    MPI_Comm          comm;
    bool              inproc;   /* tasks run in the rank itself (RP_MPI_ISOLATE=0) */
    int               rank;
    char              host[64];
    rp__wire_hello    hello;
    void             *initarg;
    rp_init_fn        init;
    int               nlocal;
    struct lworker   *w;
    void             *ctls;     /* every worker's struct wctl, one mapping */
    char             *slots;    /* every worker's DEPTH regions, one mapping */
    size_t            ctls_bytes, slots_bytes;
    struct rankbell  *bell;
    rp__wbuf          out;      /* small control messages */
    double            alive_at; /* when ALIVE last went out */
    uint64_t          sending[DIRTY_WORDS]; /* bit i: local worker i has a result going out */
    uint64_t          posted_total, sent_total; /* batches posted, results sent: all workers */
    double            scanned;  /* when every worker was last looked at */
    double            asked;    /* when every worker's process was last waited for */
    char             *rbuf;
    size_t            rcap;
    bool              leaving;  /* STOP or TERMINATE received */
    int              *lead_ids; /* with leaders (leader.c): the workers it hosts */
    int               nlead;
    /* with leaders (bundle.c): the RESULTs and PROGRESS of a turn go back in one
     * message, built in bout[bturn]; the other buffer may still be going out */
    bool              bundling;
    rp__wbuf          bout[2];
    MPI_Request       breq[2];
    int               bturn, bparts;
    struct prepost   *pre;      /* receives posted in advance (prepost.c), or NULL */
    /* the last task resolved (slot.c): its reference as the BATCH encodes it, the
     * function, and rp__fnref_unloads() before it was resolved */
    char              fn_raw[20 + RP__FNREF_IDMAX + RP__FNREF_NAMEMAX];
    size_t            fn_rawlen;
    rp_task_fn        fn_last;
    uint64_t          fn_unloads;
    bool              reaping;  /* reap.c set up: reap_fd is its epoll set, or -1 */
    int               reap_fd;
    int               unwatched; /* worker processes without a pidfd in the set */
    int               reap_fd_max; /* pidfds numbered from here on are not kept */
};

/* Local worker lw has something for its rank (a batch done, records to send, ...). */
static inline void rp__mpi_mark(struct server *sv, const struct lworker *lw)
{
    atomic_fetch_or(&sv->bell->dirty[lw->local / 64], 1ull << (lw->local % 64));
}

/* The results of lw's batches up to v are sent. */
static inline void rp__mpi_set_nsent(struct server *sv, struct lworker *lw, uint32_t v)
{
    sv->sent_total += (uint32_t)(v - lw->nsent);
    lw->nsent = v;
}

/* server.c: a serving rank's part of rp_pool_create (settings, children, READY,
 * the master's verdict, then serving until STOP or TERMINATE); frees its state. */
int  rp__mpi_server_run(struct server *sv, rp_error_t *err);
void rp__mpi_server_free(struct server *sv);
/* server.c: sends a small control message to the master. */
int  rp__mpi_server_ctl(struct server *sv, unsigned kind, uint32_t worker, int32_t status);

/* server.c: a control message from the master (CANCEL, STOP, TERMINATE; anything
 * else is answered PROTO). \return RP_OK, RP_DONE (the rank leaves), an error. */
int  rp__mpi_serve_ctl(struct server *sv, const char *buf, size_t count);

/* prepost.c: a rank of few workers posts its receives in advance (one for control
 * messages, one per worker into its next batch's area). init: whether it does;
 * poll: (re)posts them, handles what they received (up to 32 messages; RP_DONE
 * when the rank leaves); free: cancels what is still posted. */
bool rp__mpi_prepost_init(struct server *sv);
int  rp__mpi_prepost_poll(struct server *sv, int *events);
void rp__mpi_prepost_free(struct server *sv);
/* prepost.c: the tag of the next message from the master if no posted receive
 * will take it (a stray: for the probe), else -1. */
int  rp__mpi_prepost_stray(struct server *sv);

/* slot.c: the batch regions. */
size_t rp__mpi_record_free(const struct slotdesc *sd);
/* Appends the error record of e to slot s (room permitting; the child's on_fail). */
void rp__mpi_record_fail(struct lworker *lw, int s, const rp_error_t *e);
/* Where bytes more records go in slot s, leaving `keep` bytes free; NULL if they
 * do not fit. They are part of the area once written and committed. */
void *rp__mpi_record_room(struct lworker *lw, int s, size_t bytes, size_t keep);
/* The record of `bytes` bytes written at rp__mpi_record_room's place is now part
 * of slot s's area (as a whole: see the function). */
void rp__mpi_record_commit(struct lworker *lw, int s, size_t bytes);
/* Receives a BATCH (buf, msglen bytes, arrived on tag) into slot s and posts it to
 * the worker, or answers it at once (a failure, or handed back when the worker is
 * gone). \return RP_OK, RP_EPROTO (malformed), RP_EMPI. */
int  rp__mpi_post_batch(struct server *sv, struct lworker *lw, int s, int tag,
                        const char *buf, size_t msglen);
/* Sends a result for the items of slot s processed and not reported yet. */
int  rp__mpi_send_result(struct server *sv, struct lworker *lw, int s, uint32_t flags);
/* Sends what the record area of slot s holds (the items processed so far), waits
 * until it is out, empties the area. */
int  rp__mpi_send_part(struct server *sv, struct lworker *lw, int s);
/* Hands the unprocessed items of slot s back to the master (the worker is gone). */
int  rp__mpi_send_returned(struct server *sv, struct lworker *lw, int s);
/* RP__MSG_CANCEL (server.c): the batches of job stop; with kill, the children
 * running one are killed. */
int  rp__mpi_server_cancel(struct server *sv, uint64_t job, uint32_t flags);
/* Sends the results of the batches of lw finished and not sent yet, in order. */
int  rp__mpi_send_finished(struct server *sv, struct lworker *lw, int *events);
/* Waits until slot s's result is sent (abandoned when the master ended the pool
 * without reading it). */
void rp__mpi_slot_drain(struct server *sv, struct lworker *lw, int s);
/* Gives slot s, about to receive a batch, the worker's lowest region no batch or
 * send is using: a worker with one batch at a time uses (and so touches) one. */
void rp__mpi_slot_pick(struct lworker *lw, int s);

/* reap.c: the ends of the workers' processes, through a pidfd each in one epoll
 * set. init: sets it up (map_workers); end: closes it. watch: a process just
 * forked (its pidfd into the set, or counted unwatched); forget: lw->pid is reaped
 * or given up (out of the set). watched: handles every watched process that ended
 * (reaped, reported, replaced: rp__mpi_child_ended). */
void rp__mpi_reap_init(struct server *sv);
void rp__mpi_reap_end(struct server *sv);
void rp__mpi_reap_watch(struct server *sv, struct lworker *lw);
void rp__mpi_reap_forget(struct server *sv, struct lworker *lw);
/* In a worker process just forked: closes its copies of the rank's pidfds and set. */
void rp__mpi_reap_in_child(struct server *sv);
int  rp__mpi_reap_watched(struct server *sv);

/* child.c: the worker processes. */
int  rp__mpi_spawn_child(struct server *sv, struct lworker *lw);
int  rp__mpi_await_child(struct server *sv, struct lworker *lw, rp_error_t *err);
void rp__mpi_kill_child(struct server *sv, struct lworker *lw);
/* Sends SIGKILL to every child of the rank, reaps none. */
void rp__mpi_signal_children(struct server *sv);
/* Kills every child of the rank, then reaps them (their exits overlap). */
void rp__mpi_kill_children(struct server *sv);
/* The child of lw ended (status from waitpid, -1 unknown): reports a death inside
 * a batch to the master, starts a replacement. */
int  rp__mpi_child_ended(struct server *sv, struct lworker *lw, int status);
/* lw cannot run tasks any more: its batches are handed back, and every later one. */
int  rp__mpi_worker_gone(struct server *sv, struct lworker *lw, const char *why);
/* Runs slot s's batch from where it was left (child, or rank in-process mode).
 * \return false when the worker must retire first (max_tasks reached mid-batch). */
bool rp__mpi_run_slot(struct server *sv, struct lworker *lw, rp_ctx_t *ctx, uint32_t k,
                      long *tasks, long max_tasks);
/* In-process mode: crash messages, and running a posted batch in the rank. */
void rp__mpi_inproc_handlers(void);
void rp__mpi_inproc_run(struct server *sv, struct lworker *lw);
void rp__mpi_inproc_init(struct server *sv, struct lworker *lw, rp__wire_ready *m);

/* =============================================================================== * The master
 * ==================================================================================== */

/* The backend's state of one job. */
struct mjob {
    struct rp__job *job;
    rp__fnref       fn;
    rp__anyfn       fn_of;       /* the function fn describes */
    uint64_t        fn_unloads;  /* rp__fnref_unloads() when fn was made */
    bool            too_large;   /* its items exceed RP_MPI_ITEM_MAX: it fails at once */
    bool            in_pool;     /* its input lies in a buffer of rp_pool_alloc (send.c) */
    _Atomic size_t  running;     /* items reported by PROGRESS, not yet by a RESULT */
    struct mjob    *next;        /* the queue of jobs submitted, not yet scheduled */
};

/* Expected lengths of the batches in flight, in classes (EXP_*): the pool thread
 * naps according to the shortest. */
enum { EXP_UNKNOWN, EXP_1, EXP_2, EXP_3, EXP_4, EXP_5, EXP_LONG, EXP_CLASSES };

struct inflight {
    struct rp__job *job;
    uint64_t        seq;
    size_t          start, count;
    size_t          got;        /* items [start, start + got) came back already */
    size_t          prog;       /* items [start, start + prog) processed (PROGRESS) */
    size_t          shown;      /* what this batch adds to its mjob's `running` */
    int             exp;        /* EXP_* class of its expected length */
    rp__wbuf        buf;
    MPI_Request     req;        /* the batch */
    /* its large input's copy (send.c), kept for the slot's next batches up to
     * COPY_KEEP bytes (while the pool's copies stay within COPY_BUDGET), and the
     * copy's send; a send from a buffer of rp_pool_alloc
     * goes to outbox.c instead */
    rp__wbuf        copy;
    MPI_Request     dreq;
    bool            used;
    /* stranded (stranded.c): its rank fell silent and its items run elsewhere; the
     * slot stays taken (the send may still be in progress) until the rank answers
     * for it, and what it sends for it is dropped. job is NULL then; its id and
     * index_base (where the rank's item numbers start) are kept. */
    bool            stranded;
    uint64_t        job_id, job_base;
    int             rank;       /* where it went */
    /* bundle.c: picked in this dispatch pass, to go out with its rank's bundle */
    bool            deferred;
    int             tag;
    struct inflight *dnext;
};

/* The master's bundles to one rank (bundle.c): the batches picked for it in a
 * dispatch pass (head..tail), and two buffers, one may still be going out. */
struct mbundle {
    struct inflight *head, *tail;
    int              nparts;
    rp__wbuf         buf[2];
    MPI_Request      req[2];
    int              turn;
};

struct mworker {
    int             id, rank, tag;
    bool            alive;      /* given work (not lost) */
    bool            stranded;   /* lost while its rank is silent: may come back */
    char            host[64];
    int             pid;        /* of its first worker process */
    struct inflight fl[DEPTH];
    uint64_t        next_seq;
};

struct mpi_pool {
    MPI_Comm        comm;
    int             rank, size, nranks, nworkers;
    char            host[64];
    rp_pool_t      *pool;
    struct server  *sv;          /* serving ranks */

    /* master */
    struct mworker *w;
    pthread_t       thread;
    bool            thread_started;
    struct ending  *ending;      /* the pool thread's stop/terminate progress (its stack) */
    pthread_mutex_t lock;
    pthread_cond_t  cond;        /* terminate waits: the pool thread is done */
    pthread_cond_t  kick;        /* the pool thread's nap */
    struct mjob    *pending, *pending_tail;   /* under lock */
    _Atomic int     npending;
    _Atomic bool    want_stop, want_terminate;
    _Atomic bool    service;     /* ops->kick: the core has callbacks to run */
    bool            terminated;  /* under lock */
    bool            thread_done; /* under lock */
    bool            kicked;      /* under lock: kick was signalled since the last nap */
    _Atomic bool    deep;        /* the pool thread sleeps with no job: submit kicks it */
    _Atomic int     drivers;     /* user threads polling in drive() */
    _Atomic int     unfinished;  /* jobs submitted and not yet complete */
    _Atomic int64_t drove_ns;    /* when a waiter last stopped polling, its job done */
    /* the last released job's struct mjob, for the next submit (back-to-back
     * applies allocate none); swapped atomically by submit and release */
    _Atomic(struct mjob *) spare_mjob;

    /* under plock */
    pthread_mutex_t plock;
    rp__sched       sched;       /* the core's scheduler: what runs where */
    bool            job_ended;   /* a job was completed in this poll */
    bool            terminating;
    int             nexp[EXP_CLASSES]; /* batches in flight by expected length */
    size_t          copy_bytes;  /* the slots' input copies (send.c), kept or in use */
    bool            retired;     /* stopped, its communicator freed (pool_retire) */
    bool           *rank_broken; /* per rank: gave up on it */
    bool           *rank_bye;    /* per rank: said BYE */
    int             nbroken;     /* ranks given up */
    bool            leave_unread; /* tests: their messages are not dropped */
    char            lost_why[320]; /* why the last worker was lost */
    char           *rbuf;
    size_t          rcap;
    /* the receive posted for the next TAG_CTL message (recv.c) */
    MPI_Request     preq;
    char           *pbuf;        /* PRECV_BYTES, mapped on first use */
    size_t          pbig;        /* bytes of pbuf the last message touched */
    rp__wbuf        ctl;
    /* silent ranks (stranded.c) */
    double          stranded_s, unreachable_s; /* 0: never */
    double          silent_checked;
    unsigned        silent_polls;   /* polls since the clock was read there */
    double         *rank_heard;  /* per rank: when it last sent anything, or was
                                    given a batch while it held none */
    int            *rank_held;   /* per rank: batches in flight, not stranded */
    bool           *rank_silent; /* per rank: its batches were handed to others */
    int             nsilent;
    int             lost_code;   /* the code for items no worker is left for */
    uint64_t        redispatched, late_dropped; /* items, since the pool started */
    /* where the workers live (leader.c) */
    bool            leaders;     /* a node's workers live on its leader */
    int            *rank_first;  /* rank rk's workers: rank_wlist[rank_first[rk] .. */
    int            *rank_wlist;  /* ... rank_first[rk + 1]), in order */
    /* bundles (bundle.c): with leaders, one message per rank per dispatch pass */
    struct mbundle *bundle;      /* per rank; NULL: no bundles */
    int            *bundle_ranks; /* the ranks with batches deferred in this pass */
    int             nbundle_ranks;
    /* sends let go of before they completed, with their buffers (outbox.c) */
    MPI_Request    *out_req;
    struct mout    *out;         /* each send's buffer and what it reads */
    int            *out_idx;     /* MPI_Testsome's (nout <= INT_MAX) */
    size_t          nout, capout;
    struct mheld   *held;        /* pool buffers given up while sends read them */
    size_t          nheld, capheld;
    /* under lock: pool buffers given up while plock was busy, for the next pass */
    struct mheld   *given;
    size_t          ngiven, capgiven;
    _Atomic bool    anygiven;
    bool            out_closed;  /* the pool ended: no more hand-overs */
    bool            hand_over;   /* tests: every buffer given back is handed over */
};

static inline struct mpi_pool *rp__mpi_of(rp_pool_t *pool)
{
    return pool->bdata;
}

/* The job whose scheduler part is j. */
static inline struct rp__job *rp__mpi_job_of(rp__sjob *j)
{
    return (struct rp__job *)((char *)j - offsetof(struct rp__job, sched));
}

/* master.c */
void rp__mpi_pool_retire(rp_pool_t *pool);
void rp__mpi_kick_locked(struct mpi_pool *mp);

/* progress.c: the pool thread; one round of progress, and its first half: new
 * jobs into the scheduler, what it picks out to the workers (under plock). */
void *rp__mpi_progress_main(void *arg);
int   rp__mpi_progress_step(struct mpi_pool *mp);
/* The pool thread waiting inside one of its callbacks (ops->drive): one round as
 * its loop would make it, terminate included. Under plock. \return events. */
int   rp__mpi_progress_nested(struct mpi_pool *mp);
int   rp__mpi_send_new(struct mpi_pool *mp);
/* A job submitted while this thread holds plock: the queued jobs, then this
 * one, enter the scheduler, and what it picks goes out. \return events. */
int   rp__mpi_submit_now(struct mpi_pool *mp, struct mjob *mj);
/* recv.c: rp_result_cancel: job's items not sent yet are canceled (under plock). */
void  rp__mpi_cancel_unsent(struct mpi_pool *mp, struct rp__job *job);
void  rp__mpi_send_all_ranks(struct mpi_pool *mp, unsigned kind);

/* send.c */
/* Sends what the scheduler picked; \return 1. */
int  rp__mpi_send_pick(struct mpi_pool *mp, const rp__pick *p);
/* What batch fl adds to its job's progress beyond the items counted: its
 * PROGRESS count past what came back. Called when either moves (and with prog 0
 * when the batch goes). */
void rp__mpi_progress_note(struct inflight *fl);
/* Waits for a batch's sends to complete (or drops them: cancel) and frees it. */
void rp__mpi_release_inflight(struct mpi_pool *mp, struct inflight *fl, bool cancel);

/* recv.c: the receive posted for the master's next TAG_CTL message is canceled
 * (the pool ends; under plock or with nobody else moving messages). */
void rp__mpi_recv_stop(struct mpi_pool *mp);

/* recv.c: what comes back, and what it means for the jobs. */
int  rp__mpi_poll_messages(struct mpi_pool *mp);
void rp__mpi_break_rank(struct mpi_pool *mp, int rank, const char *why);
/* The batches worker w holds will not come back (its rank given up, or gone after
 * terminate): the core cancels them when the pool is terminating, else they run
 * elsewhere. cancel: drop their sends (the rank may never receive them). */
void rp__mpi_drop_batches(struct mpi_pool *mp, struct mworker *w, const char *why, bool cancel);
/* count items of job are processed (counted with the core; notes a completion). */
void rp__mpi_count(struct mpi_pool *mp, struct rp__job *job, size_t count);
/* Items [a, b) of job fail with e (delivered as failed, counted). */
void rp__mpi_fail_items(struct mpi_pool *mp, struct rp__job *job, size_t a, size_t b,
                        const rp_error_t *e);
/* Items [a, b) of job go back to the scheduler, to run on any worker. */
void rp__mpi_put_back(struct mpi_pool *mp, struct rp__job *job, size_t a, size_t b);
/* A worker died holding [a, b) of job and running `running`: the core's policy. */
void rp__mpi_worker_died(struct mpi_pool *mp, struct rp__job *job, const rp__death *d,
                         size_t a, size_t running, size_t b);
/* Fails every item not handed out yet with code and message (no worker left). */
void rp__mpi_fail_unclaimed(struct mpi_pool *mp, int code, const char *msg);

/* stranded.c: ranks that fall silent. */
/* Reads RP_MPI_STRANDED_TIMEOUT / RP_MPI_UNREACHABLE_TIMEOUT; allocates the per-rank
 * state. \return RP_OK or RP_ENOMEM. */
int  rp__mpi_silent_open(struct mpi_pool *mp, bool inproc);
void rp__mpi_silent_close(struct mpi_pool *mp);
/* Rank src sent something: it is there (and, if it was silent, it is back). */
void rp__mpi_heard(struct mpi_pool *mp, int src);
/* A batch went to / came back from rank (not stranded ones). */
void rp__mpi_held(struct mpi_pool *mp, int rank, int delta);
/* Every SILENT_CHECK_S: hands the batches of ranks silent for stranded_s to other
 * workers, gives up ranks silent for unreachable_s. \return events. */
int  rp__mpi_silent_check(struct mpi_pool *mp);
/* A RESULT or DIED from src for a stranded batch fl: dropped (separate outputs
 * received and thrown away); the slot is freed at the batch's last part.
 * \return RP_OK or RP_EMPI. */
int  rp__mpi_late(struct mpi_pool *mp, int src, struct mworker *w, struct inflight *fl,
                  uint64_t count, uint64_t out_size, bool inline_out, bool last);

/* init.c: MPI, the start-up handshake, the pools of this process. */
int  rp__mpi_begin(const rp_pool_opts_t *opts, MPI_Comm *comm, rp_error_t *err,
                   const char *host);
void rp__mpi_end(MPI_Comm *comm, bool keep);
void rp__mpi_started_add(rp_pool_t *pool);
void rp__mpi_started_remove(rp_pool_t *pool);
/* Receives one TAG_CTL message from src (MPI_ANY_SOURCE ok) into *buf (grown);
 * blocking. \return its length, or -1. */
long rp__mpi_recv_ctl(MPI_Comm comm, int src, char **buf, size_t *cap, int *from);

/* startup.c: the collective start-up on the pool's communicator (every rank).
 * Broadcasts rank 0's message w; the others receive it into *buf (grown), its
 * length in *len. \return RP_OK, RP_ENOMEM (taken part, nothing kept), RP_EMPI. */
int  rp__mpi_bcast_msg(MPI_Comm comm, const rp__wbuf *w, char **buf, size_t *cap, size_t *len);
/* Appends message msg to a blob ([u32 length][message]...). \return blob->err. */
int  rp__mpi_blob_add(rp__wbuf *blob, const rp__wbuf *msg);
/* Gathers every rank's blob at rank 0: *all (rank r's at (*displs)[r], (*counts)[r]
 * bytes; the caller frees the three). mine may be NULL (nothing). */
int  rp__mpi_gather_blobs(MPI_Comm comm, const rp__wbuf *mine, char **all, int **counts,
                          int **displs);
/* Broadcasts rank 0's *status. */
int  rp__mpi_bcast_status(MPI_Comm comm, int32_t *status);

/* leader.c: node leaders (RP_MPI_LEADERS). */
/* Whether the pool has node leaders: RP_MPI_LEADERS=1 or 0, or auto (the default):
 * when one leader can host all nworkers and, on one node, this node runs
 * LEADERS_AUTO_RANKS ranks or more and the pool has as many (nranks serving, and
 * the master); on several nodes (the pool has more ranks than this node runs),
 * when this node runs LEADERS_AUTO_NODE_RANKS (leader.c) or more (the master
 * decides; the HELLO tells the ranks). */
bool rp__mpi_leaders_wanted(int nranks, int nworkers);
/* Every rank of comm, when the HELLO asks for leaders (collective): *leader, the
 * lowest serving rank (1..nranks) of this rank's node, INT_MAX if none; *members
 * (size entries, the caller frees): which ranks of comm share this node.
 * \return RP_OK, RP_ENOMEM, RP_EMPI. */
int  rp__mpi_node_leader(MPI_Comm comm, int nranks, int *leader, bool **members);
/* The workers a leader hosts: those placed on its node's ranks (worker w on
 * 1 + w % nranks), in order; their numbers in ids (if not NULL). \return how many. */
int  rp__mpi_leader_workers(const bool *members, int nranks, int nworkers, int *ids);
/* A serving rank, after the HELLO: when it asks for leaders, takes part in
 * finding them and sets sv->nlead, sv->lead_ids. \return RP_OK, RP_ENOMEM, RP_EMPI. */
int  rp__mpi_server_leaders(struct server *sv);
/* The master, once every worker's rank is known: mp->rank_first/rank_wlist.
 * \return RP_OK or RP_ENOMEM. */
int  rp__mpi_rank_lists(struct mpi_pool *mp);

/* bundle.c: several messages in one (RP__MSG_BUNDLE), with node leaders. A bundle
 * is a header (its worker field: the number of parts), then for each part: u32 the
 * local worker it is for (batches; 0 for results), u32 its length, the message,
 * padding to 8 bytes. */
/* The next part of a bundle (r positioned after its header): \return 1 (*local,
 * *part, *len set), 0 at the end, RP_EPROTO when malformed. */
int  rp__mpi_bundle_next(rp__rbuf *r, uint32_t *local, const char **part, size_t *len);
/* The master: bundles on when mp->leaders (\return RP_OK or RP_ENOMEM); their
 * sends completed or canceled, buffers freed. */
int  rp__mpi_bundle_open(struct mpi_pool *mp);
void rp__mpi_bundle_close(struct mpi_pool *mp);
/* Batch fl (built in fl->buf, for worker w) goes out at the end of the pass. */
void rp__mpi_bundle_defer(struct mpi_pool *mp, struct inflight *fl, const struct mworker *w);
/* The end of a dispatch pass: one message per rank (the batch itself when alone). */
void rp__mpi_bundle_send(struct mpi_pool *mp);
/* Rank given up: its bundles' sends are let go of (outbox.c). */
void rp__mpi_bundle_cancel(struct mpi_pool *mp, int rank);
/* A serving rank: a BUNDLE of batches from the master (buf, len bytes) posted to
 * its workers. \return RP_OK, RP_EPROTO, RP_EMPI. */
int  rp__mpi_bundle_batches(struct server *sv, const char *buf, size_t len);
/* A serving rank: can a message of len bytes join the turn's bundle now (a bundle
 * too large is sent first)? Never waits: false while both buffers are going out
 * (the message then goes alone, after the bundle). */
bool rp__mpi_bundle_room(struct server *sv, size_t len);
/* Message msg (a RESULT with no separate outputs, a PROGRESS) joins the turn's
 * bundle (copied; after rp__mpi_bundle_room). \return RP_OK or RP_ENOMEM. */
int  rp__mpi_bundle_add(struct server *sv, const void *msg, size_t len);
/* Sends the turn's bundle (a lone part as itself). Called at the end of a turn
 * and before any other message to the master (which then arrives after it). */
int  rp__mpi_bundle_flush(struct server *sv);
/* Flushes, then sends msg to the master (TAG_CTL, blocking). */
int  rp__mpi_server_send(struct server *sv, const void *msg, size_t len);
/* The bundles' sends completed (or abandoned, as rp__mpi_slot_drain), buffers freed. */
void rp__mpi_bundle_end(struct server *sv);
/* slot.c: waits for n sends to the master; abandons them (\return false) when the
 * master ended the pool without reading them. */
bool rp__mpi_send_wait(struct server *sv, MPI_Request *reqs, int n);

/* ---- waiting (init.c) ------------------------------------------------------------
 * How waiting loops share the node's cores, decided once per pool start from the
 * ranks on this node (rp__local_rank_size: mpirun's or srun's word) and its usable
 * cores. The aim
 * is at most one spinner per core at any moment:
 * - A serving rank and its worker process wait for each other in turn (a batch
 *   posted, a batch done). Unless there are cores for both (pair_spin), whichever
 *   waits sleeps on a futex at once and the other has the core: the rank sleeps
 *   while its worker computes, the worker sleeps while the rank polls MPI. Only
 *   on an oversubscribed node (yield_when_idle) do they poll a little first,
 *   yielding, which beats a futex hand-off when everything shares one core.
 * - Polling MPI (an idle rank, the master's waiting thread) spins with a pause
 *   instruction for a while, then naps or sleeps; it gives the core away
 *   (sched_yield) only when this node runs more ranks than it has cores, as Open
 *   MPI does. The master's pool thread sleeps while a user thread polls. */
extern bool rp__mpi_yield_when_idle;
extern bool rp__mpi_pair_spin;
extern bool rp__mpi_pair_yield;
void rp__mpi_decide_yield(bool inproc);
/* Threads that nap (short timed sleeps) want them short: no timer slack. */
void rp__mpi_precise_naps(void);

/* One turn of a polling loop. Spinning spins: a loop that gave its core away
 * every so often when there seemed to be a core for each spinner was measured to
 * end up sharing one core with the rank it waits for (the scheduler packs them
 * when other programs load the node), and then each round trip took two of
 * those waits instead of a few microseconds. Every loop is bounded in time
 * (SPIN_IDLE_S and less) before it sleeps. */
static inline void rp__mpi_idle_pause(void)
{
    if (rp__mpi_yield_when_idle)
        sched_yield();
    else
        rp__cpu_relax();
}

/* Whether a rank and its worker processes poll each other briefly before they
 * sleep (a batch posted, a batch done): a core for each (pair_spin); an
 * oversubscribed node, yielding, for a rank of at most SPIN_WORKERS_MAX workers
 * (hundreds yielding took the cores from their ranks); or, yielding, a rank of
 * one worker whose node has a core per rank but not per process (pair_yield: on
 * 2 cores with -np 2, an apply's round trip went from a median of 9.4 to 7.1 us). */
static inline bool rp__mpi_pair_polls(const struct server *sv)
{
    return rp__mpi_pair_spin || (rp__mpi_yield_when_idle && sv->nlocal <= SPIN_WORKERS_MAX) ||
           (rp__mpi_pair_yield && sv->nlocal == 1);
}

/* One turn of a rank or its worker process polling the other. */
static inline void rp__mpi_pair_pause(void)
{
    if (rp__mpi_pair_yield)
        sched_yield();
    else
        rp__mpi_idle_pause();
}

static inline void rp__mpi_sleep(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    nanosleep(&ts, NULL);
}

static inline size_t rp__mpi_align(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* ---- outbox.c: sends the master let go of ---------------------------------------------- */

/* A send in the outbox: its buffer (freed once it completes, or NULL) and the
 * bytes it reads (from, len: in a buffer of rp_pool_alloc when buf is NULL). */
struct mout {
    void       *buf;
    const char *from;
    size_t      len;
};
/* A buffer of rp_pool_alloc the pool gave up while sends from it were pending. */
struct mheld {
    char  *p;
    size_t size;
};

/* Takes the started send *req (set to MPI_REQUEST_NULL) and its buffer buf (from
 * malloc, or NULL): buf is freed once the send completes, never before (at once
 * when *req is MPI_REQUEST_NULL already). */
void rp__mpi_outbox_add(struct mpi_pool *mp, MPI_Request *req, void *buf);
/* Takes the started send *req of len bytes from `from`, in a buffer of
 * rp_pool_alloc: a buffer given up while such a send is pending is freed only
 * once none is (rp__mpi_buf_release). */
void rp__mpi_outbox_add_from(struct mpi_pool *mp, MPI_Request *req, const void *from,
                             size_t len);
/* ops->buf_release: a buffer of rp_pool_alloc given up (any thread; plock only
 * tried, else the buffer is handed to the next pass): freed now, or once no send
 * from it is pending; kept for the life of the process if one still was when the
 * pool ended. */
void rp__mpi_buf_release(rp_pool_t *pool, void *p, size_t bytes);
/* Frees the buffers of the sends that completed: once per pass of the pool thread. */
void rp__mpi_outbox_poll(struct mpi_pool *mp);
/* The pool ends: what is still pending is let go, its buffers kept. */
void rp__mpi_outbox_close(struct mpi_pool *mp);

#endif /* RP_MPI_BACKEND_H */
