/* The scheduler: every dispatch decision of both backends, in one place.
 *
 * Which job next (the oldest with unclaimed items), how many items next (a fixed
 * chunksize, or guided chunks with a cost floor), which worker gets them (an idle
 * one before one that is busy), how many batches a worker may hold (a short
 * pipeline, deeper only for batches too short to cover a round trip), what runs
 * again after a worker died (put back, before anything new), and when an idle
 * local worker must be woken. Pure logic: no locks (the caller serializes), no
 * system calls, no allocation but when a put-back list or the job heap grows.
 * Every decision is O(1) or O(log jobs): nothing scans the workers or the jobs.
 *
 * Two kinds of transport use it:
 *  - dispatching ones (mpi, the tests' thread backend) ask rp__sched_next() for
 *    (worker, job, items) each time a worker has room, and report with
 *    rp__sched_finished() / rp__sched_putback() / rp__sched_worker_lost();
 *  - the local backend lets its workers claim from shared memory themselves; they
 *    ask the pure functions below for the length of a claim (rp__sched_len), the
 *    job to claim from (rp__sched_oldest) and whether to wake a sleeper
 *    (rp__sched_wake_*), so the policy is the same. */
#ifndef RP_SCHEDULER_H
#define RP_SCHEDULER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the length of a claim (pure) ------------------------------------------------ */

/* What a transport tells the scheduler about itself; zero fields mean "no limit". */
typedef struct rp__sched_conf {
    uint32_t depth;        /* batches one worker may hold at once (local 1, mpi 4) */
    uint32_t depth_long;   /* ... when batches are long enough (mpi 2); 0 = depth */
    double   short_s;      /* batches expected shorter than this use `depth` */
    double   min_s;        /* once the item cost is known: no batch shorter */
    uint64_t max_items;    /* items per batch, at most */
    uint64_t max_bytes;    /* input + output bytes per batch, soft (one item passes) */
} rp__sched_conf;

/* Items in the next claim of a job with `remaining` unclaimed items, over `workers`
 * live workers that each hold up to `depth` batches. Fixed chunksize: that many
 * (a dispatching transport may group whole chunks up to its guided target: then
 * `group` is true). Automatic: guided self-scheduling, ceil(remaining / (2 *
 * workers * depth)): large batches first, single items at the end; once item_s
 * (seconds per item) is known, at least min_s of work. Then the caps, the
 * worker's budget (max_tasks_per_worker: 0 = none) and `remaining`. Never 0 when
 * remaining > 0. */
static inline uint64_t rp__sched_len(const rp__sched_conf *c, uint64_t remaining,
                                     uint64_t chunksize, uint32_t workers, uint32_t depth,
                                     double item_s, uint64_t item_bytes, bool group,
                                     uint64_t budget)
{
    if (remaining == 0)
        return 0;
    if (chunksize && !group) { /* the common fixed case: no target to compute */
        uint64_t len = budget && budget < chunksize ? budget : chunksize;
        return len < remaining ? len : remaining;
    }
    uint64_t div = 2 * (uint64_t)(workers ? workers : 1) * (depth ? depth : 1);
    uint64_t target = remaining / div + (remaining % div != 0);
    if (item_s > 0 && c->min_s > 0) {
        double floor_items = c->min_s / item_s;
        if ((double)target < floor_items)
            target = floor_items < (double)remaining ? (uint64_t)floor_items : remaining;
    }
    uint64_t cap = c->max_items ? c->max_items : UINT64_MAX;
    if (c->max_bytes && item_bytes) {
        uint64_t by = c->max_bytes / item_bytes;
        if (by < cap)
            cap = by ? by : 1;
    }
    if (target > cap)
        target = cap;
    uint64_t len = target;
    if (chunksize) {
        len = chunksize;
        if (group && target > chunksize)
            len = target / chunksize * chunksize; /* whole chunks */
    }
    if (budget && len > budget)
        len = budget;
    if (len > remaining)
        len = remaining;
    return len ? len : 1;
}

/* The batches a worker may hold for a job whose next batch is expected to last
 * batch_s seconds (0: not known yet): `depth_long` (a short pipeline: a deeper
 * one pins work to a worker another could run sooner), or `depth` when batches
 * are too short to cover the round trip. */
static inline uint32_t rp__sched_depth(const rp__sched_conf *c, double batch_s)
{
    uint32_t lo = c->depth_long ? c->depth_long : c->depth;
    if (batch_s > 0 && batch_s < c->short_s)
        return c->depth ? c->depth : 1;
    return lo ? lo : 1;
}

/* Of the job slots set in `mask`, the one whose job is oldest (lowest id), or -1. */
static inline int rp__sched_oldest(uint64_t mask, const uint64_t *ids, size_t stride)
{
    int best = -1;
    uint64_t bid = UINT64_MAX;
    for (; mask; mask &= mask - 1) {
        int j = __builtin_ctzll(mask);
        uint64_t id = *(const uint64_t *)((const char *)ids + (size_t)j * stride);
        if (best < 0 || id < bid) {
            best = j;
            bid = id;
        }
    }
    return best;
}

/* Local workers: how many sleepers a submit of `items` claimable items must wake
 * when `spinning` idle workers are about to look for work: a spinner takes one
 * batch, so only what the spinners cannot take needs a wake. */
static inline uint32_t rp__sched_wake_on_submit(uint64_t items, uint32_t spinning,
                                                uint32_t sleeping)
{
    if (items <= spinning || sleeping == 0)
        return 0;
    uint64_t want = items - spinning;
    return want < sleeping ? (uint32_t)want : sleeping;
}

/* Local workers, a submit on a machine of several CPUs that wakes nobody by
 * rp__sched_wake_on_submit: `beside` of the `spinning` idle workers were last
 * seen on the submitter's CPU. Such a spinner takes a job only by taking that CPU
 * while the submitter waits for it asleep (a futex wake each way: ~7 us per
 * rp_apply instead of ~0.6), and the scheduler then keeps both there while
 * another CPU idles. So they count for nothing, and sleepers are woken for what
 * the other spinners cannot take, if one of the sleepers was last seen on
 * another CPU (`away`: else a wake would only add a worker to the same CPU). */
static inline uint32_t rp__sched_wake_beside(uint64_t items, uint32_t spinning,
                                             uint32_t beside, uint32_t sleeping, bool away)
{
    if (beside == 0 || beside > spinning || !away)
        return 0;
    return rp__sched_wake_on_submit(items, spinning - beside, sleeping);
}

/* Local workers: after a claim, whether the claimer must wake one sleeper itself.
 * A submit that saw a spinner woke nobody; if the spinner took an earlier job,
 * the later one would wait for it. So whoever claims and still sees claimable
 * work, with nobody spinning to take it, passes the wake on. */
static inline bool rp__sched_wake_after_claim(bool more_work, uint32_t spinning,
                                              uint32_t sleeping)
{
    return more_work && spinning == 0 && sleeping > 0;
}

/* ---- the dispatcher (dispatching transports) -------------------------------------- */

typedef struct rp__span {
    uint64_t a, b;            /* items [a, b) */
} rp__span;

/* The scheduler's part of one job. Owned by the job; valid from rp__sched_add()
 * until rp__sched_remove(). */
typedef struct rp__sjob {
    uint64_t  id;             /* submission order: lower is older */
    uint64_t  n;
    uint64_t  next;           /* first unclaimed item of [0, n) */
    uint64_t  remaining;      /* unclaimed items: put back + [next, n) */
    uint64_t  chunksize;      /* 0 = automatic */
    uint64_t  item_bytes;     /* input + output bytes of one item */
    double    item_s;         /* seconds per item, measured; 0 until known */
    rp__span *back;           /* put back after a worker died: run first */
    uint32_t  nback, capback;
    uint32_t  heap;           /* position in the scheduler's heap + 1; 0 = not in it */
    bool      added;
} rp__sjob;

typedef struct rp__sworker {
    uint32_t held;            /* batches dispatched and not finished */
    int32_t  prev, next;      /* links in bucket `held` (alive and held < depth) */
    bool     alive;
    bool     listed;
} rp__sworker;

typedef struct rp__sched {
    rp__sched_conf conf;
    uint32_t       nworkers;
    uint32_t       alive;
    rp__sworker   *w;
    int32_t       *bucket;    /* conf.depth heads: alive workers holding k batches */
    uint32_t      *count;     /* workers in each bucket */
    rp__sjob     **heap;      /* jobs with unclaimed items, min-heap by id */
    uint32_t       nheap, capheap;
} rp__sched;

/* One dispatch decision: worker `worker` runs items [start, start + len) of job. */
typedef struct rp__pick {
    uint32_t  worker;
    rp__sjob *job;
    uint64_t  start, len;
} rp__pick;

/* Sets up a scheduler for nworkers workers, all alive and idle.
 * \return 0, or -1 when out of memory. */
int  rp__sched_open(rp__sched *s, const rp__sched_conf *conf, uint32_t nworkers);
void rp__sched_close(rp__sched *s);

/* A new job of n items (chunksize 0 = automatic), unclaimed. \return 0 or -1. */
int  rp__sched_add(rp__sched *s, rp__sjob *j, uint64_t id, uint64_t n, uint64_t chunksize,
                   uint64_t item_bytes);
/* The job is gone: its unclaimed items are dropped (see rp__sched_withdraw). */
void rp__sched_remove(rp__sched *s, rp__sjob *j);

/* The next batch to send, if a worker has room and a job has items: the oldest
 * job's items go to the worker holding the fewest batches. \return false when
 * there is nothing to send now. */
bool rp__sched_next(rp__sched *s, rp__pick *p);
/* Worker w finished a batch of `items` items of j (NULL if the job is gone) that
 * took `seconds` of computing (0: not measured): it has room again, and the
 * job's item cost is updated. */
void rp__sched_finished(rp__sched *s, uint32_t w, rp__sjob *j, uint64_t items, double seconds);
/* Items [a, b) of j must run again (a worker died, a batch was handed back):
 * they go out before any unclaimed item of any job. \return 0 or -1. */
int  rp__sched_putback(rp__sched *s, rp__sjob *j, uint64_t a, uint64_t b);
/* Takes every unclaimed item of j away (cancel, terminate): each range is given
 * to fn. */
void rp__sched_withdraw(rp__sched *s, rp__sjob *j,
                        void (*fn)(void *arg, uint64_t a, uint64_t b), void *arg);
/* Worker w is gone: it gets nothing more. Its held batches are the caller's to
 * put back or fail; rp__sched_finished is not called for them. */
void rp__sched_worker_lost(rp__sched *s, uint32_t w);
/* Worker w (lost before) runs again, holding nothing. */
void rp__sched_worker_back(rp__sched *s, uint32_t w);

/* Jobs with unclaimed items? */
static inline bool rp__sched_has_work(const rp__sched *s) { return s->nheap > 0; }
/* The oldest job with unclaimed items, or NULL. */
static inline rp__sjob *rp__sched_first(const rp__sched *s)
{
    return s->nheap ? s->heap[0] : NULL;
}
/* Expected seconds of a job's next batch (0: item cost unknown). */
double rp__sched_batch_seconds(const rp__sched *s, const rp__sjob *j);

#endif /* RP_SCHEDULER_H */
