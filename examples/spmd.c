/* spmd: an MPI program with a task-farm phase (rankpool_mpi.h). Every rank does
 * its own MPI work, then all of them make a pool on MPI_COMM_WORLD: rank 0 farms
 * out the items, the others serve them, and after the pool every rank goes on
 * with MPI (here an MPI_Allreduce of the master's result).
 *
 * Python (mpi4py):
 *     with MPICommExecutor(MPI.COMM_WORLD, root=0) as ex:
 *         if ex is not None:
 *             total = sum(ex.map(cube, range(N)))
 *     total = comm.allreduce(total)
 *
 *     mpirun -np 3 ./spmd
 */
#include <stdio.h>

#include <rankpool_mpi.h>

#define N 1000

static int cube(const void *in, void *out, rp_ctx_t *ctx)
{
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x * x;
    return 0;
}

int main(int argc, char **argv)
{
    int provided, rank, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size < 2) {
        if (rank == 0)
            fprintf(stderr, "spmd: run me with at least 2 ranks (mpirun -np 3 ./spmd)\n");
        MPI_Finalize();
        return 2;
    }

    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err); /* every rank */
    if (rc != RP_OK) {
        fprintf(stderr, "spmd: rank %d: rp_pool_create_comm: %s\n", rank, err.message);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    long total = 0;
    if (rp_pool_is_master(pool)) {
        static long in[N], out[N];
        for (long i = 0; i < N; i++)
            in[i] = i;
        rc = rp_map(pool, cube, in, N, sizeof in[0], out, sizeof out[0], NULL, &err);
        if (rc != RP_OK) {
            fprintf(stderr, "spmd: item %zu: %s\n", err.index, err.message);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        for (long i = 0; i < N; i++)
            total += out[i];
        printf("spmd: %d workers on %d ranks\n", rp_pool_size(pool), size);
        rp_pool_close(pool);
        rp_pool_join(pool);
    }
    rp_pool_free(pool); /* every rank */

    /* MPI after the pool: every rank learns the master's total */
    long all = 0;
    MPI_Allreduce(&total, &all, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    long expected = (long)(N - 1) * N / 2 * ((long)(N - 1) * N / 2); /* (sum i)^2 */
    if (rank == 0)
        printf("spmd: sum of cubes %ld (expected %ld): %s\n", all, expected,
               all == expected ? "ok" : "WRONG");
    MPI_Finalize();
    return all == expected ? 0 : 1;
}
