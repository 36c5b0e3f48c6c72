/* The local backend's shared memory for data: the arena (each job's inputs,
 * outputs and imap marks, one block per job, first fit in a coalescing free
 * list; the master allocates and frees under L) and the var heap (variable-size
 * outputs: segments owned by one job at a time, taken by workers with a CAS and
 * given back by the master once the job's outputs are copied out).
 *
 * Pages are reused from job to job, so repeated jobs do not fault; beyond
 * max(64 MB, what the last job used) free pages go back to the kernel. */
#include "local.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define KEEP_BYTES (64u << 20) /* arena/var bytes kept resident when free */

/* ---- the arena (master, under L) -------------------------------------------------- */

bool rp__local_arena_alloc(struct lpool *lp, uint64_t size, uint64_t *off)
{
    size = rp__align_up(size ? size : RP__ALIGN, RP__ALIGN);
    for (size_t i = 0; i < lp->nfl; i++) {
        if (lp->fl[i].size >= size) {
            *off = lp->fl[i].off;
            lp->fl[i].off += size;
            lp->fl[i].size -= size;
            if (lp->fl[i].size == 0) {
                memmove(&lp->fl[i], &lp->fl[i + 1], (lp->nfl - i - 1) * sizeof *lp->fl);
                lp->nfl--;
            }
            if (*off + size > lp->arena_hw)
                lp->arena_hw = *off + size;
            return true;
        }
    }
    return false;
}

void rp__local_arena_free(struct lpool *lp, uint64_t off, uint64_t size)
{
    size = rp__align_up(size ? size : RP__ALIGN, RP__ALIGN);
    size_t i = 0;
    while (i < lp->nfl && lp->fl[i].off < off)
        i++;
    bool merge_prev = i > 0 && lp->fl[i - 1].off + lp->fl[i - 1].size == off;
    bool merge_next = i < lp->nfl && off + size == lp->fl[i].off;
    if (merge_prev && merge_next) {
        lp->fl[i - 1].size += size + lp->fl[i].size;
        memmove(&lp->fl[i], &lp->fl[i + 1], (lp->nfl - i - 1) * sizeof *lp->fl);
        lp->nfl--;
    } else if (merge_prev) {
        lp->fl[i - 1].size += size;
    } else if (merge_next) {
        lp->fl[i].off = off;
        lp->fl[i].size += size;
    } else {
        if (lp->nfl == lp->capfl) {
            size_t cap = lp->capfl ? lp->capfl * 2 : 16;
            struct rp__seg *n = realloc(lp->fl, cap * sizeof *n);
            if (!n)
                return; /* the space is lost, nothing breaks */
            lp->fl = n;
            lp->capfl = cap;
        }
        memmove(&lp->fl[i + 1], &lp->fl[i], (lp->nfl - i) * sizeof *lp->fl);
        lp->fl[i].off = off;
        lp->fl[i].size = size;
        lp->nfl++;
    }
    /* Empty again after a big job: give back the pages beyond what the job just
     * finished used (the next one is likely the same size: no faults for it). */
    uint64_t keep = size > KEEP_BYTES ? size : KEEP_BYTES;
    if (lp->nfl == 1 && lp->fl[0].size == lp->arena_size && lp->arena_hw > keep) {
        madvise(lp->arena + keep, lp->arena_hw - keep, MADV_REMOVE);
        lp->arena_hw = keep;
    }
}

/* ---- shared buffers (rp_pool_alloc): blocks of the arena ----------------------------- */

/* The arena is in the region every worker maps at the same address, so a block
 * of it is a buffer the workers read and write in place; a job over one needs
 * no block of its own for that side (job.c). Master, pool->lock held. */
void *rp__local_buf_alloc(rp_pool_t *pool, size_t bytes)
{
    struct lpool *lp = pool->bdata;
    uint64_t off;
    if (!lp || bytes > lp->arena_size)
        return NULL;
    pthread_mutex_lock(&lp->lock);
    bool ok = rp__local_arena_alloc(lp, bytes, &off);
    pthread_mutex_unlock(&lp->lock);
    return ok ? lp->arena + off : NULL;
}

/* Its pages go back to the kernel at once (a job's block is kept for the next
 * job; a buffer's contents are not wanted by anyone). */
void rp__local_buf_free(rp_pool_t *pool, void *p, size_t bytes)
{
    struct lpool *lp = pool->bdata;
    uint64_t off = (uint64_t)((char *)p - lp->arena);
    uint64_t a = rp__align_up(off, 4096), e = (off + bytes) & ~(uint64_t)4095;
    if (e > a)
        madvise(lp->arena + a, e - a, MADV_REMOVE);
    pthread_mutex_lock(&lp->lock);
    rp__local_arena_free(lp, off, bytes);
    pthread_mutex_unlock(&lp->lock);
}

/* ---- the var heap: segments owned by jobs (workers take, the master frees) ------------ */

/* Takes `count` consecutive free segments for owner, the lowest first (their
 * pages are the likeliest to be resident). \return the first, or -1 if none. */
static int vseg_take(struct lpool *lp, uint64_t owner, int count)
{
    _Atomic uint64_t *seg = lp->hdr->vseg;
    for (int a = 0; a + count <= RP__VSEGS; a++) {
        int k = 0;
        uint64_t free = 0;
        while (k < count && atomic_load_explicit(&seg[a + k], memory_order_relaxed) == 0
               && atomic_compare_exchange_strong(&seg[a + k], &free, owner))
            k++;
        if (k == count)
            return a;
        for (int i = 0; i < k; i++) /* a run cut short: give back what it took */
            atomic_store(&seg[a + i], 0);
        a += k; /* segment a + k is taken: go on after it */
    }
    return -1;
}

/* Room of `need` bytes (a multiple of 16) for job (slot j, gen): bump-allocated in
 * the job's current segment, or at the start of a fresh one; more than a segment
 * gets a run of segments of its own. \return its offset, or -1 when full. */
int64_t rp__local_var_alloc(struct lpool *lp, int j, uint32_t gen, uint64_t need)
{
    uint64_t owner = RP__VOWNER(j, gen), segsz = lp->vseg_size;
    if (need > segsz) {
        int a = vseg_take(lp, owner, (int)((need + segsz - 1) / segsz));
        return a < 0 ? -1 : (int64_t)((uint64_t)a * segsz);
    }
    _Atomic uint64_t *cur = &lp->hdr->slots[j].vcur;
    uint64_t v = atomic_load(cur);
    for (;;) {
        if (v && RP__VCUR_USED(v) + need <= segsz) {
            if (atomic_compare_exchange_weak(cur, &v, v + need))
                return (int64_t)(RP__VCUR_SEG(v) * segsz + RP__VCUR_USED(v));
            continue;
        }
        int k = vseg_take(lp, owner, 1);
        if (k < 0)
            return -1;
        if (atomic_compare_exchange_strong(cur, &v, RP__VCUR(k, need)))
            return (int64_t)((uint64_t)k * segsz);
        atomic_store(&lp->hdr->vseg[k], 0); /* another worker moved on first: use its */
    }
}

/* The master, once job (slot j, gen)'s outputs are copied out: its segments are
 * free again; free segments beyond max(64 MB, what it used) go back to the kernel,
 * the highest first. Under L. */
void rp__local_var_release(struct lpool *lp, int j, uint32_t gen)
{
    uint64_t owner = RP__VOWNER(j, gen);
    _Atomic uint64_t *seg = lp->hdr->vseg;
    atomic_store(&lp->hdr->slots[j].vcur, 0);
    int used = 0;
    for (int k = 0; k < RP__VSEGS; k++)
        if (atomic_load(&seg[k]) == owner) {
            atomic_store(&seg[k], 0);
            lp->vtouched[k] = true;
            used++;
        }
    int keep = (int)(KEEP_BYTES / lp->vseg_size);
    if (keep < used)
        keep = used;
    for (int k = 0, idle = 0; k < RP__VSEGS; k++) {
        uint64_t free = 0;
        if (!lp->vtouched[k] || atomic_load(&seg[k]) != 0 || idle++ < keep)
            continue;
        /* marked, so that no worker takes it while its pages go */
        if (!atomic_compare_exchange_strong(&seg[k], &free, RP__VTRIM))
            continue;
        madvise(lp->var + (uint64_t)k * lp->vseg_size, lp->vseg_size, MADV_REMOVE);
        lp->vtouched[k] = false;
        atomic_store(&seg[k], 0);
    }
}
