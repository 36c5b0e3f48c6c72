/* resume: a parameter sweep that survives being killed (a Slurm time limit,
 * scancel, Ctrl-C): the Lyapunov exponent of the logistic map x -> r x (1 - x)
 * for 2,000 values of r, with a journal and a progress bar.
 *
 *     ./examples/resume sweep.journal          # killed half-way? run it again:
 *     ./examples/resume sweep.journal          # only the missing points run
 *     mpirun -np 3 ./examples/resume sweep.journal
 *
 * opts.journal keeps each finished point in the file as it arrives; a rerun with
 * the same file (same program, same inputs) computes only the points the file
 * lacks and returns every result as if it had run whole. Each output carries the
 * token of the run that computed it (given to every worker by the initializer),
 * so the program can say how many points this run computed. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <rankpool.h>

#define N     2000
#define STEPS 20000

struct point {
    double   lyapunov;
    uint64_t run;       /* the run that computed it */
};

static uint64_t run_token; /* set in each worker by init() */

static int init(const void *arg, rp_ctx_t *ctx)
{
    (void)ctx;
    run_token = *(const uint64_t *)arg;
    return 0;
}

/* The mean of log|r (1 - 2x)| along the orbit from x = 0.5. */
static int lyapunov(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    double r = *(const double *)in, x = 0.5, sum = 0;
    for (int k = 0; k < STEPS; k++) {
        x = r * x * (1 - x);
        sum += log(fabs(r * (1 - 2 * x)) + 1e-300);
    }
    struct point *p = out;
    p->lyapunov = sum / STEPS;
    p->run = run_token;
    return 0;
}

int main(int argc, char **argv)
{
    const char *journal = argc > 1 ? argv[1] : "resume.journal";
    static double r[N];
    static struct point out[N];
    for (int i = 0; i < N; i++)
        r[i] = 3.4 + 0.6 * i / N;

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t token = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
    rp_pool_opts_t po = { .initializer = init, .initarg = &token, .initarg_size = sizeof token };
    rp_pool_t *pool;
    int rc = rp_pool_create(&pool, &po);
    if (rc != RP_OK) {
        fprintf(stderr, "resume: rp_pool_create: %s\n", rp_strerror(rc));
        return 1;
    }
    if (!rp_pool_is_master(pool)) { /* an MPI rank that served the sweep */
        rp_pool_free(pool);
        return 0;
    }
    printf("resume: backend %s, %d workers, journal %s (pid %d)\n", rp_pool_backend(pool),
           rp_pool_size(pool), journal, (int)getpid());
    fflush(stdout);

    rp_map_opts_t opts = { .journal = journal, .progress = true };
    rp_error_t err;
    rc = rp_map(pool, lyapunov, r, N, sizeof *r, out, sizeof *out, &opts, &err);
    if (rc == RP_EJOURNAL) {
        fprintf(stderr, "resume: %s: %s (remove it to start afresh)\n", journal, rp_strerror(rc));
        rp_pool_free(pool);
        return 1;
    }
    if (rc != RP_OK) {
        fprintf(stderr, "resume: item %zu failed: %s\n", err.index, err.message);
        rp_pool_free(pool);
        return 1;
    }
    int now = 0, chaotic = 0;
    double sum = 0;
    for (int i = 0; i < N; i++) {
        now += out[i].run == token;
        chaotic += out[i].lyapunov > 0;
        sum += out[i].lyapunov;
    }
    printf("resume: %d points: %d restored from the journal, %d computed now\n", N, N - now,
           now);
    printf("resume: %d chaotic, mean exponent %.9f\n", chaotic, sum / N);
    rp_pool_free(pool);
    return 0;
}
