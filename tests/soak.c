/* The soak program: rankpool under a long random load, with worker processes
 * killed, pools terminated, created and freed, and every result checked.
 *
 *   tests/soak [--minutes M] [--seed S] [...]             local backend
 *   mpirun -np 3 tests/soak --minutes M                    mpi backend
 *
 * Not part of make check (it runs for minutes); tests/README.md describes it.
 * Each *epoch* creates a pool (random worker count, max_tasks_per_worker, an
 * initializer whose argument every output depends on), runs 1-3 threads of random
 * operations on it (soak_ops.c: map, map_async, imap, imap_unordered, apply,
 * apply_async, map_var, map_var_async; random sizes and chunksizes; items that
 * fail by their input), while a chaos thread SIGKILLs random worker processes
 * (found in /proc: children of the local fork server, or the task processes of
 * the serving MPI ranks on this host, never the ranks) and, in some epochs, calls
 * rp_pool_terminate at a random moment. Then the pool is closed and joined,
 * freed directly, or (after terminate) joined and freed.
 *
 * A watchdog ends the run (exit status 3) when any call takes longer than
 * --hang-seconds, printing the calls in progress and the process tree. After
 * every pool the master (and, under MPI, every serving rank) records its open
 * descriptors, memory, mappings and processes; the run fails when they grow.
 * Exit status: 0 no defect, 1 defects or growth, 2 usage, 3 a hang. */
#define _GNU_SOURCE 1
#include "soak.h"
#include "soak_proc.h"
#include "soak_task.h"

#include <malloc.h>
#include <math.h>
#include <mpi.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

soak_stats soak_st;
_Atomic uint64_t soak_kills_started, soak_kills_confirmed;

static struct {
    double   seconds, hang_s, kill_interval, term_prob, sample_s;
    uint64_t seed;
    int      max_threads, max_workers;
    bool     hang_pause;
} cfg = { 60, 120, 0.5, 0.25, 1.0, 0, 3, 0, false };

enum { MAX_THREADS = 8 };

/* ---- time and random numbers ------------------------------------------------------ */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void nap(double s)
{
    if (s <= 0)
        return;
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    nanosleep(&ts, NULL);
}

uint64_t soak_rand(uint64_t *s)
{
    uint64_t x = *s ? *s : 0x2545f4914f6cdd1du;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545f4914f6cdd1du;
}

uint64_t soak_range(uint64_t *s, uint64_t lo, uint64_t hi)
{
    return hi <= lo ? lo : lo + soak_rand(s) % (hi - lo + 1);
}

uint64_t soak_logrange(uint64_t *s, uint64_t lo, uint64_t hi)
{
    if (lo < 1)
        lo = 1;
    if (hi <= lo)
        return lo;
    double u = (double)(soak_rand(s) >> 11) / 9007199254740992.0;
    uint64_t v = (uint64_t)exp(log((double)lo) + u * (log((double)hi + 1) - log((double)lo)));
    return v < lo ? lo : v > hi ? hi : v;
}

static double uniform(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(soak_rand(s) >> 11) / 9007199254740992.0;
}

/* ---- defects ------------------------------------------------------------------------- */

static pthread_mutex_t print_lock = PTHREAD_MUTEX_INITIALIZER;

void soak_defect(_Atomic uint64_t *counter, const char *fmt, ...)
{
    enum { SHOW = 12 }; /* of each kind */
    uint64_t k = atomic_fetch_add(counter, 1);
    if (k >= SHOW)
        return;
    pthread_mutex_lock(&print_lock);
    fprintf(stderr, "soak: DEFECT: ");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", k == SHOW - 1 ? " (more of this kind are counted only)" : "");
    pthread_mutex_unlock(&print_lock);
}

/* ---- the watchdog --------------------------------------------------------------------- */

/* slots: 0 the driver, 1 the chaos thread, 2.. the submitters */
static soak_thread slots[2 + MAX_THREADS];
static soak_thread *const driver = &slots[0], *const chaos_slot = &slots[1];
static double t_start;
static atomic_int hung;
static _Atomic double longest_call;
static const char *_Atomic longest_what = "";
static pid_t kill_roots[256]; /* processes whose children are killed */
static int nkill_roots;       /* 0: local (children of our fork server) */
static bool use_mpi;
static int mpi_rank, mpi_size = 1;

void soak_watch(soak_thread *t, const char *what)
{
    atomic_store(&t->what, what);
    atomic_store(&t->since, now());
}

void soak_unwatch(soak_thread *t)
{
    double dt = now() - atomic_load(&t->since);
    atomic_store(&t->since, 0.0);
    if (dt > atomic_load(&longest_call)) {
        atomic_store(&longest_call, dt);
        atomic_store(&longest_what, atomic_load(&t->what));
    }
}

static void print_summary(FILE *f);
static void print_kill_log(void);

static void *watchdog(void *arg)
{
    (void)arg;
    for (;;) {
        nap(0.5);
        double t = now();
        for (size_t k = 0; k < sizeof slots / sizeof *slots; k++) {
            double since = atomic_load(&slots[k].since);
            if (since <= 0 || t - since <= cfg.hang_s)
                continue;
            atomic_store(&hung, 1);
            pthread_mutex_lock(&print_lock);
            fprintf(stderr, "soak: HANG: %s has not returned after %.0f s (bound %.0f s), "
                    "%.0f s into the run; calls in progress:\n",
                    atomic_load(&slots[k].what), t - since, cfg.hang_s, t - t_start);
            for (size_t m = 0; m < sizeof slots / sizeof *slots; m++) {
                double s = atomic_load(&slots[m].since);
                if (s <= 0)
                    continue;
                fprintf(stderr, "  thread %zu: %s for %.1f s; %s\n", m,
                        atomic_load(&slots[m].what), t - s, slots[m].detail);
                rp_result_t *r = atomic_load(&slots[m].waiting);
                if (r) {
                    size_t done = 0, total = 0;
                    rp_result_progress(r, &done, &total);
                    fprintf(stderr, "    its result: %zu of %zu items processed, ready %d\n",
                            done, total, (int)rp_result_ready(r));
                }
            }
            pid_t roots[257];
            roots[0] = getpid();
            memcpy(roots + 1, kill_roots, sizeof *kill_roots * (size_t)nkill_roots);
            fprintf(stderr, "soak: processes:\n");
            sp_print_tree(roots, 1 + nkill_roots);
            print_kill_log();
            print_summary(stderr);
            fprintf(stderr, "soak: FAIL: hang\n");
            fflush(NULL);
            if (cfg.hang_pause) {
                fprintf(stderr, "soak: --hang-pause: process %d waits to be looked at (gdb -p)"
                        "\n", (int)getpid());
                for (;;)
                    pause();
            }
            _exit(3);
        }
    }
    return NULL;
}

/* ---- worker processes ------------------------------------------------------------------ */

enum { MAXPROCS = 16384 };
static sp_proc procs_buf[MAXPROCS];
static int idx_buf[MAXPROCS];

/* Worker processes we may kill: children of our children (local: the fork
 * server's workers), or the children of the serving ranks on this host. Not
 * zombies. \return how many pids went to out. */
static int worker_pids(pid_t *out, int max)
{
    int n = sp_scan(procs_buf, MAXPROCS), k = 0;
    pid_t self = getpid();
    const pid_t *roots = nkill_roots ? kill_roots : &self;
    int depth = nkill_roots ? 1 : 2;
    int m = sp_descendants(procs_buf, n, roots, nkill_roots ? nkill_roots : 1, depth, idx_buf,
                           MAXPROCS);
    for (int i = 0; i < m && k < max; i++) {
        const sp_proc *p = &procs_buf[idx_buf[i]];
        if (p->state == 'Z' || p->state == 'X')
            continue;
        if (!nkill_roots && p->ppid == self) /* the fork server itself */
            continue;
        out[k++] = p->pid;
    }
    return k;
}

/* Processes below us (local) or below the serving ranks on this host (mpi). */
static int count_procs(void)
{
    int n = sp_scan(procs_buf, MAXPROCS);
    pid_t self = getpid();
    int c = sp_descendants(procs_buf, n, &self, 1, 0, idx_buf, MAXPROCS);
    if (nkill_roots)
        c += sp_descendants(procs_buf, n, kill_roots, nkill_roots, 0, idx_buf, MAXPROCS);
    return c;
}

/* The last kills, for a hang's report: when, which process (its name says which
 * worker on the local backend). */
enum { KILL_LOG = 16 };
static struct { double t; pid_t pid; char comm[32]; } kill_log[KILL_LOG];
static _Atomic uint64_t nkill_log;

static void log_kill(pid_t pid)
{
    uint64_t k = atomic_fetch_add(&nkill_log, 1) % KILL_LOG;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    kill_log[k].comm[0] = '\0';
    if (f) {
        if (fgets(kill_log[k].comm, sizeof kill_log[k].comm, f))
            kill_log[k].comm[strcspn(kill_log[k].comm, "\n")] = '\0';
        fclose(f);
    }
    kill_log[k].t = now() - t_start;
    kill_log[k].pid = pid;
}

static void print_kill_log(void)
{
    uint64_t n = atomic_load(&nkill_log), first = n > KILL_LOG ? n - KILL_LOG : 0;
    if (n)
        fprintf(stderr, "soak: the last kills (s into the run, pid, name):");
    for (uint64_t k = first; k < n; k++)
        fprintf(stderr, " %.2f %d %s;", kill_log[k % KILL_LOG].t, (int)kill_log[k % KILL_LOG].pid,
                kill_log[k % KILL_LOG].comm);
    if (n)
        fprintf(stderr, "\n");
}

static void kill_one(uint64_t *rng)
{
    pid_t pids[512];
    int n = worker_pids(pids, 512);
    if (n == 0)
        return;
    pid_t pid = pids[soak_range(rng, 0, (uint64_t)n - 1)];
    log_kill(pid);
    atomic_fetch_add(&soak_kills_started, 1);
    if (kill(pid, SIGKILL) == 0) {
        atomic_fetch_add(&soak_st.kills, 1);
        double until = now() + 10;
        while (!sp_dead(pid) && now() < until)
            nap(0.0002);
        if (!sp_dead(pid))
            soak_defect(&soak_st.kill_misses, "worker process %d still runs 10 s after "
                        "SIGKILL", (int)pid);
    }
    atomic_fetch_add(&soak_kills_confirmed, 1);
}

/* ---- one pool's life ------------------------------------------------------------------- */

/* What every rank must agree on for one epoch (broadcast under MPI). */
typedef struct epoch_plan {
    int      go;            /* 0: the run is over */
    int      workers;
    long     max_tasks;
    uint64_t salt, rng;
    double   duration, term_at; /* term_at < 0: no terminate */
    int      nthreads, ending;
} epoch_plan;

typedef struct chaos_arg {
    soak_epoch *ep;
    double      term_at;    /* absolute time, or < 0 */
    uint64_t    rng;
} chaos_arg;

static void *chaos(void *arg)
{
    chaos_arg *c = arg;
    double next_kill = cfg.kill_interval > 0
                           ? now() - cfg.kill_interval * log(uniform(&c->rng, 1e-9, 1))
                           : INFINITY;
    while (!atomic_load(&c->ep->stop)) {
        double t = now();
        if (c->term_at >= 0 && t >= c->term_at && !atomic_load(&c->ep->terminated)) {
            atomic_store(&c->ep->terminated, true);
            soak_watch(chaos_slot, "rp_pool_terminate");
            int rc = rp_pool_terminate(c->ep->pool);
            soak_unwatch(chaos_slot);
            atomic_fetch_add(&soak_st.terminates, 1);
            if (rc != RP_OK)
                soak_defect(&soak_st.callerr, "rp_pool_terminate returned %s",
                            rp_err_name(rc));
            continue;
        }
        if (t >= next_kill) {
            if (!atomic_load(&c->ep->terminated)) {
                atomic_store(&c->ep->killed, true);
                soak_watch(chaos_slot, "killing a worker (waiting for it to die)");
                kill_one(&c->rng);
                soak_unwatch(chaos_slot);
            }
            next_kill = now() - cfg.kill_interval * log(uniform(&c->rng, 1e-9, 1));
        }
        double wake = next_kill;
        if (c->term_at >= 0 && !atomic_load(&c->ep->terminated) && c->term_at < wake)
            wake = c->term_at;
        double d = wake - now();
        nap(d < 0.02 ? d : 0.02);
    }
    return NULL;
}

static _Atomic int submitters_done;

static void *submitter(void *arg)
{
    soak_thread *t = arg;
    while (!atomic_load(&t->ep->stop) && soak_op(t))
        ;
    atomic_fetch_add(&submitters_done, 1);
    return NULL;
}

static void pool_opts(const epoch_plan *pl, rp_pool_opts_t *o, uint64_t *salt)
{
    memset(o, 0, sizeof *o);
    *salt = pl->salt;
    o->backend = use_mpi ? "mpi" : "local";
    o->workers = pl->workers;
    o->max_tasks_per_worker = pl->max_tasks;
    o->initializer = soak_init;
    o->initarg = salt;
    o->initarg_size = sizeof *salt;
}

/* The master's side of an epoch. */
static void epoch_master(const epoch_plan *pl)
{
    soak_epoch ep;
    memset(&ep, 0, sizeof ep);
    rp_pool_opts_t o;
    pool_opts(pl, &o, &ep.salt);
    rp_error_t err;
    memset(&err, 0, sizeof err);
    soak_watch(driver, "rp_pool_create");
    int rc = rp_pool_create_ex(&ep.pool, &o, &err);
    soak_unwatch(driver);
    if (rc != RP_OK) {
        atomic_fetch_add(&soak_st.create_fails, 1);
        soak_defect(&soak_st.callerr, "rp_pool_create (%d workers) returned %s: %s",
                    pl->workers, rp_err_name(rc), err.message);
        return;
    }
    atomic_fetch_add(&soak_st.pools, 1);
    ep.nworkers = rp_pool_size(ep.pool);
    ep.max_tasks = pl->max_tasks;
    uint64_t rng = pl->rng;
    double t0 = now();
    chaos_arg ca = { &ep, pl->term_at >= 0 ? t0 + pl->term_at : -1, soak_rand(&rng) };
    pthread_t ct, th[MAX_THREADS];
    atomic_store(&submitters_done, 0);
    for (int k = 0; k < pl->nthreads; k++) {
        soak_thread *t = &slots[2 + k];
        t->id = k;
        t->rng = soak_rand(&rng);
        t->ep = &ep;
        pthread_create(&th[k], NULL, submitter, t);
    }
    pthread_create(&ct, NULL, chaos, &ca);
    while (now() < t0 + pl->duration &&
           !(atomic_load(&ep.terminated) && atomic_load(&submitters_done) == pl->nthreads))
        nap(0.02);
    atomic_store(&ep.stop, true);
    for (int k = 0; k < pl->nthreads; k++)
        pthread_join(th[k], NULL);
    pthread_join(ct, NULL);

    /* the end of the pool, by pl->ending: 0-4 close (unless terminated) and join,
     * 5-6 close (unless terminated), 7-9 nothing; then free */
    bool terminated = atomic_load(&ep.terminated);
    if (!terminated && pl->ending < 7) {
        soak_watch(driver, "rp_pool_close");
        if ((rc = rp_pool_close(ep.pool)) != RP_OK)
            soak_defect(&soak_st.callerr, "rp_pool_close returned %s", rp_err_name(rc));
        soak_unwatch(driver);
    }
    if (pl->ending < 5) {
        soak_watch(driver, "rp_pool_join");
        if ((rc = rp_pool_join(ep.pool)) != RP_OK)
            soak_defect(&soak_st.callerr, "rp_pool_join returned %s", rp_err_name(rc));
        soak_unwatch(driver);
    }
    soak_watch(driver, "rp_pool_free");
    rp_pool_free(ep.pool);
    soak_unwatch(driver);
}

/* ---- resources over time ---------------------------------------------------------------- */

static sp_series curve;       /* every second, master */
static sp_series quiet;       /* after each pool, master */
static sp_series *rank_quiet; /* after each pool, each serving rank (mpi) */
static pthread_mutex_t curve_lock = PTHREAD_MUTEX_INITIALIZER;

static void sample_now(sp_sample *s)
{
    memset(s, 0, sizeof *s);
    s->t = now() - t_start;
    s->items = atomic_load(&soak_st.items);
    s->kills = atomic_load(&soak_st.kills);
    s->pools = atomic_load(&soak_st.pools);
    s->procs = count_procs();
    sp_usage_self(&s->u);
}

static void *sampler(void *arg)
{
    (void)arg;
    double next_print = now() + 30;
    for (;;) {
        nap(cfg.sample_s);
        sp_sample s;
        pthread_mutex_lock(&curve_lock); /* the quiet samples count descriptors too */
        sample_now(&s);
        sp_series_add(&curve, &s);
        pthread_mutex_unlock(&curve_lock);
        if (now() >= next_print) {
            next_print += 30;
            uint64_t defects = soak_st.wrong + soak_st.lost + soak_st.badfail +
                               soak_st.callerr + soak_st.badcb;
            printf("soak: %4.0f s: pools %llu, items %llu, kills %llu, terminates %llu, "
                   "defects %llu; fds %d, procs %d, rss %.0f MB\n", s.t,
                   (unsigned long long)s.pools, (unsigned long long)s.items,
                   (unsigned long long)s.kills, (unsigned long long)soak_st.terminates,
                   (unsigned long long)defects, s.u.fds, s.procs, s.u.rss_mb);
            fflush(stdout);
        }
    }
    return NULL;
}

/* ---- the summary --------------------------------------------------------------------- */

static uint64_t total_defects(void)
{
    return soak_st.wrong + soak_st.lost + soak_st.badfail + soak_st.callerr + soak_st.badcb +
           soak_st.kill_misses;
}

static void print_summary(FILE *f)
{
    double t = now() - t_start;
    uint64_t jobs = 0;
    for (int k = 0; k < SK_NKINDS; k++)
        jobs += soak_st.jobs[k];
    fprintf(f, "\nsoak: summary: backend %s, %.0f s, seed %llu\n", use_mpi ? "mpi" : "local", t,
            (unsigned long long)cfg.seed);
    if (use_mpi)
        fprintf(f, "  ranks %d (serving ranks on this host whose workers are killed: %d)\n",
                mpi_size, nkill_roots);
    fprintf(f, "  pools %llu (create failures %llu), jobs %llu:",
            (unsigned long long)soak_st.pools, (unsigned long long)soak_st.create_fails,
            (unsigned long long)jobs);
    for (int k = 0; k < SK_NKINDS; k++)
        fprintf(f, " %s %llu", soak_kind_name[k], (unsigned long long)soak_st.jobs[k]);
    fprintf(f, "\n  items %llu: ok %llu, RP_ETASK as raised %llu, RP_EWORKER after kills %llu, "
            "RP_ECANCELED after terminate %llu, RP_EBROKEN after kills %llu, failed with code "
            "not reported (rp_map, rp_map_var) %llu\n",
            (unsigned long long)soak_st.items, (unsigned long long)soak_st.ok,
            (unsigned long long)soak_st.raised, (unsigned long long)soak_st.eworker,
            (unsigned long long)soak_st.canceled, (unsigned long long)soak_st.broken,
            (unsigned long long)soak_st.unknown);
    fprintf(f, "  kills %llu (still alive after 10 s: %llu), terminates %llu\n",
            (unsigned long long)soak_st.kills, (unsigned long long)soak_st.kill_misses,
            (unsigned long long)soak_st.terminates);
    fprintf(f, "  wrong results %llu, lost failures %llu, unexplained failures %llu, wrong "
            "return codes %llu, callback errors %llu, hangs %d (bound %.0f s; longest call "
            "%.2f s: %s)\n",
            (unsigned long long)soak_st.wrong, (unsigned long long)soak_st.lost,
            (unsigned long long)soak_st.badfail, (unsigned long long)soak_st.callerr,
            (unsigned long long)soak_st.badcb, atomic_load(&hung), cfg.hang_s,
            atomic_load(&longest_call),
            atomic_load(&longest_what));
}

static void print_curve(FILE *f)
{
    pthread_mutex_lock(&curve_lock);
    sp_print_curve(f, &curve);
    pthread_mutex_unlock(&curve_lock);
}

/* ---- MPI -------------------------------------------------------------------------------- */

typedef struct rank_info {
    int  pid;
    char host[64];
} rank_info;

/* What a serving rank reports after each pool. */
typedef struct rank_report {
    int      rc;
    int      procs;
    sp_usage u;
} rank_report;

/* Under mpirun with more than one rank: MPI initialised, the serving ranks of this
 * host known (their worker processes are the kill targets). */
static void mpi_setup(int *argc, char ***argv)
{
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    if (!ws)
        ws = getenv("PMI_SIZE");
    if (!ws || atoi(ws) <= 1)
        return;
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &mpi_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &mpi_size);
    use_mpi = true;
    rank_info me = { (int)getpid(), "" };
    gethostname(me.host, sizeof me.host - 1);
    rank_info *all = calloc((size_t)mpi_size, sizeof *all);
    MPI_Allgather(&me, sizeof me, MPI_BYTE, all, sizeof me, MPI_BYTE, MPI_COMM_WORLD);
    for (int r = 1; r < mpi_size && nkill_roots < 256; r++)
        if (strcmp(all[r].host, me.host) == 0)
            kill_roots[nkill_roots++] = all[r].pid;
    free(all);
    rank_quiet = calloc((size_t)mpi_size, sizeof *rank_quiet);
}

/* A serving rank's side of an epoch: serve inside rp_pool_create, then report. */
static void epoch_serve(const epoch_plan *pl, rank_report *rep)
{
    rp_pool_opts_t o;
    uint64_t salt;
    pool_opts(pl, &o, &salt);
    rp_pool_t *p = NULL;
    memset(rep, 0, sizeof *rep);
    rep->rc = rp_pool_create(&p, &o);
    if (p && rp_pool_is_master(p))
        rep->rc = RP_EINVAL; /* cannot be: rank 0 is the master */
    rp_pool_free(p);
    malloc_trim(0);
    /* the rank's worker processes are reaped by now; give stragglers a second */
    pid_t self = getpid();
    for (int k = 0; k < 100; k++) {
        int n = sp_scan(procs_buf, MAXPROCS);
        rep->procs = sp_descendants(procs_buf, n, &self, 1, 0, idx_buf, MAXPROCS);
        if (rep->procs == 0)
            break;
        nap(0.01);
    }
    sp_usage_self(&rep->u);
}

/* ---- main -------------------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: soak [--minutes M | --seconds S] [--seed N] [--hang-seconds S]\n"
            "            [--kill-interval S] [--terminate-prob P] [--threads N] [--workers N]\n"
            "            [--ops LIST] [--fail-mod N] [--min-items N] [--hang-pause]\n"
            "  Random rankpool work with worker kills and terminates, every result checked.\n"
            "  Local backend, or under mpirun with more than one rank the mpi backend.\n"
            "  --minutes/--seconds  how long (default 1 minute)\n"
            "  --seed N             random seed (default: from the clock; printed)\n"
            "  --hang-seconds S     a call that takes longer is a hang (default 120)\n"
            "  --kill-interval S    mean time between worker kills (default 0.5; 0: none)\n"
            "  --terminate-prob P   share of pools terminated at a random moment (0.25)\n"
            "  --threads N          at most N submitting threads per pool (default 3)\n"
            "  --workers N          at most N workers per pool (default: local 4, mpi\n"
            "                       twice the serving ranks)\n"
            "  --ops a,b,...        only these operations: map, map_async, imap,\n"
            "                       imap_unordered, apply, apply_async, map_var,\n"
            "                       map_var_async (default: all)\n"
            "  --min-items N        maps get at least N items (applies have one: a run\n"
            "                       without single items leaves them out of --ops)\n"
            "  --hang-pause         after reporting a hang, wait (for gdb) instead of exiting\n"
            "  --fail-mod N         item x raises when mix(x) %% N == 0, in every job\n"
            "                       (1: all items; 0: none; default: random per job)\n"
            "Exit status: 0 clean, 1 defects or resource growth, 2 usage, 3 hang.\n");
}

static int parse_args(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--hang-pause") == 0) {
            cfg.hang_pause = true;
            continue;
        }
        if (!v) {
            usage(stderr);
            return 2;
        }
        i++;
        if (strcmp(a, "--minutes") == 0)
            cfg.seconds = atof(v) * 60;
        else if (strcmp(a, "--seconds") == 0)
            cfg.seconds = atof(v);
        else if (strcmp(a, "--seed") == 0)
            cfg.seed = strtoull(v, NULL, 0);
        else if (strcmp(a, "--hang-seconds") == 0)
            cfg.hang_s = atof(v);
        else if (strcmp(a, "--kill-interval") == 0)
            cfg.kill_interval = atof(v);
        else if (strcmp(a, "--terminate-prob") == 0)
            cfg.term_prob = atof(v);
        else if (strcmp(a, "--threads") == 0)
            cfg.max_threads = atoi(v);
        else if (strcmp(a, "--workers") == 0)
            cfg.max_workers = atoi(v);
        else if (strcmp(a, "--min-items") == 0)
            soak_min_items = (size_t)atol(v);
        else if (strcmp(a, "--fail-mod") == 0)
            soak_fail_mod = atol(v);
        else if (strcmp(a, "--ops") == 0) {
            soak_kinds_mask = 0;
            char *list = strdup(v), *save = NULL;
            for (char *w = strtok_r(list, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
                int k = 0;
                while (k < SK_NKINDS && strcmp(w, soak_kind_name[k]) != 0)
                    k++;
                if (k == SK_NKINDS) {
                    fprintf(stderr, "soak: unknown operation %s\n", w);
                    free(list);
                    return 2;
                }
                soak_kinds_mask |= 1u << k;
            }
            free(list);
        }
        else {
            usage(stderr);
            return 2;
        }
    }
    if (cfg.max_threads < 1 || cfg.max_threads > MAX_THREADS || cfg.seconds <= 0 ||
        cfg.hang_s <= 0 || cfg.max_workers < 0 || !soak_kinds_mask) {
        usage(stderr);
        return 2;
    }
    return 0;
}

static void plan_epoch(uint64_t *rng, epoch_plan *pl, double left)
{
    memset(pl, 0, sizeof *pl);
    pl->go = 1;
    pl->salt = soak_rand(rng) | 1;
    pl->rng = soak_rand(rng);
    int maxw = cfg.max_workers ? cfg.max_workers : use_mpi ? 2 * (mpi_size - 1) : 4;
    pl->workers = (int)soak_range(rng, use_mpi ? 0 : 1, (uint64_t)maxw);
    uint64_t m = soak_range(rng, 0, 9);
    pl->max_tasks = m < 7 ? 0 : m < 9 ? (long)soak_logrange(rng, 50, 5000)
                                      : (long)soak_logrange(rng, 10000, 1000000);
    pl->duration = soak_range(rng, 0, 9) < 3 ? uniform(rng, 0, 0.3) : uniform(rng, 1, 8);
    if (pl->duration > left)
        pl->duration = left > 0 ? left : 0;
    pl->term_at = uniform(rng, 0, 1) < cfg.term_prob ? uniform(rng, 0, pl->duration) : -1;
    pl->nthreads = (int)soak_range(rng, 1, (uint64_t)cfg.max_threads);
    pl->ending = (int)soak_range(rng, 0, 9);
}

int main(int argc, char **argv)
{
    mpi_setup(&argc, &argv);
    int prc = parse_args(argc, argv);
    if (prc) {
        if (use_mpi)
            MPI_Finalize();
        return prc == 1 ? 0 : prc;
    }
    if (cfg.seed == 0)
        cfg.seed = (uint64_t)time(NULL) ^ (uint64_t)getpid() << 20;
    if (use_mpi)
        MPI_Bcast(&cfg.seed, 1, MPI_UINT64_T, 0, MPI_COMM_WORLD);
    setvbuf(stdout, NULL, _IOLBF, 0);
    t_start = now();
    bool master = mpi_rank == 0;
    pthread_t wd, sp;
    if (master) {
        printf("soak: backend %s, %.0f s, seed %llu, hang bound %.0f s, kill every %.2f s "
               "on average, terminate %.0f%% of pools, up to %d threads\n",
               use_mpi ? "mpi" : "local", cfg.seconds, (unsigned long long)cfg.seed,
               cfg.hang_s, cfg.kill_interval, 100 * cfg.term_prob, cfg.max_threads);
        pthread_create(&wd, NULL, watchdog, NULL);
        pthread_create(&sp, NULL, sampler, NULL);
        sp_sample s0;
        sample_now(&s0);
        sp_series_add(&curve, &s0);
    }
    uint64_t rng = cfg.seed;
    rank_report *reps = master && use_mpi ? calloc((size_t)mpi_size, sizeof *reps) : NULL;
    for (;;) {
        epoch_plan pl;
        if (master) {
            double left = cfg.seconds - (now() - t_start);
            plan_epoch(&rng, &pl, left);
            if (left <= 0)
                pl.go = 0;
        }
        if (use_mpi) {
            soak_watch(driver, "MPI_Bcast of the next pool's plan");
            MPI_Bcast(&pl, sizeof pl, MPI_BYTE, 0, MPI_COMM_WORLD);
            soak_unwatch(driver);
        }
        if (!pl.go)
            break;
        rank_report me;
        memset(&me, 0, sizeof me);
        if (master)
            epoch_master(&pl);
        else
            epoch_serve(&pl, &me);
        if (use_mpi) {
            soak_watch(driver, "MPI_Gather of the serving ranks' reports");
            MPI_Gather(&me, sizeof me, MPI_BYTE, reps, sizeof me, MPI_BYTE, 0, MPI_COMM_WORLD);
            soak_unwatch(driver);
        }
        if (!master)
            continue;
        malloc_trim(0); /* what the run's buffers left in malloc's free lists */
        sp_sample q;
        pthread_mutex_lock(&curve_lock); /* not while the sampler reads /proc */
        sample_now(&q);
        pthread_mutex_unlock(&curve_lock);
        sp_series_add(&quiet, &q);
        for (int r = 1; use_mpi && r < mpi_size; r++) {
            sp_sample rs;
            memset(&rs, 0, sizeof rs);
            rs.t = q.t;
            rs.procs = reps[r].procs;
            rs.u = reps[r].u;
            sp_series_add(&rank_quiet[r], &rs);
            if (reps[r].rc != RP_OK)
                soak_defect(&soak_st.callerr, "rank %d: rp_pool_create returned %s", r,
                            rp_err_name(reps[r].rc));
        }
    }
    int status = 0, growth_failures = 0;
    if (master) {
        soak_watch(driver, "the summary");
        print_summary(stdout);
        print_curve(stdout);
        printf("  resources:\n");
        growth_failures += sp_judge_series(stdout, "master", &quiet);
        for (int r = 1; use_mpi && r < mpi_size; r++) {
            char who[32];
            snprintf(who, sizeof who, "serving rank %d", r);
            growth_failures += sp_judge_series(stdout, who, &rank_quiet[r]);
        }
        uint64_t d = total_defects();
        status = d || growth_failures ? 1 : 0;
        printf("soak: %s: %llu defects, %d resources growing\n", status ? "FAIL" : "PASS",
               (unsigned long long)d, growth_failures);
        soak_unwatch(driver);
    }
    free(reps);
    if (use_mpi)
        MPI_Finalize();
    return status;
}
