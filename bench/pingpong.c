/* The floor for an MPI round trip: a raw 2-rank ping-pong of one long.
 *
 *   mpirun -np 2 pingpong [--quick] [--reps R]
 *
 * Prints RESULT lines (see common.h): the median and p90 round trip in us, one
 * pair per repetition, measured like rp_bench's w5 (each round trip timed). */
#include <mpi.h>

#include "common.h"

int main(int argc, char **argv)
{
    int quick = 0, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            quick = 1;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
    }
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (size != 2) {
        if (rank == 0)
            fprintf(stderr, "pingpong: run with mpirun -np 2\n");
        MPI_Finalize();
        return 2;
    }
    bench_impl = "mpi-pingpong";
    size_t k = bench_sizes(quick).k5;
    double *lat = malloc(k * sizeof *lat);
    for (int r = 0; r < reps + 1; r++) {
        for (size_t i = 0; i < k; i++) {
            long x = (long)i;
            if (rank == 0) {
                double t0 = bench_now();
                MPI_Send(&x, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD);
                MPI_Recv(&x, 1, MPI_LONG, 1, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                lat[i] = bench_now() - t0;
            } else {
                MPI_Recv(&x, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
                x *= x;
                MPI_Send(&x, 1, MPI_LONG, 0, 0, MPI_COMM_WORLD);
            }
        }
        if (rank == 0 && r > 0) {
            bench_result("w5_apply", "roundtrip", 1, "median", "us", "lower",
                         bench_median(lat, k) * 1e6);
            bench_result("w5_apply", "roundtrip", 1, "p90", "us", "lower",
                         lat[(size_t)(0.9 * (double)(k - 1))] * 1e6);
        }
    }
    free(lat);
    MPI_Finalize();
    return 0;
}
