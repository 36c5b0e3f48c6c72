/* The mpi backend at scale: one run of one configuration, under mpirun.
 *
 *   mpirun --oversubscribe -np R rp_scale --mode map|apply --ms T [--workers W]
 *          [--items N] [--reps K]
 *
 * Tasks sleep T ms (so that ranks wait rather than compute: many more ranks and
 * workers than cores can be measured). map: one rp_map of N items with automatic
 * chunking. apply: N rp_apply_async calls in a loop, then every result waited for
 * (one job per item, the flood). Efficiency = N * T / (W * time): 100% is every
 * worker sleeping all the time. Also the pool's create and close+join times.
 * The master's CPU (its process: the pool thread and the caller) per task and in
 * % of a core tell where one master saturates, and so do its messages per task:
 * the MPI point-to-point calls of the master's process (sends: MPI_Send and
 * MPI_Isend; receives: MPI_Recv, MPI_Mrecv and MPI_Irecv, the pool posting its
 * next receive once per message received), counted by the MPI profiling interface
 * below (this program's MPI_* wrap the library's PMPI_*), load-independent. The
 * node's page faults and context switches during the runs per task (/proc: every
 * process on the node), and the serving ranks' with their worker processes over
 * the pool's life (getrusage, summed over the ranks), tell what the serving side
 * costs beyond the tasks.
 * RP_MPI_LEADERS=1 in the environment names the library "rankpool-mpi+leaders".
 * Prints RESULT lines (bench/common.h) with workload scale_<mode>, variant
 * "<ranks>r/<workers>w/<T>ms". Checks every output; a wrong one is an error. */
#include "common.h"

#include <rankpool.h>
#include <mpi.h>

#include <errno.h>

/* ---- the master's messages (the MPI profiling interface) ---- */

static _Atomic unsigned long msgs_sent, msgs_recv;

int MPI_Send(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm)
{
    msgs_sent++;
    return PMPI_Send(buf, count, type, dest, tag, comm);
}

int MPI_Isend(const void *buf, int count, MPI_Datatype type, int dest, int tag, MPI_Comm comm,
              MPI_Request *req)
{
    msgs_sent++;
    return PMPI_Isend(buf, count, type, dest, tag, comm, req);
}

int MPI_Recv(void *buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm,
             MPI_Status *st)
{
    msgs_recv++;
    return PMPI_Recv(buf, count, type, src, tag, comm, st);
}

int MPI_Irecv(void *buf, int count, MPI_Datatype type, int src, int tag, MPI_Comm comm,
              MPI_Request *req)
{
    msgs_recv++;
    return PMPI_Irecv(buf, count, type, src, tag, comm, req);
}

int MPI_Mrecv(void *buf, int count, MPI_Datatype type, MPI_Message *msg, MPI_Status *st)
{
    msgs_recv++;
    return PMPI_Mrecv(buf, count, type, msg, st);
}

static const char *lib = "rankpool-mpi";

/* --timeline 1: each item's output also carries when it started and ended (the
 * node's CLOCK_REALTIME: one clock for every process of one node) and on which
 * worker, and the master prints the map's timeline (TL lines, below). */
struct tl_out {
    long v, start_ns, end_ns, worker;
};

static long real_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

static int task_sleep(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    long ms = x >> 32;
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    *(long *)out = (x & 0xffffffffL) * 3 + 1;
    return RP_OK;
}

static int task_sleep_tl(const void *in, void *out, rp_ctx_t *ctx)
{
    struct tl_out *o = out;
    o->start_ns = real_ns();
    task_sleep(in, &o->v, ctx);
    o->end_ns = real_ns();
    o->worker = rp_ctx_worker(ctx);
    return RP_OK;
}

static int cmp_long(const void *a, const void *b)
{
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* The map's timeline from its items' records (times in ms from the map's start,
 * t0; it ended at t1): when each worker started its first item (percentiles over
 * the workers), the items started per 250 ms, when each worker ended its last
 * item, and how many items each worker started in the last second. */
static void timeline(const struct tl_out *o, long items, int w, long t0, long t1)
{
    long *first = malloc((size_t)w * sizeof *first), *last = calloc((size_t)w, sizeof *last);
    int *tailn = calloc((size_t)w, sizeof *tailn);
    long nbins = (t1 - t0) / 250000000L + 1;
    long *bins = calloc((size_t)nbins, sizeof *bins);
    if (!first || !last || !tailn || !bins)
        return;
    for (int i = 0; i < w; i++)
        first[i] = t1 - t0;
    for (long i = 0; i < items; i++) {
        long k = o[i].worker, s = o[i].start_ns - t0, e = o[i].end_ns - t0;
        if (k < 0 || k >= w)
            continue;
        first[k] = s < first[k] ? s : first[k];
        last[k] = e > last[k] ? e : last[k];
        if (s >= 0 && s / 250000000L < nbins)
            bins[s / 250000000L]++;
        if (o[i].start_ns >= t1 - 1000000000L)
            tailn[k]++;
    }
    qsort(first, (size_t)w, sizeof *first, cmp_long);
    qsort(last, (size_t)w, sizeof *last, cmp_long);
    static const int pct[] = { 0, 10, 50, 90, 99, 100 };
    printf("TL map %.0f ms, %d workers, %ld items\nTL first item started (ms), percentiles "
           "0/10/50/90/99/100:", (t1 - t0) / 1e6, w, items);
    for (int i = 0; i < 6; i++)
        printf(" %.0f", first[(size_t)(pct[i] * (w - 1) / 100)] / 1e6);
    printf("\nTL last item ended (ms), percentiles 0/10/50/90/99/100:");
    for (int i = 0; i < 6; i++)
        printf(" %.0f", last[(size_t)(pct[i] * (w - 1) / 100)] / 1e6);
    printf("\nTL items started per 250 ms:");
    for (long b = 0; b < nbins; b++)
        printf(" %ld", bins[b]);
    long hist[5] = { 0 };
    for (int i = 0; i < w; i++)
        hist[tailn[i] < 4 ? tailn[i] : 4]++;
    printf("\nTL workers by items started in the last second (0/1/2/3/4+): %ld %ld %ld %ld "
           "%ld\n", hist[0], hist[1], hist[2], hist[3], hist[4]);
    fflush(stdout);
    free(first);
    free(last);
    free(tailn);
    free(bins);
}

static void result(const char *wl, const char *variant, int workers, const char *metric,
                   const char *unit, const char *better, double v)
{
    printf("RESULT\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.6g\n", wl, variant, lib, workers, metric,
           unit, better, v);
    fflush(stdout);
}

/* A node-wide counter: the line of /proc/<file> that starts with `key` (Linux;
 * -1 elsewhere). The node's page faults and context switches during a run count
 * every process of it, the pool's and whatever else runs beside it. */
static long long node_count(const char *file, const char *key)
{
    FILE *f = fopen(file, "r");
    char line[256];
    long long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n) && line[n] == ' ') {
            v = atoll(line + n + 1);
            break;
        }
    if (f)
        fclose(f);
    return v;
}

/* The serving ranks' page faults and context switches over the pool's life,
 * their worker processes' included (reaped by then), and the ranks' own CPU time
 * (user, system: their processes only), summed on every rank: the master
 * contributes nothing. Every rank gets the sums (faults, switches, user, system). */
static void ranks_totals(bool master, double sums[4])
{
    double mine[4] = { 0, 0, 0, 0 };
    if (!master) {
        struct rusage self, kids;
        getrusage(RUSAGE_SELF, &self);
        getrusage(RUSAGE_CHILDREN, &kids);
        mine[0] = (double)(self.ru_minflt + self.ru_majflt + kids.ru_minflt + kids.ru_majflt);
        mine[1] = (double)(self.ru_nvcsw + self.ru_nivcsw + kids.ru_nvcsw + kids.ru_nivcsw);
        mine[2] = (double)self.ru_utime.tv_sec + 1e-6 * (double)self.ru_utime.tv_usec;
        mine[3] = (double)self.ru_stime.tv_sec + 1e-6 * (double)self.ru_stime.tv_usec;
    }
    MPI_Allreduce(mine, sums, 4, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

int main(int argc, char **argv)
{
    const char *mode = "map";
    long ms = 10, items = 0, workers = 0, reps = 1;
    bool tl = false;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mode"))
            mode = argv[i + 1];
        else if (!strcmp(argv[i], "--ms"))
            ms = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--items"))
            items = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--workers"))
            workers = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps"))
            reps = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeline"))
            tl = atol(argv[i + 1]) != 0;
    }
    const char *leaders = getenv("RP_MPI_LEADERS");
    if (leaders && !strcmp(leaders, "1"))
        lib = "rankpool-mpi+leaders";
    rp_pool_opts_t o;
    memset(&o, 0, sizeof o);
    o.backend = "mpi";
    o.workers = (int)workers;
    rp_pool_t *p = NULL;
    rp_error_t err;
    memset(&err, 0, sizeof err);
    /* MPI's own start-up is not the pool's: initialised first */
    int provided = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = bench_now();
    int rc = rp_pool_create_ex(&p, &o, &err);
    double t_create = bench_now() - t0;
    if (rc != RP_OK) {
        fprintf(stderr, "rp_scale: rp_pool_create: %s: %s\n", rp_err_name(rc), err.message);
        return 2;
    }
    if (!rp_pool_is_master(p)) {
        rp_pool_free(p);
        double sums[4];
        ranks_totals(false, sums);
        MPI_Finalize();
        return 0;
    }
    int w = rp_pool_size(p), ranks = 0;
    const char *ws = getenv("OMPI_COMM_WORLD_SIZE");
    ranks = ws ? atoi(ws) : w + 1;
    if (items <= 0) /* about 2 s of ideal time, at least 4 items per worker */
        items = (long)w * (ms > 0 ? (2000 / ms > 4 ? 2000 / ms : 4) : 4);
    char variant[64];
    snprintf(variant, sizeof variant, "%dr/%dw/%ldms", ranks, w, ms);
    char wl[32];
    snprintf(wl, sizeof wl, "scale_%s", mode);
    long *in = malloc((size_t)items * sizeof *in), *out = malloc((size_t)items * sizeof *out);
    struct tl_out *tlo = tl ? malloc((size_t)items * sizeof *tlo) : NULL;
    if (tl && !tlo)
        return 2;
    rp_result_t **res = strcmp(mode, "apply") ? NULL : malloc((size_t)items * sizeof *res);
    if (!in || !out || (!strcmp(mode, "apply") && !res))
        return 2;
    for (long i = 0; i < items; i++)
        in[i] = (ms << 32) | i;
    int bad = 0;
    for (long r = 0; r < reps; r++) {
        memset(out, 0, (size_t)items * sizeof *out);
        long long pf = node_count("/proc/vmstat", "pgfault");
        long long cs = node_count("/proc/stat", "ctxt");
        double t = bench_now(), c = bench_cpu_seconds();
        unsigned long sent0 = msgs_sent, recv0 = msgs_recv;
        if (res) {
            for (long i = 0; i < items && !bad; i++)
                if (rp_apply_async(p, task_sleep, &in[i], sizeof *in, &out[i], sizeof *out,
                                   NULL, &res[i]) != RP_OK)
                    bad = 1;
            for (long i = 0; i < items && !bad; i++) {
                if (rp_result_get(res[i], -1, NULL) != RP_OK)
                    bad = 1;
                rp_result_free(res[i]);
            }
        } else if (tl) {
            long t0 = real_ns();
            if (rp_map(p, task_sleep_tl, in, (size_t)items, sizeof *in, tlo, sizeof *tlo, NULL,
                       NULL) != RP_OK)
                bad = 1;
            long t1 = real_ns();
            for (long i = 0; i < items; i++)
                out[i] = tlo[i].v;
            if (!bad)
                timeline(tlo, items, w, t0, t1);
        } else if (rp_map(p, task_sleep, in, (size_t)items, sizeof *in, out, sizeof *out, NULL,
                          NULL) != RP_OK) {
            bad = 1;
        }
        t = bench_now() - t;
        c = bench_cpu_seconds() - c;
        double sent = (double)(msgs_sent - sent0), recvd = (double)(msgs_recv - recv0);
        pf = node_count("/proc/vmstat", "pgfault") - pf;
        cs = node_count("/proc/stat", "ctxt") - cs;
        for (long i = 0; i < items && !bad; i++)
            if (out[i] != i * 3 + 1)
                bad = 1;
        if (bad) {
            fprintf(stderr, "rp_scale: a task failed or gave a wrong output\n");
            break;
        }
        double ideal = (double)items * (double)ms * 1e-3 / w;
        result(wl, variant, w, "efficiency", "%", "higher", 100.0 * ideal / t);
        result(wl, variant, w, "rate", "tasks/s", "higher", (double)items / t);
        result(wl, variant, w, "time", "s", "lower", t);
        result(wl, variant, w, "master_cpu", "% of a core", "lower", 100.0 * c / t);
        result(wl, variant, w, "master_cpu_per_task", "us", "lower", 1e6 * c / (double)items);
        result(wl, variant, w, "master_msgs_per_task", "messages", "lower",
               (sent + recvd) / (double)items);
        result(wl, variant, w, "master_sent_per_task", "messages", "lower",
               sent / (double)items);
        result(wl, variant, w, "master_recv_per_task", "messages", "lower",
               recvd / (double)items);
        if (pf >= 0 && cs >= 0) {
            result(wl, variant, w, "node_faults_per_task", "faults", "lower",
                   (double)pf / (double)items);
            result(wl, variant, w, "node_switches_per_task", "switches", "lower",
                   (double)cs / (double)items);
        }
    }
    t0 = bench_now();
    rp_pool_close(p);
    rp_pool_join(p);
    double t_join = bench_now() - t0;
    rp_pool_free(p);
    double sums[4];
    ranks_totals(true, sums);
    result("scale_startstop", variant, w, "create", "s", "lower", t_create);
    result("scale_startstop", variant, w, "close+join", "s", "lower", t_join);
    /* a pool's whole life on the serving side: create, the runs, stop */
    result("scale_ranks", variant, w, "faults_per_worker", "faults", "lower", sums[0] / w);
    result("scale_ranks", variant, w, "switches_per_task", "switches", "lower",
           sums[1] / ((double)items * reps));
    result("scale_ranks", variant, w, "rank_user_per_task", "us", "lower",
           1e6 * sums[2] / ((double)items * reps));
    result("scale_ranks", variant, w, "rank_sys_per_task", "us", "lower",
           1e6 * sums[3] / ((double)items * reps));
    free(in);
    free(out);
    free(res);
    free(tlo);
    MPI_Finalize();
    return bad ? 1 : 0;
}
