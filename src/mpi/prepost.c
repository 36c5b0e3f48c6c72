/* A serving rank's receives posted in advance: one for the master's control
 * messages, and one per worker into the transfer area its next batch goes to.
 *
 * Without them, every turn of the rank's loop asked MPI whether anything had come
 * (MPI_Improbe: Open MPI sets up, matches and frees a receive request at every
 * call, found or not, about 580 instructions) and received a batch found that way
 * with a second call (MPI_Mrecv). A posted receive is matched when the message
 * arrives, straight into its area, and one MPI_Testany over the posted receives
 * (about 230 instructions) is both the look and the receive.
 *
 * Only for a rank of at most PREPOST_MAX workers: MPI matches an arriving
 * message against the posted receives one by one, and a rank of hundreds would
 * pay that at every message. Larger ranks go the probing way (serve_message in
 * server.c), and so do the ranks of a pool with node leaders (leader.c), whose
 * BUNDLE messages on the control tag can be far larger than a control receive. A rank that posts still probes every CHECK_S, for messages on a tag
 * no receive waits on (answered PROTO); a batch for a worker whose next area is
 * still busy stays queued in MPI until that worker's receive is posted, and only
 * then is received: never by the probe, which would take it out of order. Order
 * is kept: a batch and a control message that
 * arrived in that order are handled in that order (the workers' receives are
 * tested before the control one, and a control message is handled only once no
 * worker's receive is complete). */
#include "backend_mpi.h"

#include <stdlib.h>

#define PREPOST_MAX   8            /* workers on a rank that posts receives */
#define PRE_CTL_BYTES 4096         /* a control message to a rank: CANCEL, STOP, ... */
#define PRE_BATCH_BYTES (SLOT_BYTES / 2) /* the largest batch message probed (server.c) */

struct prepost {
    int          n;       /* workers: req[0, n) theirs, req[n] the control receive */
    MPI_Request *req;
    int         *slot;    /* the area worker i's posted receive goes into */
    char        *ctl;     /* PRE_CTL_BYTES */
};

bool rp__mpi_prepost_init(struct server *sv)
{
    if (sv->nlocal > PREPOST_MAX || sv->bundling) /* (a BUNDLE outgrows PRE_CTL_BYTES) */
        return false;
    struct prepost *p = calloc(1, sizeof *p);
    if (!p)
        return false;
    p->n = sv->nlocal;
    p->req = malloc((size_t)(p->n + 1) * sizeof *p->req);
    p->slot = calloc((size_t)p->n + 1, sizeof *p->slot);
    p->ctl = malloc(PRE_CTL_BYTES);
    if (!p->req || !p->slot || !p->ctl) {
        free(p->req);
        free(p->slot);
        free(p->ctl);
        free(p);
        return false;
    }
    for (int i = 0; i <= p->n; i++)
        p->req[i] = MPI_REQUEST_NULL;
    sv->pre = p;
    return true;
}

/* Posts what can be posted: the control receive, and each worker's whose next
 * area is free (its last batch there answered, its sends from there done). */
static int post(struct server *sv, struct prepost *p)
{
    if (p->req[p->n] == MPI_REQUEST_NULL &&
        MPI_Irecv(p->ctl, PRE_CTL_BYTES, MPI_BYTE, 0, TAG_CTL, sv->comm, &p->req[p->n]) !=
            MPI_SUCCESS)
        return RP_EMPI;
    for (int i = 0; i < p->n; i++) {
        struct lworker *lw = &sv->w[i];
        if (p->req[i] != MPI_REQUEST_NULL || lw->nposted - lw->nsent >= DEPTH)
            continue;
        int s = (int)(lw->nposted % DEPTH);
        if (lw->sending[s])
            continue;
        /* (no other pick moves this region while the receive is posted: a
         * worker has one posted receive, and this rank takes its batches only
         * through it) */
        rp__mpi_slot_pick(lw, s);
        p->slot[i] = s;
        if (MPI_Irecv(lw->slot[s], (int)PRE_BATCH_BYTES, MPI_BYTE, 0, TAG_WORK0 + i, sv->comm,
                      &p->req[i]) != MPI_SUCCESS)
            return RP_EMPI;
    }
    return RP_OK;
}

int rp__mpi_prepost_poll(struct server *sv, int *events)
{
    struct prepost *p = sv->pre;
    for (int m = 0; m < 32; m++) {
        int rc = post(sv, p);
        if (rc != RP_OK)
            return rc;
        int idx = MPI_UNDEFINED, flag = 0, count = 0;
        MPI_Status st;
        int mrc = MPI_Testany(p->n + 1, p->req, &idx, &flag, &st);
        if (!flag || idx == MPI_UNDEFINED)
            return RP_OK;
        (*events)++;
        bool bad = mrc != MPI_SUCCESS || MPI_Get_count(&st, MPI_BYTE, &count) != MPI_SUCCESS ||
                   count < 0;
        if (idx == p->n) /* control: after every batch that came before it */
            return bad ? rp__mpi_server_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO)
                       : rp__mpi_serve_ctl(sv, p->ctl, (size_t)count);
        struct lworker *lw = &sv->w[idx];
        int s = p->slot[idx];
        rc = bad ? RP_EPROTO
                 : rp__mpi_post_batch(sv, lw, s, TAG_WORK0 + idx, lw->slot[s], (size_t)count);
        if (rc == RP_EPROTO)
            rc = rp__mpi_server_ctl(sv, RP__MSG_PROTO, (uint32_t)lw->id, RP_EPROTO);
        if (rc != RP_OK || sv->inproc) /* (in-process: the batch ran; its result first) */
            return rc;
    }
    return RP_OK;
}

int rp__mpi_prepost_stray(struct server *sv)
{
    int flag = 0;
    MPI_Status st;
    if (MPI_Iprobe(0, MPI_ANY_TAG, sv->comm, &flag, &st) != MPI_SUCCESS || !flag)
        return -1;
    int tag = st.MPI_TAG;
    /* a batch for a worker whose next area is still busy waits for its receive */
    if (tag == TAG_CTL || (tag >= TAG_WORK0 && tag < TAG_WORK0 + sv->pre->n))
        return -1;
    return tag;
}

void rp__mpi_prepost_free(struct server *sv)
{
    struct prepost *p = sv->pre;
    if (!p)
        return;
    for (int i = 0; i <= p->n; i++)
        if (p->req[i] != MPI_REQUEST_NULL) {
            MPI_Cancel(&p->req[i]);
            MPI_Wait(&p->req[i], MPI_STATUS_IGNORE);
        }
    free(p->req);
    free(p->slot);
    free(p->ctl);
    free(p);
    sv->pre = NULL;
}
