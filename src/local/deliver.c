/* The local backend's deliveries to the core (ops->collect): failures from the
 * workers' error rings, outputs from the arena (fixed size) and the var heap
 * (variable size), and for imap the items whose marks say they arrived.
 *
 * Order matters for imap: a worker writes a failure into its ring before it
 * marks the item, so the master reads the marks, then drains the rings, then
 * delivers (which queues the arrivals): an iterator never takes an item whose
 * failure is not recorded yet. Everything here runs under D. */
#include "local.h"

#include <stdlib.h>
#include <string.h>

#define SPIN_SECONDS 50e-6 /* an iterator spins this long before sleeping */
#define SPANS 128          /* runs of arrived items delivered per pass */

/* ---- failures ------------------------------------------------------------------------ */

void rp__local_drain(struct lpool *lp)
{
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *ws = rp__wslot_of(lp, w);
        uint32_t h = atomic_load_explicit(&ws->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&ws->tail, memory_order_relaxed);
        if (h == t)
            continue;
        for (; t != h; t++) {
            struct rp__ring_entry *ent = &ws->ring[t % RP__RING];
            if (ent->slot >= RP__NSLOTS)
                continue;
            struct ljob *lj = atomic_load(&lp->table[ent->slot]);
            if (lj && lj->gen == ent->gen && !lj->delivered && !atomic_load(&lj->freed)) {
                rp_error_t e = ent->e;
                if (ent->count > 1)
                    rp__job_fail_range(lj->job, e.index, ent->count, &e);
                else
                    rp__job_fail(lj->job, &e);
            }
        }
        atomic_store(&ws->tail, t);
        if (atomic_load(&ws->full)) {
            atomic_store(&ws->full, 0);
            rp__futex_wake(&ws->tail, INT_MAX);
        }
    }
}

/* ---- outputs ------------------------------------------------------------------------- */

/* Delivers items [a, b) of lj from the arena (and the var heap). */
static void deliver_span(struct lpool *lp, struct ljob *lj, uint64_t a, uint64_t b)
{
    struct rp__job *job = lj->job;
    const char *src = lp->arena + lj->out_off;
    if (!lj->var) {
        rp__job_deliver(job, a, b, lj->out_size ? src + a * lj->out_size : NULL);
        return;
    }
    for (uint64_t i = a; i < b; i++) {
        const uint64_t *vs = (const uint64_t *)(src + i * 16);
        if (vs[0] == 0 || vs[0] - 1 > lp->var_size || vs[1] > lp->var_size - (vs[0] - 1))
            continue; /* no output */
        rp__job_deliver_var(job, i, lp->var + vs[0] - 1, vs[1]);
    }
    rp__job_deliver(job, a, b, NULL);
}

/* ---- imap marks ---------------------------------------------------------------------- */

void rp__local_mark(struct lpool *lp, struct ljob *lj, uint64_t a, uint64_t b, int mark)
{
    if (!lj->track || b <= a)
        return;
    atomic_thread_fence(memory_order_release);
    memset(lp->arena + lj->mark_off + a, mark, b - a);
}

#define ONES UINT64_C(0x0101010101010101)

/* The first index in [a, b) whose mark is (eq) or is not (!eq) v, or b. Eight
 * marks at a time where it can. */
static uint64_t scan(const volatile unsigned char *m, uint64_t a, uint64_t b, unsigned char v,
                     bool eq)
{
    for (; a < b && (a & 7); a++)
        if ((m[a] == v) == eq)
            return a;
    for (; a + 8 <= b; a += 8) {
        uint64_t w;
        memcpy(&w, (const unsigned char *)m + a, 8);
        uint64_t x = w ^ (v * ONES); /* zero bytes where the mark is v */
        bool has_v = ((x - ONES) & ~x & (ONES << 7)) != 0;
        if (eq ? has_v : x != 0)
            break;
    }
    for (; a < b; a++)
        if ((m[a] == v) == eq)
            return a;
    return b;
}

/* Records [a, b) as not delivered yet (merged with the last hole if adjacent). */
static void holes_push(struct ljob *lj, uint64_t a, uint64_t b)
{
    if (b <= a)
        return;
    if (lj->nholes && lj->holes[lj->nholes - 1].b == a) {
        lj->holes[lj->nholes - 1].b = b;
        return;
    }
    if (lj->nholes == lj->capholes) {
        size_t cap = lj->capholes ? lj->capholes * 2 : 8;
        struct rp__span *n = realloc(lj->holes, cap * sizeof *n);
        if (!n)
            return; /* out of memory: those items come with the final delivery */
        lj->holes = n;
        lj->capholes = cap;
    }
    lj->holes[lj->nholes++] = (struct rp__span){ a, b };
}

/* Takes up to max runs of items of TRACK job lj that are not delivered yet and
 * whose marks say ARRIVED (with `all`, any mark but DELIVERED): they count as
 * delivered from now on. Runs marked DELIVERED are dropped (the core queued
 * them itself). Only the holes and the items below the claim frontier of range
 * 0 are scanned. */
static size_t take_marked(struct lpool *lp, struct ljob *lj, struct rp__span *out, size_t max,
                          bool all)
{
    const volatile unsigned char *m = (const volatile unsigned char *)(lp->arena + lj->mark_off);
    uint64_t frontier = lj->job->n;
    if (!all) {
        uint64_t v = RP__RW_IDX(atomic_load(&lp->hdr->slots[atomic_load(&lj->slot)].range[0].next));
        if (v < frontier)
            frontier = v;
        atomic_thread_fence(memory_order_acquire);
    }
    struct rp__span *old = lj->holes;
    size_t nold = lj->nholes;
    lj->holes = NULL;
    lj->nholes = lj->capholes = 0;
    struct rp__span extra = { lj->hi, frontier > lj->hi ? frontier : lj->hi };
    lj->hi = extra.b;
    size_t got = 0;
    for (size_t h = 0; h <= nold; h++) {
        struct rp__span sp = h < nold ? old[h] : extra;
        uint64_t a = sp.a;
        while (a < sp.b) {
            if (got == max) {
                holes_push(lj, a, sp.b);
                break;
            }
            if (!all) {
                uint64_t c = scan(m, a, sp.b, RP__MARK_NONE, false);
                holes_push(lj, a, c);
                if ((a = c) >= sp.b)
                    break;
            }
            if (m[a] == RP__MARK_DELIVERED) {
                a = scan(m, a, sp.b, RP__MARK_DELIVERED, false);
                continue;
            }
            uint64_t c = all ? scan(m, a, sp.b, RP__MARK_DELIVERED, true)
                             : scan(m, a, sp.b, RP__MARK_ARRIVED, false);
            out[got++] = (struct rp__span){ a, c };
            a = c;
        }
    }
    free(old);
    atomic_thread_fence(memory_order_acquire); /* the outputs after their marks */
    return got;
}

/* Delivers what arrived of TRACK job lj since the last call. \return how many
 * runs of items. */
static size_t deliver_arrived(struct lpool *lp, struct ljob *lj)
{
    if (lj->delivered || atomic_load(&lj->freed))
        return 0;
    struct rp__span sp[SPANS];
    size_t k = take_marked(lp, lj, sp, SPANS, false);
    if (k == 0)
        return 0;
    rp__local_drain(lp); /* after the marks: every failure among them is in */
    for (size_t i = 0; i < k; i++)
        deliver_span(lp, lj, sp[i].a, sp[i].b);
    return k;
}

void rp__local_deliver_rest(struct lpool *lp, struct ljob *lj)
{
    if (lj->delivered)
        return;
    if (atomic_load(&lj->slot) >= 0 && !atomic_load(&lj->freed)) {
        rp__local_drain(lp);
        if (!lj->track) {
            deliver_span(lp, lj, 0, lj->job->n);
        } else {
            struct rp__span sp[SPANS];
            size_t k;
            while ((k = take_marked(lp, lj, sp, SPANS, true)) > 0)
                for (size_t i = 0; i < k; i++)
                    deliver_span(lp, lj, sp[i].a, sp[i].b);
        }
    }
    lj->delivered = true; /* a job that never had a slot: the core delivered it */
}

/* ---- ops->collect ---------------------------------------------------------------------- */

void rp__local_collect(rp_pool_t *pool, struct rp__job *job, bool final, double timeout)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (!lj)
        return;
    if (final || !lj->track) {
        if (final) {
            pthread_mutex_lock(&lp->drain_lock);
            rp__local_deliver_rest(lp, lj);
            pthread_mutex_unlock(&lp->drain_lock);
        }
        return;
    }
    /* imap: what arrived, or wait for something to (the workers bump tseq per
     * chunk, and at completion) */
    double deadline = rp__deadline(timeout), t0 = rp__now();
    for (;;) {
        int j = atomic_load(&lj->slot);
        if (j < 0) {
            if (!rp__local_wait_slot(lp, lj, deadline))
                return;
            continue;
        }
        struct rp__slot *s = &lp->hdr->slots[j];
        uint32_t seq = atomic_load(&s->tseq);
        bool done = rp__local_job_done(lj);
        pthread_mutex_lock(&lp->drain_lock);
        size_t got = deliver_arrived(lp, lj);
        pthread_mutex_unlock(&lp->drain_lock);
        if (got || done)
            return;
        double now = rp__now();
        if (now >= deadline)
            return;
        if (now - t0 < SPIN_SECONDS) {
            for (int k = 0; k < 64; k++)
                rp__cpu_relax();
            continue;
        }
        atomic_fetch_add(&s->twaiters, 1);
        if (atomic_load(&s->tseq) == seq && !rp__local_job_done(lj))
            rp__futex_wait(&s->tseq, seq, deadline - now);
        atomic_fetch_sub(&s->twaiters, 1);
        if (atomic_load(&s->tseq) != seq)
            return; /* the core may have queued arrivals itself (a death, a cancel) */
    }
}
