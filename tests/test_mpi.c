/* The mpi backend under real mpirun (tests/mpi-np{2,3,5}.sh): what only MPI has.
 * The program initialises MPI itself and does its own MPI work before and after
 * each pool, so it also checks that the pool leaves MPI to the program. Every rank
 * runs every test; serving ranks return from pool creation and skip the master's
 * assertions. The exit status, the same on every rank, is the total number of
 * failures over all ranks. */
#define _GNU_SOURCE 1 /* sched_getaffinity */
#include "rankpool_mpi.h"
#include "testutil.h"
#include "wire.h" /* (the framing's constants, for a malformed message) */

#include <dirent.h>
#include <limits.h>
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int world_rank, world_size;
/* RP_MPI_LEADERS=1: the workers placed on a node's serving ranks live on the
 * lowest of them; leader_of[r] is that rank for world rank r (set in main). */
static int *leader_of;

/* The rank expected to host the workers placed on serving rank n of a pool on
 * the whole world. */
static int host_of(int n)
{
    return leader_of ? leader_of[n] : n;
}

/* Whether rank 1 hosts every worker of a pool on the whole world. */
static bool rank1_hosts_all(void)
{
    for (int r = 1; r < world_size; r++)
        if (host_of(r) != 1)
            return false;
    return true;
}

/* ---- tasks: static on purpose (resolved on every rank despite ASLR/PIE) ------------ */

static int square(const void *in, void *out, rp_ctx_t *ctx)
{
    double x = *(const double *)in;
    *(double *)out = x * x;
    return 0;
}

static int who_runs(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = rp_ctx_worker(ctx);
    return 0;
}

/* How many of the workers 0..nworkers-1 (at most 64) ran an item, from who_runs'
 * outputs by[0..n). */
static int workers_seen(const int *by, int n, int nworkers)
{
    char seen[64] = { 0 };
    int count = 0;
    for (int i = 0; i < n; i++)
        if (by[i] >= 0 && by[i] < nworkers && by[i] < 64 && !seen[by[i]]) {
            seen[by[i]] = 1;
            count++;
        }
    return count;
}

static int fail_seven(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    if (i == 7)
        return rp_raise(ctx, 5, "item %d is bad", i);
    *(int *)out = i;
    return 0;
}

static int crash_five(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    if (i == 5)
        raise(SIGSEGV);
    *(int *)out = 2 * i;
    return 0;
}

/* Hangs on 0 (until killed), doubles anything else. */
static int hang_on_zero(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    int i = *(const int *)in;
    while (i == 0)
        pause();
    *(int *)out = 2 * i;
    return 0;
}

/* The pidfds open in the worker process that runs the item (a rank's own, copied
 * by the fork, would take the task's descriptors). */
static int count_pidfds(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)in;
    (void)ctx;
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return rp_raise(ctx, RP_ESYS, "opendir /proc/self/fd");
    for (struct dirent *e; (e = readdir(d));) {
        char link[64];
        ssize_t len = readlinkat(dirfd(d), e->d_name, link, sizeof link - 1);
        if (len > 0) {
            link[len] = 0;
            n += strstr(link, "pidfd") != NULL;
        }
    }
    closedir(d);
    *(int *)out = n;
    return 0;
}

static int crash_several(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    if (i == 50)
        raise(SIGSEGV);
    if (i == 77)
        _exit(3);
    if (i == 120)
        abort();
    if (i == 150)
        raise(SIGKILL);
    *(int *)out = i + 1;
    return 0;
}

/* The first initializer succeeds; once a task left the marker file, the
 * replacement's initializer fails. */
static char marker[64];

static int init_unless_marker(const void *arg, rp_ctx_t *ctx)
{
    snprintf(marker, sizeof marker, "%s", (const char *)arg);
    if (access(marker, F_OK) == 0)
        return rp_raise(ctx, 9, "marker %s exists", marker);
    return 0;
}

static int mark_and_crash(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    if (i == 3) {
        FILE *f = fopen(marker, "w");
        if (f)
            fclose(f);
        raise(SIGSEGV);
    }
    usleep(500);
    *(int *)out = i;
    return 0;
}

static int cpus_allowed(const void *in, void *out, rp_ctx_t *ctx)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof set, &set);
    *(int *)out = CPU_COUNT(&set);
    return 0;
}

static int offset_value;

static int init_offset(const void *arg, rp_ctx_t *ctx)
{
    offset_value = *(const int *)arg;
    return 0;
}

static int add_offset(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = *(const int *)in + offset_value;
    return 0;
}

static int init_refuses(const void *arg, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 3, "no licence on worker %d", rp_ctx_worker(ctx));
}

static int slow_item(const void *in, void *out, rp_ctx_t *ctx)
{
    usleep(2000);
    *(int *)out = *(const int *)in;
    return 0;
}

/* Failures with the longest message a record holds (255 characters), so that the
 * records of a large batch outgrow a worker's transfer area. */
static int fail_long(int i, rp_ctx_t *ctx)
{
    return rp_raise(ctx, 4, "item %09d failed: %0*d", i, 255 - 23, 0);
}

static int fail_all(const void *in, void *out, rp_ctx_t *ctx)
{
    return fail_long(*(const int *)in, ctx);
}

static int fail_odd(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    if (i % 2)
        return fail_long(i, ctx);
    *(int *)out = 3 * i;
    return 0;
}

/* ---- tests -------------------------------------------------------------------------- */

static rp_pool_t *world_pool(const rp_pool_opts_t *opts)
{
    rp_pool_t *p = NULL;
    rp_error_t err;
    int rc = rp_pool_create_comm(&p, opts, MPI_COMM_WORLD, &err);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    if (rc != RP_OK)
        return NULL;
    if (!rp_pool_is_master(p)) {
        rp_pool_free(p);
        return NULL;
    }
    return p;
}

/* SPMD: the program's MPI before and after, the pool in between, MPI untouched. */
static void test_mpi_spmd_phases_around_the_pool(void)
{
    int sum = 0;
    MPI_Allreduce(&world_rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CU_ASSERT_EQUAL(sum, world_size * (world_size - 1) / 2);

    rp_pool_t *p = NULL;
    int rc = rp_pool_create_comm(&p, NULL, MPI_COMM_WORLD, NULL);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    CU_ASSERT_EQUAL(rp_pool_is_master(p), world_rank == 0);
    if (rp_pool_is_master(p)) {
        CU_ASSERT_STRING_EQUAL(rp_pool_backend(p), "mpi");
        CU_ASSERT_EQUAL(rp_pool_size(p), world_size - 1);
        MPI_Comm c = rp_pool_comm(p);
        int cmp = -1, len = 0;
        char name[MPI_MAX_OBJECT_NAME];
        MPI_Comm_compare(c, MPI_COMM_WORLD, &cmp);
        CU_ASSERT_EQUAL(cmp, MPI_CONGRUENT); /* a duplicate, not the world itself */
        MPI_Comm_get_name(c, name, &len);
        CU_ASSERT_STRING_EQUAL(name, "rankpool");
        for (int w = 0; w < rp_pool_size(p); w++)
            CU_ASSERT_EQUAL(rp_pool_worker_rank(p, w), host_of(1 + w));

        double in[1000], out[1000];
        for (int i = 0; i < 1000; i++)
            in[i] = i;
        CU_ASSERT_EQUAL(rp_map(p, square, in, 1000, sizeof *in, out, sizeof *out, NULL, NULL),
                        RP_OK);
        int bad = 0;
        for (int i = 0; i < 1000; i++)
            bad += out[i] != (double)i * i;
        CU_ASSERT_EQUAL(bad, 0);

        /* chunksize 1: every worker (rank) gets work */
        int idx[200], by[200];
        for (int i = 0; i < 200; i++)
            idx[i] = i;
        rp_map_opts_t mo = { .chunksize = 1 };
        CU_ASSERT_EQUAL(rp_map(p, who_runs, idx, 200, sizeof *idx, by, sizeof *by, &mo, NULL),
                        RP_OK);
        int size = rp_pool_size(p);
        CU_ASSERT_EQUAL(workers_seen(by, 200, size), size < 64 ? size : 64);
        CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
        CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    } else {
        CU_ASSERT_EQUAL(rp_pool_close(p), RP_ENOTMASTER);
    }
    rp_pool_free(p);

    int init = 0, fin = 1;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    CU_ASSERT_TRUE(init);
    CU_ASSERT_FALSE(fin);
    sum = 0;
    MPI_Allreduce(&world_rank, &sum, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    CU_ASSERT_EQUAL(sum, world_size * (world_size - 1) / 2);
}

/* More workers than serving ranks: each rank runs several worker processes. */
static void test_mpi_more_workers_than_ranks(void)
{
    int want = 2 * (world_size - 1) + 1;
    rp_pool_opts_t o = { .workers = want };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    CU_ASSERT_EQUAL(rp_pool_size(p), want);
    for (int w = 0; w < want; w++)
        CU_ASSERT_EQUAL(rp_pool_worker_rank(p, w), host_of(1 + w % (world_size - 1)));
    CU_ASSERT_EQUAL(rp_pool_worker_rank(p, want), -1);
    enum { N = 300 };
    int idx[N], by[N];
    for (int i = 0; i < N; i++)
        idx[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, who_runs, idx, N, sizeof *idx, by, sizeof *by, &mo, NULL), RP_OK);
    CU_ASSERT_EQUAL(workers_seen(by, N, want), want < 64 ? want : 64);
    tu_pool_done(p);
}

/* Large inputs and outputs: batches whose input travels as its own message and
 * whose outputs land straight in the caller's array; 1 MiB items too. */
static int copy_mib(const void *in, void *out, rp_ctx_t *ctx)
{
    memcpy(out, in, 1 << 20);
    ((char *)out)[rp_ctx_index(ctx) % (1 << 20)] ^= 1;
    return 0;
}

static void test_mpi_large_data(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    size_t n = 300000;
    double *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    for (size_t i = 0; i < n; i++)
        in[i] = (double)i;
    CU_ASSERT_EQUAL(rp_map(p, square, in, n, sizeof *in, out, sizeof *out, NULL, NULL), RP_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != (double)i * (double)i;
    CU_ASSERT_EQUAL(bad, 0);
    free(in);
    free(out);

    enum { M = 6, MIB = 1 << 20 };
    char *big_in = malloc((size_t)M * MIB), *big_out = malloc((size_t)M * MIB);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big_in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(big_out);
    for (size_t i = 0; i < (size_t)M * MIB; i++)
        big_in[i] = (char)(i * 7);
    CU_ASSERT_EQUAL(rp_map(p, copy_mib, big_in, M, MIB, big_out, MIB, NULL, NULL), RP_OK);
    bad = 0;
    for (size_t k = 0; k < M; k++)
        for (size_t j = 0; j < MIB; j++)
            bad += big_out[k * MIB + j] != (char)(big_in[k * MIB + j] ^ (j == k ? 1 : 0));
    CU_ASSERT_EQUAL(bad, 0);
    free(big_in);
    free(big_out);
    tu_pool_done(p);
}

/* A second pool over the ranks already serving a first one would wait forever:
 * refused at once, like a null communicator. */
static void test_mpi_second_pool_on_busy_communicator(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    rp_pool_t *q = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_pool_create_comm(&q, NULL, MPI_COMM_WORLD, &err), RP_EINVAL);
    CU_ASSERT_PTR_NULL(q);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "already running"));
    CU_ASSERT_EQUAL(rp_pool_create_comm(&q, NULL, MPI_COMM_NULL, &err), RP_EINVAL);
    CU_ASSERT_PTR_NULL(q);
    double x = 3, y = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &x, 8, &y, 8, NULL), RP_OK); /* p unharmed */
    CU_ASSERT_EQUAL(y, 9);
    tu_pool_done(p);
}

/* opts.bind: each worker process is bound to one core. */
static void test_mpi_bind_workers(void)
{
    rp_pool_opts_t o = { .bind = true };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    int in[40], out[40];
    for (int i = 0; i < 40; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, cpus_allowed, in, 40, sizeof *in, out, sizeof *out, &mo, NULL),
                    RP_OK);
    int bad = 0;
    for (int i = 0; i < 40; i++)
        bad += out[i] != 1;
    CU_ASSERT_EQUAL(bad, 0);
    tu_pool_done(p);
}

/* Two pools at once, on the two halves of a split communicator. */
static void test_mpi_pool_on_user_communicator(void)
{
    MPI_Comm half;
    MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &half);
    int hsize, hrank;
    MPI_Comm_size(half, &hsize);
    MPI_Comm_rank(half, &hrank);
    rp_pool_t *p = NULL;
    rp_error_t err;
    int rc = rp_pool_create_comm(&p, NULL, half, &err);
    if (hsize < 2) {
        CU_ASSERT_EQUAL(rc, RP_EBACKEND); /* nobody to serve */
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "mpirun"));
    } else {
        CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
        CU_ASSERT_EQUAL(rp_pool_is_master(p), hrank == 0);
        if (rp_pool_is_master(p)) {
            CU_ASSERT_EQUAL(rp_pool_size(p), hsize - 1);
            double in[300], out[300];
            for (int i = 0; i < 300; i++)
                in[i] = i + world_rank;
            CU_ASSERT_EQUAL(rp_map(p, square, in, 300, 8, out, 8, NULL, NULL), RP_OK);
            CU_ASSERT_EQUAL(out[299], in[299] * in[299]);
            rp_pool_close(p);
            rp_pool_join(p);
        }
        rp_pool_free(p);
    }
    MPI_Comm_free(&half);
}

static void test_mpi_remote_failure_names_host_and_rank(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    int in[20], out[20];
    for (int i = 0; i < 20; i++)
        in[i] = i;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_map(p, fail_seven, in, 20, sizeof *in, out, sizeof *out, NULL, &err),
                    RP_ETASK);
    CU_ASSERT_EQUAL(err.code, RP_ETASK);
    CU_ASSERT_EQUAL(err.index, 7);
    CU_ASSERT_EQUAL(err.task_code, 5);
    CU_ASSERT_STRING_EQUAL(err.message, "item 7 is bad");
    char host[64];
    gethostname(host, sizeof host);
    host[63] = '\0';
    CU_ASSERT_STRING_EQUAL(err.host, host);
    CU_ASSERT_TRUE(err.worker >= 0 && err.worker < rp_pool_size(p));
    CU_ASSERT_TRUE(rp_pool_worker_rank(p, err.worker) >= 1);
    CU_ASSERT_EQUAL(out[19], 19); /* the other items are there */
    tu_pool_done(p);
}

static void test_mpi_static_initializer_and_task(void)
{
    int arg = 1000;
    rp_pool_opts_t o = { .initializer = init_offset, .initarg = &arg,
                         .initarg_size = sizeof arg };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    int in[100], out[100];
    for (int i = 0; i < 100; i++)
        in[i] = i;
    CU_ASSERT_EQUAL(rp_map(p, add_offset, in, 100, sizeof *in, out, sizeof *out, NULL, NULL),
                    RP_OK);
    CU_ASSERT_EQUAL(out[0], 1000);
    CU_ASSERT_EQUAL(out[99], 1099);
    CU_ASSERT_EQUAL(offset_value, 0); /* it ran on the workers, not here */
    tu_pool_done(p);
}

static void test_mpi_initializer_failure_everywhere(void)
{
    rp_pool_opts_t o = { .initializer = init_refuses };
    rp_pool_t *p = NULL;
    rp_error_t err;
    int rc = rp_pool_create_comm(&p, &o, MPI_COMM_WORLD, &err);
    CU_ASSERT_EQUAL(rc, RP_EINIT); /* on every rank: the master's verdict */
    CU_ASSERT_PTR_NULL(p);
    if (world_rank == 0) {
        CU_ASSERT_EQUAL(err.code, RP_EINIT);
        CU_ASSERT_EQUAL(err.task_code, 3);
        CU_ASSERT_STRING_EQUAL(err.message, "no licence on worker 0");
    }
}

/* RP_MPI_LEADERS=1 with every rank on one node: more workers than one rank may
 * host (1024) are each within the limit per rank, but their leader would host them
 * all: RP_EINVAL on every rank, the message naming the leader, and no process is
 * started. (Without leaders, or on several nodes, there is nothing to check.) */
static void test_mpi_leader_refuses_more_than_a_rank_holds(void)
{
    if (!leader_of || !rank1_hosts_all() || world_size < 3)
        return;
    rp_pool_opts_t o = { .workers = 1025 };
    rp_pool_t *p = NULL;
    rp_error_t err;
    int rc = rp_pool_create_comm(&p, &o, MPI_COMM_WORLD, &err);
    CU_ASSERT_EQUAL(rc, RP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    if (world_rank == 0) {
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "rank 1 on "));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "would host 1025 workers, more than 1024"));
    }
    /* and a pool within the limit works on the same ranks */
    p = world_pool(NULL);
    if (p)
        tu_pool_done(p);
}

/* A task segfaults on a worker rank: its item fails with RP_EWORKER naming the
 * signal, rank and host; the other items and later maps are fine. */
static void test_mpi_crash_of_a_task(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    int in[20], out[20];
    for (int i = 0; i < 20; i++) {
        in[i] = i;
        out[i] = -1;
    }
    rp_error_t err;
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, crash_five, in, 20, sizeof *in, out, sizeof *out,
                                       NULL, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 30.0, &err), RP_EWORKER);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), 1);
    CU_ASSERT_EQUAL(err.index, 5);
    CU_ASSERT_EQUAL(err.signal, SIGSEGV);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "signal 11"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "rank"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, err.host));
    CU_ASSERT_TRUE(err.host[0] != '\0');
    int bad = 0;
    for (int i = 0; i < 20; i++)
        if (i != 5)
            bad += out[i] != 2 * i;
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    /* the worker was replaced: the pool goes on */
    double x = 4, y = 0;
    CU_ASSERT_EQUAL(rp_apply(p, square, &x, 8, &y, 8, NULL), RP_OK);
    CU_ASSERT_EQUAL(y, 16);
    tu_pool_done(p);
}

/* A map of n items with chunksize 1 over crash_five: item 5's worker dies by
 * SIGSEGV (RP_EWORKER naming it), every other item is right. */
static void map_crash_five(rp_pool_t *p, const int *in, int *out, int n)
{
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_map(p, crash_five, in, (size_t)n, sizeof *in, out, sizeof *out, &mo, &err),
                    RP_EWORKER);
    CU_ASSERT_EQUAL(err.index, 5);
    CU_ASSERT_EQUAL(err.signal, SIGSEGV);
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad += i != 5 && out[i] != 2 * i;
    CU_ASSERT_EQUAL(bad, 0);
}

/* A child of the program's own that ended and was not reaped, on every rank: the
 * ranks still find their workers' deaths (waitid shows the program's child first,
 * so the ranks ask each worker's process instead), and leave that child with its
 * exit status to the program. */
static void test_mpi_program_child_left_to_program(void)
{
    pid_t own = fork();
    if (own == 0)
        _exit(7);
    CU_ASSERT_FATAL(own > 0);
    siginfo_t si = { 0 };
    CU_ASSERT_EQUAL(waitid(P_PID, (id_t)own, &si, WEXITED | WNOWAIT), 0); /* ended */
    rp_pool_opts_t o = { .workers = 3 * (world_size - 1) };
    rp_pool_t *p = world_pool(&o);
    if (p) {
        enum { N = 60 };
        int in[N], out[N];
        for (int i = 0; i < N; i++)
            in[i] = i, out[i] = -1;
        for (int round = 0; round < 3; round++) /* a death, its replacement, again */
            map_crash_five(p, in, out, N);
        tu_pool_done(p);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(own, &status, 0), own);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 7);
}

/* A child of the program's own that ends while the pool runs and stays unreaped,
 * on every rank: the ranks still find their workers' deaths (each worker process
 * is watched on its own, so the program's child is never looked at; without that,
 * waitid shows it first and the ranks ask each worker in turn), kill and replace a
 * worker past its item's time limit, and leave that child with its exit status
 * to the program. */
/* A rank watches each worker process through a pidfd; a worker forked after others
 * must not keep the rank's pidfds of them. */
static void test_mpi_worker_holds_no_pidfds(void)
{
    rp_pool_opts_t o = { .workers = 8 * (world_size - 1) };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    enum { N = 64 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i, out[i] = -1;
    rp_map_opts_t mo = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, count_pidfds, in, N, sizeof *in, out, sizeof *out, &mo, NULL),
                    RP_OK);
    int most = 0;
    for (int i = 0; i < N; i++)
        most = out[i] > most ? out[i] : most;
    CU_ASSERT_EQUAL(most, 0);
    tu_pool_done(p);
}

static void test_mpi_program_child_ends_while_pool_runs(void)
{
    pid_t own = fork();
    if (own == 0) {
        usleep(300000);
        _exit(9);
    }
    CU_ASSERT_FATAL(own > 0);
    rp_pool_opts_t o = { .workers = 2 * (world_size - 1) };
    rp_pool_t *p = world_pool(&o);
    if (p) {
        enum { N = 40 };
        int in[N], out[N];
        for (int i = 0; i < N; i++)
            in[i] = i, out[i] = -1;
        for (int round = 0; round < 3; round++) {
            if (round == 1)
                usleep(500000); /* the program's child has ended by now */
            map_crash_five(p, in, out, N);
        }
        /* a timed item that overruns: its process is killed, found, replaced */
        rp_map_opts_t to = { .chunksize = 1, .task_timeout = 0.2 };
        int hin[2] = { 1, 0 }, hout[2] = { -1, -1 };
        rp_error_t err;
        CU_ASSERT_EQUAL(rp_map(p, hang_on_zero, hin, 2, sizeof *hin, hout, sizeof *hout, &to,
                               &err), RP_ETASKTIMEOUT);
        CU_ASSERT_EQUAL(err.index, 1);
        CU_ASSERT_EQUAL(hout[0], 2);
        double x = 3, y = 0;
        CU_ASSERT_EQUAL(rp_apply(p, square, &x, 8, &y, 8, NULL), RP_OK);
        CU_ASSERT_EQUAL(y, 9);
        tu_pool_done(p);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(own, &status, 0), own);
    CU_ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 9);
}

/* Several deaths inside large batches: exactly the items that died fail, with
 * their signal or exit status; the rest of each batch goes back to the master and
 * runs on any worker. */
static void test_mpi_crashes_inside_batches(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    enum { N = 200 };
    int in[N], out[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        out[i] = -1;
    }
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, crash_several, in, N, sizeof *in, out, sizeof *out,
                                       NULL, &r), RP_OK);
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_result_get(r, 60.0, &err), RP_EWORKER);
    CU_ASSERT_EQUAL(err.index, 50);
    CU_ASSERT_EQUAL_FATAL(rp_result_nerrors(r), 4);
    const rp_error_t *e = rp_result_error(r, 0);
    CU_ASSERT_EQUAL(e->index, 50);
    CU_ASSERT_EQUAL(e->signal, SIGSEGV);
    e = rp_result_error(r, 1);
    CU_ASSERT_EQUAL(e->index, 77);
    CU_ASSERT_EQUAL(e->signal, 0);
    CU_ASSERT_EQUAL(e->exit_status, 3);
    e = rp_result_error(r, 2);
    CU_ASSERT_EQUAL(e->index, 120);
    CU_ASSERT_EQUAL(e->signal, SIGABRT);
    e = rp_result_error(r, 3);
    CU_ASSERT_EQUAL(e->index, 150);
    CU_ASSERT_EQUAL(e->signal, SIGKILL);
    CU_ASSERT_EQUAL(e->code, RP_EWORKER);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (i != 50 && i != 77 && i != 120 && i != 150)
            bad += out[i] != i + 1;
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    tu_pool_done(p);
}

/* A worker dies and its replacement's initializer fails: that worker is gone and
 * hands its queued items back; the other workers run them (only the item that
 * died fails), or, with no worker left, they fail with RP_EBROKEN. */
static void test_mpi_replacement_cannot_start(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/rp-test-mpi-%d", (int)getpid());
    MPI_Bcast(path, sizeof path, MPI_CHAR, 0, MPI_COMM_WORLD);
    rp_pool_opts_t o = { .initializer = init_unless_marker, .initarg = path,
                         .initarg_size = sizeof path };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    enum { N = 40 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, mark_and_crash, in, N, sizeof *in, out, sizeof *out,
                                       &mo, &r), RP_OK);
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_result_get(r, 60.0, &err), RP_EWORKER);
    CU_ASSERT_EQUAL(err.index, 3);
    size_t nerr = rp_result_nerrors(r);
    CU_ASSERT_TRUE(nerr >= 1);
    for (size_t k = 1; k < nerr; k++) {
        const rp_error_t *e = rp_result_error(r, k);
        CU_ASSERT_EQUAL(e->code, RP_EBROKEN);
    }
    if (world_size > 2)
        CU_ASSERT_EQUAL(nerr, 1); /* the other workers ran everything else */
    rp_result_free(r);
    double x = 5, y = 0;
    int rc = rp_apply(p, square, &x, 8, &y, 8, NULL);
    if (world_size == 2) {
        CU_ASSERT_EQUAL(rc, RP_EBROKEN);
    } else {
        CU_ASSERT_EQUAL(rc, RP_OK);
        CU_ASSERT_EQUAL(y, 25);
    }
    tu_pool_done(p);
    unlink(path);
}

/* While the master does not call into the pool, batches keep going out: progress
 * reaches every item without any wait or get. */
static void test_mpi_progress_while_master_computes(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    enum { N = 120 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_item, in, N, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    size_t done = 0, total = 0;
    volatile double acc = 0;
    double t0 = MPI_Wtime();
    while (done < N && MPI_Wtime() - t0 < 60) {
        for (int i = 0; i < 100000; i++) /* the master's own computation */
            acc += i * 0.5;
        rp_result_progress(r, &done, &total);
    }
    CU_ASSERT_EQUAL(total, N);
    CU_ASSERT_EQUAL(done, N);
    CU_ASSERT_EQUAL(rp_result_get(r, RP_FOREVER, NULL), RP_OK);
    CU_ASSERT_EQUAL(out[N - 1], N - 1);
    rp_result_free(r);
    tu_pool_done(p);
}

/* After garbage sent to rank 1: maps go on until its complaint arrives; then the
 * rank is given up (RP_EPROTO), and the other ranks, if any host workers, go on. */
static void rank1_given_up(rp_pool_t *p)
{
    double in[50], out[50];
    for (int i = 0; i < 50; i++)
        in[i] = i;
    rp_error_t err;
    int rc = RP_OK;
    /* the rank's complaint may arrive after a map or two */
    for (int k = 0; k < 20 && rc == RP_OK; k++) {
        rc = rp_map(p, square, in, 50, 8, out, 8, NULL, &err);
        usleep(10000);
    }
    if (rank1_hosts_all()) { /* (2 ranks, or one node's leader) */
        CU_ASSERT_TRUE(rc == RP_EPROTO || rc == RP_EBROKEN);
    } else {
        CU_ASSERT_TRUE(rc == RP_OK || rc == RP_EPROTO);
        /* once given up, rank 1 gets no more work and the others do it all */
        for (int k = 0; k < 3; k++)
            rc = rp_map(p, square, in, 50, 8, out, 8, NULL, &err);
        CU_ASSERT_EQUAL(rc, RP_OK);
        CU_ASSERT_EQUAL(out[49], 49.0 * 49.0);
    }
}

/* Garbage sent to a serving rank on the pool's communicator: that rank is given up
 * (RP_EPROTO), nothing crashes or hangs, the other ranks go on. */
static void test_mpi_malformed_message_is_an_error(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    char junk[64];
    memset(junk, 0x5a, sizeof junk);
    /* 7310: the tag that routes a batch to a rank's first worker */
    MPI_Send(junk, sizeof junk, MPI_BYTE, 1, 7310, rp_pool_comm(p));
    rank1_given_up(p);
    tu_pool_done(p);
}

/* A message header (wire.h's layout) at p. */
static void put_header(char *p, uint16_t kind, uint32_t worker, uint64_t length)
{
    uint32_t magic = RP__WIRE_MAGIC, flags = 0;
    uint16_t version = RP__WIRE_VERSION;
    memcpy(p, &magic, 4);
    memcpy(p + 4, &version, 2);
    memcpy(p + 6, &kind, 2);
    memcpy(p + 8, &worker, 4);
    memcpy(p + 12, &flags, 4);
    memcpy(p + 16, &length, 8);
}

/* A malformed BUNDLE (with node leaders, several batches in one message: mpi/bundle.c)
 * sent to a serving rank: its one part, a BATCH with a right header, is for a
 * worker the rank does not host (999). That rank is given up (RP_EPROTO), nothing
 * crashes or hangs. */
static void test_mpi_malformed_bundle_is_an_error(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    char msg[RP__WIRE_HDR_SIZE + 8 + 64];
    memset(msg, 0x5a, sizeof msg);
    uint32_t part[2] = { 999, 64 }; /* the rank's worker 999, 64 bytes */
    put_header(msg, RP__MSG_BUNDLE, 1, sizeof msg);
    memcpy(msg + RP__WIRE_HDR_SIZE, part, sizeof part);
    put_header(msg + RP__WIRE_HDR_SIZE + 8, RP__MSG_BATCH, 0, 64);
    MPI_Send(msg, sizeof msg, MPI_BYTE, 1, 7301 /* the control tag */, rp_pool_comm(p));
    rank1_given_up(p);
    tu_pool_done(p);
}

/* Every failure is reported, however many a batch holds: one batch (chunksize n)
 * of 10^6 failing items whose records (~300 bytes each) outgrow the worker's
 * transfer area, then 2 * 10^6 items of which every other one fails. */
static size_t wrong_failures(rp_result_t *r, size_t n, size_t step)
{
    size_t bad = 0;
    for (size_t k = 0; k < n / step; k++) {
        const rp_error_t *e = rp_result_error(r, k);
        size_t want = step == 1 ? k : 2 * k + 1;
        bad += !e || e->index != want || e->code != RP_ETASK || e->task_code != 4 ||
               strlen(e->message) != 255 || atoi(e->message + 5) != (int)want;
    }
    return bad;
}

static void test_mpi_every_failure_reported(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    size_t n = 2000000;
    int *in = malloc(n * sizeof *in), *out = malloc(n * sizeof *out);
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    CU_ASSERT_PTR_NOT_NULL_FATAL(out);
    for (size_t i = 0; i < n; i++) {
        in[i] = (int)i;
        out[i] = -1;
    }
    rp_map_opts_t mo = { .chunksize = n / 2 };
    rp_result_t *r = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_all, in, n / 2, sizeof *in, out, sizeof *out,
                                       &mo, &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 600, &err), RP_ETASK);
    CU_ASSERT_EQUAL(err.index, 0);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), n / 2);
    CU_ASSERT_EQUAL(rp_result_successful(r), 0);
    CU_ASSERT_EQUAL(wrong_failures(r, n / 2, 1), 0);
    rp_result_free(r);

    mo.chunksize = n;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, n, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_get(r, 600, &err), RP_ETASK);
    CU_ASSERT_EQUAL(err.index, 1);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), n / 2);
    CU_ASSERT_EQUAL(wrong_failures(r, n, 2), 0);
    size_t bad = 0;
    for (size_t i = 0; i < n; i += 2)
        bad += out[i] != 3 * (int)i;
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    free(in);
    free(out);
    tu_pool_done(p);
}

/* Variable-size outputs that together outgrow a worker's transfer area, in one
 * batch (chunksize n): 300 outputs of 1 MiB all arrive (items past ~255 MiB found
 * no room and failed before). */
static int mib_output(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    char *p = rp_output(ctx, (size_t)1 << 20);
    if (!p)
        return rp_raise(ctx, 7, "no room for the output of item %d", i);
    memset(p, i % 251, (size_t)1 << 20);
    return 0;
}

static void test_mpi_var_outputs_beyond_one_area(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    enum { N = 300 };
    int in[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = N };
    rp_varout_t *vo = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_map_var(p, mib_output, in, N, sizeof *in, &mo, &vo, &err), RP_OK);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        size_t size = 0;
        const unsigned char *d = rp_varout_item(vo, (size_t)i, &size);
        bad += !d || size != (1u << 20) || d[0] != i % 251 || d[size - 1] != i % 251;
    }
    CU_ASSERT_EQUAL(bad, 0);
    rp_varout_free(vo);
    tu_pool_done(p);
}

/* A worker process killed halfway through writing a record into its transfer
 * area (the library's test hook RP_TEST_DIE_IN_RECORD=N: the first process of
 * worker 0 dies with half of its N-th record written): a record is part of a
 * result whole or not at all. The item whose record was cut fails once, with
 * RP_EWORKER and SIGKILL; every other record arrives intact, and no rank is given
 * up for a malformed result. First failure records, then variable-size outputs. */
static int var_bytes(const void *in, void *out, rp_ctx_t *ctx)
{
    int i = *(const int *)in;
    unsigned char *o = rp_output(ctx, 100 + (size_t)i);
    if (!o)
        return rp_raise(ctx, 2, "no room");
    memset(o, i % 251, 100 + (size_t)i);
    return 0;
}

static rp_pool_t *pool_dying_in_record(const char *when)
{
    setenv("RP_TEST_DIE_IN_RECORD", when, 1);
    rp_pool_t *p = world_pool(NULL);
    unsetenv("RP_TEST_DIE_IN_RECORD");
    return p;
}

/* Every worker ran an item of a map of who_runs: none was given up. */
static void check_all_workers_serve(rp_pool_t *p)
{
    enum { M = 300 };
    int in[M], by[M];
    for (int i = 0; i < M; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    CU_ASSERT_EQUAL(rp_map(p, who_runs, in, M, sizeof *in, by, sizeof *by, &mo, NULL), RP_OK);
    CU_ASSERT_EQUAL(workers_seen(by, M, rp_pool_size(p)), rp_pool_size(p));
}

static void test_mpi_killed_while_writing_a_record(void)
{
    enum { N = 60 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 10 };
    rp_pool_t *p = pool_dying_in_record("3");
    if (p) {
        rp_result_t *r = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_all, in, N, sizeof *in, out, sizeof *out,
                                           &mo, &r), RP_OK);
        CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
        CU_ASSERT_EQUAL(rp_result_nerrors(r), N);
        size_t killed = 0, torn = 0;
        for (size_t k = 0; k < rp_result_nerrors(r); k++) {
            const rp_error_t *e = rp_result_error(r, k);
            if (e && e->code == RP_EWORKER && e->signal == SIGKILL)
                killed++;
            else if (!e || e->index != k || e->code != RP_ETASK || e->task_code != 4 ||
                     strlen(e->message) != 255 || atoi(e->message + 5) != (int)k)
                torn++;
        }
        CU_ASSERT_EQUAL(killed, 1);
        CU_ASSERT_EQUAL(torn, 0);
        rp_result_free(r);
        check_all_workers_serve(p);
        tu_pool_done(p);
    }
    p = pool_dying_in_record("3");
    if (!p)
        return;
    rp_varout_t *vo = NULL;
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_var_async(p, var_bytes, in, N, sizeof *in, &mo, &vo, &r),
                          RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    CU_ASSERT_EQUAL_FATAL(rp_result_nerrors(r), 1);
    const rp_error_t *e = rp_result_error(r, 0);
    CU_ASSERT_EQUAL(e->code, RP_EWORKER);
    CU_ASSERT_EQUAL(e->signal, SIGKILL);
    int bad = 0;
    for (int i = 0; i < N; i++) {
        size_t size = 0;
        const unsigned char *d = rp_varout_item(vo, (size_t)i, &size);
        if ((size_t)i == e->index)
            bad += d != NULL;
        else
            bad += !d || size != 100 + (size_t)i || d[0] != i % 251 || d[size - 1] != i % 251;
    }
    CU_ASSERT_EQUAL(bad, 0);
    rp_result_free(r);
    rp_varout_free(vo);
    check_all_workers_serve(p);
    tu_pool_done(p);
}

/* A worker process killed just after it recorded an item's failure, before the
 * next item (RP_TEST_DIE_IN_RECORD=-N): the death falls between items, so no item
 * fails with RP_EWORKER, and the failed item is reported once, as RP_ETASK (not
 * again as the item that was running, nor run again elsewhere). */
static void test_mpi_killed_after_a_failure_record(void)
{
    enum { N = 60 };
    int in[N], out[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        out[i] = -1;
    }
    rp_map_opts_t mo = { .chunksize = 10 };
    rp_pool_t *p = pool_dying_in_record("-2");
    if (!p)
        return;
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, fail_odd, in, N, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    CU_ASSERT_EQUAL(rp_result_nerrors(r), N / 2);
    size_t bad = 0;
    for (size_t k = 0; k < rp_result_nerrors(r); k++) {
        const rp_error_t *e = rp_result_error(r, k);
        bad += !e || e->index != 2 * k + 1 || e->code != RP_ETASK;
    }
    for (int i = 0; i < N; i += 2)
        bad += out[i] != 3 * i;
    CU_ASSERT_EQUAL(bad, 0);
    size_t done = 0, total = 0;
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, N);
    rp_result_free(r);
    check_all_workers_serve(p);
    tu_pool_done(p);
}

/* A rank given up by the master (here for a malformed message) while its worker
 * still computes a batch whose outputs are large: they travel as a message of
 * their own, which the master no longer wants. The rank must still leave
 * rp_pool_create when the pool ends (it used to wait forever for that send to
 * complete). Every rank then meets in a barrier, within a bounded time; a rank
 * that never comes makes the test fail (MPI_Abort) instead of hanging it. */
enum { BIG_OUT = 32 << 10 };

static int slow_big(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.1);
    memset(out, *(const int *)in & 0xff, BIG_OUT);
    return 0;
}

static void every_rank_returns(const char *what)
{
    MPI_Request req;
    MPI_Ibarrier(MPI_COMM_WORLD, &req);
    int done = 0;
    for (double t0 = tu_now(); !done && tu_now() - t0 < 40; tu_sleep(0.001))
        MPI_Test(&req, &done, MPI_STATUS_IGNORE);
    CU_ASSERT_TRUE(done);
    if (!done) {
        fprintf(stderr, "test_mpi: a rank did not leave the pool within 40 s (%s)\n", what);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
}

/* The first and last words of an item of ITEM_WORDS longs. */
enum { ITEM_WORDS = 128 << 10 }; /* 1 MiB: sent as its own message */
static int ends_of_item(const void *in, void *out, rp_ctx_t *ctx)
{
    const long *w = in;
    *(long *)out = w[0] + w[ITEM_WORDS - 1];
    return 0;
}

/* ASan's allocator, when it replaces glibc's (mallinfo2 then says nothing). */
extern size_t __sanitizer_get_current_allocated_bytes(void) __attribute__((weak));

/* The bytes the process has malloc'd and not freed. */
static size_t malloc_in_use(void)
{
    if (__sanitizer_get_current_allocated_bytes)
        return __sanitizer_get_current_allocated_bytes();
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* A buffer of rp_pool_alloc given back while the pool thread holds its lock is
 * handed to that thread (the test hook RP_TEST_BUF_HAND_OVER makes every buffer
 * go that way), which frees it on its next pass: the master's memory in use
 * falls by the buffer's size without another call into the pool. */
static void test_mpi_buffer_handed_over_is_freed(void)
{
    if (world_rank == 0)
        setenv("RP_TEST_BUF_HAND_OVER", "1", 1);
    rp_pool_t *p = world_pool(NULL);
    unsetenv("RP_TEST_BUF_HAND_OVER");
    if (!p)
        return;
    enum { N = 64 };
    size_t bytes = (size_t)N * ITEM_WORDS * sizeof(long);
    long *in = rp_pool_alloc(p, bytes), out[N];
    CU_ASSERT_PTR_NOT_NULL_FATAL(in);
    for (int i = 0; i < N; i++) {
        in[(size_t)i * ITEM_WORDS] = i;
        in[(size_t)i * ITEM_WORDS + ITEM_WORDS - 1] = 1000 * i;
    }
    rp_map_opts_t mo = { .chunksize = 1 }; /* (sent from the buffer as it is) */
    CU_ASSERT_EQUAL(rp_map(p, ends_of_item, in, N, ITEM_WORDS * sizeof(long), out,
                           sizeof(long), &mo, NULL), RP_OK);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += out[i] != 1001 * i;
    CU_ASSERT_EQUAL(bad, 0);
    size_t held = malloc_in_use();
    CU_ASSERT_EQUAL(rp_pool_free_buffer(p, in), RP_OK);
    bool freed = false;
    for (double t0 = tu_now(); !freed && tu_now() - t0 < 30; tu_sleep(0.01))
        freed = malloc_in_use() + bytes - bytes / 16 <= held;
    CU_ASSERT_TRUE(freed);
    tu_pool_done(p);
}

static void given_up_with_large_result(bool unread)
{
    if (unread && world_rank == 0)
        setenv("RP_TEST_UNREAD_GIVEN_UP", "1", 1);
    rp_pool_t *p = world_pool(NULL);
    unsetenv("RP_TEST_UNREAD_GIVEN_UP");
    if (p) {
        enum { N = 16 };
        int in[N];
        for (int i = 0; i < N; i++)
            in[i] = i;
        char *out = malloc((size_t)N * BIG_OUT);
        CU_ASSERT_PTR_NOT_NULL_FATAL(out);
        rp_map_opts_t mo = { .chunksize = 4 };
        rp_result_t *r = NULL;
        CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_big, in, N, sizeof *in, out, BIG_OUT, &mo,
                                           &r), RP_OK);
        tu_sleep(0.2); /* rank 1's worker is inside a batch */
        char junk[64];
        memset(junk, 0x5a, sizeof junk);
        MPI_Send(junk, sizeof junk, MPI_BYTE, 1, 7310, rp_pool_comm(p));
        CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
        rp_result_free(r);
        free(out);
        tu_pool_done(p);
    }
    every_rank_returns(unread ? "a result nobody reads" : "given up with a large result");
}

static void test_mpi_given_up_rank_leaves_the_pool(void)
{
    given_up_with_large_result(false);
}

/* The same when the master never reads that result (as when it ended the pool
 * having stopped waiting for the rank; the test hook RP_TEST_UNREAD_GIVEN_UP):
 * once asked to leave, the rank stops waiting for that send after a bounded time. */
static void test_mpi_unread_result_does_not_keep_a_rank(void)
{
    given_up_with_large_result(true);
}

/* A serving rank that stops answering (SIGSTOP; a hung node looks the same):
 * terminate gives up on it after a bounded wait instead of hanging, and nothing is
 * lost: every item either succeeded or failed with RP_ECANCELED. A watchdog
 * resumes the rank after 60 s whatever happens, so a failure cannot hang the job. */
static int slow_20ms(const void *in, void *out, rp_ctx_t *ctx)
{
    tu_sleep(0.02);
    *(int *)out = *(const int *)in;
    return 0;
}

struct watchdog {
    pid_t           pid;
    pthread_mutex_t lock;
    pthread_cond_t  cond;
    bool            stop;
};

static void *resume_later(void *arg)
{
    struct watchdog *w = arg;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 60;
    pthread_mutex_lock(&w->lock);
    while (!w->stop && pthread_cond_timedwait(&w->cond, &w->lock, &ts) == 0)
        ;
    pthread_mutex_unlock(&w->lock);
    kill(w->pid, SIGCONT);
    return NULL;
}

static void test_mpi_terminate_with_stopped_rank(void)
{
    int me = (int)getpid(), pids[64] = { 0 };
    MPI_Gather(&me, 1, MPI_INT, pids, 1, MPI_INT, 0, MPI_COMM_WORLD);
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    enum { N = 400 };
    int in[N], out[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        out[i] = -1;
    }
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_20ms, in, N, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    size_t done = 0, total = 0;
    for (double t0 = tu_now(); done < 4 && tu_now() - t0 < 60; tu_sleep(0.005))
        rp_result_progress(r, &done, &total);
    struct watchdog w = { .pid = pids[1], .lock = PTHREAD_MUTEX_INITIALIZER,
                          .cond = PTHREAD_COND_INITIALIZER };
    pthread_t th;
    CU_ASSERT_EQUAL_FATAL(kill(pids[1], SIGSTOP), 0);
    CU_ASSERT_EQUAL_FATAL(pthread_create(&th, NULL, resume_later, &w), 0);
    tu_sleep(0.1);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    double took = tu_now() - t0;
    CU_ASSERT_TRUE(took < 20);
    CU_ASSERT_TRUE(rp_result_ready(r));
    rp_result_progress(r, &done, &total);
    CU_ASSERT_EQUAL(done, N);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ECANCELED);
    size_t nerr = rp_result_nerrors(r), bad = 0, failed = 0;
    char *isfail = calloc(N, 1);
    for (size_t k = 0; k < nerr; k++) {
        const rp_error_t *e = rp_result_error(r, k);
        bad += !e || e->code != RP_ECANCELED || e->index >= N;
        if (e && e->index < N)
            isfail[e->index] = 1;
    }
    for (int i = 0; i < N; i++) {
        failed += isfail[i];
        bad += !isfail[i] && out[i] != i;
    }
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(failed, nerr);
    free(isfail);
    rp_result_free(r);
    printf("\n    terminate returned in %.2f s with rank 1 stopped; %zu of %d items "
           "canceled ", took, nerr, N);
    pthread_mutex_lock(&w.lock);
    w.stop = true;
    pthread_cond_signal(&w.cond);
    pthread_mutex_unlock(&w.lock);
    pthread_join(th, NULL); /* rank 1 runs again */
    t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
    CU_ASSERT_TRUE(tu_now() - t0 < 20);
}

/* The next pool on the same ranks works, whatever rank 1 still sent to the pool
 * that gave up on it (results, its BYE) once it ran again. */
/* A rank that answers TERMINATE at once but takes longer than TERMINATE_WAIT_S
 * (0.5 s) to stop its workers (hundreds of them on a loaded node) is not hung: it
 * is waited for, not given up. Here every serving rank takes 1.2 s
 * (RP_TEST_SLOW_STOP); given up, the result would be ready after 0.5 s. */
static void test_mpi_terminate_waits_for_a_rank_that_answers(void)
{
    setenv("RP_TEST_SLOW_STOP", "1.2", 1);
    rp_pool_t *p = world_pool(NULL);
    if (!p) {
        unsetenv("RP_TEST_SLOW_STOP");
        return;
    }
    unsetenv("RP_TEST_SLOW_STOP");
    enum { N = 200 };
    int in[N], out[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    rp_result_t *r = NULL;
    CU_ASSERT_EQUAL_FATAL(rp_map_async(p, slow_20ms, in, N, sizeof *in, out, sizeof *out, &mo,
                                       &r), RP_OK);
    size_t done = 0, total = 0;
    for (double t0 = tu_now(); done < 2 && tu_now() - t0 < 60; tu_sleep(0.005))
        rp_result_progress(r, &done, &total);
    double t0 = tu_now();
    CU_ASSERT_EQUAL(rp_pool_terminate(p), RP_OK);
    CU_ASSERT_EQUAL(rp_result_wait(r, 60), RP_OK);
    double took = tu_now() - t0;
    CU_ASSERT_TRUE(took >= 1.0);
    CU_ASSERT_EQUAL(rp_result_get(r, 0, NULL), RP_ECANCELED);
    rp_result_free(r);
    printf("\n    ranks that stop in 1.2 s: the result ready %.2f s after terminate ", took);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

static void test_mpi_pool_after_a_rank_was_given_up(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    enum { N = 300 };
    int in[N], by[N];
    for (int i = 0; i < N; i++)
        in[i] = i;
    rp_map_opts_t mo = { .chunksize = 1 };
    for (int round = 0; round < 3; round++) {
        CU_ASSERT_EQUAL(rp_map(p, who_runs, in, N, sizeof *in, by, sizeof *by, &mo, NULL),
                        RP_OK);
        CU_ASSERT_EQUAL(workers_seen(by, N, rp_pool_size(p)), rp_pool_size(p));
    }
    tu_pool_done(p);
}

/* An intercommunicator cannot hold a pool: RP_EINVAL on every rank, at once. */
static void test_mpi_intercommunicator_refused(void)
{
    MPI_Comm half, inter;
    int color = world_rank % 2;
    MPI_Comm_split(MPI_COMM_WORLD, color, world_rank, &half);
    MPI_Intercomm_create(half, 0, MPI_COMM_WORLD, color == 0 ? 1 : 0, 77, &inter);
    rp_pool_t *p = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_pool_create_comm(&p, NULL, inter, &err), RP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "intercommunicator"));
    MPI_Comm_free(&inter);
    MPI_Comm_free(&half);
}

/* More worker processes than a rank (or its node) can hold: RP_EINVAL on every
 * rank, with a message naming the limit, and no process started. */
static void test_mpi_workers_beyond_limit(void)
{
    rp_pool_opts_t o = { .workers = 100000 };
    rp_pool_t *p = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_pool_create_comm(&p, &o, MPI_COMM_WORLD, &err), RP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "1024"));

    /* 8 workers per serving rank, world_size ranks on this node, at most 16
     * processes for the user on the serving ranks: the ranks refuse. */
    struct rlimit old, low;
    getrlimit(RLIMIT_NPROC, &old);
    low = old;
    low.rlim_cur = 16;
    if (world_rank > 0)
        CU_ASSERT_EQUAL(setrlimit(RLIMIT_NPROC, &low), 0);
    o.workers = 8 * (world_size - 1);
    int children = tu_count_children();
    int rc = rp_pool_create_comm(&p, &o, MPI_COMM_WORLD, &err);
    if (world_rank > 0)
        setrlimit(RLIMIT_NPROC, &old);
    CU_ASSERT_EQUAL(rc, RP_EINVAL);
    CU_ASSERT_EQUAL(tu_count_children(), children);
    if (world_rank == 0) { /* the refusal names the rank (the lowest worker's) and host */
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "RLIMIT_NPROC"));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "rank 1 on "));
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, err.host));
        CU_ASSERT_TRUE(err.host[0] != '\0');
    }
    if (rc == RP_OK && rp_pool_is_master(p))
        tu_pool_done(p);
    else if (rc == RP_OK)
        rp_pool_free(p);
}

/* An item larger than RP_MPI_ITEM_MAX (in_size + out_size) is refused at once with
 * RP_EINVAL and a message naming the limit; chunks larger than a worker's transfer
 * area travel in several batches; an initarg larger than RP_MPI_INITARG_MAX is
 * refused on every rank. The large buffers are never touched (no memory used). */
static void *untouched(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    CU_ASSERT_NOT_EQUAL_FATAL(p, MAP_FAILED);
    return p;
}

static int sum_mib(const void *in, void *out, rp_ctx_t *ctx)
{
    const unsigned char *b = in;
    long s = 0;
    for (size_t k = 0; k < (1u << 20); k += 4096)
        s += b[k];
    *(long *)out = s + (long)rp_ctx_index(ctx);
    return 0;
}

static void test_mpi_item_size_limit(void)
{
    rp_pool_t *p = world_pool(NULL);
    if (!p)
        return;
    size_t big = RP_MPI_ITEM_MAX + 1 - sizeof(long);
    char *in = untouched(big);
    long out = -1;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_map(p, sum_mib, in, 1, big, &out, sizeof out, NULL, &err), RP_EINVAL);
    CU_ASSERT_EQUAL(err.code, RP_EINVAL);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "RP_MPI_ITEM_MAX"));
    CU_ASSERT_EQUAL(out, -1);
    munmap(in, big);

    /* 300 items of 1 MiB in one chunk: 300 MiB, more than one transfer area */
    enum { N = 300, MIB = 1 << 20 };
    in = untouched((size_t)N * MIB);
    long res[N];
    for (int i = 0; i < N; i++) {
        in[(size_t)i * MIB] = (char)(i % 97);
        res[i] = -1;
    }
    rp_map_opts_t mo = { .chunksize = N };
    CU_ASSERT_EQUAL(rp_map(p, sum_mib, in, N, MIB, res, sizeof *res, &mo, &err), RP_OK);
    int bad = 0;
    for (int i = 0; i < N; i++)
        bad += res[i] != i % 97 + i;
    CU_ASSERT_EQUAL(bad, 0);
    munmap(in, (size_t)N * MIB);
    tu_pool_done(p);
}

static void test_mpi_initarg_size_limit(void)
{
    size_t big = RP_MPI_INITARG_MAX + 1;
    /* the serving ranks need not pass the initarg (only the master's counts) */
    void *arg = world_rank == 0 ? untouched(big) : NULL;
    rp_pool_opts_t o = { .initializer = init_offset, .initarg = arg,
                         .initarg_size = arg ? big : 0 };
    rp_pool_t *p = NULL;
    rp_error_t err;
    CU_ASSERT_EQUAL(rp_pool_create_comm(&p, &o, MPI_COMM_WORLD, &err), RP_EINVAL);
    CU_ASSERT_PTR_NULL(p);
    if (world_rank == 0) {
        CU_ASSERT_PTR_NOT_NULL(strstr(err.message, "RP_MPI_INITARG_MAX"));
        munmap(arg, big);
    }
    /* the next pool, with a small initarg, starts on every rank */
    int off = 7;
    o.initarg = &off;
    o.initarg_size = sizeof off;
    p = world_pool(&o);
    if (!p)
        return;
    int x = 1, y = 0;
    CU_ASSERT_EQUAL(rp_apply(p, add_offset, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
    CU_ASSERT_EQUAL(y, 8);
    tu_pool_done(p);
}

/* The kilobytes of the batch regions the calling worker process has touched: the
 * resident size of its mapping of the transfer areas (-1: not found). */
static int areas_touched_kb(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)in;
    (void)ctx;
    long kb = -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in_areas = false;
    while (f && fgets(line, sizeof line, f)) {
        if (strchr(line, '-') && strchr(line, ':') && strstr(line, " rw"))
            in_areas = strstr(line, "rankpool-areas") != NULL; /* a mapping's first line */
        else if (in_areas && !strncmp(line, "Rss:", 4)) {
            kb = atol(line + 4);
            break;
        }
    }
    if (f)
        fclose(f);
    *(long *)out = kb;
    return 0;
}

/* A worker given one batch at a time takes each into the same region (or two: a
 * rank of a few workers posts the receive of a worker's next batch while its
 * current one runs, prepost.c): it touches one or two regions' pages, not every
 * one of its DEPTH (each region's first batch costs page faults in the rank and in
 * the worker process). */
static void test_mpi_one_batch_at_a_time_uses_one_area(void)
{
    rp_pool_opts_t o = { .workers = 1 };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    for (int i = 0; i < 9; i++) {
        double x = i, y = 0;
        CU_ASSERT_EQUAL(rp_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), RP_OK);
        CU_ASSERT_EQUAL(y, x * x);
    }
    int none = 0;
    long kb = 0;
    CU_ASSERT_EQUAL(rp_apply(p, areas_touched_kb, &none, sizeof none, &kb, sizeof kb, NULL),
                    RP_OK);
    printf("\n    worker process: %ld kB of its transfer areas touched ", kb);
    CU_ASSERT(kb > 0);
    CU_ASSERT(kb <= 8); /* batches this small and their results: a page per region */
    tu_pool_done(p);
}

/* Items of 25 ms, one per batch, on ranks of more than 8 workers (no receives
 * posted in advance; each worker holds two batches, DEPTH_LONG): a worker killed
 * with a finished batch whose result may not be sent yet and another queued:
 * only the item it died in fails; every other item, the finished one and the
 * queued one included, comes back right. */
static int slow_kill_k(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    int i = *(const int *)in;
    struct timespec ts = { 0, 25 * 1000 * 1000 };
    nanosleep(&ts, NULL);
    if (i == 7 * 12 + 5)
        raise(SIGKILL);
    *(int *)out = 3 * i;
    return 0;
}

static void test_mpi_many_workers_crash_loses_nothing(void)
{
    int per_rank = 12; /* more than SPIN_WORKERS_MAX: no receives posted in advance */
    rp_pool_opts_t o = { .workers = per_rank * (world_size - 1) };
    rp_pool_t *p = world_pool(&o);
    if (!p)
        return;
    int n = o.workers * 10; /* ten rounds: the killed item comes mid-map */
    int *in = malloc((size_t)n * sizeof *in), *out = malloc((size_t)n * sizeof *out);
    CU_ASSERT_FATAL(in && out);
    for (int i = 0; i < n; i++)
        in[i] = i, out[i] = -1;
    rp_map_opts_t mo = { .chunksize = 1 };
    for (int round = 0; round < 2; round++) { /* a second map, with the replacement process */
        rp_error_t err;
        CU_ASSERT_EQUAL(rp_map(p, slow_kill_k, in, (size_t)n, sizeof *in, out, sizeof *out,
                               &mo, &err), RP_EWORKER);
        CU_ASSERT_EQUAL(err.index, 7 * 12 + 5);
        CU_ASSERT_EQUAL(err.signal, SIGKILL);
        int bad = 0;
        for (int i = 0; i < n; i++)
            bad += i != 7 * 12 + 5 && out[i] != 3 * i;
        CU_ASSERT_EQUAL(bad, 0);
        for (int i = 0; i < n; i++)
            out[i] = -1;
    }
    free(in);
    free(out);
    tu_pool_done(p);
}

int main(int argc, char **argv)
{
    int provided;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    const char *lead = getenv("RP_MPI_LEADERS");
    const char *iso = getenv("RP_MPI_ISOLATE");
    if (lead && (!strcmp(lead, "1") || !strcmp(lead, "on")) && !(iso && !strcmp(iso, "0"))) {
        MPI_Comm node;
        int mine = world_rank >= 1 ? world_rank : INT_MAX, low = INT_MAX;
        MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL,
                            &node);
        MPI_Allreduce(&mine, &low, 1, MPI_INT, MPI_MIN, node);
        MPI_Comm_free(&node);
        leader_of = calloc((size_t)world_size, sizeof *leader_of);
        MPI_Allgather(&low, 1, MPI_INT, leader_of, 1, MPI_INT, MPI_COMM_WORLD);
    }
    static const tu_test tests[] = {
        TU_TEST(test_mpi_spmd_phases_around_the_pool),
        TU_TEST(test_mpi_more_workers_than_ranks),
        TU_TEST(test_mpi_second_pool_on_busy_communicator),
        TU_TEST(test_mpi_bind_workers),
        TU_TEST(test_mpi_large_data),
        TU_TEST(test_mpi_pool_on_user_communicator),
        TU_TEST(test_mpi_remote_failure_names_host_and_rank),
        TU_TEST(test_mpi_static_initializer_and_task),
        TU_TEST(test_mpi_initializer_failure_everywhere),
        TU_TEST(test_mpi_crash_of_a_task),
        TU_TEST(test_mpi_program_child_left_to_program),
        TU_TEST(test_mpi_program_child_ends_while_pool_runs),
        TU_TEST(test_mpi_worker_holds_no_pidfds),
        TU_TEST(test_mpi_crashes_inside_batches),
        TU_TEST(test_mpi_replacement_cannot_start),
        TU_TEST(test_mpi_progress_while_master_computes),
        TU_TEST(test_mpi_malformed_message_is_an_error),
        TU_TEST(test_mpi_malformed_bundle_is_an_error),
        TU_TEST(test_mpi_leader_refuses_more_than_a_rank_holds),
        TU_TEST(test_mpi_every_failure_reported),
        TU_TEST(test_mpi_var_outputs_beyond_one_area),
        TU_TEST(test_mpi_killed_while_writing_a_record),
        TU_TEST(test_mpi_killed_after_a_failure_record),
        TU_TEST(test_mpi_given_up_rank_leaves_the_pool),
        TU_TEST(test_mpi_unread_result_does_not_keep_a_rank),
        TU_TEST(test_mpi_terminate_with_stopped_rank),
        TU_TEST(test_mpi_terminate_waits_for_a_rank_that_answers),
        TU_TEST(test_mpi_pool_after_a_rank_was_given_up),
        TU_TEST(test_mpi_intercommunicator_refused),
        TU_TEST(test_mpi_workers_beyond_limit),
        TU_TEST(test_mpi_item_size_limit),
        TU_TEST(test_mpi_initarg_size_limit),
        TU_TEST(test_mpi_one_batch_at_a_time_uses_one_area),
        TU_TEST(test_mpi_many_workers_crash_loses_nothing),
        TU_TEST(test_mpi_buffer_handed_over_is_freed),
        TU_END
    };
    if (world_rank != 0) /* one report, from the master */
        freopen("/dev/null", "w", stdout);
    int failures = tu_run("mpi", tests, argc, argv);
    int total = 0;
    MPI_Allreduce(&failures, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    if (world_rank == 0 && total != failures)
        fprintf(stderr, "test_mpi: %d failure(s) on serving ranks\n", total - failures);
    free(leader_of);
    MPI_Finalize();
    return total > 255 ? 255 : total;
}
