/* The local backend's jobs in the master: submit, a slot and an arena block for
 * each (or a place in the queue until both are free), publishing to the
 * workers, progress, and release.
 *
 * Completion has one path per job. A job that got a slot completes through it:
 * its done word is moved into the slot at publish (rp__job_move_done), and the
 * one that wins the slot's CAS to DONE (a worker, or the master failing every
 * job) sets it; the pool thread then tells the core about RP__JOB_NOTIFY jobs
 * (rp__job_completed). A job that never got one (submitted to a broken pool, or
 * canceled while queued) completes through the core's counting
 * (rp__job_cancel / rp__job_processed). */
#include "local.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define STAGE_BYTES (128u << 10) /* input copied and published in segments */

/* ---- the live list and the queue (under L) ---------------------------------------- */

static void live_add(struct lpool *lp, struct ljob *lj)
{
    lj->prev = NULL;
    lj->next = lp->live;
    if (lp->live)
        lp->live->prev = lj;
    lp->live = lj;
}

static void live_remove(struct lpool *lp, struct ljob *lj)
{
    if (lj->prev)
        lj->prev->next = lj->next;
    else if (lp->live == lj)
        lp->live = lj->next;
    if (lj->next)
        lj->next->prev = lj->prev;
    lj->prev = lj->next = NULL;
}

bool rp__local_job_done(const struct ljob *lj)
{
    return rp__done_is(atomic_load(&lj->job->done));
}

/* Gives lj a slot and arena space if both are free. Under L. */
static bool try_assign(struct lpool *lp, struct ljob *lj)
{
    if (!lp->free_slots)
        return false;
    struct rp__job *job = lj->job;
    uint64_t in_b = lj->in_shared ? 0 : rp__align_up(job->n * job->in_size, RP__ALIGN);
    uint64_t out_b = lj->out_shared ? 0 : rp__align_up(job->n * lj->out_size, RP__ALIGN);
    uint64_t mark_b = lj->track ? rp__align_up(job->n, RP__ALIGN) : 0;
    uint64_t off;
    if (!rp__local_arena_alloc(lp, in_b + out_b + mark_b, &off))
        return false;
    int j = __builtin_ctzll(lp->free_slots);
    lp->free_slots &= ~(UINT64_C(1) << j);
    lj->aoff = off;
    lj->asize = in_b + out_b + mark_b;
    /* a side in a shared buffer is used where it is (the arena holds the buffers) */
    lj->in_off = lj->in_shared ? (uint64_t)(job->in - lp->arena) : off;
    lj->out_off = lj->out_shared ? (uint64_t)(job->out - lp->arena) : off + in_b;
    lj->mark_off = off + in_b + out_b;
    /* The slot's own words are written by publish, without L: the workers read
     * those lines, and a store under L would make the unlock wait for them. A
     * free slot's watch word is 0 (rp__local_free_slot). */
    lj->gen = lp->gen[j] = (lp->gen[j] + 1) & 0x3fffffff;
    if (lj->watch) /* watched while queued */
        atomic_store_explicit(&lp->hdr->slots[j].watch, 1, memory_order_relaxed);
    /* (seen by whoever finds lj in the table, stored next, or takes L after us) */
    atomic_store_explicit(&lj->publishing, true, memory_order_relaxed);
    atomic_store(&lp->table[j], lj);
    atomic_store(&lj->slot, j);
    return true;
}

/* How many chunks `items` items make at most: what idle workers could take. */
static uint64_t chunks_of(uint64_t items, uint64_t chunksize)
{
    return chunksize ? items / chunksize + (items % chunksize != 0) : items;
}

/* Copies the input in and publishes the job to the workers. No lock held. */
static void publish(struct lpool *lp, struct ljob *lj)
{
    struct rp__job *job = lj->job;
    int j = atomic_load(&lj->slot);
    struct rp__slot *s = &lp->hdr->slots[j];
    struct rp__hdr *hdr = lp->hdr;
    /* Input in segments: the workers start on the first while the rest is
     * copied (range 0's end follows the copy). */
    uint64_t seg = job->in_size ? STAGE_BYTES / job->in_size : job->n;
    if (seg == 0)
        seg = 1;
    uint64_t staged = job->n < seg || lj->in_shared ? job->n : seg;
    if (job->in_size && !lj->in_shared)
        memcpy(lp->arena + lj->in_off, job->in, staged * job->in_size);
    if (lj->var)
        memset(lp->arena + lj->out_off, 0, job->n * 16);
    if (lj->track)
        memset(lp->arena + lj->mark_off, RP__MARK_NONE, job->n);
    /* The counters start at 0: published by the state word's release store. A
     * counter that is 0 already is not written (its line stays with the worker
     * that reads or writes it next). */
    for (int w = 0; w < lp->nworkers; w++) {
        _Atomic uint64_t *d = &rp__wslot_of(lp, w)->done[j];
        if (atomic_load_explicit(d, memory_order_relaxed) != 0)
            atomic_store_explicit(d, 0, memory_order_relaxed);
    }
    if (atomic_load_explicit(&s->mdone, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->mdone, 0, memory_order_relaxed);
    if (atomic_load_explicit(&s->vcur, memory_order_relaxed) != 0)
        atomic_store_explicit(&s->vcur, 0, memory_order_relaxed);
    /* (twaiters and the done word's sleepers are not reset: a waiter of the
     * slot's previous job may still be on its way out and will decrement them) */
    s->id = job->id;
    s->gen = lj->gen; /* workers do not read gen of a slot that is not active */
    atomic_store_explicit(&s->cancel, 0, memory_order_relaxed); /* (the same line as out_off) */
    s->flags = job->flags;
    s->fn = job->fn;
    s->n = job->n;
    s->in_size = job->in_size;
    s->out_size = lj->out_size;
    s->chunksize = job->chunksize;
    s->in_off = lj->in_off;
    s->out_off = lj->out_off;
    s->mark_off = lj->mark_off;
    s->timeout_ns = job->timeout > 0 ? (uint64_t)(job->timeout * 1e9) + 1 : 0;
    s->retries = job->retry_raised ? (uint32_t)job->retries : 0;
    s->index_base = job->index_base;
    /* Range 0 under a new tag, "no item" first: a claimer that sees the new end
     * (acquire) sees that too, and a stale claimer's CAS fails. */
    uint32_t tag = lp->tag[j] = (lp->tag[j] + 1) & 0xffffff;
    atomic_store_explicit(&s->range[0].next, RP__RW(tag, RP__IDX_NONE), memory_order_relaxed);
    atomic_store_explicit(&s->range[0].end, staged, memory_order_release);
    atomic_store_explicit(&s->range[0].next, RP__RW(tag, 0), memory_order_release);
    atomic_store_explicit(&s->nranges, 1, memory_order_release);
    /* The job's waiters move to the slot's done word, which the worker that
     * completes the job sets (the move is a full barrier: the word is 0 first).
     * Until here every store to the workers' lines was a plain one: they all
     * travel at once, and this waits for them together. */
    atomic_store_explicit(&s->done.word, 0, memory_order_relaxed);
    atomic_store_explicit(&s->ycpu, -1, memory_order_relaxed);
    rp__job_move_done(job, &s->done);
    atomic_store_explicit(&s->state, RP__SW(lj->gen, RP__SLOT_ACTIVE), memory_order_release);
    atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << j);
    rp__local_wake_workers(hdr, chunks_of(job->n, job->chunksize));
    while (staged < job->n) {
        uint64_t k = job->n - staged < seg ? job->n - staged : seg;
        memcpy(lp->arena + lj->in_off + staged * job->in_size,
               job->in + staged * job->in_size, k * job->in_size);
        staged += k;
        atomic_store_explicit(&s->range[0].end, staged, memory_order_release);
        atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << j);
        rp__local_wake_workers(hdr, chunks_of(k, job->chunksize));
    }
    atomic_store_explicit(&lj->publishing, false, memory_order_release);
    if (s->timeout_ns)
        rp__local_wake_master(lp); /* its watch begins */
}

void rp__local_promote(struct lpool *lp)
{
    for (;;) {
        pthread_mutex_lock(&lp->lock);
        struct ljob *lj = lp->qhead;
        if (!lj || atomic_load(&lp->terminating) || atomic_load(&lp->broken)
            || !try_assign(lp, lj)) {
            pthread_mutex_unlock(&lp->lock);
            return;
        }
        lp->qhead = lj->qnext;
        if (!lp->qhead)
            lp->qtail = NULL;
        lj->queued = false;
        atomic_fetch_sub(&lp->hdr->nqueued, 1);
        pthread_mutex_unlock(&lp->lock);
        publish(lp, lj);
        pthread_mutex_lock(&lp->lock);
        pthread_cond_broadcast(&lp->cond);
        pthread_mutex_unlock(&lp->lock);
    }
}

bool rp__local_wait_slot(struct lpool *lp, struct ljob *lj, double deadline)
{
    if (atomic_load(&lj->slot) >= 0)
        return true;
    pthread_mutex_lock(&lp->lock);
    while (atomic_load(&lj->slot) < 0 && !rp__local_job_done(lj)) {
        double left = deadline - rp__now();
        if (left <= 0)
            break;
        rp__local_cond_wait(lp, left);
    }
    pthread_mutex_unlock(&lp->lock);
    return atomic_load(&lj->slot) >= 0;
}

void rp__local_free_slot(struct lpool *lp, struct ljob *lj)
{
    int j = atomic_load(&lj->slot);
    if (j < 0 || atomic_load(&lj->freed))
        return;
    while (atomic_load(&lj->publishing)) /* completed by the master mid-copy */
        sched_yield();
    /* The done word goes back to the job, complete, before the slot can hold
     * another job: a late reader of job->done never sees that job's word. */
    struct rp__job *job = lj->job;
    rp__done_set(&job->own_done);
    rp__job_move_done(job, &job->own_done);
    pthread_mutex_lock(&lp->lock);
    /* (looked at first: the header's lines are read by every claim, and a write
     * takes them away from the workers) */
    if (atomic_load(&lp->hdr->work_mask) & (UINT64_C(1) << j))
        atomic_fetch_and(&lp->hdr->work_mask, ~(UINT64_C(1) << j));
    if (atomic_load(&lp->hdr->notify) & (UINT64_C(1) << j))
        atomic_fetch_and(&lp->hdr->notify, ~(UINT64_C(1) << j));
    if (lj->watch) /* a free slot's watch word is 0 (try_assign) */
        atomic_store_explicit(&lp->hdr->slots[j].watch, 0, memory_order_relaxed);
    atomic_store(&lp->table[j], NULL);
    lp->free_slots |= UINT64_C(1) << j;
    rp__local_arena_free(lp, lj->aoff, lj->asize);
    if (lj->var)
        rp__local_var_release(lp, j, lj->gen);
    atomic_store_explicit(&lj->freed, true, memory_order_release);
    pthread_mutex_unlock(&lp->lock);
}

/* ---- ops ------------------------------------------------------------------------------ */

int rp__local_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    if (!lp || job->n > RP__MAX_ITEMS)
        return RP_EINVAL;
    struct ljob *lj = atomic_exchange_explicit(&lp->spare, NULL, memory_order_acquire);
    if (lj)
        memset(lj, 0, sizeof *lj);
    else if (!(lj = calloc(1, sizeof *lj)))
        return RP_ENOMEM;
    lj->job = job;
    lj->var = job->flags & RP__JOB_VAR;
    lj->track = job->flags & RP__JOB_TRACK;
    lj->out_size = lj->var ? 16 : job->out_size;
    atomic_init(&lj->slot, -1);
    /* (their products fit: the core checked them against PTRDIFF_MAX) */
    lj->in_shared = rp__pool_shares(pool, job->in, job->n * job->in_size);
    lj->out_shared = !lj->var && job->out_size && rp__pool_shares(pool, job->out,
                                                                  job->n * job->out_size);
    /* Each part checked against the arena before the sum: none can wrap. */
    size_t in_b, out_b;
    if (rp__mul_size(job->n, job->in_size, &in_b) || rp__mul_size(job->n, lj->out_size, &out_b)) {
        free(lj);
        return RP_EINVAL;
    }
    if (lj->in_shared)
        in_b = 0; /* no block for it */
    if (lj->out_shared)
        out_b = 0;
    if (in_b > lp->arena_size || out_b > lp->arena_size || job->n > lp->arena_size
        || rp__align_up(in_b, RP__ALIGN) + rp__align_up(out_b, RP__ALIGN)
                   + (lj->track ? rp__align_up(job->n, RP__ALIGN) : 0) > lp->arena_size) {
        free(lj);
        return RP_ENOMEM;
    }
    job->bdata = lj;
    if (job->timeout > 0)
        atomic_fetch_add(&lp->ntimed, 1);

    pthread_mutex_lock(&lp->lock);
    live_add(lp, lj);
    if (atomic_load(&lp->broken) || atomic_load(&lp->terminating)) {
        /* nothing will run it: completed through the core, now */
        rp_error_t e;
        rp__error_set(&e, lp->broken_code, 0, -1, pool->host, "%s", lp->broken_msg);
        bool term = atomic_load(&lp->terminating);
        pthread_mutex_unlock(&lp->lock);
        if (term) {
            rp__job_cancel(job, 0, job->n, true);
        } else {
            rp__job_fail_range(job, 0, job->n, &e);
            rp__job_processed(job, job->n);
        }
        return RP_OK;
    }
    if (!lp->qhead && try_assign(lp, lj)) {
        pthread_mutex_unlock(&lp->lock);
        publish(lp, lj);
        return RP_OK;
    }
    lj->queued = true;
    if (lp->qtail)
        lp->qtail->qnext = lj;
    else
        lp->qhead = lj;
    lp->qtail = lj;
    atomic_fetch_add(&lp->hdr->nqueued, 1);
    pthread_mutex_unlock(&lp->lock);
    rp__local_wake_master(lp); /* the pool thread frees slots of complete jobs */
    rp__local_promote(lp);
    return RP_OK;
}

size_t rp__local_progress(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    int j = atomic_load(&lj->slot);
    if (j < 0)
        return 0; /* queued, or counted by the core */
    if (atomic_load(&lj->freed) || rp__local_job_done(lj))
        return job->n;
    uint64_t sum = rp__local_progress_items(lp, j, lj->gen);
    /* read after the counters: if the slot was given back meanwhile, they may
     * be another job's */
    if (atomic_load(&lj->freed))
        return job->n;
    return (size_t)sum;
}

/* Whether a worker that is not asleep was last seen on a CPU other than cpu:
 * one spinning there takes a new job, one running a chunk there claims it next.
 * Only the workers not asleep are looked at, up to the first such one. */
static bool awake_elsewhere(struct lpool *lp, int cpu)
{
    return rp__local_seen_away(lp->hdr, lp->hdr->sleeping, true, lp->nworkers, cpu, true, NULL);
}

/* ops->runs_on: range 0 holds the first claim of every job, and the CPU of its
 * last claimer; before that claim, a worker that is awake takes the job. Loads
 * of lines the workers wrote once; a slot given back meanwhile (the job is
 * complete) gives a meaningless, harmless answer. When the job waits for this
 * CPU, the caller may give it up: noted in the slot, so that the worker running
 * the job here gives it back at once (worker.c, idle). */
int rp__local_runs_on(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    struct rp__hdr *hdr = lp->hdr;
    int here = hdr->max_spin > 1 ? RP__RUNS_HERE : RP__RUNS_HERE_ONLY;
    int j = atomic_load_explicit(&lj->slot, memory_order_acquire);
    if (j < 0)
        return here; /* queued: it waits for other jobs, not for a spinning worker */
    int cpu = sched_getcpu();
    struct rp__slot *s = &hdr->slots[j];
    bool taken = RP__RW_IDX(atomic_load_explicit(&s->range[0].next, memory_order_acquire)) > 0;
    if (taken ? atomic_load_explicit(&s->range[0].cpu, memory_order_relaxed) != cpu
              : awake_elsewhere(lp, cpu))
        return RP__RUNS_ELSEWHERE;
    if (atomic_load_explicit(&s->ycpu, memory_order_relaxed) != cpu)
        atomic_store_explicit(&s->ycpu, cpu, memory_order_relaxed);
    return here;
}

void rp__local_release(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (!lj)
        return;
    pthread_mutex_lock(&lp->drain_lock);
    bool had_slot = atomic_load(&lj->slot) >= 0 && !atomic_load(&lj->freed);
    rp__local_free_slot(lp, lj);
    pthread_mutex_lock(&lp->lock);
    live_remove(lp, lj);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    pthread_mutex_unlock(&lp->drain_lock);
    free(lj->holes);
    free(lj->sus);
    free(lj->pend);
    /* kept for the next submit; the one kept before goes */
    free(atomic_exchange_explicit(&lp->spare, lj, memory_order_acq_rel));
    job->bdata = NULL;
    if (job->timeout > 0)
        atomic_fetch_sub(&lp->ntimed, 1);
    /* A queued job takes the slot given back. Nothing queued, the usual case:
     * no lock (a job queued after this look is promoted by its own submitter,
     * which counts it under L before it tries). */
    if (had_slot && atomic_load(&lp->hdr->nqueued) > 0)
        rp__local_promote(lp);
}
