/* Bundles (with node leaders, doc/mpi.md "Node leaders", stage 2): the master
 * talks to a node's leader in one message where it would send one per worker.
 *
 * Master to leader: the batches one dispatch pass picks for a leader's workers are
 * built as today (each in its slot's buffer) and deferred; at the end of the pass
 * each rank gets one BUNDLE holding them all, or, when there is one, that batch as
 * itself. A batch with a separate input is never deferred (its input follows it on
 * the worker's tag). The leader copies each part into its worker's region (where
 * the batch would have been received) and posts it as if it had arrived alone.
 *
 * Leader to master: the RESULTs without separate outputs and the PROGRESS messages
 * of one turn of the leader's loop are copied into one bundle, sent at the end of
 * the turn; anything else the leader sends (a DIED, a result with separate
 * outputs, ALIVE, BYE) flushes the bundle first, so the master sees the leader's
 * messages in the order it would have seen them one by one. The master hands each
 * part to the handler of a lone message (recv.c).
 *
 * Bundles batch themselves: an idle master picks one batch per pass and a leader
 * finishes one per turn (a bundle of one goes as itself, as without leaders);
 * under load more results wait between the master's polls and a pass feeds
 * several workers of a node. */
#include "backend_mpi.h"

#include <stdlib.h>
#include <string.h>

/* ---- the format ------------------------------------------------------------------------ */

static int put_part(rp__wbuf *b, uint32_t local, const void *msg, size_t len)
{
    rp__wbuf_u32(b, local);
    rp__wbuf_u32(b, (uint32_t)len);
    rp__wbuf_put(b, msg, len);
    size_t pad = rp__mpi_align(len, 8) - len;
    if (pad) {
        static const char zero[8];
        rp__wbuf_put(b, zero, pad);
    }
    return b->err;
}

int rp__mpi_bundle_next(rp__rbuf *r, uint32_t *local, const char **part, size_t *len)
{
    if (r->left == 0)
        return 0;
    *local = rp__rbuf_u32(r);
    *len = rp__rbuf_u32(r);
    *part = rp__rbuf_get(r, *len);
    size_t pad = rp__mpi_align(*len, 8) - *len;
    if (pad)
        rp__rbuf_get(r, pad);
    return r->err || !*part ? RP_EPROTO : 1;
}

/* The header of bundle b, holding n parts. */
static void finish(rp__wbuf *b, int n)
{
    rp__wire_hdr_write(b->buf, RP__MSG_BUNDLE, (uint32_t)n, 0, b->len);
}

/* ---- the master ------------------------------------------------------------------------ */

int rp__mpi_bundle_open(struct mpi_pool *mp)
{
    if (!mp->leaders)
        return RP_OK;
    mp->bundle = calloc((size_t)mp->size, sizeof *mp->bundle);
    mp->bundle_ranks = calloc((size_t)mp->size, sizeof *mp->bundle_ranks);
    if (!mp->bundle || !mp->bundle_ranks) {
        free(mp->bundle);
        free(mp->bundle_ranks);
        mp->bundle = NULL;
        mp->bundle_ranks = NULL;
        return RP_ENOMEM;
    }
    for (int rk = 0; rk < mp->size; rk++)
        for (int q = 0; q < 2; q++) {
            rp__wbuf_init(&mp->bundle[rk].buf[q]);
            mp->bundle[rk].req[q] = MPI_REQUEST_NULL;
        }
    return RP_OK;
}

/* Lets go of the sends of a rank's bundles (it may take them much later, or
 * never): their buffers go with them, freed once the sends complete (outbox.c). */
static void drop_sends(struct mpi_pool *mp, struct mbundle *b)
{
    for (int q = 0; q < 2; q++)
        if (b->req[q] != MPI_REQUEST_NULL) {
            MPI_Cancel(&b->req[q]);
            rp__mpi_outbox_add(mp, &b->req[q], b->buf[q].buf);
            rp__wbuf_init(&b->buf[q]);
        }
}

void rp__mpi_bundle_close(struct mpi_pool *mp)
{
    if (!mp->bundle)
        return;
    for (int rk = 0; rk < mp->size; rk++) {
        struct mbundle *b = &mp->bundle[rk];
        for (int q = 0; q < 2; q++) {
            int done = 0;
            if (b->req[q] != MPI_REQUEST_NULL)
                MPI_Test(&b->req[q], &done, MPI_STATUS_IGNORE);
        }
        drop_sends(mp, b); /* (the pool has ended: what is left nobody may take) */
        for (int q = 0; q < 2; q++)
            rp__wbuf_free(&b->buf[q]);
    }
    free(mp->bundle);
    free(mp->bundle_ranks);
    mp->bundle = NULL;
    mp->bundle_ranks = NULL;
}

void rp__mpi_bundle_cancel(struct mpi_pool *mp, int rank)
{
    if (mp->bundle)
        drop_sends(mp, &mp->bundle[rank]);
}

void rp__mpi_bundle_defer(struct mpi_pool *mp, struct inflight *fl, const struct mworker *w)
{
    struct mbundle *b = &mp->bundle[w->rank];
    fl->deferred = true;
    fl->tag = w->tag;
    fl->dnext = NULL;
    if (!b->head)
        mp->bundle_ranks[mp->nbundle_ranks++] = w->rank;
    if (b->tail)
        b->tail->dnext = fl;
    else
        b->head = fl;
    b->tail = fl;
    b->nparts++;
}

/* The batches deferred for rank rk go out: alone, or in one bundle. */
static void send_rank(struct mpi_pool *mp, int rk)
{
    struct mbundle *b = &mp->bundle[rk];
    struct inflight *fl = b->head;
    int live = 0;
    for (struct inflight *f = fl; f; f = f->dnext)
        live += f->deferred; /* (not: dropped since, its rank given up) */
    b->head = b->tail = NULL;
    b->nparts = 0;
    if (live == 0 || mp->rank_broken[rk])
        return;
    /* for two or more, a buffer whose send is done (normally both); never waited
     * for: the leader may itself be waiting for the master to take a large bundle
     * of results */
    int q = -1;
    for (int k = 0; k < 2 && q < 0 && live > 1; k++) {
        int i = (b->turn + k) % 2, done = 1;
        if (b->req[i] != MPI_REQUEST_NULL)
            MPI_Test(&b->req[i], &done, MPI_STATUS_IGNORE);
        if (done)
            q = i;
    }
    if (q < 0) { /* one, or both buffers still going out: each batch alone */
        for (struct inflight *f = fl; f; f = f->dnext)
            if (f->deferred) {
                f->deferred = false;
                if (MPI_Isend(f->buf.buf, (int)f->buf.len, MPI_BYTE, rk, f->tag, mp->comm,
                              &f->req) != MPI_SUCCESS) {
                    rp__mpi_break_rank(mp, rk, "MPI_Isend failed");
                    return;
                }
            }
        return;
    }
    b->turn = q ^ 1;
    rp__wbuf *w = &b->buf[q];
    rp__wire_begin(w, RP__MSG_BUNDLE, 0, 0);
    for (struct inflight *f = fl; f; f = f->dnext)
        if (f->deferred) {
            f->deferred = false;
            put_part(w, (uint32_t)(f->tag - TAG_WORK0), f->buf.buf, f->buf.len);
        }
    if (w->err != RP_OK || w->len > INT_MAX) {
        rp__mpi_break_rank(mp, rk, "out of memory building a bundle of batches");
        return;
    }
    finish(w, live);
    rp__trace("mpi: %d batches to rank %d in one bundle", live, rk);
    if (MPI_Isend(w->buf, (int)w->len, MPI_BYTE, rk, TAG_CTL, mp->comm, &b->req[q]) !=
        MPI_SUCCESS)
        rp__mpi_break_rank(mp, rk, "MPI_Isend failed");
}

void rp__mpi_bundle_send(struct mpi_pool *mp)
{
    if (!mp->bundle)
        return;
    for (int i = 0; i < mp->nbundle_ranks; i++)
        send_rank(mp, mp->bundle_ranks[i]);
    mp->nbundle_ranks = 0;
}

/* ---- a serving rank -------------------------------------------------------------------- */

int rp__mpi_bundle_batches(struct server *sv, const char *buf, size_t len)
{
    rp__wire_hdr h;
    rp__rbuf r;
    if (rp__wire_open(buf, len, &h, &r) != RP_OK)
        return RP_EPROTO;
    uint32_t local;
    const char *part;
    size_t plen;
    int rc;
    while ((rc = rp__mpi_bundle_next(&r, &local, &part, &plen)) == 1) {
        rp__wire_hdr ph;
        rp__rbuf pr;
        /* a part is a batch whose input is inside it, for a worker of this rank */
        if (local >= (uint32_t)sv->nlocal || plen > SLOT_BYTES / 2 ||
            rp__wire_open(part, plen, &ph, &pr) != RP_OK || ph.kind != RP__MSG_BATCH ||
            (ph.flags & RP__BATCH_SEPARATE))
            return RP_EPROTO;
        struct lworker *lw = &sv->w[local];
        int s = (int)(lw->nposted % DEPTH);
        rp__mpi_slot_drain(sv, lw, s);
        rp__mpi_slot_pick(lw, s);
        memcpy(lw->slot[s], part, plen);
        rc = rp__mpi_post_batch(sv, lw, s, TAG_WORK0 + (int)local, lw->slot[s], plen);
        if (rc != RP_OK)
            return rc;
    }
    return rc;
}

bool rp__mpi_bundle_room(struct server *sv, size_t len)
{
    if (sv->bparts > 0 && sv->bout[sv->bturn].len + len > BUNDLE_BYTES &&
        rp__mpi_bundle_flush(sv) != RP_OK)
        return false;
    if (sv->bparts > 0)
        return true;
    /* a new bundle, in the buffer whose send is done (normally long done); never
     * waited for: the master may be waiting for this rank to take its batches */
    int done = 1;
    if (sv->breq[sv->bturn] != MPI_REQUEST_NULL)
        MPI_Test(&sv->breq[sv->bturn], &done, MPI_STATUS_IGNORE);
    return done;
}

int rp__mpi_bundle_add(struct server *sv, const void *msg, size_t len)
{
    rp__wbuf *w = &sv->bout[sv->bturn];
    if (sv->bparts == 0)
        rp__wire_begin(w, RP__MSG_BUNDLE, 0, 0);
    sv->bparts++;
    return put_part(w, 0, msg, len);
}

int rp__mpi_bundle_flush(struct server *sv)
{
    if (sv->bparts == 0)
        return RP_OK;
    rp__wbuf *w = &sv->bout[sv->bturn];
    int n = sv->bparts;
    sv->bparts = 0;
    if (w->err != RP_OK)
        return RP_ENOMEM;
    const char *msg = w->buf;
    size_t len = w->len;
    if (n == 1) { /* a lone part goes as itself */
        uint32_t plen;
        memcpy(&plen, msg + RP__WIRE_HDR_SIZE + 4, sizeof plen);
        msg += RP__WIRE_HDR_SIZE + 8;
        len = plen;
    } else {
        finish(w, n);
        rp__trace("mpi: rank %d: %d results in one bundle", sv->rank, n);
    }
    int rc = MPI_Isend(msg, (int)len, MPI_BYTE, 0, TAG_CTL, sv->comm,
                       &sv->breq[sv->bturn]) == MPI_SUCCESS ? RP_OK : RP_EMPI;
    sv->bturn ^= 1;
    return rc;
}

int rp__mpi_server_send(struct server *sv, const void *msg, size_t len)
{
    int rc = rp__mpi_bundle_flush(sv);
    if (rc != RP_OK)
        return rc;
    return MPI_Send(msg, (int)len, MPI_BYTE, 0, TAG_CTL, sv->comm) == MPI_SUCCESS ? RP_OK
                                                                                   : RP_EMPI;
}

void rp__mpi_bundle_end(struct server *sv)
{
    rp__mpi_bundle_flush(sv);
    for (int q = 0; q < 2; q++) {
        bool done = sv->breq[q] == MPI_REQUEST_NULL || rp__mpi_send_wait(sv, &sv->breq[q], 1);
        sv->breq[q] = MPI_REQUEST_NULL;
        if (done)
            rp__wbuf_free(&sv->bout[q]);
        else
            rp__wbuf_init(&sv->bout[q]); /* abandoned: the library may still read it */
    }
}
