/* The collective part of a pool's start-up, on the pool's own communicator, once
 * every rank is known to be there (init.c's JOIN/START handshake, which must stay
 * point to point: a rank that never calls rp_pool_create would leave a collective
 * on the caller's communicator pending for ever).
 *
 *   master                          serving ranks
 *   HELLO (or GO: gave up)  -bcast->  settings; fork every worker, then wait for all
 *   READY of every worker  <-gatherv- one blob per rank: its workers' READYs
 *   GO (verdict)            -bcast->  serve, or leave
 *
 * So start-up costs a few collectives (O(log ranks) steps) instead of a message to
 * and from every rank and worker in turn, and the ranks start their workers at the
 * same time. A blob is a sequence of [u32 length][READY message].
 *
 * Each collective is started non-blocking and waited for with naps (coll_wait): a
 * rank that is done with its workers, or the master, would otherwise spin in
 * MPI's progress loop for as long as the slowest rank forks, taking the cores the
 * other ranks fork on (with 8 ranks of 256 workers on 2 cores, a rank done early
 * spun for seconds). */
#include "backend_mpi.h"

#include <stdlib.h>
#include <string.h>

#define BCAST_CHUNK ((size_t)1 << 24) /* large messages go in pieces of this many bytes */
#define COLL_NAP_MAX 1e-3              /* the longest nap between tests of a collective */

/* Waits for the non-blocking collective req (started with `started`, an MPI
 * return code): tests it, napping 20 us, then twice as long each time, up to
 * COLL_NAP_MAX. \return RP_OK or RP_EMPI. */
static int coll_wait(int started, MPI_Request *req)
{
    if (started != MPI_SUCCESS)
        return RP_EMPI;
    double nap = 20e-6;
    for (;;) {
        int done = 0;
        if (MPI_Test(req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            return RP_EMPI;
        if (done)
            return RP_OK;
        rp__mpi_sleep(nap);
        nap = nap * 2 < COLL_NAP_MAX ? nap * 2 : COLL_NAP_MAX;
    }
}

int rp__mpi_bcast_msg(MPI_Comm comm, const rp__wbuf *w, char **buf, size_t *cap, size_t *len)
{
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    uint64_t n = rank == 0 ? (uint64_t)w->len : 0;
    MPI_Request req;
    if (coll_wait(MPI_Ibcast(&n, 1, MPI_UINT64_T, 0, comm, &req), &req) != RP_OK)
        return RP_EMPI;
    char *dst = rank == 0 ? w->buf : NULL;
    char *scratch = NULL;
    int rc = RP_OK;
    if (rank != 0) {
        if (n > *cap) {
            char *b = realloc(*buf, (size_t)n);
            if (b) {
                *buf = b;
                *cap = (size_t)n;
            }
        }
        if (n <= *cap) {
            dst = *buf;
        } else { /* out of memory: take part all the same, keep nothing */
            scratch = malloc(BCAST_CHUNK);
            if (!scratch)
                return RP_ENOMEM;
            rc = RP_ENOMEM;
        }
    }
    for (uint64_t at = 0; at < n; at += BCAST_CHUNK) {
        size_t piece = n - at < BCAST_CHUNK ? (size_t)(n - at) : BCAST_CHUNK;
        if (coll_wait(MPI_Ibcast(scratch ? scratch : dst + at, (int)piece, MPI_BYTE, 0, comm,
                                 &req),
                      &req) != RP_OK) {
            rc = RP_EMPI;
            break;
        }
    }
    free(scratch);
    *len = (size_t)n;
    return rc;
}

int rp__mpi_blob_add(rp__wbuf *blob, const rp__wbuf *msg)
{
    rp__wbuf_u32(blob, (uint32_t)msg->len);
    rp__wbuf_put(blob, msg->buf, msg->len);
    return blob->err;
}

int rp__mpi_gather_blobs(MPI_Comm comm, const rp__wbuf *mine, char **all, int **counts,
                         int **displs)
{
    int rank = 0, size = 0;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int n = mine && mine->err == RP_OK && mine->len <= INT_MAX ? (int)mine->len : 0;
    int *c = NULL, *d = NULL;
    char *a = NULL;
    if (rank == 0) {
        c = calloc((size_t)size, sizeof *c);
        d = calloc((size_t)size, sizeof *d);
    }
    /* (the root takes part even out of memory, with a count of nothing) */
    int z = 0;
    MPI_Request req;
    if (coll_wait(MPI_Igather(&n, 1, MPI_INT, c ? c : &z, c ? 1 : 0, MPI_INT, 0, comm, &req),
                  &req) != RP_OK) {
        free(c);
        free(d);
        return RP_EMPI;
    }
    size_t total = 0;
    if (rank == 0 && c && d) {
        for (int r = 0; r < size; r++) {
            if (total + (size_t)c[r] > INT_MAX)
                c[r] = 0; /* cannot be addressed: dropped, and the workers seen missing */
            d[r] = (int)total;
            total += (size_t)c[r];
        }
        a = malloc(total ? total : 1);
        if (!a) /* out of memory: the senders' pieces are refused (MPI_ERR_TRUNCATE) */
            memset(c, 0, (size_t)size * sizeof *c);
    }
    char none;
    int rc = coll_wait(MPI_Igatherv(n ? mine->buf : NULL, n, MPI_BYTE, a ? a : &none, c, d,
                                    MPI_BYTE, 0, comm, &req),
                       &req);
    if (rank == 0 && (!a || !c || !d) && rc == RP_OK)
        rc = RP_ENOMEM;
    if (rank == 0 && rc == RP_OK) {
        *all = a;
        *counts = c;
        *displs = d;
    } else {
        free(a);
        free(c);
        free(d);
    }
    return rc;
}

int rp__mpi_bcast_status(MPI_Comm comm, int32_t *status)
{
    MPI_Request req;
    return coll_wait(MPI_Ibcast(status, 1, MPI_INT32_T, 0, comm, &req), &req);
}
