/* A program that returns from main without rp_pool_free (tests/mpi-np3.sh): it
 * never initialises MPI itself, so the library does, and must finalise it at exit
 * after stopping the pool, so that mpirun sees every rank exit properly (status
 * 0, no "exiting improperly"). A map is still running at exit on the master. */
#include "rankpool.h"

#include <stdio.h>
#include <unistd.h>

static int slow_square(const void *in, void *out, rp_ctx_t *ctx)
{
    usleep(10000);
    *(int *)out = *(const int *)in * *(const int *)in;
    return 0;
}

int main(void)
{
    static int in[1000], out[1000];
    for (int i = 0; i < 1000; i++)
        in[i] = i;
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_ex(&pool, NULL, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_exit: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    if (!rp_pool_is_master(pool)) {
        printf("mpi_exit: a serving rank returned from rp_pool_create\n");
        return 0; /* the handle is not freed either */
    }
    rc = rp_map(pool, slow_square, in, 20, sizeof *in, out, sizeof *out, NULL, &err);
    if (rc != RP_OK || out[19] != 361) {
        fprintf(stderr, "mpi_exit: map: %s\n", rp_strerror(rc));
        return 1;
    }
    rp_result_t *r;
    rc = rp_map_async(pool, slow_square, in, 1000, sizeof *in, out, sizeof *out, NULL, &r);
    printf("mpi_exit: the master returns from main with a map running (%s)\n",
           rp_err_name(rc));
    return rc == RP_OK ? 0 : 1;
}
