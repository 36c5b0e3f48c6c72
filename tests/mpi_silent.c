/* A serving rank that falls silent (tests/mpi-np3.sh, 3 ranks, 2 workers).
 *
 * The first run of item 0 stops its own rank (SIGSTOP to the worker process's
 * parent), sleeps, then lets it go on (SIGCONT); FLAGFILE (created then)
 * tells later runs that it happened: the rank holds a batch and says
 * nothing for `hold` seconds, as a node behind a dead link would.
 *
 *   mpi_silent stranded FLAGFILE: RP_MPI_STRANDED_TIMEOUT=1, hold 4 s. The map completes
 *     before the rank runs again, every item right; item 0's output is that of
 *     its second run (the late duplicate from the stopped rank is dropped); then
 *     a second map uses both workers again (the worker came back).
 *   mpi_silent unreachable FLAGFILE: RP_MPI_STRANDED_TIMEOUT=1, RP_MPI_UNREACHABLE_TIMEOUT=2
 *     and one worker only: nothing can run the items, so past the second deadline
 *     they fail with RP_EWORKER, the message naming the host and the variable,
 *     well before the rank runs again.
 *   mpi_silent stream FLAGFILE: as stranded, the first map an imap stream of segments of
 *     8 items whose item 20 stops its rank (a segment's batch, numbered from the
 *     segment's start in the whole stream, is handed over and its late duplicate
 *     dropped).
 *   mpi_silent progress FLAGFILE: RP_MPI_STRANDED_TIMEOUT=1, hold 6 s, two batches of 10
 *     items: the rank that stops has reported some items of its batch as processed
 *     (PROGRESS); the other worker sits in a 5 s item. Once the stopped rank's
 *     batch is handed over, those items no longer count as processed:
 *     rp_result_progress says 0 while nothing else finished.
 * Exit status: the number of failed checks. */
#include "rankpool_mpi.h"
#include "mpitest.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int value;
    int worker;
    int stopped; /* 1: this run stopped its rank */
} out_t;

static char flag[256];
static double hold_s;
static int stop_item; /* the item whose first run stops its rank */

static int stop_once(const void *in, void *out, rp_ctx_t *ctx)
{
    out_t *o = out;
    o->value = 7 * *(const int *)in;
    o->worker = rp_ctx_worker(ctx);
    o->stopped = 0;
    if (*(const int *)in == stop_item)
        o->stopped = mt_stop_rank_once(flag, hold_s, NULL, NULL);
    usleep(20000);
    return 0;
}

/* progress mode: item 10 takes 5 s, the others 10 ms; item 5 stops its rank. */
static int stop_at_five(const void *in, void *out, rp_ctx_t *ctx)
{
    int v = *(const int *)in;
    out_t *o = out;
    o->value = 7 * v;
    o->worker = rp_ctx_worker(ctx);
    o->stopped = 0;
    if (v == 5)
        o->stopped = mt_stop_rank_once(flag, hold_s, NULL, NULL);
    usleep(v == 10 ? 5000000 : 10000);
    return 0;
}

/* The stream mode's first map: an imap in segments of 8 items. */
static int imap_all(rp_pool_t *pool, const int *in, int n, out_t *out, rp_error_t *err)
{
    rp_map_opts_t so = { .chunksize = 1, .buffersize = 8 };
    rp_iter_t *it = NULL;
    int rc = rp_imap(pool, stop_once, in, (size_t)n, sizeof *in, sizeof *out, &so, &it);
    if (rc != RP_OK)
        return rc;
    size_t index;
    out_t o;
    int worst = RP_OK, got;
    while ((got = rp_iter_next(it, 60.0, &index, &o, err)) != RP_DONE) {
        if (got == RP_ETIMEDOUT) {
            worst = got;
            break;
        }
        if (got == RP_OK && index < (size_t)n)
            out[index] = o;
        else if (worst == RP_OK)
            worst = got;
    }
    rp_iter_free(it);
    return worst;
}

int main(int argc, char **argv)
{
    mt_named("mpi_silent");
    bool unreach = argc > 1 && strcmp(argv[1], "unreachable") == 0;
    bool progress = argc > 1 && strcmp(argv[1], "progress") == 0;
    bool stream = argc > 1 && strcmp(argv[1], "stream") == 0;
    stop_item = stream ? 20 : 0;
    hold_s = progress ? 6 : 4;
    if (argc < 3) {
        fprintf(stderr, "usage: mpi_silent stranded|unreachable|stream|progress FLAGFILE\n");
        return 1;
    }
    snprintf(flag, sizeof flag, "%s", argv[2]); /* (every rank: the workers inherit it) */
    rp_pool_opts_t o = { 0 };
    o.backend = "mpi";
    o.workers = unreach ? 1 : 2;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_ex(&pool, &o, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_silent: pool: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
    unlink(flag);
    enum { N = 40 };
    int in[N];
    out_t out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    memset(out, 0, sizeof out);
    rp_map_opts_t mo = { .chunksize = 1 };
    int fails = 0;
    if (progress) {
        rp_map_opts_t po = { .chunksize = 10 };
        rp_result_t *res = NULL;
        rc = rp_map_async(pool, stop_at_five, in, 20, sizeof *in, out, sizeof *out, &po, &res);
        fails += mt_check(rc == RP_OK, "the map starts");
        if (rc == RP_OK) {
            /* the batch is handed over about 1 s in; item 10 ends 5 s in */
            usleep(3500000);
            size_t done = 0, total = 0;
            rp_result_progress(res, &done, &total);
            printf("mpi_silent progress: %zu of %zu processed 3.5 s in\n", done, total);
            fails += mt_check(done == 0, "a stranded batch's processed items no longer count");
            rc = rp_result_get(res, 60.0, &err);
            fails += mt_check(rc == RP_OK, "the map succeeds");
            int bad = 0;
            for (int i = 0; i < 20; i++)
                bad += out[i].value != 7 * i;
            fails += mt_check(bad == 0, "every item is right");
            rp_result_free(res);
        }
        usleep((useconds_t)(hold_s * 1e6)); /* the stopped rank runs again */
        goto end;
    }
    double t0 = mt_now();
    if (stream)
        rc = imap_all(pool, in, N, out, &err);
    else
        rc = rp_map(pool, stop_once, in, N, sizeof *in, out, sizeof *out, &mo, &err);
    double took = mt_now() - t0;
    printf("mpi_silent %s: map %s in %.2f s%s%s\n", argv[1],
           rp_err_name(rc), took, rc ? ": " : "", rc ? err.message : "");
    if (unreach) {
        fails += mt_check(rc == RP_EWORKER, "the map fails with RP_EWORKER");
        fails += mt_check(strstr(err.message, "RP_MPI_UNREACHABLE_TIMEOUT") != NULL,
                          "the message names RP_MPI_UNREACHABLE_TIMEOUT");
        char host[64];
        gethostname(host, sizeof host);
        host[sizeof host - 1] = '\0';
        fails += mt_check(strstr(err.message, host) != NULL, "the message names the host");
        fails += mt_check(took < hold_s, "the items failed before the rank ran again");
    } else {
        fails += mt_check(rc == RP_OK, "the map succeeds");
        int bad = 0;
        for (int i = 0; i < N; i++)
            bad += out[i].value != 7 * i;
        fails += mt_check(bad == 0, "every item is right");
        fails += mt_check(out[stop_item].stopped == 0, "the stopped item's late duplicate is "
                          "dropped");
        fails += mt_check(took < hold_s, "the map ends before the rank runs again");
        /* the rank runs again: its worker takes work again */
        usleep((useconds_t)(hold_s * 1e6));
        bool used[2] = { false, false };
        for (int round = 0; round < 20 && !(used[0] && used[1]); round++) {
            rc = rp_map(pool, stop_once, in + 1, N - 1, sizeof *in, out, sizeof *out, &mo,
                        &err);
            fails += mt_check(rc == RP_OK, "a later map succeeds");
            for (int i = 0; i < N - 1; i++)
                if (out[i].worker >= 0 && out[i].worker < 2)
                    used[out[i].worker] = true;
        }
        fails += mt_check(used[0] && used[1], "both workers run items again");
    }
end:
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    unlink(flag);
    return fails;
}
