/* Another program that serves in a pool (tests/mpi-np2.sh launches it MPMD next
 * to tests/mpi_hosts): the master's functions are not in this binary, so its
 * items must fail with RP_EFNREF on the master. */
#include "rankpool_mpi.h"

#include <stdio.h>

int main(void)
{
    rp_pool_t *pool;
    rp_error_t err;
    int rc = rp_pool_create_comm(&pool, NULL, MPI_COMM_WORLD, &err);
    if (rc != RP_OK) {
        fprintf(stderr, "mpi_other: %s: %s\n", rp_strerror(rc), err.message);
        return 1;
    }
    rp_pool_free(pool);
    return 0;
}
