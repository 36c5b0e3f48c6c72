/* The local backend's claim protocol, and the workers' side of it (inline: it
 * runs once per chunk, and a trivial item costs tens of nanoseconds).
 *
 * A job slot has up to RP__NRANGES ranges: range 0 is [0, n), the others hold
 * items put back. A range's `next` word packs a tag and the first unclaimed
 * index. A worker writes its claim record (slot, generation, range, tag, start,
 * length, counter base) as tentative, CASes `next` forward, then confirms the
 * record: so the master can always tell what a dead worker held. A range is
 * reinitialised with a new tag, so a claimer holding a stale word fails its CAS.
 *
 * The policy is the core's: the chunk length is rp__sched_len (guided, or the
 * fixed chunksize, capped by max_tasks_per_worker), the job is the oldest with
 * work (rp__sched_oldest), and idle workers are woken by rp__sched_wake_on_submit
 * (claim.c) and rp__sched_wake_after_claim (here). */
#ifndef RP_LOCAL_CLAIM_H
#define RP_LOCAL_CLAIM_H

#include "local.h"

#include <sched.h>

/* Workers that claim by themselves: one chunk held at a time. */
static const rp__sched_conf rp__local_sched = { .depth = 1 };

/* Nothing left to claim in slot s, now or later: range 0 counts up to n even
 * while its input is still being staged (its end grows to n). */
static inline bool rp__local_slot_exhausted(struct rp__slot *s)
{
    uint32_t nr = atomic_load_explicit(&s->nranges, memory_order_acquire);
    for (uint32_t r = 0; r < nr && r < RP__NRANGES; r++) {
        uint64_t v = atomic_load_explicit(&s->range[r].next, memory_order_acquire);
        uint64_t end = r == 0 ? s->n : atomic_load_explicit(&s->range[r].end, memory_order_relaxed);
        if (RP__RW_IDX(v) < end)
            return false;
    }
    return true;
}

/* ---- the work mask and waking ------------------------------------------------------------- */

/* Slot j has nothing to claim: its bit leaves the work mask, and comes back if a
 * retried range was added meanwhile (the master adds the range, then sets the bit). */
static inline void rp__local_retire_bit(struct rp__hdr *hdr, int j)
{
    struct rp__slot *s = &hdr->slots[j];
    atomic_fetch_and(&hdr->work_mask, ~(UINT64_C(1) << j));
    if ((atomic_load(&s->state) & 3) == RP__SLOT_ACTIVE && !rp__local_slot_exhausted(s))
        atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << j);
}

/* claim.c: the rest of the decision below once a sleeper was seen. */
void rp__local_pass_wake(struct rp__hdr *hdr, int j, uint32_t sleeping);

/* After a claim from slot j: a submit that saw this worker spinning woke nobody,
 * so if work is left and nobody spins to take it, a sleeper is woken
 * (rp__sched_wake_after_claim). Nobody asleep, the common case, costs a load. */
static inline void rp__local_after_claim(struct rp__hdr *hdr, int j)
{
    if (rp__local_idle_any(hdr->sleeping, hdr->idlew))
        rp__local_pass_wake(hdr, j, rp__local_idle_count(hdr->sleeping, hdr->idlew));
}

/* ---- claiming ------------------------------------------------------------------------------ */

/* Claims a chunk of slot j: records it as tentative, CAS, confirms. */
static inline bool rp__local_claim_slot(struct lpool *lp, struct rp__wslot *ws, int j,
                                        uint64_t budget, long *claims, long die_at,
                                        uint64_t *start, uint64_t *len_out)
{
    struct rp__slot *s = &lp->hdr->slots[j];
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if ((st & 3) != RP__SLOT_ACTIVE)
        return false;
    uint32_t nr = atomic_load_explicit(&s->nranges, memory_order_acquire);
    for (uint32_t r = 0; r < nr && r < RP__NRANGES; r++) {
        struct rp__lrange *rg = &s->range[r];
        for (;;) {
            uint64_t v = atomic_load_explicit(&rg->next, memory_order_acquire);
            uint64_t x = RP__RW_IDX(v);
            uint64_t end = atomic_load_explicit(&rg->end, memory_order_acquire);
            if (x >= end)
                break;
            /* Range 0 holds [0, n) even while its input is staged; a put-back
             * range is cut as the dispatcher cuts put-back items (one worker). */
            uint64_t left = (r == 0 ? s->n : end) - x;
            uint64_t len = rp__sched_len(&rp__local_sched, left, s->chunksize,
                                         r == 0 ? (uint32_t)lp->nworkers : 1, 1, 0, 0, false,
                                         budget);
            if (len > end - x)
                len = end - x; /* what is staged so far */
            ws->hslot = (uint32_t)j;
            ws->hgen = st >> 2;
            ws->hrange = r;
            ws->htag = RP__RW_TAG(v);
            ws->hstart = x;
            ws->hlen = len;
            ws->hbase = atomic_load_explicit(&ws->done[j], memory_order_relaxed);
            atomic_store_explicit(&ws->hstate, RP__H_TENTATIVE, memory_order_release);
            if (__builtin_expect(die_at < 0, 0) && ++*claims == -die_at)
                raise(SIGKILL);
            if (atomic_compare_exchange_weak_explicit(&rg->next, &v,
                                                      RP__RW(RP__RW_TAG(v), x + len),
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                if (__builtin_expect(die_at > 0, 0) && ++*claims == die_at)
                    raise(SIGKILL);
                atomic_store_explicit(&rg->cpu, sched_getcpu(), memory_order_relaxed);
                atomic_store_explicit(&ws->cur, (size_t)x, memory_order_relaxed);
                atomic_store_explicit(&ws->hstate, RP__H_CONFIRMED, memory_order_release);
                *start = x;
                *len_out = len;
                return true;
            }
            atomic_store_explicit(&ws->hstate, RP__H_NONE, memory_order_relaxed);
        }
    }
    return false;
}

/* Worker: claims a chunk of the oldest job with work, at most budget items (0 =
 * no limit): items [*start, *start + *len); its claim record is in ws.
 * \return the slot, or -1. */
static inline int rp__local_claim(struct lpool *lp, struct rp__wslot *ws, uint64_t budget,
                                  long *claims, long die_at, uint64_t *start, uint64_t *len)
{
    struct rp__hdr *hdr = lp->hdr;
    uint64_t tried = 0;
    for (;;) {
        uint64_t mask = atomic_load_explicit(&hdr->work_mask, memory_order_acquire) & ~tried;
        if (!mask)
            return -1;
        int j = rp__sched_oldest(mask, &hdr->slots[0].id, sizeof(struct rp__slot));
        if (rp__local_claim_slot(lp, ws, j, budget, claims, die_at, start, len)) {
            rp__local_after_claim(hdr, j);
            return j;
        }
        tried |= UINT64_C(1) << j;
        struct rp__slot *s = &hdr->slots[j];
        if ((atomic_load(&s->state) & 3) != RP__SLOT_ACTIVE || rp__local_slot_exhausted(s))
            rp__local_retire_bit(hdr, j);
    }
}

#endif /* RP_LOCAL_CLAIM_H */
