/* The local backend, private header: what its files share.
 *
 * Worker processes on this machine, forked by a fork server, move chunks through
 * one shared memory region. The master copies a job's input into the shared
 * arena and publishes it in a job slot; workers claim chunks of it themselves
 * with a compare-and-swap (no round trip to the master), taking the lengths, the
 * order of jobs and the wake decisions from the core's scheduler (scheduler.h);
 * they run them in place, count what they processed in their own counters, and
 * the worker that completes a job sets its done word (in the slot) for the core.
 * A dead worker is reported by the fork server; the master's pool thread tells
 * the core (rp__job_worker_died), puts back what it returns, and has the worker
 * replaced. Design: doc/internals.md ("The local backend").
 *
 * Files: ops.c (start, join, destroy, the ops table), job.c (submit, slots,
 * publishing, queue, progress, release), claim.h (the claim protocol and the
 * workers' side of it, inline), claim.c (its master side: retry ranges, suspect
 * claims; counting and completion; waking idle workers), deliver.c (error rings,
 * outputs, imap marks: ops->collect), worker.c (the worker process), arena.c
 * (arena and var heap), thread.c (the pool thread: deaths, notifications),
 * terminate.c (terminate and failing every job), cancel.c (canceling one job,
 * watching one), forkserver.c.
 *
 * Locks, in the master only (workers take none: they share only atomics with
 * the master):
 *   D  lp->drain_lock  serializes reading the error rings, delivering outputs,
 *                      accounting for dead workers and freeing a job's slot;
 *                      a struct ljob is freed only under D, so a holder of D
 *                      may use any ljob it finds in lp->table or lp->live.
 *   L  lp->lock        slots, arena, queue, live list, retry bookkeeping.
 * Order: D, then L, then the core's own locks (a result's lock, the notify
 * queue's), which are leaves: the core never calls the backend while holding
 * them, so the rp__job_* calls may be made under D and L. The core holds none of
 * its locks when it calls an op. */
#ifndef RP_LOCAL_H
#define RP_LOCAL_H

#include "internal.h" /* first: config.h */

#include "backend.h"
#include "futex.h"

#include <signal.h>
#include <stdalign.h>
#include <time.h>
#include <unistd.h>

/* ==== the shared region ==========================================================
 * [hdr][worker slots][arena][var heap], one MAP_SHARED|MAP_ANONYMOUS mapping at
 * the same address in every process (inherited through fork), so offsets and
 * function pointers are valid everywhere. */

#define RP__CL 64                 /* cache line */
#define RP__NSLOTS 64             /* jobs in flight at once (more wait in a queue) */
#define RP__NRANGES 16            /* per job: the main range + retried ranges */
#define RP__RING 32               /* error records per worker */
#define RP__MAXWORKERS 1024
#define RP__VSEGS 256             /* segments of the var heap, each owned by one job */
#define RP__INIT_DEATHS_MAX 8     /* replacements killed in their initializer, in a row */

/* A range word packs a tag (24 bits) and an item index (40 bits): a claim is a
 * CAS on the whole word, so a stale claimer fails once the range is reused. */
#define RP__IDX_BITS 40
#define RP__IDX_MASK ((UINT64_C(1) << RP__IDX_BITS) - 1)
#define RP__IDX_NONE RP__IDX_MASK /* "no item": >= any end */
#define RP__RW(tag, idx) (((uint64_t)(tag) << RP__IDX_BITS) | (uint64_t)(idx))
#define RP__RW_IDX(w) ((w) & RP__IDX_MASK)
#define RP__RW_TAG(w) ((uint32_t)((w) >> RP__IDX_BITS))
#define RP__MAX_ITEMS (RP__IDX_MASK - 1)

/* The var heap is cut into RP__VSEGS segments; a segment belongs to one job from
 * the rp_output() that takes it until the master has copied that job's outputs.
 * Owner word of a segment: 0 when free, RP__VTRIM while the master gives its
 * pages back, else the job (slot, generation). A job's current segment, in its
 * slot: (segment + 1) << 40 | bytes used in it, or 0 for none. */
#define RP__VOWNER(slot, gen) (((uint64_t)(gen) << 8 | (uint64_t)(slot)) + 1)
#define RP__VTRIM UINT64_MAX
#define RP__VCUR(seg, used) ((((uint64_t)(seg) + 1) << 40) | (uint64_t)(used))
#define RP__VCUR_SEG(v) (((v) >> 40) - 1)
#define RP__VCUR_USED(v) ((v) & RP__IDX_MASK)

/* imap marks (RP__JOB_TRACK): a byte per item in the arena. A worker sets a
 * chunk's marks to ARRIVED after its outputs; the master sets DELIVERED on items
 * whose arrival the core records itself (a dead worker's running item, canceled
 * items), so that they are not delivered twice. */
enum { RP__MARK_NONE = 0, RP__MARK_ARRIVED = 1, RP__MARK_DELIVERED = 2 };

/* Slot state word: gen << 2 | one of these. The CAS from ACTIVE to DONE elects
 * the one that completes the job (a worker, or the master failing every job). */
enum { RP__SLOT_FREE = 0, RP__SLOT_ACTIVE = 1, RP__SLOT_DONE = 2 };
#define RP__SW(gen, st) ((uint32_t)(((gen) << 2) | (st)))

struct rp__lrange {
    alignas(RP__CL) _Atomic uint64_t next; /* tag | first unclaimed index */
    _Atomic uint64_t end;                  /* one past the last item */
    _Atomic int32_t  cpu;                  /* where its last claimer claimed (a hint
                                              for waiters: ops->runs_on) */
};

struct rp__slot {
    /* read-mostly parameters, written by the master before the job is published */
    alignas(RP__CL) uint64_t id;
    uint32_t     gen;            /* job generation (30 bits used in the state word;
                                    lp->gen[j] is the master's copy) */
    uint32_t     flags;          /* RP__JOB_* */
    rp_task_fn   fn;
    uint64_t     n, in_size, out_size, chunksize;
    uint64_t     in_off, out_off, mark_off;  /* in the arena */
    uint64_t     index_base;     /* the job's (rp_ctx_index adds it) */
    _Atomic uint32_t nranges;
    _Atomic uint32_t cancel;     /* 1: canceled, workers stop before their next item */
    uint64_t     timeout_ns;     /* an item's time limit, 0 = none (watch.c) */
    uint32_t     retries;        /* retry_raised: a task's failure runs again */
    alignas(RP__CL) _Atomic uint32_t state;   /* RP__SW(gen, st) */
    rp__done     done;           /* the job's done word while it holds the slot */
    _Atomic int32_t ycpu;        /* the CPU a waiter gave up for the job's worker
                                    (ops->runs_on), or -1: a worker that ran a
                                    chunk of it there gives it back */
    alignas(RP__CL) _Atomic uint32_t tseq;    /* RP__JOB_TRACK: bumped per chunk */
    _Atomic uint32_t twaiters;
    _Atomic uint32_t suspect;    /* dead claims or put-backs the master must resolve */
    _Atomic uint32_t watch;      /* the core watches the job: its completion is
                                    reported in hdr->notify, as for RP__JOB_NOTIFY */
    alignas(RP__CL) _Atomic uint64_t mdone;   /* items the master accounted for */
    alignas(RP__CL) _Atomic uint64_t vcur;    /* RP__JOB_VAR: current segment */
    struct rp__lrange range[RP__NRANGES];
};

/* Worker life, in its slot. */
enum { RP__W_EMPTY, RP__W_STARTING, RP__W_READY, RP__W_INITFAIL, RP__W_RETIRED };
/* What a worker holds (hstate): its claim record. */
enum { RP__H_NONE, RP__H_TENTATIVE, RP__H_CONFIRMED };

struct rp__ring_entry {
    uint32_t   slot, gen;
    uint64_t   count;            /* items from e.index with this failure (>= 1) */
    rp_error_t e;
};

struct rp__wslot {
    /* the chunk held, written by the worker only; read by the master after its death */
    alignas(RP__CL) _Atomic uint32_t hstate;
    uint32_t hslot, hgen, hrange, htag;
    uint64_t hstart, hlen, hbase;
    _Atomic size_t cur;          /* the item running (rp__worker_run stores it) */
    /* rp_result_cancel with RP_CANCEL_KILL: set by the master while it decides to
     * kill this worker; a worker leaving a chunk waits until it is clear, so a
     * worker seen holding the canceled job's chunk is still in it when killed */
    _Atomic uint32_t killreq;
    _Atomic uint64_t deadline;   /* timed jobs: when the item running is late (ns), 0 */
    uint64_t   kill_deadline;    /* master (watch.c): the deadline it was killed for */
    /* life */
    alignas(RP__CL) _Atomic int32_t pid;
    _Atomic uint32_t life;       /* RP__W_* */
    uint64_t   processed;        /* items run by this process (max_tasks_per_worker) */
    rp_error_t init_err;
    /* items processed per job slot: only this worker writes them */
    alignas(RP__CL) _Atomic uint64_t done[RP__NSLOTS];
    /* error ring: the worker writes head, the master tail */
    alignas(RP__CL) _Atomic uint32_t head;
    alignas(RP__CL) _Atomic uint32_t tail;
    _Atomic uint32_t full;       /* the worker waits on tail for room */
    struct rp__ring_entry ring[RP__RING];
};

#define RP__IDLEW (RP__MAXWORKERS / 64)

struct rp__hdr {
    alignas(RP__CL) _Atomic uint32_t work_seq; /* futex of idle workers */
    uint32_t         max_spin;                /* more would only take cores from others */
    uint32_t         idlew;                   /* words of the idle masks in use */
    /* Idle workers, a bit each (worker k: word k / 64, bit k % 64): spinning, and
     * asleep (or about to sleep) on work_seq. Bits, not counts: the master clears
     * a dead worker's own, which a count could not tell from the others'. */
    alignas(RP__CL) _Atomic uint64_t spinning[RP__IDLEW];
    alignas(RP__CL) _Atomic uint64_t sleeping[RP__IDLEW];
    /* The CPU each worker was last seen on, plus one (0: not yet), where it
     * claimed or spun: a hint for waiters (ops->runs_on). Written when it
     * changes. */
    alignas(RP__CL) _Atomic int32_t wcpu[RP__MAXWORKERS];
    alignas(RP__CL) _Atomic uint64_t work_mask; /* slots that may have work */
    _Atomic uint32_t shutdown;
    _Atomic uint32_t init_report;             /* workers write the eventfd at init */
    _Atomic int32_t  nqueued;                 /* jobs waiting for a slot (master) */
    _Atomic uint64_t notify;                  /* slots whose RP__JOB_NOTIFY job is
                                                 complete, for the pool thread */
    alignas(RP__CL) _Atomic uint64_t vseg[RP__VSEGS]; /* owner of each var segment */
    alignas(RP__CL) struct rp__slot slots[RP__NSLOTS];
};

/* ==== the fork-server protocol ===================================================== */

/* Messages over a SOCK_SEQPACKET socketpair, one struct per message. */
enum {
    RP__FS_SPAWN = 1,  /* master -> fs: start worker `worker` */
    RP__FS_KILLALL,    /* master -> fs: SIGKILL every worker, reap, answer KILLED */
    RP__FS_QUIT,       /* master -> fs: reap the (exiting) workers, then exit */
    RP__FS_DIED,       /* fs -> master: worker `worker` (pid) ended with `status` */
    RP__FS_SPAWNFAIL,  /* fs -> master: fork failed for `worker` */
    RP__FS_KILLED,     /* fs -> master: every worker is reaped */
};
struct rp__fs_msg {
    int32_t kind, worker, pid, status;
};

/* What the fork server needs; lives in the master's memory, inherited by fork. */
struct rp__fs_conf {
    struct rp__hdr   *hdr;
    struct rp__wslot *(*wslot)(void *lp, int k);
    void (*worker_main)(void *lp, int k);   /* never returns */
    void   *lp;
    int     nworkers;
    void   *region;    /* the shared region, unmapped before exiting */
    size_t  region_size;
    int     sock;      /* the fork server's end */
    int     efd;       /* eventfd to wake the master's pool thread */
    pid_t   master;
    /* the signal state to give back to workers */
    sigset_t         mask;
    struct sigaction chld, intr;
};

/* Runs the fork server in a freshly forked child; never returns. */
void rp__forkserver_main(struct rp__fs_conf *c) __attribute__((noreturn));
/* Unmaps the shared region and _exits: how the fork server and workers end. */
void rp__region_exit(struct rp__fs_conf *c, int status) __attribute__((noreturn));

/* ==== the master ==================================================================== */

/* (items [a, b): struct rp__span of scheduler.h) */
struct rp__seg {
    uint64_t off, size;            /* bytes of the arena */
};

/* A job as the backend keeps it (job->bdata). */
struct ljob {
    struct rp__job *job;
    struct ljob *prev, *next;      /* live list (L) */
    struct ljob *qnext;            /* queue (L) */
    _Atomic int  slot;             /* -1 while queued (never reset once given) */
    uint32_t     gen;
    uint64_t     aoff, asize;      /* arena block */
    uint64_t     in_off, out_off, mark_off;
    uint64_t     out_size;         /* bytes per item in the arena */
    bool         var, track, queued;
    bool         watch;            /* (L) the core watches it (ops->watch) */
    bool         in_shared, out_shared; /* in / out lie in a shared buffer: used in
                                           place (no arena block, no copy) */
    _Atomic bool publishing;       /* its input is being copied in (publish) */
    bool         delivered;        /* (D) every output delivered */
    _Atomic bool freed;            /* (D, L) slot, arena and var segments given back */
    _Atomic bool notified;         /* rp__job_completed was called (pool thread) */
    /* claims interrupted by a death whose CAS may have happened (D) */
    struct susp { uint32_t r; uint64_t a, b; } *sus;
    size_t       nsus;
    /* items to put back when a range frees up (L) */
    struct rp__span *pend;
    size_t       npend;
    /* RP__JOB_TRACK delivery (D): every item below hi not in holes is delivered */
    uint64_t     hi;
    struct rp__span *holes;
    size_t       nholes, capholes;
};

struct lpool {
    rp_pool_t       *pool;
    char            *base;
    size_t           map_size;
    struct rp__hdr  *hdr;
    char            *wbase;
    size_t           wstride;
    char            *arena, *var;
    uint64_t         arena_size, var_size, vseg_size;
    int              nworkers;
    int              sock, efd;
    pid_t            fs_pid;
    struct rp__fs_conf conf;

    pthread_t        thread;
    bool             thread_started;
    pthread_mutex_t  lock;         /* L */
    pthread_mutex_t  drain_lock;   /* D */
    pthread_cond_t   cond;         /* promotions, fork server answers (with L) */

    _Atomic(struct ljob *) table[RP__NSLOTS]; /* the job of each used slot (L) */
    /* Per slot, what only the master writes, kept here and not in the slot: the
     * workers read the slot's lines, and a read of one by the master then waits
     * for it to come back. */
    uint32_t         gen[RP__NSLOTS]; /* its last job's generation (L) */
    uint32_t         tag[RP__NSLOTS]; /* the last range tag used (publish, or L) */
    uint64_t         free_slots;   /* bit j set: slot j free (L) */
    struct ljob     *live;         /* live jobs (L) */
    _Atomic(struct ljob *) spare;  /* the last job record released, kept for the
                                      next submit (no allocation per job), or NULL */
    struct ljob     *qhead, *qtail;
    struct rp__seg  *fl;           /* arena free list, sorted by offset (L) */
    size_t           nfl, capfl;
    uint64_t         arena_hw;     /* high-water mark of the arena */
    bool             vtouched[RP__VSEGS]; /* var segment used since its pages went
                                             back to the kernel (L) */
    int              live_workers; /* alive or being started (L) */
    /* replacements of each worker killed by a signal in their initializer, in a
     * row (L) */
    uint8_t          init_deaths[RP__MAXWORKERS];
    _Atomic bool     terminating, killed, stopping, shutdown, fs_gone, broken;
    _Atomic int      ntimed;       /* live jobs with a time limit (watch.c) */
    int              broken_code;  /* why it is broken, for later submits (L) */
    char             broken_msg[128];

    struct lpool    *reg_next;     /* registry of pools (fork handlers) */
};

#define RP__ALIGN 64
static inline uint64_t rp__align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

static inline struct rp__wslot *rp__wslot_of(struct lpool *lp, int k)
{
    return (struct rp__wslot *)(lp->wbase + (size_t)k * lp->wstride);
}

/* Waits on lp->cond (L held) at most `left` seconds. */
static inline void rp__local_cond_wait(struct lpool *lp, double left)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + (left > 1e6 ? 1e6 : left);
    ts.tv_sec = (time_t)t;
    ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
    pthread_cond_timedwait(&lp->cond, &lp->lock, &ts);
}

/* How many bits are set in the first `words` words of an idle mask (a load per
 * word and no more while it is empty: every worker busy, the common case). */
static inline uint32_t rp__local_idle_count(_Atomic uint64_t *mask, uint32_t words)
{
    uint32_t n = 0;
    for (uint32_t w = 0; w < words; w++) {
        uint64_t v = atomic_load(&mask[w]);
        if (v)
            n += (uint32_t)__builtin_popcountll(v);
    }
    return n;
}

/* Worker k is on CPU cpu: recorded for waiters (ops->runs_on) if it moved. */
static inline void rp__local_seen_on(struct rp__hdr *hdr, int k, int cpu)
{
    if (atomic_load_explicit(&hdr->wcpu[k], memory_order_relaxed) != cpu + 1)
        atomic_store_explicit(&hdr->wcpu[k], cpu + 1, memory_order_relaxed);
}

/* Where workers were last seen (hdr->wcpu), of the first nw: those whose bit is
 * set in the idle mask `mask`, or with `awake` those whose bit is clear (not
 * asleep). Returns how many were seen on a CPU other than cpu, up to the first
 * one when `first`; *here (if not NULL) counts those seen on cpu meanwhile. A
 * word of the mask at a time, so only the workers named are looked at. */
static inline uint32_t rp__local_seen_away(const struct rp__hdr *hdr, _Atomic uint64_t *mask,
                                           bool awake, int nw, int cpu, bool first,
                                           uint32_t *here)
{
    uint32_t away = 0, at = 0;
    for (int w = 0; w * 64 < nw; w++) {
        uint64_t bits = atomic_load_explicit(&mask[w], memory_order_relaxed);
        if (awake)
            bits = ~bits;
        if (nw - w * 64 < 64)
            bits &= (UINT64_C(1) << (nw - w * 64)) - 1;
        for (; bits; bits &= bits - 1) {
            int32_t on = atomic_load_explicit(&hdr->wcpu[w * 64 + __builtin_ctzll(bits)],
                                              memory_order_relaxed);
            if (on == 0) /* not seen yet, or dead */
                continue;
            if (on == cpu + 1) {
                at++;
                continue;
            }
            away++;
            if (first)
                goto out;
        }
    }
out:
    if (here)
        *here = at;
    return away;
}

/* Whether any bit is set in the first `words` words of an idle mask. */
static inline bool rp__local_idle_any(_Atomic uint64_t *mask, uint32_t words)
{
    if (atomic_load(&mask[0]))
        return true;
    for (uint32_t w = 1; w < words; w++)
        if (atomic_load(&mask[w]))
            return true;
    return false;
}

/* Worker k is dead: it neither spins nor sleeps any more (before a replacement
 * with its number starts). */
static inline void rp__local_forget_idle(struct lpool *lp, int k)
{
    uint64_t bit = UINT64_C(1) << (k % 64);
    atomic_fetch_and(&lp->hdr->spinning[k / 64], ~bit);
    atomic_fetch_and(&lp->hdr->sleeping[k / 64], ~bit);
    atomic_store(&lp->hdr->wcpu[k], 0); /* nowhere: it takes no job */
}

/* Wakes the master's pool thread (any process). */
static inline void rp__local_wake_master(struct lpool *lp)
{
    uint64_t one = 1;
    ssize_t r = write(lp->efd, &one, sizeof one);
    (void)r;
}

/* claim.c: the claim protocol's master side (the workers' side: claim.h). */
/* Items counted by the master and every worker for slot j. */
uint64_t rp__local_counted(struct lpool *lp, int j);
/* Items of slot j processed so far, those of chunks still running included. */
uint64_t rp__local_progress_items(struct lpool *lp, int j, uint32_t gen);
/* Completes slot j (generation gen) if every item is accounted for. Anyone. */
void rp__local_check_complete(struct lpool *lp, int j, uint32_t gen);
/* Completes slot j now, whatever its counts: the CAS elects one completer.
 * \return true for the one call that completed it. */
bool rp__local_slot_complete(struct lpool *lp, int j, uint32_t gen);
/* Master: puts [a, b) of lj back to be claimed, now or when a range frees (L). */
void rp__local_retry(struct lpool *lp, struct ljob *lj, int j, uint64_t a, uint64_t b);
/* Master: records the claim of dead worker ws that may have happened (D, L).
 * \return true when it is a suspect to resolve with rp__local_audit(). */
bool rp__local_suspect(struct lpool *lp, struct ljob *lj, int k, struct rp__wslot *ws);
/* Master: resolves lj's suspect claims and pending retries if it can (D). */
void rp__local_audit(struct lpool *lp, struct ljob *lj);
/* Master: takes every unclaimed item of lj's slot: fn gets each range (L). */
void rp__local_take_unclaimed(struct lpool *lp, struct ljob *lj,
                              void (*fn)(void *arg, uint64_t a, uint64_t b), void *arg);
/* New work is claimable: bumps work_seq (an idle worker about to sleep sees it)
 * and wakes as many sleepers as rp__sched_wake_on_submit says `items` chunks
 * need (rp__sched_wake_beside, when the spinners share the caller's CPU).
 * Anyone. */
void rp__local_wake_workers(struct rp__hdr *hdr, uint64_t items);

/* arena.c (master under L, except var_alloc: workers) */
bool    rp__local_arena_alloc(struct lpool *lp, uint64_t size, uint64_t *off);
void    rp__local_arena_free(struct lpool *lp, uint64_t off, uint64_t size);
int64_t rp__local_var_alloc(struct lpool *lp, int j, uint32_t gen, uint64_t need);
void    rp__local_var_release(struct lpool *lp, int j, uint32_t gen);
/* ops->buf_alloc, ops->buf_free: shared buffers are blocks of the arena. */
void   *rp__local_buf_alloc(rp_pool_t *pool, size_t bytes);
void    rp__local_buf_free(rp_pool_t *pool, void *p, size_t bytes);

/* job.c */
void rp__local_promote(struct lpool *lp);
/* Waits (condition, L) until lj has a slot, is complete, or the deadline passes.
 * \return whether it has a slot. */
bool rp__local_wait_slot(struct lpool *lp, struct ljob *lj, double deadline);
/* Gives back lj's slot, arena block and var segments (D held, not L); the job is
 * complete. Idempotent. */
void rp__local_free_slot(struct lpool *lp, struct ljob *lj);
bool rp__local_job_done(const struct ljob *lj);
int  rp__local_submit(rp_pool_t *pool, struct rp__job *job);
size_t rp__local_progress(rp_pool_t *pool, struct rp__job *job);
int  rp__local_runs_on(rp_pool_t *pool, struct rp__job *job);
void rp__local_release(rp_pool_t *pool, struct rp__job *job);

/* deliver.c (D held unless said) */
void rp__local_drain(struct lpool *lp);
/* Delivers every item of complete job lj not delivered yet. Idempotent. */
void rp__local_deliver_rest(struct lpool *lp, struct ljob *lj);
/* Sets marks [a, b) of a TRACK job (no-op for others). */
void rp__local_mark(struct lpool *lp, struct ljob *lj, uint64_t a, uint64_t b, int mark);
void rp__local_collect(rp_pool_t *pool, struct rp__job *job, bool final, double timeout);

/* worker.c */
void rp__local_worker_main(void *lp, int k);

/* thread.c */
void *rp__local_pool_thread(void *arg);
/* One pass of the pool thread's work: rings, suspects, completed jobs, slots of
 * complete jobs that queued ones need, callbacks. No lock held. */
void rp__local_service(struct lpool *lp);
void rp__local_handle_msg(struct lpool *lp, const struct rp__fs_msg *m);
void rp__local_send_fs(struct lpool *lp, int kind, int worker);

/* cancel.c */
void rp__local_cancel(rp_pool_t *pool, struct rp__job *job, int flags);
void rp__local_watch(rp_pool_t *pool, struct rp__job *job);
/* watch.c: task time limits (pool thread) */
/* Kills every worker whose item is past its deadline. \return seconds until the
 * next deadline may pass, or -1 (no job with a time limit: sleep until woken). */
double rp__local_watch_limits(struct lpool *lp);
/* A worker (k) died in item `running` of lj: sets d->timeout when the watcher
 * killed it for that item, d->requeue when for an item that had ended since;
 * forgets the kill. Pool thread. */
void rp__local_watch_death(struct lpool *lp, struct ljob *lj, struct rp__wslot *ws,
                           rp__death *d, bool running);

/* terminate.c */
/* Completes every live job now, failing what is not processed: through the
 * core's cancel when the pool is terminated, else with `code` and msg (no worker
 * left, the fork server gone). D held, not L. */
void rp__local_fail_all(struct lpool *lp, int code, const char *msg);
int  rp__local_terminate(rp_pool_t *pool);
void rp__local_reap_fs(struct lpool *lp);

#endif /* RP_LOCAL_H */
