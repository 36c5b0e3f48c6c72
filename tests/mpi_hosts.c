/* Runs a map over every rank of MPI_COMM_WORLD and reports on which hosts the
 * items ran (tests/netns.sh: two simulated hosts). Exit status 0 when every item
 * is right and at least `argv[1]` distinct hosts (default 2) did work.
 *
 * `mpi_hosts efnref`, launched MPMD with tests/mpi_other serving (another
 * binary): the map must fail with RP_EFNREF, not run a wrong function.
 *
 * `mpi_hosts crash`: item 5 segfaults. With worker processes (the default) the map
 * returns RP_EWORKER; with RP_MPI_ISOLATE=0 the rank dies and the job stops, after
 * the rank's message (tests/mpi-np2.sh checks it).
 *
 * `mpi_hosts outage DEADLINE`: 6 workers map 240 items of 50 ms (chunksize 1)
 * while tests/netns.sh takes the link between the hosts down: the master touches
 * $RP_TEST_MARK when the map starts, the script touches $RP_TEST_MARK.down when
 * the link went down and $RP_TEST_MARK.up when it is back. Exit status 0 when every
 * item is right and the map ended within DEADLINE + 2 s of the ideal: the time
 * the work left at the cut takes the workers of the master's host alone (counted
 * as if every worker had been busy until the cut), and before the link came
 * back. */
#include "rankpool_mpi.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    char host[64];
    int  worker;
    int  value;
} where_t;

/* Where item `in` ran, and 3 * in, after `us` microseconds. */
static int where_after(const void *in, void *out, rp_ctx_t *ctx, useconds_t us)
{
    where_t *w = out;
    gethostname(w->host, sizeof w->host);
    w->host[sizeof w->host - 1] = '\0';
    w->worker = rp_ctx_worker(ctx);
    w->value = 3 * *(const int *)in;
    usleep(us);
    return 0;
}

static int where(const void *in, void *out, rp_ctx_t *ctx)
{
    return where_after(in, out, ctx, 1000); /* long enough that every worker gets a share */
}

static int where_int(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = *(const int *)in;
    return 0;
}

static int crash_five(const void *in, void *out, rp_ctx_t *ctx)
{
    if (*(const int *)in == 5)
        raise(SIGSEGV);
    *(int *)out = *(const int *)in;
    return 0;
}

static int expect_crash(rp_pool_t *pool)
{
    int in[10], out[10];
    for (int i = 0; i < 10; i++)
        in[i] = i;
    rp_error_t err;
    rp_map_opts_t mo = { .chunksize = 1 };
    int rc = rp_map(pool, crash_five, in, 10, sizeof *in, out, sizeof *out, &mo, &err);
    printf("map with a crash: %s: %s\n", rp_err_name(rc), err.message);
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    return rc == RP_EWORKER && err.index == 5 && err.signal == SIGSEGV ? 0 : 1;
}

static int expect_efnref(rp_pool_t *pool)
{
    int in[10], out[10];
    for (int i = 0; i < 10; i++)
        in[i] = i;
    rp_error_t err;
    int rc = rp_map(pool, where_int, in, 10, sizeof *in, out, sizeof *out, NULL, &err);
    printf("map on another binary: %s: %s\n", rp_err_name(rc), err.message);
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    return rc == RP_EFNREF && strstr(err.message, "same binary") ? 0 : 1;
}

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* When file was last touched (wall clock), or 0. */
static double touched(const char *file)
{
    struct stat st;
    if (stat(file, &st) != 0)
        return 0;
    return (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec * 1e-9;
}

static int where_slow(const void *in, void *out, rp_ctx_t *ctx)
{
    return where_after(in, out, ctx, 50000);
}

/* What follows rp_pool_create* on every rank: 1 if it failed (said on stderr); 0 on
 * a serving rank, whose part is done (the pool freed); -1 on the master, which
 * goes on with the pool. */
static int serving_done(int rc, rp_pool_t *pool, const rp_error_t *err)
{
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_hosts: pool: %s: %s\n", rp_strerror(rc), err->message);
        return 1;
    }
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
    return -1;
}

static int expect_outage(double deadline)
{
    rp_pool_opts_t o = { 0 };
    o.backend = "mpi";
    o.workers = 6;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_ex(&pool, &o, &err);
    int st = serving_done(rc, pool, &err);
    if (st >= 0)
        return st;
    const char *mark = getenv("RP_TEST_MARK");
    if (!mark) {
        fprintf(stderr, "mpi_hosts: RP_TEST_MARK is not set\n");
        return 1;
    }
    char down[4096], up[4096], me[64];
    snprintf(down, sizeof down, "%s.down", mark);
    snprintf(up, sizeof up, "%s.up", mark);
    gethostname(me, sizeof me);
    int nA = 0; /* workers on this host */
    enum { N = 240 };
    static int in[N];
    static where_t out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    double t0 = wall();
    FILE *f = fopen(mark, "w");
    if (f)
        fclose(f);
    rc = rp_map(pool, where_slow, in, N, sizeof *in, out, sizeof *out, &mo, &err);
    double t1 = wall();
    double cut = touched(down), back = touched(up);
    int bad = 0, onA = 0;
    int seenA[6] = { 0 };
    for (int i = 0; i < N; i++) {
        bad += out[i].value != 3 * i;
        if (strcmp(out[i].host, me) == 0) {
            onA++;
            if (out[i].worker >= 0 && out[i].worker < 6)
                seenA[out[i].worker] = 1;
        }
    }
    for (int i = 0; i < 6; i++)
        nA += seenA[i];
    double work = N * 0.05, tcut = cut > 0 ? cut - t0 : 0;
    double ideal = nA > 0 ? tcut + (work - 6 * tcut) / nA : 0;
    printf("outage: map %s in %.2f s; link down at %.2f s, back at %s%.2f s; %d items on %s "
           "(%d workers there), %d on the other host; ideal %.2f s, deadline %.1f s; %d wrong\n",
           rp_strerror(rc), t1 - t0, tcut, back > 0 ? "" : "(not yet) ",
           back > 0 ? back - t0 : 0, onA, me, nA, N - onA, ideal, deadline, bad);
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    bool ok = rc == RP_OK && bad == 0 && cut > 0 && nA > 0 && nA < 6 &&
              t1 - t0 <= ideal + deadline + 2 && (back == 0 || back > t1);
    if (!ok)
        fprintf(stderr, "mpi_hosts: outage: FAILED\n");
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "outage") == 0)
        return expect_outage(atof(argv[2]));
    bool efnref = argc > 1 && strcmp(argv[1], "efnref") == 0;
    bool crash = argc > 1 && strcmp(argv[1], "crash") == 0;
    int want = argc > 1 && !efnref && !crash ? atoi(argv[1]) : 2;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
    int st = serving_done(rc, pool, &err);
    if (st >= 0)
        return st;
    if (efnref)
        return expect_efnref(pool);
    if (crash)
        return expect_crash(pool);
    enum { N = 400 };
    static int in[N];
    static where_t out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    rc = rp_map(pool, where, in, N, sizeof *in, out, sizeof *out, &mo, &err);
    char me[64];
    gethostname(me, sizeof me);
    printf("master on %s, %d workers: %s\n", me, rp_pool_size(pool), rp_strerror(rc));
    char hosts[16][64];
    int count[16] = { 0 }, nhosts = 0, bad = 0;
    for (int i = 0; i < N; i++) {
        bad += out[i].value != 3 * i;
        int h = 0;
        while (h < nhosts && strcmp(hosts[h], out[i].host) != 0)
            h++;
        if (h == nhosts && nhosts < 16)
            strcpy(hosts[nhosts++], out[i].host);
        if (h < 16)
            count[h]++;
    }
    for (int h = 0; h < nhosts; h++)
        printf("  %-20s %d items\n", hosts[h], count[h]);
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    if (rc != RP_OK || bad || nhosts < want) {
        fprintf(stderr, "mpi_hosts: FAILED (%d wrong items, %d hosts, %d wanted)\n", bad,
                nhosts, want);
        return 1;
    }
    return 0;
}
