/* The master's sends it no longer waits for, kept until they complete.
 *
 * Open MPI does not take a started send back: MPI_Cancel of a send is a no-op in
 * its ob1 PML, and MPI_Request_free lets the send go on, reading its buffer,
 * whenever the receiver takes it. A rank the master stops waiting for (its batches
 * stranded, or the rank given up) may take its sends much later: a stopped rank
 * resumed, a link back up. So a send whose buffer the master would reuse or free
 * before it completed comes here with its buffer: the buffer is freed only once
 * the send is complete (MPI_Testsome on each pass of the pool thread), never
 * before. What is still pending when the pool ends is let go (MPI_Request_free)
 * and its buffer kept for the life of the process: the rank may take it even then.
 *
 * The large inputs of batches come here too, copied: see send.c. Under plock. */
#include "backend_mpi.h"

#include <pthread.h>
#include <stdlib.h>

/* The buffers of sends still pending when their pool ended, for the life of the
 * process (reachable, so no leak checker counts them). */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static void **kept;
static size_t nkept, capkept;

static void keep(void *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&kept_lock);
    if (nkept == capkept) {
        size_t cap = capkept ? 2 * capkept : 16;
        void **k = realloc(kept, cap * sizeof *k);
        if (k) {
            kept = k;
            capkept = cap;
        }
    }
    if (nkept < capkept)
        kept[nkept++] = buf;
    pthread_mutex_unlock(&kept_lock);
}

void rp__mpi_outbox_add(struct mpi_pool *mp, MPI_Request *req, void *buf)
{
    if (*req == MPI_REQUEST_NULL) {
        free(buf);
        return;
    }
    if (mp->nout == mp->capout) {
        int cap = mp->capout ? 2 * mp->capout : 16;
        MPI_Request *r = realloc(mp->out_req, (size_t)cap * sizeof *r);
        if (r)
            mp->out_req = r;
        void **b = r ? realloc(mp->out_buf, (size_t)cap * sizeof *b) : NULL;
        if (b)
            mp->out_buf = b;
        int *i = b ? realloc(mp->out_idx, (size_t)cap * sizeof *i) : NULL;
        if (i)
            mp->out_idx = i;
        if (!i) { /* the send goes on unwatched; its buffer is never freed */
            MPI_Request_free(req);
            *req = MPI_REQUEST_NULL;
            keep(buf);
            return;
        }
        mp->capout = cap;
    }
    mp->out_req[mp->nout] = *req;
    mp->out_buf[mp->nout] = buf;
    mp->nout++;
    *req = MPI_REQUEST_NULL;
}

void rp__mpi_outbox_poll(struct mpi_pool *mp)
{
    if (mp->nout == 0)
        return;
    int done = 0;
    if (MPI_Testsome(mp->nout, mp->out_req, &done, mp->out_idx, MPI_STATUSES_IGNORE) !=
            MPI_SUCCESS ||
        done <= 0) /* (MPI_UNDEFINED: none active) */
        return;
    int kept = 0;
    for (int k = 0; k < mp->nout; k++) {
        if (mp->out_req[k] == MPI_REQUEST_NULL) { /* completed: set so by MPI_Testsome */
            free(mp->out_buf[k]);
            continue;
        }
        mp->out_req[kept] = mp->out_req[k];
        mp->out_buf[kept] = mp->out_buf[k];
        kept++;
    }
    mp->nout = kept;
}

void rp__mpi_outbox_close(struct mpi_pool *mp)
{
    rp__mpi_outbox_poll(mp);
    if (mp->nout > 0)
        rp__trace("mpi: %d sends never taken: let go, their buffers kept", mp->nout);
    for (int k = 0; k < mp->nout; k++) {
        MPI_Request_free(&mp->out_req[k]);
        keep(mp->out_buf[k]);
    }
    free(mp->out_req);
    free(mp->out_buf);
    free(mp->out_idx);
    mp->out_req = NULL;
    mp->out_buf = NULL;
    mp->out_idx = NULL;
    mp->nout = mp->capout = 0;
}
