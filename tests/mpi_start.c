/* The start-up deadline (tests/mpi-np3.sh): the last rank does not call
 * rp_pool_create. With RP_MPI_START_TIMEOUT=2 every rank that did call it returns
 * RP_EMPI within a few seconds, the master's message naming the missing rank,
 * instead of waiting forever. Then every rank creates a pool on the same
 * communicator and maps: a failed start leaves the communicator usable.
 * Exit status: the number of failed checks over all ranks. */
#include "rankpool_mpi.h"
#include "mpitest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int twice(const void *in, void *out, rp_ctx_t *ctx)
{
    *(int *)out = 2 * *(const int *)in;
    return 0;
}

int main(int argc, char **argv)
{
    int provided, rank, size, fails = 0;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    mt_named("mpi_start: rank %d", rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    const char *t = getenv("RP_MPI_START_TIMEOUT");
    fails += mt_check(t && atof(t) > 0 && atof(t) <= 10,
                      "RP_MPI_START_TIMEOUT must be set to a few seconds");
    int missing = size - 1;
    if (rank != missing) {
        rp_pool_t *pool = NULL;
        rp_error_t err;
        double t0 = MPI_Wtime();
        int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
        double took = MPI_Wtime() - t0;
        printf("rank %d: rp_pool_create: %s after %.1f s: %s\n", rank, rp_err_name(rc), took,
               err.message);
        fails += mt_check(rc == RP_EMPI && pool == NULL, "RP_EMPI expected");
        fails += mt_check(took < 30, "took too long");
        char name[32];
        snprintf(name, sizeof name, "rank %d", missing);
        if (rank == 0)
            fails += mt_check(strstr(err.message, name) != NULL, "missing rank not named");
    }
    MPI_Barrier(MPI_COMM_WORLD);

    rp_pool_t *pool = NULL;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
    fails += mt_check(rc == RP_OK, "the second pool did not start");
    if (rc == RP_OK && rp_pool_is_master(pool)) {
        int in[100], out[100], bad = 0;
        for (int i = 0; i < 100; i++)
            in[i] = i;
        rc = rp_map(pool, twice, in, 100, sizeof *in, out, sizeof *out, NULL, &err);
        for (int i = 0; i < 100; i++)
            bad += out[i] != 2 * i;
        fails += mt_check(rc == RP_OK && bad == 0, "map on the second pool");
        printf("second pool: %d workers, map %s\n", rp_pool_size(pool), rp_err_name(rc));
        rp_pool_close(pool);
        rp_pool_join(pool);
    }
    rp_pool_free(pool);
    int total = 0;
    MPI_Allreduce(&fails, &total, 1, MPI_INT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Finalize();
    return total;
}
