/* The local backend's part of rp_result_cancel and of watching a job.
 *
 * Cancel (ops->cancel): the unclaimed items are taken back with the claim
 * protocol's own CAS (rp__local_take_unclaimed: a worker claiming at the same
 * moment either got its chunk first or fails its CAS), reported to the core as
 * canceled and counted by the master (mdone). The slot's cancel word makes every
 * worker holding a chunk of the job stop before its next item: the worker itself
 * reports the rest of its chunk as canceled (its ring) and counts the chunk as
 * usual, so whoever counts the last item completes the job, as always.
 *
 * With RP_CANCEL_KILL the workers running a chunk of the job are killed first
 * (the cancel word is set after, so none of them is half-way through reporting
 * its rest when it dies); their deaths go through the core's dead-worker policy,
 * which cancels what they held, and they are replaced. A worker is killed only
 * if it still holds the chunk: the master raises the worker's killreq, then looks
 * at its claim record; a worker leaving a chunk clears its record, then waits
 * while killreq is up. So one that the master sees in the chunk is still in it,
 * or waits at its end, and never runs another job's item when the kill lands.
 *
 * A job still queued (no slot) is taken out of the queue and canceled whole.
 * Locks: D, then L (local.h). */
#include "local.h"

#include <sched.h>
#include <signal.h>

struct canceling {
    struct lpool *lp;
    struct ljob  *lj;
    uint64_t      count;
};

/* Unclaimed items [a, b) never run: canceled (their arrival queued by the core). */
static void cancel_span(void *arg, uint64_t a, uint64_t b)
{
    struct canceling *c = arg;
    if (b <= a)
        return;
    rp__job_cancel(c->lj->job, a, b, false);
    rp__local_mark(c->lp, c->lj, a, b, RP__MARK_DELIVERED);
    c->count += b - a;
}

/* Kills every worker holding a confirmed chunk of slot j, generation gen. */
static void kill_holders(struct lpool *lp, int j, uint32_t gen)
{
    for (int k = 0; k < lp->nworkers; k++) {
        struct rp__wslot *ws = rp__wslot_of(lp, k);
        atomic_store(&ws->killreq, 1);
        if (atomic_load(&ws->hstate) == RP__H_CONFIRMED && (int)ws->hslot == j
            && ws->hgen == gen) {
            pid_t pid = atomic_load(&ws->pid);
            if (pid > 0 && kill(pid, SIGKILL) == 0)
                continue; /* killreq stays up: its replacement clears it */
        }
        atomic_store(&ws->killreq, 0);
        rp__futex_wake(&ws->killreq, INT_MAX);
    }
}

/* Takes a queued job out of the queue. \return whether it was there. Under L. */
static bool unqueue(struct lpool *lp, struct ljob *lj)
{
    if (!lj->queued)
        return false;
    for (struct ljob **p = &lp->qhead, *prev = NULL; *p; prev = *p, p = &(*p)->qnext) {
        if (*p != lj)
            continue;
        *p = lj->qnext;
        if (lp->qtail == lj)
            lp->qtail = prev;
        lj->qnext = NULL;
        lj->queued = false;
        atomic_fetch_sub(&lp->hdr->nqueued, 1);
        return true;
    }
    return false;
}

void rp__local_cancel(rp_pool_t *pool, struct rp__job *job, int flags)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (!lp || !lj)
        return;
    pthread_mutex_lock(&lp->drain_lock);
    if (rp__local_job_done(lj) || atomic_load(&lp->terminating) || atomic_load(&lp->broken))
        goto out; /* complete, or being completed by terminate / a broken pool */
    pthread_mutex_lock(&lp->lock);
    if (unqueue(lp, lj)) {
        pthread_mutex_unlock(&lp->lock);
        rp__job_cancel(job, 0, job->n, true); /* completes it (no slot: the core counts) */
        goto out;
    }
    pthread_mutex_unlock(&lp->lock);
    while (atomic_load(&lj->publishing)) /* its input is still being copied in */
        sched_yield();
    int j = atomic_load(&lj->slot);
    if (j < 0 || atomic_load(&lj->freed))
        goto out;
    struct rp__slot *s = &lp->hdr->slots[j];
    struct canceling c = { lp, lj, 0 };
    pthread_mutex_lock(&lp->lock);
    rp__local_take_unclaimed(lp, lj, cancel_span, &c);
    pthread_mutex_unlock(&lp->lock);
    if (flags & RP_CANCEL_KILL)
        kill_holders(lp, j, lj->gen);
    atomic_store(&s->cancel, 1);
    if (c.count)
        atomic_fetch_add(&s->mdone, c.count);
    if (lj->track) { /* an iterator waiting for arrivals: the canceled ones came */
        atomic_fetch_add(&s->tseq, 1);
        rp__futex_wake(&s->tseq, INT_MAX);
    }
    rp__local_check_complete(lp, j, lj->gen);
out:
    pthread_mutex_unlock(&lp->drain_lock);
}

void rp__local_watch(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (!lp || !lj)
        return;
    pthread_mutex_lock(&lp->drain_lock);
    pthread_mutex_lock(&lp->lock);
    lj->watch = true;
    int j = atomic_load(&lj->slot);
    if (j >= 0 && !atomic_load(&lj->freed))
        atomic_store(&lp->hdr->slots[j].watch, 1);
    pthread_mutex_unlock(&lp->lock);
    pthread_mutex_unlock(&lp->drain_lock);
}
