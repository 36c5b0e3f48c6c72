/* The local backend: worker processes on this machine, forked by a fork server,
 * moving chunks through one shared memory region.
 *
 * Design in doc/internals.md ("The local backend"). In short: the master copies
 * a job's input into the shared arena and publishes it in a job slot; workers
 * claim chunks of it with a compare-and-swap (no round trip to the master), run
 * them in place, count what they processed in their own counters, and the worker
 * that finds the job complete wakes its waiters through a futex. A dead worker is
 * reported by the fork server; the master's pool thread fails the item it was
 * running, puts the rest of its chunk back, and has it replaced.
 *
 * Locks in the master: D (drain_lock) serializes the reading of error rings and
 * the accounting of dead workers with the delivery of outputs; L (lock) protects
 * slots, arena, queue and the list of live jobs. Order: D, then L, then (inside
 * rp__job_fail*) a result's lock; the core holds no result lock when it calls
 * the backend. L is never held while calling into the core; rp__job_done (which
 * runs user callbacks) is called with no lock held. Workers take no lock: they
 * share only atomics with the master. */
#define _GNU_SOURCE 1
#include "backend.h"
#include "futex.h"
#include "local_shm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define SPIN_SECONDS 50e-6          /* spin before sleeping (a wake costs ~40 us) */
#define ARENA_KEEP (64u << 20)      /* arena/var bytes kept resident when empty */
#define ALIGN 64
#define STAGE_BYTES (128u << 10)    /* input copied and published in segments */
#define KILL_WAIT_S 2.0             /* terminate: the fork server's answer, at most */

static inline uint64_t align_up(uint64_t x, uint64_t a) { return (x + a - 1) & ~(a - 1); }

/* ---- master-side state -------------------------------------------------------- */

struct seg { uint64_t off, size; };
struct span { uint64_t a, b; };

struct ljob {
    struct rp__job *job;
    struct ljob *prev, *next;      /* live list (L) */
    struct ljob *qnext;            /* queue (L) */
    _Atomic int  slot;             /* -1 while queued */
    uint32_t     gen;
    uint64_t     aoff, asize;      /* arena block */
    uint64_t     in_off, out_off, mark_off;
    uint64_t     out_size;         /* bytes per item in the arena */
    _Atomic bool complete;         /* completed by the master (no slot) */
    _Atomic bool harvested;        /* outputs delivered, slot and arena released */
    bool         notified, var, track, queued;
    /* claims interrupted by a death whose CAS may have happened (D) */
    struct susp { uint32_t r; uint64_t a, b; } *sus;
    size_t       nsus;
    /* items to put back when a range frees up (L) */
    struct span *pend;
    size_t       npend;
    /* RP__JOB_TRACK delivery: everything below hi not in holes was returned */
    uint64_t     hi;
    struct span *holes;
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
    pthread_cond_t   cond;         /* promotions, fork server answers */

    _Atomic(struct ljob *) table[RP__NSLOTS];
    uint64_t         free_slots;   /* bit j set: slot j free (L) */
    struct ljob     *live;         /* live jobs (L) */
    struct ljob     *qhead, *qtail;
    struct seg      *fl;           /* arena free list, sorted by offset (L) */
    size_t           nfl, capfl;
    uint64_t         arena_hw;     /* high-water mark of the arena */
    bool             vtouched[RP__VSEGS]; /* var segment used since its pages went
                                             back to the kernel (L) */
    int              live_workers; /* alive or being started (L) */
    _Atomic bool     terminating, killed, stopping, shutdown, fs_gone, broken;
    int              broken_code;

    struct lpool    *reg_next;     /* registry of pools (fork handlers) */
};

static inline struct rp__wslot *wslot(struct lpool *lp, int k)
{
    return (struct rp__wslot *)(lp->wbase + (size_t)k * lp->wstride);
}

static struct rp__wslot *wslot_cb(void *lp, int k) { return wslot(lp, k); }

static void wake_master(struct lpool *lp)
{
    uint64_t one = 1;
    ssize_t r = write(lp->efd, &one, sizeof one);
    (void)r;
}

/* ---- registry: children forked by the user do not keep our descriptors -------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lpool *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_prepare(void) { pthread_mutex_lock(&reg_lock); }
static void reg_parent(void) { pthread_mutex_unlock(&reg_lock); }
static void reg_child(void)
{
    /* Any fork: the child must not hold the master's ends, or a fork server
     * would not see EOF when its master goes. (A fork server's own ends are
     * registered only after it is forked.) */
    for (struct lpool *lp = reg_head; lp; lp = lp->reg_next) {
        close(lp->sock);
        close(lp->efd);
    }
    reg_head = NULL;
    pthread_mutex_init(&reg_lock, NULL);
}
static void reg_init(void) { pthread_atfork(reg_prepare, reg_parent, reg_child); }

static void reg_add(struct lpool *lp)
{
    pthread_mutex_lock(&reg_lock);
    lp->reg_next = reg_head;
    reg_head = lp;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_remove(struct lpool *lp)
{
    pthread_mutex_lock(&reg_lock);
    for (struct lpool **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == lp) {
            *pp = lp->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
}

/* ---- shared job state, used by workers and master ------------------------------ */

/* Nothing left to claim in slot s, now or later: range 0 counts up to n even
 * while its input is still being staged (its end grows to n). */
static bool slot_exhausted(struct rp__slot *s)
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

static void slot_wake(struct lpool *lp, struct rp__slot *s)
{
    if (atomic_load(&s->waiters))
        rp__futex_wake(&s->state, INT_MAX);
    if (s->flags & RP__JOB_TRACK) {
        atomic_fetch_add(&s->tseq, 1);
        if (atomic_load(&s->twaiters))
            rp__futex_wake(&s->tseq, INT_MAX);
    }
}

/* Marks slot j (generation gen) done if every item is accounted for. Called by
 * whoever processed or accounted items of it once nothing is left to claim;
 * the fence makes sure two finishers at once cannot both miss completion. */
static void check_complete(struct lpool *lp, int j, uint32_t gen)
{
    struct rp__slot *s = &lp->hdr->slots[j];
    atomic_thread_fence(memory_order_seq_cst);
    uint32_t active = RP__SW(gen, RP__SLOT_ACTIVE);
    if (atomic_load(&s->state) != active || !slot_exhausted(s))
        return;
    uint64_t sum = atomic_load(&s->mdone);
    for (int w = 0; w < lp->nworkers; w++)
        sum += atomic_load_explicit(&wslot(lp, w)->done[j], memory_order_acquire);
    if (sum < s->n)
        return;
    if (!atomic_compare_exchange_strong(&s->state, &active, RP__SW(gen, RP__SLOT_DONE)))
        return;
    slot_wake(lp, s);
    if ((s->flags & RP__JOB_NOTIFY) || atomic_load(&lp->hdr->nqueued) > 0)
        wake_master(lp);
}

/* ---- the worker ------------------------------------------------------------------ */

struct chunk {
    int      slot;
    uint32_t gen, flags;
    rp_task_fn fn;
    uint64_t start, len, in_size, out_size, in_off, out_off, mark_off;
};

struct wctx {
    struct lpool     *lp;
    struct rp__hdr   *hdr;
    struct rp__wslot *ws;
    int               k;
    long              max_tasks;
    rp_ctx_t          ctx;
    struct chunk      c;
    long              claims;
    long              die_at;     /* tests: see RP_TEST_DIE_IN_CLAIM */
};

static void worker_exit(struct wctx *w, int status)
{
    fflush(stdout);
    fflush(stderr);
    rp__region_exit(&w->lp->conf, status);
}

static void on_fail(void *arg, const rp_error_t *e)
{
    struct wctx *w = arg;
    struct rp__wslot *ws = w->ws;
    if (w->c.flags & RP__JOB_VAR) {
        uint64_t *vs = (uint64_t *)(w->lp->arena + w->c.out_off + e->index * 16);
        vs[0] = vs[1] = 0;
    }
    uint32_t h = atomic_load_explicit(&ws->head, memory_order_relaxed);
    for (;;) {
        uint32_t t = atomic_load_explicit(&ws->tail, memory_order_acquire);
        if (h - t < RP__RING)
            break;
        atomic_store(&ws->full, 1);
        wake_master(w->lp);
        if (atomic_load(&ws->tail) == t)
            rp__futex_wait(&ws->tail, t, 0.1);
    }
    struct rp__ring_entry *ent = &ws->ring[h % RP__RING];
    ent->slot = (uint32_t)w->c.slot;
    ent->gen = w->c.gen;
    ent->e = *e;
    atomic_store_explicit(&ws->head, h + 1, memory_order_release);
}

/* ---- the var heap: segments owned by jobs (workers take, the master frees) ----- */

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
        for (int i = 0; i < k; i++)  /* a run cut short: give back what it took */
            atomic_store(&seg[a + i], 0);
        a += k;  /* segment a + k is taken: go on after it */
    }
    return -1;
}

/* Room of `need` bytes (a multiple of 16) for job (slot j, gen): bump-allocated in
 * the job's current segment, or at the start of a fresh one; more than a segment
 * gets a run of segments of its own. \return its offset, or -1 when full. */
static int64_t var_alloc(struct lpool *lp, int j, uint32_t gen, uint64_t need)
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
        atomic_store(&lp->hdr->vseg[k], 0);  /* another worker moved on first: use its */
    }
}

/* The master, once job (slot j, gen)'s outputs are copied out: its segments are
 * free again; free segments beyond max(64 MB, what it used) go back to the kernel,
 * the highest first. Under L. */
static void var_release(struct lpool *lp, int j, uint32_t gen)
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
    int keep = (int)(ARENA_KEEP / lp->vseg_size);
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

/* rp_output() inside a worker: room in the shared var heap; the item's slot in
 * the arena records (offset + 1, size). */
static void *var_output(void *arg, size_t index, size_t size)
{
    struct wctx *w = arg;
    struct lpool *lp = w->lp;
    if (size > lp->var_size)  /* can never fit; also keeps the round-up from wrapping */
        return NULL;
    int64_t off = var_alloc(lp, w->c.slot, w->c.gen, align_up(size ? size : 1, 16));
    if (off < 0)
        return NULL;
    uint64_t *vs = (uint64_t *)(lp->arena + w->c.out_off + index * 16);
    vs[0] = (uint64_t)off + 1;
    vs[1] = size;
    return lp->var + off;
}

/* Claims a chunk of slot j: records it as tentative, CAS, confirms. */
static bool claim_slot(struct wctx *w, int j, uint64_t budget)
{
    struct lpool *lp = w->lp;
    struct rp__slot *s = &w->hdr->slots[j];
    struct rp__wslot *ws = w->ws;
    uint32_t st = atomic_load_explicit(&s->state, memory_order_acquire);
    if ((st & 3) != RP__SLOT_ACTIVE)
        return false;
    uint32_t nr = atomic_load_explicit(&s->nranges, memory_order_acquire);
    for (uint32_t r = 0; r < nr && r < RP__NRANGES; r++) {
        struct rp__range *rg = &s->range[r];
        for (;;) {
            uint64_t v = atomic_load_explicit(&rg->next, memory_order_acquire);
            uint64_t x = RP__RW_IDX(v);
            uint64_t end = atomic_load_explicit(&rg->end, memory_order_acquire);
            if (x >= end)
                break;
            uint64_t cs = s->chunksize, n = s->n;
            /* automatic length from what the range will hold, capped by what is
             * staged so far */
            uint64_t last = r == 0 ? n : end;
            uint64_t len = cs ? cs : rp__sched_auto((size_t)n, (size_t)(last - x), lp->nworkers);
            if (len > end - x)
                len = end - x;
            if (budget && len > budget)
                len = budget;
            if (len == 0)
                len = 1;
            ws->hslot = (uint32_t)j;
            ws->hgen = st >> 2;
            ws->hrange = r;
            ws->htag = RP__RW_TAG(v);
            ws->hstart = x;
            ws->hlen = len;
            ws->hbase = atomic_load_explicit(&ws->done[j], memory_order_relaxed);
            atomic_store_explicit(&ws->hstate, RP__H_TENTATIVE, memory_order_release);
            if (__builtin_expect(w->die_at < 0, 0) && ++w->claims == -w->die_at)
                raise(SIGKILL);
            if (atomic_compare_exchange_weak_explicit(&rg->next, &v, RP__RW(RP__RW_TAG(v), x + len),
                                                      memory_order_acq_rel,
                                                      memory_order_relaxed)) {
                if (__builtin_expect(w->die_at > 0, 0) && ++w->claims == w->die_at)
                    raise(SIGKILL);
                atomic_store_explicit(&ws->cur, (size_t)x, memory_order_relaxed);
                atomic_store_explicit(&ws->hstate, RP__H_CONFIRMED, memory_order_release);
                struct chunk *c = &w->c;
                c->slot = j;
                c->gen = s->gen;
                c->flags = s->flags;
                c->fn = s->fn;
                c->start = x;
                c->len = len;
                c->in_size = s->in_size;
                c->out_size = s->out_size;
                c->in_off = s->in_off;
                c->out_off = s->out_off;
                c->mark_off = s->mark_off;
                return true;
            }
            atomic_store_explicit(&ws->hstate, RP__H_NONE, memory_order_relaxed);
        }
    }
    return false;
}

/* Claims from the oldest job that has work. */
static bool claim(struct wctx *w, uint64_t budget)
{
    struct rp__hdr *hdr = w->hdr;
    uint64_t tried = 0;
    for (;;) {
        uint64_t mask = atomic_load_explicit(&hdr->work_mask, memory_order_acquire) & ~tried;
        if (!mask)
            return false;
        int best = -1;
        uint64_t bid = UINT64_MAX;
        for (uint64_t m = mask; m; m &= m - 1) {
            int j = __builtin_ctzll(m);
            uint64_t id = hdr->slots[j].id;
            if (best < 0 || id < bid) {
                best = j;
                bid = id;
            }
        }
        if (claim_slot(w, best, budget))
            return true;
        tried |= UINT64_C(1) << best;
        /* Nothing left there: take it out of the mask, then look again, since a
         * retried range may have been added meanwhile (the master adds the range
         * before setting the bit). */
        struct rp__slot *s = &hdr->slots[best];
        uint32_t st = atomic_load(&s->state);
        if ((st & 3) != RP__SLOT_ACTIVE || slot_exhausted(s)) {
            atomic_fetch_and(&hdr->work_mask, ~(UINT64_C(1) << best));
            if ((atomic_load(&s->state) & 3) == RP__SLOT_ACTIVE && !slot_exhausted(s))
                atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << best);
        }
    }
}

static void run_chunk(struct wctx *w)
{
    struct lpool *lp = w->lp;
    struct rp__wslot *ws = w->ws;
    struct chunk *c = &w->c;
    bool var = c->flags & RP__JOB_VAR;
    w->ctx.output = var ? var_output : NULL;
    w->ctx.output_arg = w;
    const char *in = lp->arena + c->in_off + c->start * c->in_size;
    char *out = (var || c->out_size == 0) ? NULL : lp->arena + c->out_off + c->start * c->out_size;
    rp__worker_run(&w->ctx, c->fn, in, c->in_size, out, var ? 0 : c->out_size, c->start,
                   c->len, &ws->cur, on_fail, w);
    atomic_store_explicit(&ws->cur, (size_t)(c->start + c->len), memory_order_release);
    if (c->flags & RP__JOB_TRACK) {
        atomic_thread_fence(memory_order_release);
        memset(lp->arena + c->mark_off + c->start, 1, c->len);
    }
    atomic_store_explicit(&ws->done[c->slot], ws->hbase + c->len, memory_order_release);
    atomic_store_explicit(&ws->hstate, RP__H_NONE, memory_order_release);
    ws->processed += c->len;
    struct rp__slot *s = &w->hdr->slots[c->slot];
    if (c->flags & RP__JOB_TRACK) {
        atomic_fetch_add(&s->tseq, 1);
        if (atomic_load(&s->twaiters))
            rp__futex_wake(&s->tseq, INT_MAX);
    }
    /* Between publishing done[] and looking at the ranges: without it the CPU may
     * read the ranges first (store-load reordering), see items still unclaimed,
     * and skip check_complete, while the worker that claims them reads done[]
     * before this store is visible. Neither marks the slot done: a lost job. */
    atomic_thread_fence(memory_order_seq_cst);
    if (slot_exhausted(s)) {
        check_complete(lp, c->slot, c->gen);
        if (atomic_load(&s->suspect))
            wake_master(lp);  /* the master may have to resolve a dead claimer */
    }
}

static void worker_loop(struct wctx *w)
{
    struct rp__hdr *hdr = w->hdr;
    for (;;) {
        uint32_t seq = atomic_load_explicit(&hdr->work_seq, memory_order_acquire);
        if (atomic_load_explicit(&hdr->shutdown, memory_order_relaxed))
            worker_exit(w, 0);
        uint64_t budget = 0;
        if (w->max_tasks > 0) {
            if (w->ws->processed >= (uint64_t)w->max_tasks) {
                atomic_store(&w->ws->life, RP__W_RETIRED);
                worker_exit(w, 0);
            }
            budget = (uint64_t)w->max_tasks - w->ws->processed;
        }
        if (claim(w, budget)) {
            run_chunk(w);
            continue;
        }
        /* Nothing to do: spin a little (a futex wake costs tens of µs), then sleep.
         * Only as many spin as there are cores to spare. */
        double t0 = rp__now();
        bool moved = false;
        bool spin = atomic_fetch_add(&hdr->nspin, 1) < hdr->max_spin;
        for (unsigned i = 1; spin; i++) {
            if (atomic_load_explicit(&hdr->work_seq, memory_order_acquire) != seq
                || atomic_load_explicit(&hdr->shutdown, memory_order_relaxed)) {
                moved = true;
                break;
            }
            rp__cpu_relax();
            if ((i & 63) == 0) {
                if (rp__now() - t0 > SPIN_SECONDS)
                    break;
                sched_yield();
            }
        }
        atomic_fetch_sub(&hdr->nspin, 1);
        if (moved)
            continue;
        atomic_fetch_add(&hdr->nsleep, 1);
        if (atomic_load(&hdr->work_seq) == seq && !atomic_load(&hdr->shutdown))
            rp__futex_wait(&hdr->work_seq, seq, -1);
        atomic_fetch_sub(&hdr->nsleep, 1);
    }
}

/* Entry of a worker process (called by the fork server's child). */
static void worker_main(void *arg, int k)
{
    struct lpool *lp = arg;
    rp_pool_t *pool = lp->pool;
    struct wctx w;
    memset(&w, 0, sizeof w);
    w.lp = lp;
    w.hdr = lp->hdr;
    w.ws = wslot(lp, k);
    w.k = k;
    w.max_tasks = pool->opts.max_tasks_per_worker;
    /* Tests only: worker 0 kills itself inside its N-th claim, after the CAS
     * (N > 0) or just before it (N < 0), where no task can crash. */
    const char *die = getenv("RP_TEST_DIE_IN_CLAIM");
    if (die && k == 0)
        w.die_at = atol(die);
    w.ws->processed = 0;
    atomic_store(&w.ws->hstate, RP__H_NONE);
    atomic_store(&w.ws->pid, (int32_t)getpid());
    if (pool->host[0] == '\0')
        rp__hostname(pool->host, sizeof pool->host);
    w.ctx.worker = k;
    w.ctx.host = pool->host;
    if (pool->opts.bind)
        rp__topo_bind(k);
    if (pool->opts.initializer) {
        rp_error_t err;
        memset(&err, 0, sizeof err);
        const void *arg0 = pool->initarg_copy ? pool->initarg_copy : pool->opts.initarg;
        if (rp__worker_init(&w.ctx, pool->opts.initializer, arg0, &err) != RP_OK) {
            if (err.code == 0)
                err.code = RP_EINIT;
            err.worker = k;
            w.ws->init_err = err;
            atomic_store(&w.ws->life, RP__W_INITFAIL);
            wake_master(lp);
            worker_exit(&w, 0);
        }
    }
    atomic_store(&w.ws->life, RP__W_READY);
    if (atomic_load(&lp->hdr->init_report))
        wake_master(lp);
    worker_loop(&w);
}

/* ---- arena (master, under L) ---------------------------------------------------- */

static bool arena_alloc(struct lpool *lp, uint64_t size, uint64_t *off)
{
    size = align_up(size ? size : ALIGN, ALIGN);
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

static void arena_free(struct lpool *lp, uint64_t off, uint64_t size)
{
    size = align_up(size ? size : ALIGN, ALIGN);
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
            struct seg *n = realloc(lp->fl, cap * sizeof *n);
            if (!n)
                return;  /* the space is lost, nothing breaks */
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
    uint64_t keep = size > ARENA_KEEP ? size : ARENA_KEEP;
    if (lp->nfl == 1 && lp->fl[0].size == lp->arena_size && lp->arena_hw > keep) {
        madvise(lp->arena + keep, lp->arena_hw - keep, MADV_REMOVE);
        lp->arena_hw = keep;
    }
}

/* ---- job lifecycle (master) ----------------------------------------------------- */

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

/* Gives lj a slot and arena space if both are free. Under L. */
static bool try_assign(struct lpool *lp, struct ljob *lj)
{
    if (!lp->free_slots)
        return false;
    struct rp__job *job = lj->job;
    uint64_t in_b = align_up(job->n * job->in_size, ALIGN);
    uint64_t out_b = align_up(job->n * lj->out_size, ALIGN);
    uint64_t mark_b = lj->track ? align_up(job->n, ALIGN) : 0;
    uint64_t off;
    if (!arena_alloc(lp, in_b + out_b + mark_b, &off))
        return false;
    int j = __builtin_ctzll(lp->free_slots);
    lp->free_slots &= ~(UINT64_C(1) << j);
    lj->aoff = off;
    lj->asize = in_b + out_b + mark_b;
    lj->in_off = off;
    lj->out_off = off + in_b;
    lj->mark_off = off + in_b + out_b;
    struct rp__slot *s = &lp->hdr->slots[j];
    lj->gen = (s->gen + 1) & 0x3fffffff;
    s->gen = lj->gen;  /* workers do not read gen of a slot that is not active */
    atomic_store(&lp->table[j], lj);
    atomic_store(&lj->slot, j);
    return true;
}

/* Copies the input in and publishes the job to the workers. No lock held. */
static void publish(struct lpool *lp, struct ljob *lj)
{
    struct rp__job *job = lj->job;
    int j = atomic_load(&lj->slot);
    struct rp__slot *s = &lp->hdr->slots[j];
    /* Input in segments: the workers start on the first while the rest is
     * copied (range 0's end follows the copy). */
    uint64_t seg = job->in_size ? STAGE_BYTES / job->in_size : job->n;
    if (seg == 0)
        seg = 1;
    uint64_t staged = job->n < seg ? job->n : seg;
    if (job->in_size)
        memcpy(lp->arena + lj->in_off, job->in, staged * job->in_size);
    if (lj->var)
        memset(lp->arena + lj->out_off, 0, job->n * 16);
    if (lj->track)
        memset(lp->arena + lj->mark_off, 0, job->n);
    for (int w = 0; w < lp->nworkers; w++)
        atomic_store_explicit(&wslot(lp, w)->done[j], 0, memory_order_relaxed);
    atomic_store(&s->mdone, 0);
    atomic_store(&s->vcur, 0);
    /* (waiters / twaiters are not reset: a waiter of the slot's previous job may
     * still be on its way out and will decrement them) */
    s->id = job->id;
    s->flags = job->flags;
    s->fn = job->fn;
    s->n = job->n;
    s->in_size = job->in_size;
    s->out_size = lj->out_size;
    s->chunksize = job->chunksize;
    s->in_off = lj->in_off;
    s->out_off = lj->out_off;
    s->mark_off = lj->mark_off;
    s->tag = (s->tag + 1) & 0xffffff;
    atomic_store(&s->range[0].next, RP__RW(s->tag, RP__IDX_NONE));
    atomic_store(&s->range[0].end, staged);
    atomic_store_explicit(&s->range[0].next, RP__RW(s->tag, 0), memory_order_release);
    atomic_store_explicit(&s->nranges, 1, memory_order_release);
    atomic_store_explicit(&s->state, RP__SW(lj->gen, RP__SLOT_ACTIVE), memory_order_release);
    struct rp__hdr *hdr = lp->hdr;
    atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << j);
    atomic_fetch_add(&hdr->work_seq, 1);
    /* One item: a spinning worker takes it (a spinner sees work_seq move before it
     * can sleep), so no wake. More: every sleeper. */
    if (atomic_load(&hdr->nsleep) > 0 && (job->n > 1 || atomic_load(&hdr->nspin) == 0))
        rp__futex_wake(&hdr->work_seq, job->n > 1 ? INT_MAX : 1);
    while (staged < job->n) {
        uint64_t k = job->n - staged < seg ? job->n - staged : seg;
        memcpy(lp->arena + lj->in_off + staged * job->in_size,
               job->in + staged * job->in_size, k * job->in_size);
        staged += k;
        atomic_store_explicit(&s->range[0].end, staged, memory_order_release);
        atomic_fetch_or(&hdr->work_mask, UINT64_C(1) << j);
        atomic_fetch_add(&hdr->work_seq, 1);
        if (atomic_load(&hdr->nsleep) > 0)
            rp__futex_wake(&hdr->work_seq, INT_MAX);
    }
}

/* Starts queued jobs while slots and space allow. No lock held. */
static void promote(struct lpool *lp)
{
    for (;;) {
        pthread_mutex_lock(&lp->lock);
        struct ljob *lj = lp->qhead;
        if (!lj || lp->terminating || !try_assign(lp, lj)) {
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

static bool job_done(struct ljob *lj, struct lpool *lp)
{
    if (atomic_load_explicit(&lj->complete, memory_order_acquire)
        || atomic_load_explicit(&lj->harvested, memory_order_acquire))
        return true;
    int j = atomic_load_explicit(&lj->slot, memory_order_acquire);
    if (j < 0)
        return false;
    return atomic_load_explicit(&lp->hdr->slots[j].state, memory_order_acquire)
           == RP__SW(lj->gen, RP__SLOT_DONE);
}

/* Reads every error ring and reports the failures. Under D. */
static void drain(struct lpool *lp)
{
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *ws = wslot(lp, w);
        uint32_t h = atomic_load_explicit(&ws->head, memory_order_acquire);
        uint32_t t = atomic_load_explicit(&ws->tail, memory_order_relaxed);
        if (h == t)
            continue;
        while (t != h) {
            struct rp__ring_entry *ent = &ws->ring[t % RP__RING];
            if (ent->slot < RP__NSLOTS) {
                struct ljob *lj = atomic_load(&lp->table[ent->slot]);
                if (lj && lj->gen == ent->gen && !atomic_load(&lj->harvested)) {
                    rp_error_t e = ent->e;
                    rp__job_fail(lj->job, &e);
                }
            }
            t++;
        }
        atomic_store(&ws->tail, t);
        if (atomic_load(&ws->full)) {
            atomic_store(&ws->full, 0);
            rp__futex_wake(&ws->tail, INT_MAX);
        }
    }
}

/* Copies items [a, b) of lj's outputs from the arena to the caller's buffer. */
static void copy_out(struct lpool *lp, struct ljob *lj, uint64_t a, uint64_t b)
{
    struct rp__job *job = lj->job;
    if (b <= a || lj->out_size == 0 || !job->out)
        return;
    const char *src = lp->arena + lj->out_off;
    if (!lj->var) {
        memcpy(job->out + a * job->out_size, src + a * job->out_size, (b - a) * job->out_size);
        return;
    }
    rp__varslot *dst = (rp__varslot *)job->out;
    for (uint64_t i = a; i < b; i++) {
        const uint64_t *vs = (const uint64_t *)(src + i * 16);
        dst[i].data = NULL;
        dst[i].size = 0;
        if (vs[0] == 0 || vs[0] - 1 > lp->var_size || vs[1] > lp->var_size - (vs[0] - 1))
            continue;
        dst[i].data = malloc(vs[1] ? vs[1] : 1);
        if (!dst[i].data)
            continue;
        memcpy(dst[i].data, lp->var + vs[0] - 1, vs[1]);
        dst[i].size = vs[1];
    }
}

/* Delivers a done job: errors reported, outputs copied, slot and arena freed.
 * Idempotent; no lock held by the caller. */
static void harvest(struct lpool *lp, struct ljob *lj)
{
    pthread_mutex_lock(&lp->drain_lock);
    if (atomic_load(&lj->harvested)) {
        pthread_mutex_unlock(&lp->drain_lock);
        return;
    }
    int j = atomic_load(&lj->slot);
    if (j >= 0) {
        drain(lp);
        if (!lj->track) {
            copy_out(lp, lj, 0, lj->job->n);
        } else {
            for (size_t h = 0; h < lj->nholes; h++)
                copy_out(lp, lj, lj->holes[h].a, lj->holes[h].b);
            copy_out(lp, lj, lj->hi, lj->job->n);
        }
    }
    pthread_mutex_lock(&lp->lock);
    if (j >= 0) {
        atomic_fetch_and(&lp->hdr->work_mask, ~(UINT64_C(1) << j));
        atomic_store(&lp->table[j], NULL);
        lp->free_slots |= UINT64_C(1) << j;
        arena_free(lp, lj->aoff, lj->asize);
    }
    if (lj->var && j >= 0)
        var_release(lp, j, lj->gen);
    atomic_store_explicit(&lj->harvested, true, memory_order_release);
    pthread_mutex_unlock(&lp->lock);
    pthread_mutex_unlock(&lp->drain_lock);
    if (j >= 0)
        promote(lp);
}

/* ---- failures the master reports ------------------------------------------------ */

struct fail {
    struct ljob *lj;
    uint64_t a, b;
    rp_error_t e;
};
struct fails {
    struct fail *v;
    size_t n, cap;
};

static void fails_add(struct fails *f, struct ljob *lj, uint64_t a, uint64_t b, const rp_error_t *e)
{
    if (b <= a)
        return;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 8;
        struct fail *v = realloc(f->v, cap * sizeof *v);
        if (!v)
            return;
        f->v = v;
        f->cap = cap;
    }
    f->v[f->n++] = (struct fail){ lj, a, b, *e };
}

/* Reports collected failures (no lock L held), marks TRACK items arrived. */
static void fails_report(struct lpool *lp, struct fails *f)
{
    for (size_t i = 0; i < f->n; i++) {
        struct fail *x = &f->v[i];
        if (x->b - x->a == 1) {
            x->e.index = x->a;
            rp__job_fail(x->lj->job, &x->e);
        } else {
            rp__job_fail_range(x->lj->job, x->a, x->b - x->a, &x->e);
        }
        int j = atomic_load(&x->lj->slot);
        if (x->lj->track && j >= 0 && !atomic_load(&x->lj->harvested)) {
            atomic_thread_fence(memory_order_release);
            memset(lp->arena + x->lj->mark_off + x->a, 1, x->b - x->a);
        }
    }
    free(f->v);
    f->v = NULL;
    f->n = f->cap = 0;
}

/* Takes every unclaimed item of slot j (under L): they are the caller's to fail. */
static void take_unclaimed(struct lpool *lp, struct ljob *lj, struct fails *f, const rp_error_t *e,
                           uint64_t *count)
{
    struct rp__slot *s = &lp->hdr->slots[atomic_load(&lj->slot)];
    uint32_t nr = atomic_load(&s->nranges);
    for (uint32_t r = 0; r < nr && r < RP__NRANGES; r++) {
        struct rp__range *rg = &s->range[r];
        uint64_t end = r == 0 ? s->n : atomic_load(&rg->end);  /* staged or not */
        uint64_t v = atomic_load(&rg->next);
        while (RP__RW_IDX(v) < end
               && !atomic_compare_exchange_weak(&rg->next, &v, RP__RW(RP__RW_TAG(v), end)))
            ;
        if (RP__RW_IDX(v) < end) {
            fails_add(f, lj, RP__RW_IDX(v), end, e);
            *count += end - RP__RW_IDX(v);
        }
    }
}

static void error_init(rp_error_t *e, struct lpool *lp, int code, int worker, const char *msg)
{
    memset(e, 0, sizeof *e);
    e->code = code;
    e->worker = worker;
    e->exit_status = -1;
    snprintf(e->host, sizeof e->host, "%s", lp->pool->host);
    snprintf(e->message, sizeof e->message, "%s", msg);
}

/* Completes every live job now (terminate, no worker left, fork server gone):
 * unclaimed items and the unfinished part of every held chunk fail with code,
 * then every live job is done. Under D, not L. The workers are dead (or dying,
 * when the fork server vanished). */
static void cancel_all(struct lpool *lp, int code, const char *msg)
{
    rp_error_t e;
    error_init(&e, lp, code, -1, msg);
    struct fails f = { 0 };
    drain(lp);
    pthread_mutex_lock(&lp->lock);
    atomic_store(&lp->broken, true);
    lp->broken_code = code;
    for (struct ljob *lj = lp->live; lj; lj = lj->next) {
        lj->queued = false;
        if (job_done(lj, lp))
            continue;
        int j = atomic_load(&lj->slot);
        if (j < 0) {
            fails_add(&f, lj, 0, lj->job->n, &e);
            continue;
        }
        uint64_t dummy = 0;
        take_unclaimed(lp, lj, &f, &e, &dummy);
        for (size_t i = 0; i < lj->npend; i++)
            fails_add(&f, lj, lj->pend[i].a, lj->pend[i].b, &e);
        for (size_t i = 0; i < lj->nsus; i++)
            fails_add(&f, lj, lj->sus[i].a, lj->sus[i].b, &e);
        lj->npend = lj->nsus = 0;
        for (int w = 0; w < lp->nworkers; w++) {
            struct rp__wslot *ws = wslot(lp, w);
            uint32_t hs = atomic_load(&ws->hstate);
            if (hs == RP__H_NONE || (int)ws->hslot != j || ws->hgen != lj->gen)
                continue;
            uint64_t start = ws->hstart, end = ws->hstart + ws->hlen;
            if (atomic_load(&ws->done[j]) != ws->hbase)
                continue;
            uint64_t cur = hs == RP__H_CONFIRMED ? atomic_load(&ws->cur) : start;
            if (cur < start)
                cur = start;
            if (cur > end)
                cur = end;
            if (lj->track && cur > start)
                memset(lp->arena + lj->mark_off + start, 1, cur - start);
            fails_add(&f, lj, cur, end, &e);
            atomic_store(&ws->hstate, RP__H_NONE);
        }
    }
    lp->qhead = lp->qtail = NULL;
    atomic_store(&lp->hdr->nqueued, 0);
    pthread_mutex_unlock(&lp->lock);
    fails_report(lp, &f);
    pthread_mutex_lock(&lp->lock);
    for (struct ljob *lj = lp->live; lj; lj = lj->next) {
        int j = atomic_load(&lj->slot);
        if (j >= 0 && !atomic_load(&lj->harvested)) {
            struct rp__slot *s = &lp->hdr->slots[j];
            uint32_t active = RP__SW(lj->gen, RP__SLOT_ACTIVE);
            if (atomic_compare_exchange_strong(&s->state, &active, RP__SW(lj->gen, RP__SLOT_DONE)))
                slot_wake(lp, s);
        }
        atomic_store(&lj->complete, true);
    }
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    wake_master(lp);  /* rp__job_done for jobs with callbacks */
}

static void send_fs(struct lpool *lp, int kind, int worker)
{
    struct rp__fs_msg m = { kind, worker, 0, 0 };
    while (send(lp->sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

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
            struct rp__range *rg = &s->range[r];
            if (RP__RW_IDX(atomic_load(&rg->next)) < atomic_load(&rg->end))
                continue;
            bool referred = false;
            for (int w = 0; w < lp->nworkers && !referred; w++) {
                struct rp__wslot *o = wslot(lp, w);
                referred = atomic_load(&o->hstate) != RP__H_NONE && (int)o->hslot == j
                           && o->hrange == r;
            }
            if (!referred)
                break;
        }
        if (r >= RP__NRANGES)
            return false;
    }
    struct rp__range *rg = &s->range[r];
    s->tag = (s->tag + 1) & 0xffffff;
    atomic_store(&rg->next, RP__RW(s->tag, RP__IDX_NONE));
    atomic_store(&rg->end, b);
    atomic_store_explicit(&rg->next, RP__RW(s->tag, a), memory_order_release);
    if (r == nr)
        atomic_store(&s->nranges, nr + 1);
    atomic_fetch_or(&lp->hdr->work_mask, UINT64_C(1) << j);
    atomic_fetch_add(&lp->hdr->work_seq, 1);
    rp__futex_wake(&lp->hdr->work_seq, INT_MAX);
    return true;
}

/* Puts [a, b) back now, or as soon as a range frees up (under L). */
static void retry_later(struct lpool *lp, struct ljob *lj, int j, uint64_t a, uint64_t b)
{
    if (b <= a || add_retry(lp, j, a, b))
        return;
    struct span *n = realloc(lj->pend, (lj->npend + 1) * sizeof *n);
    if (!n)
        return;  /* out of memory: these items would hang; nothing better to do */
    lj->pend = n;
    lj->pend[lj->npend++] = (struct span){ a, b };
    atomic_store(&lp->hdr->slots[j].suspect, 1);  /* workers wake the pool thread */
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

/* A worker killed between recording a claim and confirming it may or may not
 * have taken [a, b): another worker may have claimed from the same point and
 * already finished. Resolved once the job is quiescent (nothing claimable,
 * nobody holding any of it): then the items missing from the counts are the
 * dead worker's. Under D. */
static bool audit_locked(struct lpool *lp, struct ljob *lj)
{
    if ((!lj->nsus && !lj->npend) || atomic_load(&lj->harvested) || atomic_load(&lj->complete))
        return false;
    int j = atomic_load(&lj->slot);
    struct rp__slot *s = &lp->hdr->slots[j];
    if (lj->npend)
        flush_pending(lp, lj);
    if (!lj->nsus || lj->npend)
        return false;
    if (atomic_load(&s->state) != RP__SW(lj->gen, RP__SLOT_ACTIVE) || !slot_exhausted(s))
        return false;
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__wslot *o = wslot(lp, w);
        if (atomic_load(&o->hstate) != RP__H_NONE && (int)o->hslot == j && o->hgen == lj->gen)
            return false;
    }
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t sum = atomic_load(&s->mdone);
    for (int w = 0; w < lp->nworkers; w++)
        sum += atomic_load(&wslot(lp, w)->done[j]);
    if (sum < s->n) {
        /* Items are missing: they are among the suspects. With one suspect, or
         * several that add up to what is missing, that is exact; otherwise a
         * chunk another worker finished may run again (same result; a failure
         * may be listed twice), rather than lose one. */
        for (size_t i = 0; i < lj->nsus; i++)
            retry_later(lp, lj, j, lj->sus[i].a, lj->sus[i].b);
    }
    lj->nsus = 0;
    if (!lj->npend)
        atomic_store(&s->suspect, 0);
    return true;
}

/* Resolves lj's suspect claims if it is quiescent. Under D, not L. */
static void audit(struct lpool *lp, struct ljob *lj)
{
    pthread_mutex_lock(&lp->lock);
    bool resolved = audit_locked(lp, lj);
    int j = atomic_load(&lj->slot);
    uint32_t gen = lj->gen;
    pthread_mutex_unlock(&lp->lock);
    if (resolved)
        check_complete(lp, j, gen);
}

/* A worker ended (pool thread). */
static void on_death(struct lpool *lp, int k, int pid, int status)
{
    if (k < 0 || k >= lp->nworkers)
        return;
    struct rp__wslot *ws = wslot(lp, k);
    pthread_mutex_lock(&lp->drain_lock);
    if (atomic_load(&lp->terminating)) {
        pthread_mutex_unlock(&lp->drain_lock);
        return;
    }
    drain(lp);  /* its last failures first */
    struct fails f = { 0 };
    struct ljob *lj = NULL, *audit_job = NULL;
    uint64_t acct = 0;
    int j = -1;
    pthread_mutex_lock(&lp->lock);
    uint32_t life = atomic_load(&ws->life);
    uint32_t hs = atomic_load(&ws->hstate);
    if (hs != RP__H_NONE) {
        j = (int)ws->hslot;
        struct rp__slot *s = &lp->hdr->slots[j];
        lj = atomic_load(&lp->table[j]);
        if (!lj || lj->gen != ws->hgen || atomic_load(&s->state) != RP__SW(lj->gen, RP__SLOT_ACTIVE))
            lj = NULL;
        uint64_t start = ws->hstart, end = ws->hstart + ws->hlen;
        if (lj && hs == RP__H_CONFIRMED
            && atomic_load(&ws->done[j]) == ws->hbase) {
            uint64_t cur = atomic_load(&ws->cur);
            if (cur < start)
                cur = start;
            if (lj->track)
                memset(lp->arena + lj->mark_off + start, 1, (cur < end ? cur : end) - start);
            if (cur >= end) {
                acct = end - start;  /* all ran; it died before counting them */
            } else {
                rp_error_t e;
                error_init(&e, lp, RP_EWORKER, k, "");
                e.index = cur;
                if (WIFSIGNALED(status)) {
                    e.signal = WTERMSIG(status);
                    snprintf(e.message, sizeof e.message,
                             "worker %d (pid %d) was killed by signal %d (%s)", k, pid,
                             e.signal, strsignal(e.signal));
                } else {
                    e.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
                    snprintf(e.message, sizeof e.message,
                             "worker %d (pid %d) exited with status %d while running a task",
                             k, pid, e.exit_status);
                }
                fails_add(&f, lj, cur, cur + 1, &e);
                acct = cur + 1 - start;
                /* The rest of its chunk goes back to the other workers. */
                retry_later(lp, lj, j, cur + 1, end);
            }
        } else if (lj && hs == RP__H_TENTATIVE) {
            /* Died inside a claim. If its CAS did not happen nothing is lost;
             * if it did, the chunk starts at hstart and nobody else holds it. */
            struct rp__range *rg = &s->range[ws->hrange < RP__NRANGES ? ws->hrange : 0];
            uint64_t v = atomic_load(&rg->next);
            bool other = false;
            for (int w = 0; w < lp->nworkers; w++) {
                struct rp__wslot *o = wslot(lp, w);
                if (w != k && atomic_load(&o->hstate) != RP__H_NONE && o->hslot == ws->hslot
                    && o->hgen == ws->hgen && o->hrange == ws->hrange
                    && o->hstart == ws->hstart)
                    other = true;
            }
            if (RP__RW_TAG(v) == ws->htag && RP__RW_IDX(v) > ws->hstart && !other) {
                struct susp *n = realloc(lj->sus, (lj->nsus + 1) * sizeof *n);
                if (n) {
                    lj->sus = n;
                    lj->sus[lj->nsus++] = (struct susp){ ws->hrange, ws->hstart, end };
                    atomic_fetch_add(&s->suspect, 1);
                    audit_job = lj;
                }
            }
        }
        atomic_store(&ws->hstate, RP__H_NONE);
    }
    rp__trace("local: worker %d (pid %d) ended (status 0x%x, life %u, claim %u)", k, pid,
              (unsigned)status, life, hs);
    bool respawn = !atomic_load(&lp->shutdown);
    if (life == RP__W_INITFAIL || (life == RP__W_STARTING && lp->pool->opts.initializer))
        respawn = false;
    if (respawn) {
        send_fs(lp, RP__FS_SPAWN, k);
    } else if (!atomic_load(&lp->shutdown)) {
        atomic_store(&ws->life, RP__W_EMPTY);
        lp->live_workers--;
    }
    bool none_left = lp->live_workers <= 0 && !atomic_load(&lp->shutdown);
    pthread_mutex_unlock(&lp->lock);
    fails_report(lp, &f);
    if (lj) {
        struct rp__slot *s = &lp->hdr->slots[j];
        if (acct)
            atomic_fetch_add(&s->mdone, acct);
        if (lj->track) {
            atomic_fetch_add(&s->tseq, 1);
            rp__futex_wake(&s->tseq, INT_MAX);
        }
        check_complete(lp, j, lj->gen);
    }
    if (audit_job)
        audit(lp, audit_job);
    if (none_left)
        cancel_all(lp, RP_EBROKEN, "no worker left: replacement workers failed to start");
    pthread_mutex_unlock(&lp->drain_lock);
}

/* ---- the pool thread ------------------------------------------------------------ */

static void service(struct lpool *lp)
{
    pthread_mutex_lock(&lp->drain_lock);
    drain(lp);
    for (;;) {
        struct ljob *found = NULL;
        pthread_mutex_lock(&lp->lock);
        for (struct ljob *lj = lp->live; lj && !found; lj = lj->next)
            if ((lj->nsus || lj->npend) && !atomic_load(&lj->complete))
                found = lj;
        pthread_mutex_unlock(&lp->lock);
        if (!found)
            break;
        size_t before = found->nsus + found->npend;
        audit(lp, found);  /* under D: found cannot be finished meanwhile */
        if (found->nsus + found->npend == before)
            break;  /* not quiescent yet: a worker wakes us when it is */
    }
    pthread_mutex_unlock(&lp->drain_lock);

    /* Jobs with callbacks that are done: rp__job_done on this thread. Jobs
     * without, when others wait in the queue: deliver them to free their slot. */
    for (;;) {
        struct ljob *found = NULL;
        bool notify = false;
        pthread_mutex_lock(&lp->lock);
        bool queued = atomic_load(&lp->hdr->nqueued) > 0;
        for (struct ljob *lj = lp->live; lj; lj = lj->next) {
            if (!job_done(lj, lp))
                continue;
            if ((lj->job->flags & RP__JOB_NOTIFY) && !lj->notified) {
                lj->notified = true;
                found = lj;
                notify = true;
                break;
            }
            if (queued && !(lj->job->flags & RP__JOB_NOTIFY) && !atomic_load(&lj->harvested)
                && atomic_load(&lj->slot) >= 0) {
                found = lj;
                break;
            }
        }
        pthread_mutex_unlock(&lp->lock);
        if (!found)
            break;
        if (notify)
            rp__job_done(found->job);  /* the core calls finish() from it */
        else
            harvest(lp, found);
    }
}

static void on_spawnfail(struct lpool *lp, int k)
{
    if (k < 0 || k >= lp->nworkers)
        return;
    pthread_mutex_lock(&lp->drain_lock);
    pthread_mutex_lock(&lp->lock);
    atomic_store(&wslot(lp, k)->life, RP__W_EMPTY);
    lp->live_workers--;
    bool none_left = lp->live_workers <= 0 && !atomic_load(&lp->shutdown)
                     && !atomic_load(&lp->terminating);
    pthread_mutex_unlock(&lp->lock);
    if (none_left)
        cancel_all(lp, RP_EBROKEN, "no worker left: fork failed");
    pthread_mutex_unlock(&lp->drain_lock);
}

static void on_fs_gone(struct lpool *lp)
{
    rp__trace("local: fork server gone%s", atomic_load(&lp->shutdown) ? "" : " unexpectedly");
    atomic_store(&lp->fs_gone, true);
    pthread_mutex_lock(&lp->lock);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    if (!atomic_load(&lp->shutdown) && !atomic_load(&lp->terminating)) {
        pthread_mutex_lock(&lp->drain_lock);
        cancel_all(lp, RP_EBROKEN, "the worker processes are gone (fork server ended)");
        pthread_mutex_unlock(&lp->drain_lock);
    }
}

static void handle_msg(struct lpool *lp, const struct rp__fs_msg *m)
{
    switch (m->kind) {
    case RP__FS_DIED:
        on_death(lp, m->worker, m->pid, m->status);
        break;
    case RP__FS_SPAWNFAIL:
        on_spawnfail(lp, m->worker);
        break;
    case RP__FS_KILLED:
        pthread_mutex_lock(&lp->lock);
        atomic_store(&lp->killed, true);
        pthread_cond_broadcast(&lp->cond);
        pthread_mutex_unlock(&lp->lock);
        break;
    default:
        break;
    }
}

static void *pool_thread(void *arg)
{
    struct lpool *lp = arg;
    bool sock_open = true;
    while (!atomic_load(&lp->stopping)) {
        struct pollfd p[2] = { { lp->efd, POLLIN, 0 }, { sock_open ? lp->sock : -1, POLLIN, 0 } };
        int rc = poll(p, 2, -1);
        if (rc < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(lp->efd, &v, sizeof v);
            (void)r;
        }
        if (atomic_load(&lp->stopping))
            break;
        if (sock_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            for (;;) {
                struct rp__fs_msg m;
                ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
                if (got == (ssize_t)sizeof m) {
                    handle_msg(lp, &m);
                    continue;
                }
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    sock_open = false;
                    on_fs_gone(lp);
                }
                if (got < 0 && errno == EINTR)
                    continue;
                break;
            }
        }
        service(lp);
    }
    return NULL;
}

/* ---- backend operations ---------------------------------------------------------- */

static void unmap_and_close(struct lpool *lp)
{
    reg_remove(lp);
    if (lp->sock >= 0)
        close(lp->sock);
    if (lp->efd >= 0)
        close(lp->efd);
    lp->sock = lp->efd = -1;
    if (lp->base)
        munmap(lp->base, lp->map_size);
    lp->base = NULL;
}

static void reap_fs(struct lpool *lp)
{
    if (lp->fs_pid <= 0)
        return;
    int st;
    while (waitpid(lp->fs_pid, &st, 0) < 0 && errno == EINTR)
        ;
    lp->fs_pid = 0;  /* or a user's SIGCHLD handler took it (ECHILD): gone too */
}

/* Waits, before the pool thread exists, until every first worker ran its
 * initializer. */
static int wait_init(struct lpool *lp, rp_error_t *err)
{
    for (;;) {
        int ready = 0;
        for (int k = 0; k < lp->nworkers; k++) {
            struct rp__wslot *ws = wslot(lp, k);
            uint32_t life = atomic_load(&ws->life);
            if (life == RP__W_READY)
                ready++;
            else if (life == RP__W_INITFAIL) {
                if (err)
                    *err = ws->init_err;
                return RP_EINIT;
            }
        }
        if (ready == lp->nworkers)
            return RP_OK;
        struct pollfd p[2] = { { lp->efd, POLLIN, 0 }, { lp->sock, POLLIN, 0 } };
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            return RP_ESYS;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(lp->efd, &v, sizeof v);
            (void)r;
        }
        if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) {
            struct rp__fs_msg m;
            ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                if (err)
                    error_init(err, lp, RP_ESYS, -1, "the fork server ended during start");
                return RP_ESYS;
            }
            if (got != (ssize_t)sizeof m)
                continue;
            if (m.worker < 0 || m.worker >= lp->nworkers)
                continue;
            if (m.kind == RP__FS_DIED && atomic_load(&wslot(lp, m.worker)->life) == RP__W_READY) {
                /* past its initializer, killed from outside: replace it */
                send_fs(lp, RP__FS_SPAWN, m.worker);
                continue;
            }
            if (m.kind == RP__FS_DIED || m.kind == RP__FS_SPAWNFAIL) {
                struct rp__wslot *ws = wslot(lp, m.worker);
                if (atomic_load(&ws->life) == RP__W_INITFAIL) {
                    if (err)
                        *err = ws->init_err;
                    return RP_EINIT;
                }
                if (err) {
                    error_init(err, lp, RP_EINIT, m.worker, "");
                    if (m.kind == RP__FS_SPAWNFAIL)
                        snprintf(err->message, sizeof err->message,
                                 "could not fork worker %d: %s", m.worker, strerror(m.status));
                    else if (WIFSIGNALED(m.status)) {
                        err->signal = WTERMSIG(m.status);
                        snprintf(err->message, sizeof err->message,
                                 "worker %d died during its initializer: signal %d (%s)",
                                 m.worker, err->signal, strsignal(err->signal));
                    } else {
                        err->exit_status = WIFEXITED(m.status) ? WEXITSTATUS(m.status) : -1;
                        snprintf(err->message, sizeof err->message,
                                 "worker %d exited during its initializer with status %d",
                                 m.worker, err->exit_status);
                    }
                }
                return RP_EINIT;
            }
        }
    }
}

/* Frees the backend's master-side state (the region is already unmapped). */
static void free_lpool(rp_pool_t *pool, struct lpool *lp)
{
    free(lp->fl);
    pthread_mutex_destroy(&lp->lock);
    pthread_mutex_destroy(&lp->drain_lock);
    pthread_cond_destroy(&lp->cond);
    free(lp);
    pool->bdata = NULL;
}

static int local_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    int nw = opts && opts->workers > 0 ? opts->workers : rp__topo_ncores();
    if (opts && opts->workers < 0)
        return RP_EINVAL;
    if (nw < 1)
        nw = 1;
    if (nw > RP__MAXWORKERS) {
        if (err)
            rp__error_set(err, RP_EINVAL, 0, -1, pool->host, "at most %d local workers",
                          RP__MAXWORKERS);
        return RP_EINVAL;
    }
    pthread_once(&reg_once, reg_init);
    struct lpool *lp = calloc(1, sizeof *lp);
    if (!lp)
        return RP_ENOMEM;
    lp->pool = pool;
    lp->nworkers = nw;
    lp->sock = lp->efd = -1;
    pool->bdata = lp;
    pool->nworkers = nw;
    if (pool->host[0] == '\0')
        rp__hostname(pool->host, sizeof pool->host);
    pthread_mutex_init(&lp->lock, NULL);
    pthread_mutex_init(&lp->drain_lock, NULL);
    pthread_cond_init(&lp->cond, NULL);
    lp->free_slots = ~UINT64_C(0);
    lp->live_workers = nw;

    /* The region: header, worker slots, then a large arena and var heap that
     * cost nothing until touched (MAP_NORESERVE). */
    size_t page = 4096;
    size_t hdr_sz = align_up(sizeof(struct rp__hdr), page);
    lp->wstride = align_up(sizeof(struct rp__wslot), RP__CL);
    size_t w_sz = align_up((uint64_t)nw * lp->wstride, page);
    uint64_t big = UINT64_C(16) << 30;
    int rc = RP_ESYS;
    for (;;) {
        lp->map_size = hdr_sz + w_sz + 2 * big;
        void *m = mmap(NULL, lp->map_size, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            lp->base = m;
            break;
        }
        if (big <= (UINT64_C(64) << 20))
            goto fail;
        big /= 4;
    }
    lp->hdr = (struct rp__hdr *)lp->base;
    lp->wbase = lp->base + hdr_sz;
    lp->arena = lp->wbase + w_sz;
    lp->arena_size = big;
    lp->var = lp->arena + big;
    lp->var_size = big;
    /* Tests only: a smaller var heap, to fill it quickly. */
    const char *vh = getenv("RP_TEST_VAR_HEAP");
    if (vh && strtoull(vh, NULL, 10) >= (1u << 20) && strtoull(vh, NULL, 10) < big)
        lp->var_size = strtoull(vh, NULL, 10);
    lp->vseg_size = (lp->var_size / RP__VSEGS) & ~(uint64_t)(page - 1);
    lp->var_size = lp->vseg_size * RP__VSEGS;
    lp->fl = malloc(16 * sizeof *lp->fl);
    if (!lp->fl) {
        rc = RP_ENOMEM;
        goto fail;
    }
    lp->capfl = 16;
    lp->nfl = 1;
    lp->fl[0].off = 0;
    lp->fl[0].size = big;
    atomic_store(&lp->hdr->init_report, opts && opts->initializer ? 1u : 0u);
    /* Idle workers that may spin: one per core this process may use (counted
     * cheaply; hwloc would cost a topology load per pool). */
    cpu_set_t cpus;
    int ncores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    lp->hdr->max_spin = ncores > 1 ? (uint32_t)ncores : 1;

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        goto fail;
    lp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lp->efd < 0) {
        close(sv[0]);
        close(sv[1]);
        goto fail;
    }
    lp->conf.hdr = lp->hdr;
    lp->conf.region = lp->base;
    lp->conf.region_size = lp->map_size;
    lp->conf.wslot = wslot_cb;
    lp->conf.worker_main = worker_main;
    lp->conf.lp = lp;
    lp->conf.nworkers = nw;
    lp->conf.sock = sv[1];
    lp->conf.efd = lp->efd;
    lp->conf.master = getpid();
    pthread_sigmask(SIG_SETMASK, NULL, &lp->conf.mask);
    sigaction(SIGCHLD, NULL, &lp->conf.chld);
    sigaction(SIGINT, NULL, &lp->conf.intr);

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        rp__forkserver_main(&lp->conf);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        goto fail;
    }
    lp->fs_pid = pid;
    lp->sock = sv[0];
    /* Children the user forks from now on do not get the region. */
    madvise(lp->base, lp->map_size, MADV_DONTFORK);
    reg_add(lp);

    if (opts && opts->initializer) {
        rc = wait_init(lp, err);
        if (rc != RP_OK) {
            close(lp->sock);  /* EOF: the fork server kills the workers and exits */
            lp->sock = -1;
            reap_fs(lp);
            goto fail;
        }
    }
    atomic_store(&lp->hdr->init_report, 0);

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&lp->thread, NULL, pool_thread, lp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        close(lp->sock);
        lp->sock = -1;
        reap_fs(lp);
        rc = RP_ESYS;
        goto fail;
    }
    lp->thread_started = true;
    return RP_OK;

fail:
    if (err && rc != RP_EINIT)
        rp__error_set(err, rc, 0, -1, pool->host, "local backend: %s", rp_strerror(rc));
    unmap_and_close(lp);
    free_lpool(pool, lp);
    return rc;
}

static int local_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    if (!lp || job->n > RP__MAX_ITEMS)
        return RP_EINVAL;
    struct ljob *lj = calloc(1, sizeof *lj);
    if (!lj)
        return RP_ENOMEM;
    lj->job = job;
    lj->var = job->flags & RP__JOB_VAR;
    lj->track = job->flags & RP__JOB_TRACK;
    lj->out_size = lj->var ? 16 : job->out_size;
    atomic_init(&lj->slot, -1);
    /* Each part checked against the arena before the sum: none can wrap. */
    size_t in_b, out_b;
    if (rp__mul_size(job->n, job->in_size, &in_b) || rp__mul_size(job->n, lj->out_size, &out_b)) {
        free(lj);
        return RP_EINVAL;
    }
    if (in_b > lp->arena_size || out_b > lp->arena_size || job->n > lp->arena_size
        || align_up(in_b, ALIGN) + align_up(out_b, ALIGN)
                   + (lj->track ? align_up(job->n, ALIGN) : 0) > lp->arena_size) {
        free(lj);
        return RP_ENOMEM;
    }
    job->bdata = lj;

    pthread_mutex_lock(&lp->lock);
    live_add(lp, lj);
    if (atomic_load(&lp->broken) || atomic_load(&lp->terminating) || job->n == 0) {
        int code = atomic_load(&lp->terminating) ? RP_ECANCELED : lp->broken_code;
        pthread_mutex_unlock(&lp->lock);
        if (job->n > 0) {
            rp_error_t e;
            error_init(&e, lp, code, -1,
                       code == RP_ECANCELED ? "the pool was terminated" : "no worker left");
            rp__job_fail_range(job, 0, job->n, &e);
        }
        atomic_store(&lj->complete, true);
        if (job->flags & RP__JOB_NOTIFY)
            wake_master(lp);
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
    wake_master(lp);  /* the pool thread frees slots of done jobs */
    promote(lp);
    return RP_OK;
}

static bool local_done(rp_pool_t *pool, struct rp__job *job)
{
    return job_done(job->bdata, pool->bdata);
}

static size_t local_progress(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (job_done(lj, lp))
        return job->n;
    int j = atomic_load(&lj->slot);
    if (j < 0)
        return 0;
    struct rp__slot *s = &lp->hdr->slots[j];
    uint64_t sum = atomic_load(&s->mdone);
    for (int w = 0; w < lp->nworkers; w++)
        sum += atomic_load(&wslot(lp, w)->done[j]);
    if (!job_done(lj, lp) && sum >= job->n)
        sum = job->n ? job->n - 1 : 0;
    return (size_t)sum;
}

/* Waits on the master's condition until lj has a slot (or is done). */
static bool wait_slot(struct lpool *lp, struct ljob *lj, double deadline)
{
    if (atomic_load(&lj->slot) >= 0)
        return true;
    pthread_mutex_lock(&lp->lock);
    while (atomic_load(&lj->slot) < 0 && !job_done(lj, lp)) {
        double left = deadline - rp__now();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + (left > 1e6 ? 1e6 : left);
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&lp->cond, &lp->lock, &ts);
    }
    pthread_mutex_unlock(&lp->lock);
    return atomic_load(&lj->slot) >= 0;
}

static int local_wait(rp_pool_t *pool, struct rp__job *job, double timeout)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (job_done(lj, lp))
        return RP_OK;
    double deadline = rp__deadline(timeout);
    if (!wait_slot(lp, lj, deadline))
        return job_done(lj, lp) ? RP_OK : RP_ETIMEDOUT;
    struct rp__slot *s = &lp->hdr->slots[atomic_load(&lj->slot)];
    uint32_t active = RP__SW(lj->gen, RP__SLOT_ACTIVE);
    double t0 = rp__now();
    for (unsigned i = 1;; i++) {
        if (job_done(lj, lp))
            return RP_OK;
        rp__cpu_relax();
        if ((i & 63) == 0) {
            double now = rp__now();
            if (now - t0 > SPIN_SECONDS || now >= deadline)
                break;
        }
    }
    for (;;) {
        if (job_done(lj, lp))
            return RP_OK;
        double left = deadline - rp__now();
        if (left <= 0)
            return RP_ETIMEDOUT;
        atomic_fetch_add(&s->waiters, 1);
        if (atomic_load(&s->state) == active && !atomic_load(&lj->complete))
            rp__futex_wait(&s->state, active, left);
        atomic_fetch_sub(&s->waiters, 1);
    }
}

/* Scans marks in [a, b): returns the first index >= a whose mark is v, or b. */
static uint64_t scan_marks(const volatile unsigned char *m, uint64_t a, uint64_t b, unsigned char v)
{
    while (a < b && (a & 7)) {
        if (m[a] == v)
            return a;
        a++;
    }
    /* eight marks at a time while they all hold the other value */
    uint64_t other = v ? 0 : UINT64_C(0x0101010101010101);
    while (a + 8 <= b) {
        uint64_t wd;
        memcpy(&wd, (const unsigned char *)m + a, 8);
        if (wd != other)
            break;
        a += 8;
    }
    while (a < b) {
        if (m[a] == v)
            return a;
        a++;
    }
    return b;
}

/* Records [a, b) as not yet returned (merged with the last span if adjacent). */
static bool holes_push(struct ljob *lj, uint64_t a, uint64_t b)
{
    if (b <= a)
        return true;
    if (lj->nholes && lj->holes[lj->nholes - 1].b == a) {
        lj->holes[lj->nholes - 1].b = b;
        return true;
    }
    if (lj->nholes == lj->capholes) {
        size_t cap = lj->capholes ? lj->capholes * 2 : 8;
        struct span *n = realloc(lj->holes, cap * sizeof *n);
        if (!n)
            return false;
        lj->holes = n;
        lj->capholes = cap;
    }
    lj->holes[lj->nholes++] = (struct span){ a, b };
    return true;
}

/* Collects arrived, not yet returned items (under D). With force (the job is
 * done), every item not yet returned counts as arrived. */
static size_t collect(struct lpool *lp, struct ljob *lj, size_t *idx, size_t max, bool force)
{
    struct rp__job *job = lj->job;
    bool harvested = atomic_load(&lj->harvested);
    int j = atomic_load(&lj->slot);
    bool all = force || harvested || j < 0;
    bool copy = !harvested && j >= 0;
    if (j < 0 && !atomic_load(&lj->complete))
        return 0;
    uint64_t frontier = job->n;
    const volatile unsigned char *marks = NULL;
    if (!all) {
        marks = (const volatile unsigned char *)(lp->arena + lj->mark_off);
        uint64_t v = RP__RW_IDX(atomic_load(&lp->hdr->slots[j].range[0].next));
        if (v < frontier)
            frontier = v;
        atomic_thread_fence(memory_order_acquire);
    }
    struct span *old = lj->holes;
    size_t nold = lj->nholes;
    lj->holes = NULL;
    lj->nholes = lj->capholes = 0;
    size_t got = 0;
    struct span extra = { lj->hi, frontier > lj->hi ? frontier : lj->hi };
    lj->hi = extra.b;
    for (size_t h = 0; h <= nold; h++) {
        struct span sp = h < nold ? old[h] : extra;
        uint64_t a = sp.a;
        while (a < sp.b) {
            if (got == max) {
                holes_push(lj, a, sp.b);
                break;
            }
            uint64_t b;
            if (all) {
                b = sp.b;
            } else {
                uint64_t first = scan_marks(marks, a, sp.b, 1);
                holes_push(lj, a, first);
                a = first;
                if (a >= sp.b)
                    break;
                b = scan_marks(marks, a, sp.b, 0);
            }
            if (b - a > max - got)
                b = a + (max - got);
            atomic_thread_fence(memory_order_acquire);
            if (copy)
                copy_out(lp, lj, a, b);
            for (uint64_t i = a; i < b; i++)
                idx[got++] = (size_t)i;
            a = b;
        }
    }
    free(old);
    /* Failures are recorded before their items are marked: read the rings after
     * the marks, so every failure of a returned item is reported. */
    if (copy)
        drain(lp);
    return got;
}

static size_t local_arrivals(rp_pool_t *pool, struct rp__job *job, size_t *idx, size_t max,
                             double timeout)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (max == 0 || !lj)
        return 0;
    double deadline = rp__deadline(timeout);
    double t0 = rp__now();
    for (;;) {
        int j = atomic_load(&lj->slot);
        uint32_t seq = j >= 0 ? atomic_load(&lp->hdr->slots[j].tseq) : 0;
        bool done = job_done(lj, lp);
        pthread_mutex_lock(&lp->drain_lock);
        size_t got = collect(lp, lj, idx, max, false);
        if (!got && done)
            got = collect(lp, lj, idx, max, true);
        pthread_mutex_unlock(&lp->drain_lock);
        if (got || done)
            return got;
        double now = rp__now();
        if (now >= deadline)
            return 0;
        if (j < 0) {
            wait_slot(lp, lj, deadline);
            continue;
        }
        if (now - t0 < SPIN_SECONDS) {
            for (int k = 0; k < 64; k++)
                rp__cpu_relax();
            continue;
        }
        struct rp__slot *s = &lp->hdr->slots[j];
        atomic_fetch_add(&s->twaiters, 1);
        if (atomic_load(&s->tseq) == seq && !job_done(lj, lp))
            rp__futex_wait(&s->tseq, seq, deadline - now);
        atomic_fetch_sub(&s->twaiters, 1);
    }
}

static void local_finish(rp_pool_t *pool, struct rp__job *job)
{
    struct lpool *lp = pool->bdata;
    struct ljob *lj = job->bdata;
    if (!lj)
        return;
    harvest(lp, lj);
    pthread_mutex_lock(&lp->drain_lock);  /* holders of D may be looking at lj */
    pthread_mutex_lock(&lp->lock);
    live_remove(lp, lj);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    pthread_mutex_unlock(&lp->drain_lock);
    free(lj->holes);
    free(lj->sus);
    free(lj->pend);
    free(lj);
    job->bdata = NULL;
}

static int local_close(rp_pool_t *pool)
{
    (void)pool;
    return RP_OK;
}

/* Whether process pid has ended: a zombie, or gone (from /proc/<pid>/stat;
 * without /proc, assumed). */
static bool proc_ended(pid_t pid)
{
    char path[40], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return true;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return true;
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');  /* after the name, which may hold anything */
    return !p || p[1] == '\0' || p[2] == 'Z' || p[2] == 'X';
}

/* terminate when the fork server does not answer (stopped, or hung): the master
 * kills the workers itself. The fork server is stopped first, so that it reaps
 * nothing meanwhile: every pid in the worker slots is then still one of its
 * children (it clears a slot's pid before reaping), alive or a zombie, never a
 * reused pid. Each worker gets SIGKILL (which also ends a stopped process) and is
 * waited for until it is a zombie; then the fork server is killed and reaped, and
 * init reaps the zombies. */
static void kill_workers(struct lpool *lp)
{
    rp__trace("local: the fork server does not answer: killing the workers by pid");
    if (lp->fs_pid > 0)
        kill(lp->fs_pid, SIGSTOP);
    pid_t pids[RP__MAXWORKERS];
    for (int k = 0; k < lp->nworkers; k++) {
        pids[k] = atomic_load(&wslot(lp, k)->pid);
        if (pids[k] > 0)
            kill(pids[k], SIGKILL);
    }
    double end = rp__now() + KILL_WAIT_S;
    for (int k = 0; k < lp->nworkers; k++)
        while (pids[k] > 0 && !proc_ended(pids[k]) && rp__now() < end)
            usleep(1000);
    if (lp->fs_pid > 0) {
        kill(lp->fs_pid, SIGKILL);
        reap_fs(lp);
    }
    pthread_mutex_lock(&lp->lock);
    atomic_store(&lp->fs_gone, true);
    atomic_store(&lp->killed, true);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
}

static int local_terminate(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return RP_OK;
    pthread_mutex_lock(&lp->lock);
    if (atomic_load(&lp->terminating)) {
        pthread_mutex_unlock(&lp->lock);
        return RP_OK;
    }
    atomic_store(&lp->terminating, true);
    pthread_mutex_unlock(&lp->lock);

    /* Every worker killed and reaped by the fork server; if it does not answer
     * within KILL_WAIT_S, by the master (kill_workers). */
    double deadline = rp__now() + KILL_WAIT_S;
    if (!atomic_load(&lp->fs_gone))
        send_fs(lp, RP__FS_KILLALL, -1);
    if (lp->thread_started && pthread_equal(pthread_self(), lp->thread)) {
        /* From a callback on the pool thread: read the answer here. */
        while (!atomic_load(&lp->killed) && !atomic_load(&lp->fs_gone)) {
            double left = deadline - rp__now();
            struct pollfd p = { lp->sock, POLLIN, 0 };
            if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0)
                break;
            struct rp__fs_msg m;
            ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
            if (got == (ssize_t)sizeof m)
                handle_msg(lp, &m);
            else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
                atomic_store(&lp->fs_gone, true);
        }
    }
    pthread_mutex_lock(&lp->lock);
    while (!atomic_load(&lp->killed) && !atomic_load(&lp->fs_gone)) {
        double left = deadline - rp__now();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        double t = (double)ts.tv_sec + ts.tv_nsec * 1e-9 + left;
        ts.tv_sec = (time_t)t;
        ts.tv_nsec = (long)((t - (double)ts.tv_sec) * 1e9);
        pthread_cond_timedwait(&lp->cond, &lp->lock, &ts);
    }
    bool answered = atomic_load(&lp->killed) || atomic_load(&lp->fs_gone);
    pthread_mutex_unlock(&lp->lock);
    if (!answered)
        kill_workers(lp);

    pthread_mutex_lock(&lp->drain_lock);
    cancel_all(lp, RP_ECANCELED, "canceled: the pool was terminated");
    pthread_mutex_unlock(&lp->drain_lock);
    return RP_OK;
}

static void stop_thread(struct lpool *lp)
{
    if (!lp->thread_started)
        return;
    atomic_store(&lp->stopping, true);
    wake_master(lp);
    pthread_join(lp->thread, NULL);
    lp->thread_started = false;
}

static int local_join(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return RP_OK;
    if (atomic_exchange(&lp->shutdown, true) == false) {
        atomic_store(&lp->hdr->shutdown, 1);
        atomic_fetch_add(&lp->hdr->work_seq, 1);
        rp__futex_wake(&lp->hdr->work_seq, INT_MAX);
        if (!atomic_load(&lp->fs_gone))
            send_fs(lp, RP__FS_QUIT, -1);
    }
    reap_fs(lp);
    stop_thread(lp);
    /* Jobs with callbacks completed by terminate still get their call. */
    service(lp);
    return RP_OK;
}

static void local_destroy(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return;
    if (getpid() == pool->owner_pid || pool->owner_pid == 0) {
        if (!atomic_load(&lp->shutdown))
            local_join(pool);
        stop_thread(lp);
        unmap_and_close(lp);
    }
    /* Jobs never finished by the core (should not happen) are dropped. */
    while (lp->live) {
        struct ljob *lj = lp->live;
        live_remove(lp, lj);
        if (lj->job)
            lj->job->bdata = NULL;
        free(lj->holes);
        free(lj->sus);
        free(lj->pend);
        free(lj);
    }
    free_lpool(pool, lp);
}

const struct rp__backend_ops rp__backend_local = {
    .name = "local",
    .start = local_start,
    .submit = local_submit,
    .wait = local_wait,
    .done = local_done,
    .progress = local_progress,
    .finish = local_finish,
    .arrivals = local_arrivals,
    .close = local_close,
    .join = local_join,
    .terminate = local_terminate,
    .destroy = local_destroy,
};
