/* Sends to a rank the master stops waiting for (tests/mpi-np3.sh, 3 ranks, 2
 * workers, one per rank).
 *
 * A one-item job stops its own rank (SIGSTOP to the worker process's parent) for
 * HOLD seconds, once (FLAG made). While that rank is stopped, a map whose batches
 * carry large inputs (256 KiB each: sent as a second message, too large to go out
 * before the receiver takes it) sends some of them to it. Open MPI does not take a
 * started send back, so those sends stay pending, reading the input, until the
 * rank runs again.
 *
 *   mpi_sends stranded FLAG: RP_MPI_STRANDED_TIMEOUT=2. The stopped rank's items
 *     run on the other worker; the map returns before the rank runs again, every
 *     item right.
 *   mpi_sends unreachable FLAG: RP_MPI_STRANDED_TIMEOUT=2, RP_MPI_UNREACHABLE_TIMEOUT=4:
 *     as stranded; 5 s after the map the rank has been given up for good.
 *   mpi_sends free FLAG: RP_MPI_STRANDED_TIMEOUT=2: as stranded, but the caller unmaps
 *     the input and frees the pool at once, the rank still stopped (join gives it
 *     up), and leaves main (MPI_Finalize) while the sends to it are pending: once
 *     the rank runs again, every rank ends cleanly.
 *   mpi_sends pool FLAG: RP_MPI_STRANDED_TIMEOUT=2: as stranded, but the input lies
 *     in a buffer of rp_pool_alloc (sent from it, not copied), which the caller
 *     gives back with rp_pool_free_buffer while the rank is stopped; later maps
 *     (their input in another such buffer) are right.
 *   mpi_sends poolfree FLAG: as pool, then the pool is freed and main left while
 *     the rank is still stopped (as free).
 *   mpi_sends pooldrop FLAG: as poolfree, but the buffer is not given back: the
 *     pool's end frees it (rp_pool_free).
 *
 * Then the caller unmaps the map's input array and lets the rank run again: it
 * takes the sends it was given before it stopped. No rank may crash or stop the
 * job, and a later map is right in every item (stranded: on both workers again).
 * Exit status: the number of failed checks. */
#include "rankpool_mpi.h"
#include "mpitest.h"

#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { WORDS = 64 << 10, N = 24 }; /* 256 KiB of input per item */
#define HOLD_S 16.0

typedef struct {
    uint64_t sum;
    int      worker;
} out_t;

static char flag[256], stopped[300], resumed[300];

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The first run only: stops this worker's rank for HOLD_S. */
static int stop_rank_once(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)in;
    (void)ctx;
    *(int *)out = mt_stop_rank_once(flag, HOLD_S, stopped, resumed);
    return 0;
}

static int sum_words(const void *in, void *out, rp_ctx_t *ctx)
{
    const uint32_t *w = in;
    out_t *o = out;
    o->sum = 0;
    for (int j = 0; j < WORDS; j++)
        o->sum += w[j];
    o->worker = rp_ctx_worker(ctx);
    return 0;
}

static uint32_t word(int i, int j, uint32_t salt)
{
    return (uint32_t)i * 1000003u + (uint32_t)j + salt;
}

/* The input of a map: mapped, or in a buffer of rp_pool_alloc when pool is given. */
static uint32_t *make_input(uint32_t salt, rp_pool_t *pool)
{
    size_t bytes = (size_t)N * WORDS * sizeof(uint32_t);
    uint32_t *in = pool ? rp_pool_alloc(pool, bytes)
                        : mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (in == MAP_FAILED || !in)
        return NULL;
    for (int i = 0; i < N; i++)
        for (int j = 0; j < WORDS; j++)
            in[(size_t)i * WORDS + j] = word(i, j, salt);
    return in;
}

static int wrong(const out_t *out, uint32_t salt)
{
    int bad = 0;
    for (int i = 0; i < N; i++) {
        uint64_t want = 0;
        for (int j = 0; j < WORDS; j++)
            want += word(i, j, salt);
        bad += out[i].sum != want;
    }
    return bad;
}

int main(int argc, char **argv)
{
    mt_named("mpi_sends");
    if (argc < 3) {
        fprintf(stderr, "usage: mpi_sends stranded|unreachable|free|pool|poolfree|pooldrop"
                        " FLAG\n");
        return 1;
    }
    bool unreach = strcmp(argv[1], "unreachable") == 0;
    bool in_pool = strncmp(argv[1], "pool", 4) == 0;
    bool drop = strcmp(argv[1], "pooldrop") == 0;
    bool early_free = strcmp(argv[1], "free") == 0 || strcmp(argv[1], "poolfree") == 0 || drop;
    snprintf(flag, sizeof flag, "%s", argv[2]); /* (every rank: the workers inherit it) */
    snprintf(stopped, sizeof stopped, "%s.stopped", flag);
    snprintf(resumed, sizeof resumed, "%s.resumed", flag);
    rp_pool_opts_t o = { 0 };
    o.backend = "mpi";
    o.workers = 2;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_ex(&pool, &o, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_sends: pool: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    if (!rp_pool_is_master(pool)) {
        rp_pool_free(pool);
        return 0;
    }
    unlink(flag);
    unlink(stopped);
    unlink(resumed);
    int fails = 0;
    int one = 1, got = 0;
    rp_result_t *stop = NULL;
    rc = rp_apply_async(pool, stop_rank_once, &one, sizeof one, &got, sizeof got, NULL, &stop);
    fails += mt_check(rc == RP_OK, "the stopping job starts");
    for (double t0 = mt_now(); rc == RP_OK && !exists(stopped) && mt_now() - t0 < 60;)
        usleep(10000);
    fails += mt_check(exists(stopped), "a rank stopped");
    uint32_t *in = make_input(0, in_pool ? pool : NULL);
    out_t *out = calloc(N, sizeof *out);
    if (!in || !out) {
        fprintf(stderr, "mpi_sends: out of memory\n");
        return 1;
    }
    rp_map_opts_t mo = { .chunksize = 1 };
    double t0 = mt_now();
    rc = rp_map(pool, sum_words, in, N, WORDS * sizeof(uint32_t), out, sizeof *out, &mo, &err);
    double took = mt_now() - t0;
    printf("mpi_sends %s: map %s in %.2f s%s%s\n", argv[1], rp_err_name(rc), took,
           rc ? ": " : "", rc ? err.message : "");
    fails += mt_check(rc == RP_OK, "the map succeeds");
    fails += mt_check(wrong(out, 0) == 0, "every item is right");
    bool early = !exists(resumed);
    fails += mt_check(early, "the map returns before the stopped rank runs again");
    if (unreach) /* the rank is given up (4 s of silence) */
        sleep(5);
    fails += mt_check(!exists(resumed), "the rank is still stopped");
    /* the caller is done with its array: it goes (a pool's buffer, given back:
     * the library frees it, not before the sends from it completed) */
    if (!in_pool)
        munmap(in, (size_t)N * WORDS * sizeof(uint32_t));
    else if (!drop)
        fails += mt_check(rp_pool_free_buffer(pool, in) == RP_OK, "the buffer is given back");
    if (early_free) { /* the rank runs again after the pool ended */
        fails += mt_check(rp_result_get(stop, 60.0, &err) == RP_OK, "the stopping job succeeds");
        rp_result_free(stop);
        rp_pool_close(pool);
        rp_pool_join(pool);
        fails += mt_check(!exists(resumed), "the pool ends before the rank runs again");
        rp_pool_free(pool);
        free(out);
        printf("mpi_sends %s: %d failed checks\n", argv[1], fails);
        return fails;
    }
    /* the rank runs again and takes what it was sent */
    while (!exists(resumed))
        usleep(10000);
    sleep(2);
    uint32_t *again = make_input(7, in_pool ? pool : NULL);
    fails += mt_check(again != NULL, "a new input");
    rc = rp_result_get(stop, 120.0, &err);
    fails += mt_check(rc == RP_OK, "the stopping job succeeds");
    rp_result_free(stop);
    bool used[2] = { false, false };
    for (int round = 0; round < 20 && !(used[0] && used[1]); round++) {
        memset(out, 0, N * sizeof *out);
        rc = rp_map(pool, sum_words, again, N, WORDS * sizeof(uint32_t), out, sizeof *out,
                    &mo, &err);
        fails += mt_check(rc == RP_OK, "a later map succeeds");
        fails += mt_check(wrong(out, 7) == 0, "a later map is right in every item");
        for (int i = 0; i < N; i++)
            if (out[i].worker >= 0 && out[i].worker < 2)
                used[out[i].worker] = true;
        if (unreach)
            break;
    }
    if (!unreach)
        fails += mt_check(used[0] && used[1], "both workers run items again");
    rp_pool_close(pool);
    rp_pool_join(pool);
    rp_pool_free(pool);
    if (!in_pool) /* (a pool's buffer went with the pool) */
        munmap(again, (size_t)N * WORDS * sizeof(uint32_t));
    free(out);
    unlink(flag);
    unlink(stopped);
    unlink(resumed);
    printf("mpi_sends %s: %d failed checks\n", argv[1], fails);
    return fails;
}
