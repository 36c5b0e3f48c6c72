/* The local backend's claim protocol, the master's side and what both sides
 * share: counting and completion, waking idle workers, putting items back after a
 * death (retry ranges), resolving claims a death interrupted (suspects), taking
 * every unclaimed item back (terminate). The workers' side, which runs once per
 * chunk, is inline in claim.h, with the protocol itself. */
#include "claim.h"

#include <stdlib.h>

/* ---- waking idle workers ------------------------------------------------------------ */

void rp__local_wake_workers(struct rp__hdr *hdr, uint64_t items)
{
    /* The bump first: an idle worker about to sleep sees it and does not. */
    atomic_fetch_add(&hdr->work_seq, 1);
    uint32_t sleeping = rp__local_idle_count(hdr->sleeping, hdr->idlew);
    if (sleeping == 0)
        return;
    uint32_t spinning = rp__local_idle_count(hdr->spinning, hdr->idlew);
    uint32_t n = rp__sched_wake_on_submit(items, spinning, sleeping);
    if (n == 0 && hdr->max_spin > 1) { /* do the spinners share this CPU? */
        int cpu = sched_getcpu(), nw = (int)hdr->idlew * 64;
        uint32_t beside = 0;
        rp__local_seen_away(hdr, hdr->spinning, false, nw, cpu, false, &beside);
        if (beside > 0)
            n = rp__sched_wake_beside(items, spinning, beside, sleeping,
                                      rp__local_seen_away(hdr, hdr->sleeping, false, nw, cpu,
                                                          true, NULL) > 0);
    }
    if (n > 0)
        rp__futex_wake(&hdr->work_seq, (int)n);
}

/* A claimer saw `sleeping` workers asleep (claim.h): one is woken if work is left
 * and nobody spins to take it. */
void rp__local_pass_wake(struct rp__hdr *hdr, int j, uint32_t sleeping)
{
    if (rp__local_slot_exhausted(&hdr->slots[j]))
        rp__local_retire_bit(hdr, j);
    bool more = atomic_load(&hdr->work_mask) != 0;
    if (rp__sched_wake_after_claim(more, rp__local_idle_count(hdr->spinning, hdr->idlew),
                                   sleeping)) {
        atomic_fetch_add(&hdr->work_seq, 1);
        rp__futex_wake(&hdr->work_seq, 1);
    }
}

/* ---- counting and completion ------------------------------------------------------------ */

uint64_t rp__local_counted(struct lpool *lp, int j)
{
    uint64_t sum = atomic_load(&lp->hdr->slots[j].mdone);
    for (int w = 0; w < lp->nworkers; w++)
        sum += atomic_load_explicit(&rp__wslot_of(lp, w)->done[j], memory_order_acquire);
    return sum;
}

/* Items of slot j (generation gen) processed so far, per item: what the counters
 * hold, plus, for each worker whose confirmed claim on the job is not counted yet,
 * the items of that chunk before the one it runs (cur, which rp__worker_run stores
 * before each item anyway: the workers do nothing more for this). The claim record
 * is read twice around cur and the counter, and used only when nothing moved and
 * the counter is still the claim's base (the chunk not counted), so a chunk is
 * never counted twice; a worker racing the read is counted at its counter. */
uint64_t rp__local_progress_items(struct lpool *lp, int j, uint32_t gen)
{
    uint64_t sum = atomic_load(&lp->hdr->slots[j].mdone);
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *ws = rp__wslot_of(lp, w);
        uint64_t d = atomic_load_explicit(&ws->done[j], memory_order_acquire);
        sum += d;
        if (atomic_load_explicit(&ws->hstate, memory_order_acquire) != RP__H_CONFIRMED)
            continue;
        uint32_t slot = ws->hslot, hgen = ws->hgen;
        uint64_t start = ws->hstart, len = ws->hlen, base = ws->hbase;
        uint64_t cur = atomic_load_explicit(&ws->cur, memory_order_acquire);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&ws->done[j], memory_order_acquire) != d ||
            atomic_load_explicit(&ws->hstate, memory_order_acquire) != RP__H_CONFIRMED ||
            ws->hslot != slot || ws->hgen != hgen || ws->hstart != start || ws->hbase != base)
            continue;
        if (slot == (uint32_t)j && hgen == gen && base == d && cur > start)
            sum += cur - start < len ? cur - start : len;
    }
    return sum;
}

/* Called by whoever processed or accounted items of slot j once nothing is left
 * to claim; the fence makes sure two finishers at once cannot both miss it. */
void rp__local_check_complete(struct lpool *lp, int j, uint32_t gen)
{
    struct rp__slot *s = &lp->hdr->slots[j];
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load(&s->state) != RP__SW(gen, RP__SLOT_ACTIVE) || !rp__local_slot_exhausted(s))
        return;
    if (rp__local_counted(lp, j) < s->n)
        return;
    rp__local_slot_complete(lp, j, gen);
}

bool rp__local_slot_complete(struct lpool *lp, int j, uint32_t gen)
{
    struct rp__slot *s = &lp->hdr->slots[j];
    uint32_t flags = s->flags; /* before: once complete, the slot may be reused */
    uint32_t active = RP__SW(gen, RP__SLOT_ACTIVE);
    if (!atomic_compare_exchange_strong(&s->state, &active, RP__SW(gen, RP__SLOT_DONE)))
        return false;
    if (flags & RP__JOB_NOTIFY) /* finalized on the pool thread: the slot stays */
        atomic_fetch_or(&lp->hdr->notify, UINT64_C(1) << j);
    rp__done_set(&s->done);
    /* Looked at after the done word is set, not before: the header's line moves
     * between the master and the workers, and its load would delay the word. A
     * job queued meanwhile is promoted by its submitter, or once the pool thread
     * frees this slot (the submitter wakes it too, after counting the job). */
    bool tell = (flags & RP__JOB_NOTIFY) || atomic_load(&lp->hdr->nqueued) > 0;
    /* Watched (rp__local_watch): looked at after the done word is set, which the
     * watcher looks at after setting this (the slot may hold another job by now:
     * the pool thread then finds it not complete and ignores the bit). */
    if (!(flags & RP__JOB_NOTIFY) && atomic_load(&s->watch)) {
        atomic_fetch_or(&lp->hdr->notify, UINT64_C(1) << j);
        tell = true;
    }
    /* An iterator waiting for arrivals wakes after the done word is set, so it
     * sees the job complete. (If a waiter finalized it meanwhile, the slot may
     * hold another job now: a spurious wake, nothing more. The iterator that
     * sleeps here is inside the core's ops gate: the slot is not released under it.) */
    if (flags & RP__JOB_TRACK) {
        atomic_fetch_add(&s->tseq, 1);
        if (atomic_load(&s->twaiters))
            rp__futex_wake(&s->tseq, INT_MAX);
    }
    if (tell)
        rp__local_wake_master(lp);
    return true;
}

/* ---- putting items back (master, under L) ------------------------------------------------ */

/* Puts items [a, b) of slot j back to be claimed (under L). A new range, or an
 * exhausted one that no claim record refers to (its tag changes, so a stale
 * claimer's CAS fails). False when there is none. */
static bool add_retry(struct lpool *lp, int j, uint64_t a, uint64_t b)
{
    struct rp__slot *s = &lp->hdr->slots[j];
    uint32_t nr = atomic_load(&s->nranges);
    uint32_t r = nr;
    if (nr >= RP__NRANGES) {
        for (r = 1; r < RP__NRANGES; r++) {
            struct rp__lrange *rg = &s->range[r];
            if (RP__RW_IDX(atomic_load(&rg->next)) < atomic_load(&rg->end))
                continue;
            bool referred = false;
            for (int w = 0; w < lp->nworkers && !referred; w++) {
                struct rp__wslot *o = rp__wslot_of(lp, w);
                referred = atomic_load(&o->hstate) != RP__H_NONE && (int)o->hslot == j
                           && o->hrange == r;
            }
            if (!referred)
                break;
        }
        if (r >= RP__NRANGES)
            return false;
    }
    struct rp__lrange *rg = &s->range[r];
    uint32_t tag = lp->tag[j] = (lp->tag[j] + 1) & 0xffffff;
    atomic_store(&rg->next, RP__RW(tag, RP__IDX_NONE));
    atomic_store(&rg->end, b);
    atomic_store_explicit(&rg->next, RP__RW(tag, a), memory_order_release);
    if (r == nr)
        atomic_store(&s->nranges, nr + 1);
    atomic_fetch_or(&lp->hdr->work_mask, UINT64_C(1) << j);
    rp__local_wake_workers(lp->hdr, b - a);
    return true;
}

void rp__local_retry(struct lpool *lp, struct ljob *lj, int j, uint64_t a, uint64_t b)
{
    if (b <= a || add_retry(lp, j, a, b))
        return;
    struct rp__span *n = realloc(lj->pend, (lj->npend + 1) * sizeof *n);
    if (!n)
        return; /* out of memory: these items would hang; nothing better to do */
    lj->pend = n;
    lj->pend[lj->npend++] = (struct rp__span){ a, b };
    atomic_store(&lp->hdr->slots[j].suspect, 1); /* workers wake the pool thread */
}

/* Retries what waits for a range (under L). */
static void flush_pending(struct lpool *lp, struct ljob *lj)
{
    int j = atomic_load(&lj->slot);
    size_t k = 0;
    for (size_t i = 0; i < lj->npend; i++)
        if (!add_retry(lp, j, lj->pend[i].a, lj->pend[i].b))
            lj->pend[k++] = lj->pend[i];
    lj->npend = k;
    if (!lj->npend && !lj->nsus)
        atomic_store(&lp->hdr->slots[j].suspect, 0);
}

/* ---- claims a death interrupted ---------------------------------------------------------- */

bool rp__local_suspect(struct lpool *lp, struct ljob *lj, int k, struct rp__wslot *ws)
{
    /* Died inside a claim. If its CAS did not happen nothing is lost; if it did,
     * the chunk starts at hstart and nobody else holds it. */
    struct rp__slot *s = &lp->hdr->slots[ws->hslot];
    struct rp__lrange *rg = &s->range[ws->hrange < RP__NRANGES ? ws->hrange : 0];
    uint64_t v = atomic_load(&rg->next);
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *o = rp__wslot_of(lp, w);
        if (w != k && atomic_load(&o->hstate) != RP__H_NONE && o->hslot == ws->hslot
            && o->hgen == ws->hgen && o->hrange == ws->hrange && o->hstart == ws->hstart)
            return false;
    }
    if (RP__RW_TAG(v) != ws->htag || RP__RW_IDX(v) <= ws->hstart)
        return false;
    struct susp *n = realloc(lj->sus, (lj->nsus + 1) * sizeof *n);
    if (!n)
        return false;
    lj->sus = n;
    lj->sus[lj->nsus++] = (struct susp){ ws->hrange, ws->hstart, ws->hstart + ws->hlen };
    atomic_fetch_add(&s->suspect, 1);
    return true;
}

/* A worker killed between recording a claim and confirming it may or may not
 * have taken [a, b): another worker may have claimed from the same point and
 * already finished. Resolved once the job is quiescent (nothing claimable,
 * nobody holding any of it): then the items missing from the counts are the
 * dead worker's. Under D and L. */
static bool audit_locked(struct lpool *lp, struct ljob *lj)
{
    if ((!lj->nsus && !lj->npend) || atomic_load(&lj->freed) || rp__local_job_done(lj))
        return false;
    int j = atomic_load(&lj->slot);
    struct rp__slot *s = &lp->hdr->slots[j];
    if (lj->npend)
        flush_pending(lp, lj);
    if (!lj->nsus || lj->npend)
        return false;
    if (atomic_load(&s->state) != RP__SW(lj->gen, RP__SLOT_ACTIVE) || !rp__local_slot_exhausted(s))
        return false;
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *o = rp__wslot_of(lp, w);
        if (atomic_load(&o->hstate) != RP__H_NONE && (int)o->hslot == j && o->hgen == lj->gen)
            return false;
    }
    atomic_thread_fence(memory_order_seq_cst);
    if (rp__local_counted(lp, j) < s->n) {
        /* Items are missing: they are among the suspects. With one suspect, or
         * several that add up to what is missing, that is exact; otherwise a
         * chunk another worker finished may run again (same result; a failure
         * may be listed twice), rather than lose one. */
        for (size_t i = 0; i < lj->nsus; i++)
            rp__local_retry(lp, lj, j, lj->sus[i].a, lj->sus[i].b);
    }
    lj->nsus = 0;
    if (!lj->npend)
        atomic_store(&s->suspect, 0);
    return true;
}

void rp__local_audit(struct lpool *lp, struct ljob *lj)
{
    pthread_mutex_lock(&lp->lock);
    bool resolved = audit_locked(lp, lj);
    int j = atomic_load(&lj->slot);
    uint32_t gen = lj->gen;
    pthread_mutex_unlock(&lp->lock);
    if (resolved)
        rp__local_check_complete(lp, j, gen);
}

/* ---- taking everything back (terminate, a broken pool) ------------------------------------ */

void rp__local_take_unclaimed(struct lpool *lp, struct ljob *lj,
                              void (*fn)(void *arg, uint64_t a, uint64_t b), void *arg)
{
    struct rp__slot *s = &lp->hdr->slots[atomic_load(&lj->slot)];
    uint32_t nr = atomic_load(&s->nranges);
    for (uint32_t r = 0; r < nr && r < RP__NRANGES; r++) {
        struct rp__lrange *rg = &s->range[r];
        uint64_t end = r == 0 ? s->n : atomic_load(&rg->end); /* staged or not */
        uint64_t v = atomic_load(&rg->next);
        while (RP__RW_IDX(v) < end
               && !atomic_compare_exchange_weak(&rg->next, &v, RP__RW(RP__RW_TAG(v), end)))
            ;
        if (RP__RW_IDX(v) < end)
            fn(arg, RP__RW_IDX(v), end);
    }
    for (size_t i = 0; i < lj->npend; i++)
        fn(arg, lj->pend[i].a, lj->pend[i].b);
    lj->npend = 0;
}
