/* The scheduler: hands out consecutive chunks of [0, n) from one atomic counter.
 *
 * The state holds no pointers, so it may live in memory shared by processes; a
 * claim is one compare-and-swap (retried on contention), no lock, no syscall.
 * Automatic chunking is guided self-scheduling: each claim takes
 * ceil(remaining / (2 * nworkers)) items, so the first chunks are large and the
 * tail is single items. */
#include "internal.h"

void rp__sched_init(rp__sched_t *s, size_t n, size_t chunksize, int nworkers)
{
    atomic_init(&s->next, 0);
    s->n = n;
    s->chunksize = chunksize;
    s->nworkers = nworkers > 0 ? (uint32_t)nworkers : 1;
}

size_t rp__sched_auto(size_t n, size_t remaining, int nworkers)
{
    (void)n;
    if (remaining == 0)
        return 0;
    uint64_t div = 2 * (uint64_t)(nworkers > 0 ? nworkers : 1);
    uint64_t len = remaining / div + (remaining % div != 0);
    return len > 0 ? (size_t)len : 1;
}

size_t rp__sched_claim(rp__sched_t *s, size_t limit, size_t *start)
{
    uint64_t cur = atomic_load_explicit(&s->next, memory_order_relaxed);
    for (;;) {
        if (cur >= s->n)
            return 0;
        uint64_t remaining = s->n - cur;
        uint64_t len = s->chunksize ? s->chunksize
                                    : rp__sched_auto((size_t)s->n, (size_t)remaining,
                                                     (int)s->nworkers);
        if (limit != 0 && len > limit)
            len = limit;
        if (len > remaining)
            len = remaining;
        /* acq_rel: a claim orders after whatever the previous claimer published. */
        if (atomic_compare_exchange_weak_explicit(&s->next, &cur, cur + len,
                                                  memory_order_acq_rel,
                                                  memory_order_relaxed)) {
            *start = (size_t)cur;
            return (size_t)len;
        }
    }
}

size_t rp__sched_remaining(const rp__sched_t *s)
{
    uint64_t cur = atomic_load_explicit(&((rp__sched_t *)s)->next, memory_order_acquire);
    return cur >= s->n ? 0 : (size_t)(s->n - cur);
}
