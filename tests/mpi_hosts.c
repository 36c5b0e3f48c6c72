/* Runs a map over every rank of MPI_COMM_WORLD and reports on which hosts the
 * items ran (tests/netns.sh: two simulated hosts). Exit status 0 when every item
 * is right and at least `argv[1]` distinct hosts (default 2) did work.
 *
 * `mpi_hosts efnref`, launched MPMD with tests/mpi_other serving (another
 * binary): the map must fail with RP_EFNREF, not run a wrong function.
 *
 * `mpi_hosts crash`: item 5 segfaults. With worker processes (the default) the map
 * returns RP_EWORKER; with RP_MPI_ISOLATE=0 the rank dies and the job stops, after
 * the rank's message (tests/mpi-np2.sh checks it). */
#include "rankpool_mpi.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char host[64];
    int  worker;
    int  value;
} where_t;

static int where(const void *in, void *out, rp_ctx_t *ctx)
{
    where_t *w = out;
    gethostname(w->host, sizeof w->host);
    w->host[sizeof w->host - 1] = '\0';
    w->worker = rp_ctx_worker(ctx);
    w->value = 3 * *(const int *)in;
    usleep(1000); /* long enough that every worker gets a share */
    return 0;
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

int main(int argc, char **argv)
{
    bool efnref = argc > 1 && strcmp(argv[1], "efnref") == 0;
    bool crash = argc > 1 && strcmp(argv[1], "crash") == 0;
    int want = argc > 1 && !efnref && !crash ? atoi(argv[1]) : 2;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_hosts: pool: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
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
