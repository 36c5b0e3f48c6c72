/* The scheduler (src/sched.c): every decision checked against simulated workers
 * on a simulated clock, so that the tests are exact and independent of the
 * machine's load. Covered: every item handed out once; chunk lengths (fixed,
 * guided, cost floor, caps, budget); oldest job first; an idle worker before a
 * busy one (a job submitted while one worker is busy starts at once on the
 * idle one); never a worker idle while a job has unclaimed items; put-back
 * items first; withdraw; lost workers; the local workers' wake policy (a burst
 * of one-item jobs spreads over the workers); and the default worker count. */
#define _GNU_SOURCE /* CPU_SET, sched_setaffinity */
#include "testutil.h"
#include "internal.h"
#include "scheduler.h"

#include <math.h>
#include <sched.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

/* The two transports' settings, as the backends use them. */
static const rp__sched_conf mpi_conf = {
    .depth = 4, .depth_long = 2, .short_s = 100e-6, .min_s = 200e-6,
    .max_items = 1u << 18, .max_bytes = 4u << 20,
};
static const rp__sched_conf one_conf = { .depth = 1 };

/* ---- a simulated dispatching transport -------------------------------------------- */

#define SIM_W 64
#define SIM_J 128
#define SIM_Q 8

struct sjob {
    rp__sjob  sj;
    double    item_s;          /* cost of each item */
    double    arrive;          /* submission time */
    uint64_t  n;
    unsigned char *hits;       /* per item: times handed out */
    double    first_start, end;
    int       first_worker;
    uint64_t  done;
};

struct batch {
    struct sjob *job;
    uint64_t     start, len;
};

struct sworker {
    struct batch q[SIM_Q];
    int          head, n;
    double       started;      /* of the head batch */
    bool         alive;
};

struct sim {
    rp__sched      s;
    double         now;
    int            nw;
    struct sworker w[SIM_W];
    struct sjob   *jobs[SIM_J];
    int            njobs, next_arrival;
    int            idle_while_work;  /* decisions that left a worker idle */
    int            overheld;         /* a worker holding more than the depth */
    uint64_t       batches;
};

static void sim_init(struct sim *m, const rp__sched_conf *c, int nw)
{
    memset(m, 0, sizeof *m);
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&m->s, c, (uint32_t)nw), 0);
    m->nw = nw;
    for (int i = 0; i < nw; i++)
        m->w[i].alive = true;
}

static struct sjob *sim_job(struct sim *m, uint64_t n, uint64_t chunksize, double item_s,
                            double arrive)
{
    struct sjob *j = calloc(1, sizeof *j);
    j->n = n;
    j->item_s = item_s;
    j->arrive = arrive;
    j->hits = calloc(n ? n : 1, 1);
    j->first_start = -1;
    j->first_worker = -1;
    j->sj.chunksize = chunksize; /* kept until added */
    m->jobs[m->njobs++] = j;
    return j;
}

static double batch_time(const struct batch *b)
{
    return b->job->item_s * (double)b->len;
}

/* Sends what the scheduler gives, as a transport would after every event. */
static void sim_dispatch(struct sim *m)
{
    rp__pick p;
    while (rp__sched_next(&m->s, &p)) {
        struct sjob *j = (struct sjob *)p.job; /* sj is the first member */
        struct sworker *w = &m->w[p.worker];
        CU_ASSERT_FATAL(w->alive);
        CU_ASSERT_FATAL(p.len > 0 && p.start + p.len <= j->n);
        if (w->n >= (int)m->s.conf.depth) {
            m->overheld++;
            break;
        }
        for (uint64_t i = p.start; i < p.start + p.len; i++)
            j->hits[i]++;
        if (w->n == 0)
            w->started = m->now;
        w->q[(w->head + w->n) % SIM_Q] = (struct batch){ j, p.start, p.len };
        w->n++;
        m->batches++;
    }
    if (rp__sched_has_work(&m->s))
        for (int i = 0; i < m->nw; i++)
            if (m->w[i].alive && m->w[i].n == 0)
                m->idle_while_work++;
}

/* Runs until every job has arrived and every batch is done. */
static void sim_run(struct sim *m)
{
    for (;;) {
        /* the next event: an arrival or the end of a head batch */
        double t_arr = INFINITY, t_end = INFINITY;
        int wend = -1;
        if (m->next_arrival < m->njobs)
            t_arr = m->jobs[m->next_arrival]->arrive;
        for (int i = 0; i < m->nw; i++) {
            struct sworker *w = &m->w[i];
            if (!w->alive || w->n == 0)
                continue;
            double e = w->started + batch_time(&w->q[w->head]);
            if (e < t_end) {
                t_end = e;
                wend = i;
            }
        }
        if (isinf(t_arr) && wend < 0)
            return;
        if (t_arr <= t_end) {
            struct sjob *j = m->jobs[m->next_arrival++];
            m->now = t_arr;
            uint64_t cs = j->sj.chunksize;
            rp__sched_add(&m->s, &j->sj, (uint64_t)m->next_arrival, j->n, cs, 16);
            sim_dispatch(m);
            continue;
        }
        m->now = t_end;
        struct sworker *w = &m->w[wend];
        struct batch b = w->q[w->head];
        w->head = (w->head + 1) % SIM_Q;
        w->n--;
        w->started = m->now;
        double began = m->now - batch_time(&b);
        if (b.job->first_start < 0 || began < b.job->first_start) {
            b.job->first_start = began;
            b.job->first_worker = wend;
        }
        b.job->done += b.len;
        if (b.job->done == b.job->n)
            b.job->end = m->now;
        rp__sched_finished(&m->s, (uint32_t)wend, &b.job->sj, b.len, batch_time(&b));
        sim_dispatch(m);
    }
}

static int sim_bad_hits(struct sim *m)
{
    int bad = 0;
    for (int k = 0; k < m->njobs; k++)
        for (uint64_t i = 0; i < m->jobs[k]->n; i++)
            bad += m->jobs[k]->hits[i] != 1;
    return bad;
}

static void sim_free(struct sim *m)
{
    for (int k = 0; k < m->njobs; k++) {
        rp__sched_remove(&m->s, &m->jobs[k]->sj);
        free(m->jobs[k]->hits);
        free(m->jobs[k]);
    }
    rp__sched_close(&m->s);
}

/* ---- chunk lengths ----------------------------------------------------------------------- */

static void test_scheduler_len_fixed(void)
{
    rp__sched_conf c = { .depth = 1 };
    CU_ASSERT_EQUAL(rp__sched_len(&c, 10, 3, 4, 1, 0, 8, false, 0), 3);
    CU_ASSERT_EQUAL(rp__sched_len(&c, 2, 3, 4, 1, 0, 8, false, 0), 2);   /* last one short */
    CU_ASSERT_EQUAL(rp__sched_len(&c, 3, 100, 4, 1, 0, 8, false, 0), 3); /* chunk > n */
    CU_ASSERT_EQUAL(rp__sched_len(&c, 0, 3, 4, 1, 0, 8, false, 0), 0);
    CU_ASSERT_EQUAL(rp__sched_len(&c, 100, 10, 2, 1, 0, 8, false, 4), 4); /* budget */
    /* grouped whole chunks, up to the guided target */
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 7, 1, 4, 0, 8, true, 0), 119);
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 7, 1, 4, 0, 8, false, 0), 7);
}

static void test_scheduler_len_guided(void)
{
    rp__sched_conf c = { .depth = 1 };
    CU_ASSERT_EQUAL(rp__sched_len(&c, 100, 0, 2, 1, 0, 8, false, 0), 25);
    CU_ASSERT_EQUAL(rp__sched_len(&c, 9, 0, 2, 1, 0, 8, false, 0), 3); /* ceil(9/4) */
    CU_ASSERT_EQUAL(rp__sched_len(&c, 1, 0, 8, 1, 0, 8, false, 0), 1);
    CU_ASSERT_EQUAL(rp__sched_len(&c, 100, 0, 0, 1, 0, 8, false, 0), 50); /* 0 workers = 1 */
    CU_ASSERT_EQUAL(rp__sched_len(&c, UINT64_MAX, 0, 1, 1, 0, 0, false, 0),
                    UINT64_MAX / 2 + 1);
    /* over a whole job: never growing, single items at the end, few claims */
    uint64_t rem = 100000, prev = UINT64_MAX, k = 0, last = 0;
    int grew = 0;
    while (rem > 0) {
        uint64_t len = rp__sched_len(&c, rem, 0, 4, 1, 0, 8, false, 0);
        grew += len > prev;
        prev = last = len;
        rem -= len;
        k++;
    }
    CU_ASSERT_EQUAL(grew, 0);
    CU_ASSERT_EQUAL(last, 1);
    CU_ASSERT_TRUE(k < 200);
}

static void test_scheduler_len_cost_floor_and_caps(void)
{
    /* 1 us items: at least 200 us of work once the cost is known */
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 0, 2, 4, 1e-6, 8, true, 0), 200);
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 0, 2, 4, 0, 8, true, 0), 63);
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 150, 0, 2, 4, 1e-6, 8, true, 0), 150);
    /* caps: items, then bytes (4 MiB of 1 MiB items: 4) */
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, UINT64_C(1) << 40, 0, 1, 1, 0, 1, true, 0),
                    UINT64_C(1) << 18);
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 0, 1, 1, 0, 1 << 20, true, 0), 4);
    CU_ASSERT_EQUAL(rp__sched_len(&mpi_conf, 1000, 0, 1, 1, 0, 64 << 20, true, 0), 1);
}

static void test_scheduler_depth(void)
{
    CU_ASSERT_EQUAL(rp__sched_depth(&mpi_conf, 0), 2);     /* cost unknown */
    CU_ASSERT_EQUAL(rp__sched_depth(&mpi_conf, 1e-3), 2);  /* long batches */
    CU_ASSERT_EQUAL(rp__sched_depth(&mpi_conf, 50e-6), 4); /* short: cover the trip */
    CU_ASSERT_EQUAL(rp__sched_depth(&one_conf, 50e-6), 1);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

static void test_scheduler_every_item_once(void)
{
    const uint64_t cs[] = { 0, 1, 3, 1000 };
    for (size_t k = 0; k < sizeof cs / sizeof *cs; k++) {
        struct sim m;
        sim_init(&m, &mpi_conf, 3);
        sim_job(&m, 10007, cs[k], 1e-6, 0);
        sim_job(&m, 5, cs[k], 1e-3, 0);
        sim_job(&m, 1, cs[k], 0.1, 1e-3);
        sim_run(&m);
        CU_ASSERT_EQUAL(sim_bad_hits(&m), 0);
        CU_ASSERT_EQUAL(m.idle_while_work, 0);
        CU_ASSERT_EQUAL(m.overheld, 0);
        CU_ASSERT_FALSE(rp__sched_has_work(&m.s));
        sim_free(&m);
    }
}

static void test_scheduler_oldest_job_first(void)
{
    struct sim m;
    sim_init(&m, &one_conf, 1);
    struct sjob *a = sim_job(&m, 4, 1, 1.0, 0);
    struct sjob *b = sim_job(&m, 4, 1, 1.0, 0.5);
    sim_run(&m);
    /* one worker: all of the older job before any of the newer */
    CU_ASSERT_DOUBLE_EQUAL(a->end, 4.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(b->first_start, 4.0, 1e-9);
    CU_ASSERT_EQUAL(sim_bad_hits(&m), 0);
    sim_free(&m);

    uint64_t ids[4 * 8] = { 0 };
    ids[0] = 9, ids[8] = 4, ids[16] = 7, ids[24] = 2;
    CU_ASSERT_EQUAL(rp__sched_oldest(0xF, ids, 8 * sizeof *ids), 3);
    CU_ASSERT_EQUAL(rp__sched_oldest(0x7, ids, 8 * sizeof *ids), 1);
    CU_ASSERT_EQUAL(rp__sched_oldest(0, ids, 8 * sizeof *ids), -1);
}

/* Two 0.5 s applies on 2 workers run side by side (1.0 s if queued behind each
 * other on one worker). */
static void test_scheduler_apply_pair_uses_both_workers(void)
{
    struct sim m;
    sim_init(&m, &mpi_conf, 2);
    struct sjob *a = sim_job(&m, 1, 0, 0.5, 0);
    struct sjob *b = sim_job(&m, 1, 0, 0.5, 0);
    sim_run(&m);
    CU_ASSERT_NOT_EQUAL(a->first_worker, b->first_worker);
    CU_ASSERT_DOUBLE_EQUAL(fmax(a->end, b->end), 0.5, 1e-9);
    sim_free(&m);
}

/* A 0 s job submitted 100 ms after a 0.5 s one starts at once on the idle worker. */
static void test_scheduler_new_job_goes_to_idle_worker(void)
{
    struct sim m;
    sim_init(&m, &mpi_conf, 2);
    struct sjob *a = sim_job(&m, 1, 0, 0.5, 0);
    struct sjob *b = sim_job(&m, 1, 0, 0, 0.1);
    sim_run(&m);
    CU_ASSERT_DOUBLE_EQUAL(b->first_start, 0.1, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(b->end, 0.1, 1e-9);
    CU_ASSERT_NOT_EQUAL(a->first_worker, b->first_worker);
    sim_free(&m);
}

/* Rounds of 4 one-item applies of 0.15 s on 2 workers: 0.30 s per round. */
static void test_scheduler_apply_bursts_balanced(void)
{
    struct sim m;
    sim_init(&m, &mpi_conf, 2);
    struct sjob *j[20][4];
    for (int r = 0; r < 20; r++)
        for (int k = 0; k < 4; k++)
            j[r][k] = sim_job(&m, 1, 0, 0.15, r * 0.30 + k * 1e-6);
    sim_run(&m);
    int slow = 0;
    for (int r = 0; r < 20; r++) {
        double end = 0;
        for (int k = 0; k < 4; k++)
            end = fmax(end, j[r][k]->end);
        slow += end - r * 0.30 > 0.30 * 1.1;
    }
    CU_ASSERT_EQUAL(slow, 0);
    CU_ASSERT_EQUAL(m.idle_while_work, 0);
    sim_free(&m);
}

/* Imbalanced items: nobody sits idle while anything is unclaimed, and the
 * makespan is close to the ideal (total work / workers + the longest item). */
static void test_scheduler_no_idle_worker_with_work(void)
{
    struct sim m;
    sim_init(&m, &mpi_conf, 4);
    double total = 0, longest = 0;
    for (int k = 0; k < 12; k++) {
        double cost = 1e-4 * (1 + (k * 7919) % 13);
        uint64_t n = 50 + (uint64_t)((k * 104729) % 400);
        sim_job(&m, n, k % 3 == 0 ? 5 : 0, cost, k * 1e-3);
        total += cost * (double)n;
        longest = fmax(longest, cost * (k % 3 == 0 ? 5 : 1));
    }
    sim_run(&m);
    double end = 0;
    for (int k = 0; k < m.njobs; k++)
        end = fmax(end, m.jobs[k]->end);
    CU_ASSERT_EQUAL(m.idle_while_work, 0);
    CU_ASSERT_EQUAL(sim_bad_hits(&m), 0);
    CU_ASSERT_TRUE(end <= total / 4 + 12e-3 + 4 * longest);
    sim_free(&m);
}

static void test_scheduler_guided_batches(void)
{
    /* 1M trivial items on 2 workers: few batches, each of at least the cost floor
     * once the cost is known */
    struct sim m;
    sim_init(&m, &mpi_conf, 2);
    sim_job(&m, 1000000, 0, 2e-9, 0);
    sim_run(&m);
    CU_ASSERT_EQUAL(sim_bad_hits(&m), 0);
    CU_ASSERT_TRUE(m.batches < 60);
    sim_free(&m);
    /* long items: the tail is single items */
    sim_init(&m, &mpi_conf, 2);
    struct sjob *j = sim_job(&m, 2000, 0, 1e-3, 0);
    sim_run(&m);
    CU_ASSERT_EQUAL(sim_bad_hits(&m), 0);
    CU_ASSERT_TRUE(j->end <= 1.0 + 2e-3);  /* 2000 ms of work on 2 workers */
    sim_free(&m);
}

static void test_scheduler_putback_runs_first(void)
{
    rp__sched s;
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&s, &one_conf, 2), 0);
    rp__sjob a, b;
    rp__sched_add(&s, &a, 1, 10, 2, 8);
    rp__pick p;
    CU_ASSERT_TRUE(rp__sched_next(&s, &p));
    CU_ASSERT_EQUAL(p.worker, 0);
    CU_ASSERT_EQUAL(p.start, 0);
    CU_ASSERT_EQUAL(p.len, 2);
    rp__sched_add(&s, &b, 2, 10, 2, 8);
    /* worker 0 died while running item 0: item 1 runs again, before anything */
    rp__sched_worker_lost(&s, 0);
    CU_ASSERT_EQUAL(rp__sched_putback(&s, &a, 1, 2), 0);
    CU_ASSERT_TRUE(rp__sched_next(&s, &p));
    CU_ASSERT_EQUAL(p.worker, 1);
    CU_ASSERT_PTR_EQUAL(p.job, &a);
    CU_ASSERT_EQUAL(p.start, 1);
    CU_ASSERT_EQUAL(p.len, 1);
    /* worker 1 holds one batch (depth 1): nothing more until it finishes */
    CU_ASSERT_FALSE(rp__sched_next(&s, &p));
    rp__sched_finished(&s, 1, &a, 1, 0.01);
    CU_ASSERT_TRUE(rp__sched_next(&s, &p));
    CU_ASSERT_PTR_EQUAL(p.job, &a);
    CU_ASSERT_EQUAL(p.start, 2);
    /* a putback into a job whose fresh items were all taken puts it back in line */
    rp__sched_finished(&s, 1, &a, 2, 0.02);
    while (a.remaining > 0) {
        CU_ASSERT_TRUE(rp__sched_next(&s, &p));
        rp__sched_finished(&s, p.worker, p.job, p.len, 0);
    }
    CU_ASSERT_EQUAL(rp__sched_putback(&s, &a, 4, 6), 0);
    CU_ASSERT_TRUE(rp__sched_next(&s, &p));
    CU_ASSERT_PTR_EQUAL(p.job, &a);
    CU_ASSERT_EQUAL(p.start, 4);
    CU_ASSERT_EQUAL(p.len, 2);
    rp__sched_remove(&s, &a);
    rp__sched_remove(&s, &b);
    rp__sched_close(&s);
}

struct spans { uint64_t a[8], b[8]; int n; };
static void collect_span(void *arg, uint64_t a, uint64_t b)
{
    struct spans *sp = arg;
    sp->a[sp->n] = a;
    sp->b[sp->n++] = b;
}

static void test_scheduler_withdraw(void)
{
    rp__sched s;
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&s, &mpi_conf, 1), 0);
    rp__sjob a;
    rp__sched_add(&s, &a, 1, 100, 10, 8);
    rp__pick p;
    CU_ASSERT_TRUE(rp__sched_next(&s, &p)); /* [0, 10) or more: whole chunks */
    uint64_t taken = p.len;
    CU_ASSERT_EQUAL(taken % 10, 0);
    rp__sched_putback(&s, &a, 3, 5);
    struct spans sp = { .n = 0 };
    rp__sched_withdraw(&s, &a, collect_span, &sp);
    CU_ASSERT_EQUAL(sp.n, 2);
    CU_ASSERT_EQUAL(sp.a[0], 3);
    CU_ASSERT_EQUAL(sp.b[0], 5);
    CU_ASSERT_EQUAL(sp.a[1], taken);
    CU_ASSERT_EQUAL(sp.b[1], 100);
    CU_ASSERT_FALSE(rp__sched_has_work(&s));
    CU_ASSERT_FALSE(rp__sched_next(&s, &p));
    rp__sched_remove(&s, &a);
    rp__sched_close(&s);
}

static void test_scheduler_lost_workers(void)
{
    rp__sched s;
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&s, &mpi_conf, 3), 0);
    rp__sjob a;
    rp__sched_add(&s, &a, 1, 1000, 1, 8);
    rp__sched_worker_lost(&s, 0);
    rp__sched_worker_lost(&s, 2);
    rp__pick p;
    int picks = 0;
    while (rp__sched_next(&s, &p)) {
        CU_ASSERT_EQUAL(p.worker, 1);
        picks++;
    }
    CU_ASSERT_EQUAL(picks, 2); /* cost unknown: two in flight */
    rp__sched_worker_lost(&s, 1);
    CU_ASSERT_EQUAL(s.alive, 0);
    CU_ASSERT_FALSE(rp__sched_next(&s, &p));
    rp__sched_worker_back(&s, 2);
    CU_ASSERT_TRUE(rp__sched_next(&s, &p));
    CU_ASSERT_EQUAL(p.worker, 2);
    rp__sched_remove(&s, &a);
    rp__sched_close(&s);
}

/* 10,000 workers, 10,000 one-item jobs: each worker gets exactly one. */
static void test_scheduler_many_workers_one_each(void)
{
    enum { W = 10000 };
    rp__sched s;
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&s, &mpi_conf, W), 0);
    rp__sjob *j = calloc(W, sizeof *j);
    unsigned char *got = calloc(W, 1);
    for (int k = 0; k < W; k++)
        rp__sched_add(&s, &j[k], (uint64_t)k + 1, 1, 0, 8);
    rp__pick p;
    int n = 0, twice = 0;
    while (rp__sched_next(&s, &p)) {
        twice += got[p.worker]++ > 0;
        n++;
    }
    CU_ASSERT_EQUAL(n, W);
    CU_ASSERT_EQUAL(twice, 0);
    for (int k = 0; k < W; k++)
        rp__sched_remove(&s, &j[k]);
    free(j);
    free(got);
    rp__sched_close(&s);
}

/* Random put-backs and lost workers: still every item exactly once. */
static void test_scheduler_random_putbacks_cover(void)
{
    rp__sched s;
    CU_ASSERT_EQUAL_FATAL(rp__sched_open(&s, &mpi_conf, 5), 0);
    enum { J = 6, N = 3000 };
    rp__sjob j[J];
    unsigned char *hits[J];
    for (int k = 0; k < J; k++) {
        rp__sched_add(&s, &j[k], (uint64_t)k + 1, N, k % 2 ? 0 : (uint64_t)k + 1, 8);
        hits[k] = calloc(N, 1);
    }
    unsigned seed = 12345;
    rp__pick held[5][4];
    int nheld[5] = { 0 };
    for (int step = 0; step < 200000; step++) {
        rp__pick p;
        while (rp__sched_next(&s, &p))
            held[p.worker][nheld[p.worker]++] = p;
        bool any = false;
        for (int w = 0; w < 5; w++)
            any |= nheld[w] > 0;
        if (!any)
            break;
        seed = seed * 1103515245 + 12345;
        int w = (int)((seed >> 16) % 5);
        if (nheld[w] == 0)
            continue;
        rp__pick b = held[w][0];
        memmove(&held[w][0], &held[w][1], (size_t)(nheld[w] - 1) * sizeof b);
        nheld[w]--;
        int k = (int)(b.job - j);
        if ((seed >> 8) % 17 == 0 && b.len > 1) {
            /* died half-way: the first part ran, the rest runs again */
            uint64_t half = b.len / 2;
            for (uint64_t i = b.start; i < b.start + half; i++)
                hits[k][i]++;
            rp__sched_putback(&s, b.job, b.start + half, b.start + b.len);
            rp__sched_finished(&s, (uint32_t)w, b.job, half, 0);
        } else {
            for (uint64_t i = b.start; i < b.start + b.len; i++)
                hits[k][i]++;
            rp__sched_finished(&s, (uint32_t)w, b.job, b.len, 1e-6 * (double)b.len);
        }
    }
    int bad = 0;
    for (int k = 0; k < J; k++) {
        for (int i = 0; i < N; i++)
            bad += hits[k][i] != 1;
        free(hits[k]);
        rp__sched_remove(&s, &j[k]);
    }
    CU_ASSERT_EQUAL(bad, 0);
    rp__sched_close(&s);
}

/* ---- the local workers' wake policy ---------------------------------------------------------
 * Local workers claim by themselves; an idle one spins for a while, then sleeps
 * on a futex. A submit wakes sleepers by rp__sched_wake_on_submit; a claimer that
 * still sees work passes a wake on by rp__sched_wake_after_claim. Simulated here
 * with the same delays as on real cores: a spinner notices new work after
 * `notice`, a sleeper runs `wake` after being woken. */

enum { L_SPIN, L_SLEEP, L_WAKING, L_RUN };

struct lsim {
    int    state[4];
    double at[4];        /* L_SPIN: notices work at; L_WAKING: runs at; L_RUN: ends at */
    int    job_of[4];
    double end[16];
    int    ran_on[16];
    int    next_job, njobs;
    double submit_at[16];
    bool   cascade;      /* the claim-time wake (the policy) or not (the old code) */
};

static int l_count(const struct lsim *l, int st, int nw)
{
    int c = 0;
    for (int i = 0; i < nw; i++)
        c += l->state[i] == st;
    return c;
}

static void l_claim(struct lsim *l, int w, double now, double item_s, int nw)
{
    int k = l->next_job++;
    l->job_of[w] = k;
    l->ran_on[k] = w;
    l->state[w] = L_RUN;
    l->at[w] = now + item_s;
    bool more = l->next_job < l->njobs && l->submit_at[l->next_job] <= now;
    if (l->cascade && rp__sched_wake_after_claim(more, (uint32_t)l_count(l, L_SPIN, nw),
                                                 (uint32_t)l_count(l, L_SLEEP, nw)))
        for (int i = 0; i < nw; i++)
            if (l->state[i] == L_SLEEP) {
                l->state[i] = L_WAKING;
                l->at[i] = now + 40e-6;
                break;
            }
}

/* njobs one-item jobs of item_s seconds, submitted 1 us apart; worker 0 spins,
 * worker 1 sleeps. Returns the time the last one ends. */
static double local_burst(bool cascade, int njobs, double item_s)
{
    const int nw = 2;
    const double notice = 5e-6;
    struct lsim l;
    memset(&l, 0, sizeof l);
    l.cascade = cascade;
    l.njobs = njobs;
    l.state[0] = L_SPIN;
    l.at[0] = INFINITY;
    l.state[1] = L_SLEEP;
    for (int k = 0; k < njobs; k++)
        l.submit_at[k] = k * 1e-6;
    int submitted = 0;
    double now = 0, last = 0;
    for (;;) {
        double t_sub = submitted < njobs ? l.submit_at[submitted] : INFINITY;
        double t_ev = INFINITY;
        int w = -1;
        for (int i = 0; i < nw; i++)
            if (l.state[i] != L_SLEEP && l.at[i] < t_ev) {
                t_ev = l.at[i];
                w = i;
            }
        if (isinf(t_sub) && w < 0)
            break;
        if (t_sub <= t_ev) {
            now = t_sub;
            submitted++;
            uint32_t spin = (uint32_t)l_count(&l, L_SPIN, nw);
            uint32_t wake = rp__sched_wake_on_submit(1, spin, (uint32_t)l_count(&l, L_SLEEP, nw));
            for (int i = 0; i < nw && wake > 0; i++)
                if (l.state[i] == L_SLEEP) {
                    l.state[i] = L_WAKING;
                    l.at[i] = now + 40e-6;
                    wake--;
                }
            for (int i = 0; i < nw; i++)
                if (l.state[i] == L_SPIN && isinf(l.at[i]))
                    l.at[i] = now + notice;
            continue;
        }
        now = t_ev;
        if (l.state[w] == L_RUN) {
            l.end[l.job_of[w]] = now;
            last = now;
        }
        /* look for work: claim the oldest unclaimed job, or spin (no sleep within
         * the simulated window: spinning is what makes the defect) */
        if (l.next_job < submitted) {
            l_claim(&l, w, now, item_s, nw);
        } else {
            l.state[w] = L_SPIN;
            l.at[w] = INFINITY;
        }
    }
    return last;
}

static void test_scheduler_local_burst_wakes_sleeper(void)
{
    /* the policy: 4 x 0.15 s on 2 workers in ~0.30 s */
    CU_ASSERT_TRUE(local_burst(true, 4, 0.15) <= 0.30 * 1.1);
    /* without the claim-time wake, all four run on the spinner: the test above
     * would see 0.60 s */
    CU_ASSERT_TRUE(local_burst(false, 4, 0.15) >= 0.59);
    CU_ASSERT_EQUAL(rp__sched_wake_on_submit(1, 1, 1), 0);
    CU_ASSERT_EQUAL(rp__sched_wake_on_submit(1, 0, 1), 1);
    CU_ASSERT_EQUAL(rp__sched_wake_on_submit(100, 1, 3), 3);
    CU_ASSERT_EQUAL(rp__sched_wake_on_submit(3, 1, 5), 2);
    CU_ASSERT_FALSE(rp__sched_wake_after_claim(false, 0, 1));
    CU_ASSERT_FALSE(rp__sched_wake_after_claim(true, 1, 1));
    CU_ASSERT_TRUE(rp__sched_wake_after_claim(true, 0, 1));
}

/* A submit whose spinners were all seen on the submitter's CPU wakes a sleeper
 * seen on another CPU; not when a spinner is elsewhere, nor when the sleepers
 * share the submitter's CPU too. */
static void test_scheduler_local_wake_beside_submitter(void)
{
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 1, 1, 1, true), 1);
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 1, 1, 1, false), 0); /* sleeper beside too */
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 2, 1, 1, true), 0);  /* another spinner */
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 1, 0, 1, true), 0);  /* spinner elsewhere */
    CU_ASSERT_EQUAL(rp__sched_wake_beside(3, 2, 2, 5, true), 3);
    CU_ASSERT_EQUAL(rp__sched_wake_beside(3, 3, 1, 5, true), 1);
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 1, 2, 1, true), 0);  /* counts raced: no wake */
    CU_ASSERT_EQUAL(rp__sched_wake_beside(1, 1, 1, 0, true), 0);
}

/* ---- the default worker count (topo.c) ---------------------------------------------------- */

/* The workers the scheduler shares out default to the cores this process may use:
 * restricted to one CPU, a process sees one core. Checked in a child, so the
 * restriction stays there; the parent asks only afterwards, since the count is
 * cached per process (and inherited by a child forked later). */
static void test_scheduler_default_workers_follow_affinity(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            _exit(2);
        _exit(rp__topo_ncores() == 1 ? 0 : 1); /* first call in this child: not cached */
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Here, unrestricted (the count is cached from now on: this comes last). */
    int all = rp__topo_ncores();
    CU_ASSERT_TRUE(all >= 1);
    CU_ASSERT_TRUE(all <= sysconf(_SC_NPROCESSORS_ONLN));
}

/* Binding worker k puts it on one allowed core (modulo their number). */
static void test_scheduler_bind_to_one_core(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int ncores = rp__topo_ncores();
        if (rp__topo_bind(ncores + 1) != RP_OK) /* wraps around */
            _exit(1);
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) != 0)
            _exit(2);
        /* one core: its hardware threads only (1 here unless SMT) */
        long per_core = sysconf(_SC_NPROCESSORS_ONLN) / (ncores > 0 ? ncores : 1);
        _exit(CPU_COUNT(&set) >= 1 && CPU_COUNT(&set) <= (per_core > 0 ? per_core : 1) ? 0
                                                                                      : 3);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_scheduler_len_fixed),
        TU_TEST(test_scheduler_len_guided),
        TU_TEST(test_scheduler_len_cost_floor_and_caps),
        TU_TEST(test_scheduler_depth),
        TU_TEST(test_scheduler_every_item_once),
        TU_TEST(test_scheduler_oldest_job_first),
        TU_TEST(test_scheduler_apply_pair_uses_both_workers),
        TU_TEST(test_scheduler_new_job_goes_to_idle_worker),
        TU_TEST(test_scheduler_apply_bursts_balanced),
        TU_TEST(test_scheduler_no_idle_worker_with_work),
        TU_TEST(test_scheduler_guided_batches),
        TU_TEST(test_scheduler_putback_runs_first),
        TU_TEST(test_scheduler_withdraw),
        TU_TEST(test_scheduler_lost_workers),
        TU_TEST(test_scheduler_many_workers_one_each),
        TU_TEST(test_scheduler_random_putbacks_cover),
        TU_TEST(test_scheduler_local_burst_wakes_sleeper),
        TU_TEST(test_scheduler_local_wake_beside_submitter),
        TU_TEST(test_scheduler_default_workers_follow_affinity),
        TU_TEST(test_scheduler_bind_to_one_core),
        TU_END
    };
    return tu_run("scheduler", tests, argc, argv);
}
