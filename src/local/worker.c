/* A local worker process: claims chunks (claim.c), runs them in place in the
 * arena, reports failures through its error ring, counts what it processed, and
 * when idle spins briefly, then sleeps on a futex. It takes no lock and calls
 * nothing in the master: it shares only atomics with it. */
#include "claim.h"

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SPIN_SECONDS 50e-6 /* spin before sleeping (a futex wake costs ~40 us) */

/* The chunk being run: the slot's parameters, copied once per chunk. */
struct chunk {
    int        slot;
    uint32_t   gen, flags;
    rp_task_fn fn;
    uint64_t   start, len, in_size, out_size, in_off, out_off, mark_off, index_base;
    uint64_t   timeout_ns;
    uint32_t   retries;
};

struct wctx {
    struct lpool     *lp;
    struct rp__hdr   *hdr;
    struct rp__wslot *ws;
    int               k;          /* this worker's number */
    long              max_tasks;
    rp_ctx_t          ctx;
    struct chunk      c;
    long              claims;
    long              die_at;     /* tests: see RP_TEST_DIE_IN_CLAIM */
    long              die_counted; /* tests: see RP_TEST_DIE_AFTER_COUNT */
    long              chunks;
};

static void worker_exit(struct wctx *w, int status)
{
    fflush(stdout);
    fflush(stderr);
    rp__region_exit(&w->lp->conf, status);
}

/* Failed items [e->index, + count): their record goes into this worker's ring,
 * before they are counted (the master drains the rings before it delivers). */
static void ring_push(struct wctx *w, const rp_error_t *e, uint64_t count)
{
    struct rp__wslot *ws = w->ws;
    uint32_t h = atomic_load_explicit(&ws->head, memory_order_relaxed);
    for (;;) {
        uint32_t t = atomic_load_explicit(&ws->tail, memory_order_acquire);
        if (h - t < RP__RING)
            break;
        atomic_store(&ws->full, 1);
        rp__local_wake_master(w->lp);
        if (atomic_load(&ws->tail) == t)
            rp__futex_wait(&ws->tail, t, 0.1);
    }
    struct rp__ring_entry *ent = &ws->ring[h % RP__RING];
    ent->slot = (uint32_t)w->c.slot;
    ent->gen = w->c.gen;
    ent->count = count;
    ent->e = *e;
    atomic_store_explicit(&ws->head, h + 1, memory_order_release);
}

/* A failed item (rp__worker_run's report). */
static void on_fail(void *arg, const rp_error_t *e)
{
    struct wctx *w = arg;
    if (w->c.flags & RP__JOB_VAR) { /* no output, whatever it set */
        uint64_t *vs = (uint64_t *)(w->lp->arena + w->c.out_off + e->index * 16);
        vs[0] = vs[1] = 0;
    }
    ring_push(w, e, 1);
}

/* The job was canceled while this worker held [c->start + ran, end) of it:
 * those items did not start; they fail with RP_ECANCELED, counted as the chunk. */
static void cancel_rest(struct wctx *w, uint64_t ran)
{
    struct chunk *c = &w->c;
    atomic_store_explicit(&w->ws->cur, (size_t)(c->start + ran), memory_order_release);
    rp_error_t e;
    rp__cancel_error(&e, c->start + ran, w->k, w->ctx.host, false);
    ring_push(w, &e, c->len - ran);
}

/* Leaving a chunk while the master decides whether to kill this worker (it saw
 * the chunk's job canceled with RP_CANCEL_KILL): waits for its decision. */
static void await_kill_decision(struct rp__wslot *ws)
{
    uint32_t v;
    while ((v = atomic_load(&ws->killreq)) != 0)
        rp__futex_wait(&ws->killreq, v, 0.1);
}

/* rp_output() inside a worker: room in the shared var heap; the item's slot in
 * the arena records (offset + 1, size). */
static void *var_output(void *arg, size_t index, size_t size)
{
    struct wctx *w = arg;
    struct lpool *lp = w->lp;
    if (size > lp->var_size) /* can never fit; also keeps the round-up from wrapping */
        return NULL;
    int64_t off = rp__local_var_alloc(lp, w->c.slot, w->c.gen, rp__align_up(size ? size : 1, 16));
    if (off < 0)
        return NULL;
    uint64_t *vs = (uint64_t *)(lp->arena + w->c.out_off + index * 16);
    vs[0] = (uint64_t)off + 1;
    vs[1] = size;
    return lp->var + off;
}

/* The claimed chunk's start and length come in registers: read back from the
 * claim record just written, they would wait for those stores. */
static void load_chunk(struct wctx *w, int j, uint64_t start, uint64_t len)
{
    struct rp__slot *s = &w->hdr->slots[j];
    struct chunk *c = &w->c;
    c->slot = j;
    c->gen = s->gen;
    c->flags = s->flags;
    c->fn = s->fn;
    c->start = start;
    c->len = len;
    c->in_size = s->in_size;
    c->out_size = s->out_size;
    c->in_off = s->in_off;
    c->out_off = s->out_off;
    c->mark_off = s->mark_off;
    c->timeout_ns = s->timeout_ns;
    c->retries = s->retries;
    c->index_base = s->index_base;
}

static void run_chunk(struct wctx *w)
{
    struct lpool *lp = w->lp;
    struct rp__wslot *ws = w->ws;
    struct chunk *c = &w->c;
    bool var = c->flags & RP__JOB_VAR;
    w->ctx.output = var ? var_output : NULL;
    w->ctx.output_arg = w;
    w->ctx.index_base = (size_t)c->index_base;
    const char *in = lp->arena + c->in_off + c->start * c->in_size;
    char *out = (var || c->out_size == 0) ? NULL : lp->arena + c->out_off + c->start * c->out_size;
    w->ctx.stop = &w->hdr->slots[c->slot].cancel; /* rp_result_cancel */
    if (c->flags & RP__JOB_BATCH) { /* batch tasks: no per-item stop or time limit */
        w->ctx.ran = c->len;
        rp__worker_run_batch(&w->ctx, c->fn, in, c->in_size, out, var ? 0 : c->out_size,
                             c->start, c->len, &ws->cur, on_fail, w);
    } else if (__builtin_expect(c->timeout_ns || c->retries, 0)) { /* a time limit, retries */
        rp__runctl rc = { &ws->deadline, c->timeout_ns, c->retries };
        rp__worker_run_ctl(&w->ctx, c->fn, in, c->in_size, out, var ? 0 : c->out_size,
                           c->start, c->len, &ws->cur, on_fail, w, &rc);
    } else {
        rp__worker_run(&w->ctx, c->fn, in, c->in_size, out, var ? 0 : c->out_size, c->start,
                       c->len, &ws->cur, on_fail, w);
    }
    uint64_t ran = w->ctx.ran;
    if (__builtin_expect(ran < c->len, 0))
        cancel_rest(w, ran);
    atomic_store_explicit(&ws->cur, (size_t)(c->start + c->len), memory_order_release);
    if (c->flags & RP__JOB_TRACK) {
        atomic_thread_fence(memory_order_release);
        memset(lp->arena + c->mark_off + c->start, RP__MARK_ARRIVED, c->len);
    }
    atomic_store_explicit(&ws->done[c->slot], ws->hbase + c->len, memory_order_release);
    atomic_store_explicit(&ws->hstate, RP__H_NONE, memory_order_release);
    if (__builtin_expect(w->die_counted > 0, 0) && ++w->chunks == w->die_counted)
        raise(SIGKILL); /* tests: counted, before the completion check */
    ws->processed += ran;
    struct rp__slot *s = &w->hdr->slots[c->slot];
    if (c->flags & RP__JOB_TRACK) {
        atomic_fetch_add(&s->tseq, 1);
        if (atomic_load(&s->twaiters))
            rp__futex_wake(&s->tseq, INT_MAX);
    }
    /* Between publishing done[] and looking at the ranges: without it the CPU may
     * read the ranges first (store-load reordering), see items still unclaimed,
     * and skip the completion check, while the worker that claims them reads
     * done[] before this store is visible. Neither completes: a lost job. */
    atomic_thread_fence(memory_order_seq_cst);
    /* (the fence also orders the claim record's release before this look) */
    if (__builtin_expect(atomic_load_explicit(&ws->killreq, memory_order_relaxed) != 0, 0))
        await_kill_decision(ws);
    if (rp__local_slot_exhausted(s)) {
        rp__local_check_complete(lp, c->slot, c->gen);
        if (atomic_load(&s->suspect))
            rp__local_wake_master(lp); /* the master may have to resolve a dead claimer */
    }
}

/* Nothing to claim: spin a little (a futex wake costs tens of µs), then sleep
 * until work_seq moves. Only as many spin as there are cores to spare. Worker k
 * shows itself in the idle masks meanwhile (whoever makes work wakes by them),
 * and the CPU it spins on (rp__local_seen_on). give: a waiter gave this CPU up for
 * the chunk just run; it gets it back first. */
static void idle(struct rp__hdr *hdr, int k, uint32_t seq, bool give)
{
    _Atomic uint64_t *spinning = &hdr->spinning[k / 64], *sleeping = &hdr->sleeping[k / 64];
    uint64_t bit = UINT64_C(1) << (k % 64);
    double t0 = rp__now();
    bool moved = false;
    rp__local_seen_on(hdr, k, sched_getcpu());
    atomic_fetch_or(spinning, bit);
    if (give) /* seen spinning: whoever submits next need not wake a sleeper */
        sched_yield();
    bool spin = rp__local_idle_count(hdr->spinning, hdr->idlew) <= hdr->max_spin;
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
            rp__local_seen_on(hdr, k, sched_getcpu()); /* it may have moved meanwhile */
        }
    }
    atomic_fetch_and(spinning, ~bit);
    if (moved)
        return;
    atomic_fetch_or(sleeping, bit);
    if (atomic_load(&hdr->work_seq) == seq && !atomic_load(&hdr->shutdown))
        rp__futex_wait(&hdr->work_seq, seq, -1);
    atomic_fetch_and(sleeping, ~bit);
}

static void worker_loop(struct wctx *w)
{
    struct rp__hdr *hdr = w->hdr;
    bool give = false; /* see idle() */
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
        uint64_t start, len;
        int j = rp__local_claim(w->lp, w->ws, budget, &w->claims, w->die_at, &start, &len);
        if (j >= 0) {
            rp__local_seen_on(hdr, w->k, sched_getcpu());
            load_chunk(w, j, start, len);
            run_chunk(w);
            /* (the slot may hold another job by now: its ycpu is -1 then) */
            int ycpu = atomic_load_explicit(&hdr->slots[j].ycpu, memory_order_relaxed);
            give = ycpu >= 0 && ycpu == sched_getcpu();
            continue;
        }
        idle(hdr, w->k, seq, give);
        give = false;
    }
}

/* Entry of a worker process (called by the fork server's child). */
void rp__local_worker_main(void *arg, int k)
{
    struct lpool *lp = arg;
    rp_pool_t *pool = lp->pool;
    struct wctx w;
    memset(&w, 0, sizeof w);
    w.lp = lp;
    w.hdr = lp->hdr;
    w.ws = rp__wslot_of(lp, k);
    w.k = k;
    w.max_tasks = pool->opts.max_tasks_per_worker;
    /* Tests only: worker 0 kills itself inside its N-th claim, after the CAS
     * (N > 0) or just before it (N < 0), where no task can crash. */
    const char *die = getenv("RP_TEST_DIE_IN_CLAIM");
    if (die && k == 0)
        w.die_at = atol(die);
    /* Tests only: worker 0 kills itself after counting its N-th chunk, before it
     * looks whether the job is complete. */
    const char *counted = getenv("RP_TEST_DIE_AFTER_COUNT");
    if (counted && k == 0)
        w.die_counted = atol(counted);
    w.ws->processed = 0;
    atomic_store(&w.ws->deadline, 0);
    atomic_store(&w.ws->hstate, RP__H_NONE);
    atomic_store(&w.ws->killreq, 0);
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
            rp__local_wake_master(lp);
            worker_exit(&w, 0);
        }
    }
    atomic_store(&w.ws->life, RP__W_READY);
    if (atomic_load(&lp->hdr->init_report))
        rp__local_wake_master(lp);
    worker_loop(&w);
}
