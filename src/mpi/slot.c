/* A serving rank's batch regions (struct slotdesc in backend_mpi.h): a batch is
 * received into one, its records (failures, variable-size outputs) are written
 * there, and its results are sent from there: whole, in parts when the records
 * outgrow the area, failed as a whole, or handed back unrun when its worker is
 * gone. */
#include "backend_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- records ------------------------------------------------------------------------- */

size_t rp__mpi_record_free(const struct slotdesc *sd)
{
    size_t at = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    return at < sd->cap ? sd->cap - at : 0;
}

void *rp__mpi_record_room(struct lworker *lw, int s, size_t bytes, size_t keep)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    size_t at = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    size_t free_bytes = rp__mpi_record_free(sd);
    if (bytes > free_bytes || keep > free_bytes - bytes)
        return NULL;
    return lw->slot[s] + at;
}

void rp__mpi_record_commit(struct lworker *lw, int s, size_t bytes)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    /* The record's bytes are in place before the length covers them: a process
     * killed at any moment leaves the area with whole records only (the count
     * follows the length; report_death counts them again). */
    atomic_thread_fence(memory_order_release);
    sd->rec_len += bytes;
    atomic_thread_fence(memory_order_release);
    sd->nrec++;
}

void rp__mpi_record_fail(struct lworker *lw, int s, const rp_error_t *e)
{
    size_t size = rp__wire_error_size(e);
    void *p = rp__mpi_record_room(lw, s, size, 0);
    if (p) {
        rp__wire_error_write(p, e);
        rp__mpi_record_commit(lw, s, size);
    }
}

/* ---- results ------------------------------------------------------------------------- */

/* Whether the master has asked this rank to leave (a STOP or TERMINATE waits). */
static bool asked_to_leave(struct server *sv)
{
    int flag = 0;
    MPI_Iprobe(0, TAG_CTL, sv->comm, &flag, MPI_STATUS_IGNORE);
    return flag || sv->leaving;
}

bool rp__mpi_send_wait(struct server *sv, MPI_Request *reqs, int n)
{
    double t0 = -1; /* (the clock is read only once the send is not through at once) */
    for (;;) {
        int flag = 0;
        if (MPI_Testall(n, reqs, &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS || flag)
            return true;
        if (t0 < 0)
            t0 = rp__now();
        /* The master reads every message while the pool runs (a given-up rank's
         * too). Asked to leave, and still not through after ANSWER_WAIT_S: the
         * master has ended the pool and will never read it. The send is
         * abandoned; the library may still refer to its buffer, which the caller
         * keeps. */
        double waited = rp__now() - t0;
        if (waited > ANSWER_WAIT_S && asked_to_leave(sv)) {
            for (int q = 0; q < n; q++)
                if (reqs[q] != MPI_REQUEST_NULL)
                    MPI_Request_free(&reqs[q]);
            return false;
        }
        rp__mpi_idle_pause(); /* (as MPI_Waitall would spin) */
    }
}

void rp__mpi_slot_drain(struct server *sv, struct lworker *lw, int s)
{
    if (!lw->sending[s])
        return;
    if (!rp__mpi_send_wait(sv, lw->req[s], 2)) { /* the region stays mapped */
        lw->leaked[s] = true;
        rp__trace("mpi: rank %d abandons a result of worker %d nobody reads", sv->rank,
                  lw->id);
    }
    lw->req[s][0] = lw->req[s][1] = MPI_REQUEST_NULL;
    lw->sending[s] = false;
}

/* The slots are a ring (batch k in slot k % DEPTH, which the child follows); the
 * regions they point to are not: each region's first batch costs page faults in
 * the rank and in the child (a page table, the page), and a worker going round
 * all DEPTH regions paid them DEPTH times (3-4 of its 11 faults in a map of 20
 * items per worker). A region is free when no posted batch not yet sent is in its
 * slot and no send from it is in progress; the child reads it from the slot. */
void rp__mpi_slot_pick(struct lworker *lw, int s)
{
    bool busy[DEPTH] = { false };
    for (uint32_t k = lw->nsent; k != lw->nposted; k++)
        busy[k % DEPTH] = true;
    if (busy[s] || lw->leaked[s])
        return; /* (cannot be: the master gives a worker at most DEPTH batches) */
    int best = s;
    for (int t = 0; t < DEPTH; t++) {
        if (busy[t] || lw->leaked[t])
            continue;
        if (lw->sending[t]) {
            int flag = 0;
            if (MPI_Testall(2, lw->req[t], &flag, MPI_STATUSES_IGNORE) != MPI_SUCCESS || !flag)
                continue;
            lw->req[t][0] = lw->req[t][1] = MPI_REQUEST_NULL;
            lw->sending[t] = false;
        }
        if (lw->slot[t] < lw->slot[best])
            best = t;
    }
    char *r = lw->slot[s];
    lw->slot[s] = lw->slot[best];
    lw->slot[best] = r;
}

/* Sends a result for the items of slot s processed and not reported yet, [sent,
 * resume): the whole batch (the child finished it) or the part before a flush of
 * the record area or a death (rp__mpi_send_part). */
int rp__mpi_send_result(struct server *sv, struct lworker *lw, int s, uint32_t flags)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    char *base = lw->slot[s];
    size_t first = sd->sent, count = sd->resume - sd->sent;
    size_t outbytes = sd->out_size * count;
    const char *outputs = base + sd->out_off + first * sd->out_size;
    size_t len = RP__RESULT_FIXED + sd->rec_len;
    if (outbytes > 0 && outbytes <= INLINE_MAX &&
        sd->res_off + len + outbytes <= sd->cap) {
        memcpy(base + sd->res_off + len, outputs, outbytes);
        len += outbytes;
        flags |= RP__RESULT_INLINE;
    }
    /* the time the batch took, with its last part */
    uint64_t ns = sd->resume == sd->count ? sd->compute_ns : 0;
    rp__wire_result m = { .job = lw->job[s], .seq = lw->seq[s], .start = sd->start + first,
                          .count = count, .out_size = sd->out_size, .nrec = sd->nrec,
                          .rec_bytes = sd->rec_len, .compute_ns = ns };
    rp__wire_result_write(base + sd->res_off, (uint32_t)lw->id, flags, &m, len);
    sd->sent = sd->resume;
    lw->req[s][0] = lw->req[s][1] = MPI_REQUEST_NULL;
    bool separate = outbytes > 0 && !(flags & RP__RESULT_INLINE);
    if (sv->bundling && !separate && len <= BUNDLE_PART_MAX &&
        rp__mpi_bundle_room(sv, len)) /* copied: the region is free at once */
        return rp__mpi_bundle_add(sv, base + sd->res_off, len);
    int rc = rp__mpi_bundle_flush(sv); /* (what went before arrives before) */
    if (rc != RP_OK)
        return rc;
    if (MPI_Isend(base + sd->res_off, (int)len, MPI_BYTE, 0, TAG_CTL, sv->comm,
                  &lw->req[s][0]) != MPI_SUCCESS)
        return RP_EMPI;
    if (separate &&
        MPI_Isend(outputs, (int)outbytes, MPI_BYTE, 0, TAG_DATA, sv->comm,
                  &lw->req[s][1]) != MPI_SUCCESS)
        return RP_EMPI;
    lw->sending[s] = true;
    sv->sending[lw->local / 64] |= 1ull << (lw->local % 64);
    if (sv->inproc) /* the rank computes next: finish the transfer first */
        rp__mpi_slot_drain(sv, lw, s);
    return RP_OK;
}

/* Every record in the area is of an item in [sent, resume) (or a dead
 * variable-size output, of no item). */
int rp__mpi_send_part(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    int rc = RP_OK;
    if (sd->resume > sd->sent) {
        rc = rp__mpi_send_result(sv, lw, s, 0);
        rp__mpi_slot_drain(sv, lw, s);
    }
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->var_last = 0;
    return rc;
}

/* A batch its child stopped early (its job canceled): items [resume, count) did
 * not start; they go back as one failure, RP_ECANCELED, after the part that ran. */
static int send_canceled_rest(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp__mpi_slot_drain(sv, lw, s); /* the part before was sent from the same area */
    rp_error_t e;
    rp__cancel_error(&e, sd->start + sd->resume, lw->id, sv->host, false);
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->out_size = 0; /* no outputs travel */
    rp__mpi_record_fail(lw, s, &e);
    sd->resume = sd->count;
    return rp__mpi_send_result(sv, lw, s, RP__RESULT_ALLFAIL);
}

int rp__mpi_send_finished(struct server *sv, struct lworker *lw, int *events)
{
    uint32_t done = atomic_load(&lw->ctl->completed);
    while (lw->nsent != done) {
        int s = (int)(lw->nsent % DEPTH);
        struct slotdesc *sd = &lw->ctl->slot[s];
        bool stopped = sd->resume < sd->count;
        int rc = RP_OK;
        if (!stopped || sd->resume > sd->sent)
            rc = rp__mpi_send_result(sv, lw, s, 0);
        if (rc == RP_OK && stopped)
            rc = send_canceled_rest(sv, lw, s);
        if (rc != RP_OK)
            return rc;
        rp__mpi_set_nsent(sv, lw, lw->nsent + 1);
        if (events)
            (*events)++;
    }
    return RP_OK;
}

/* A whole batch fails with one error (a task this rank cannot resolve, a batch
 * larger than the area): a result with the ALLFAIL flag and one record. */
static int send_batch_failure(struct server *sv, struct lworker *lw, int s, int code,
                              const char *msg)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp_error_t e;
    rp__error_set(&e, code, sd->start, lw->id, sv->host, "%s", msg);
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->out_size = 0; /* no outputs travel */
    sd->sent = 0;
    rp__mpi_record_fail(lw, s, &e);
    sd->resume = sd->count;
    return rp__mpi_send_result(sv, lw, s, RP__RESULT_ALLFAIL);
}

int rp__mpi_send_returned(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->out_size = 0;
    sd->compute_ns = 0;
    sd->resume = sd->count;
    if (sd->sent == sd->count)
        return RP_OK;
    return rp__mpi_send_result(sv, lw, s, RP__RESULT_RETURNED | RP__RESULT_GONE);
}

/* ---- batches in ---------------------------------------------------------------------- */

/* Receives (and drops) the next message on tag from the master: the separate
 * input of a batch that cannot run. */
static int drop_next(struct server *sv, int tag)
{
    MPI_Message msg;
    MPI_Status st;
    int count = 0;
    if (MPI_Mprobe(0, tag, sv->comm, &msg, &st) != MPI_SUCCESS)
        return RP_EMPI;
    MPI_Get_count(&st, MPI_BYTE, &count);
    char *tmp = malloc(count > 0 ? (size_t)count : 1);
    int rc = tmp && MPI_Mrecv(tmp, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) == MPI_SUCCESS;
    free(tmp);
    return rc ? RP_OK : RP_EMPI;
}

/* Receives a separate input (RP__BATCH_SEPARATE) into slot s, or drops it when the
 * batch does not fit (*fits). */
static int recv_input(struct server *sv, struct lworker *lw, int s, int tag, size_t inbytes,
                      bool *fits)
{
    if (!*fits || inbytes > INT_MAX) {
        *fits = false;
        return drop_next(sv, tag);
    }
    MPI_Status st;
    int got = 0;
    struct slotdesc *sd = &lw->ctl->slot[s];
    if (MPI_Recv(lw->slot[s] + sd->in_off, (int)inbytes, MPI_BYTE, 0, tag, sv->comm, &st) !=
        MPI_SUCCESS)
        return RP_EMPI;
    MPI_Get_count(&st, MPI_BYTE, &got);
    return (size_t)got == inbytes ? RP_OK : RP_EPROTO;
}

/* The message is normally in slot s itself; one too large for the slot was
 * received elsewhere and only fails. */
int rp__mpi_post_batch(struct server *sv, struct lworker *lw, int s, int tag, const char *buf,
                       size_t msglen)
{
    char *base = lw->slot[s];
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b;
    memset(sd, 0, sizeof *sd);
    sd->base = base;
    sd->cap = SLOT_BYTES;
    sd->res_off = rp__mpi_align(msglen, 64);
    if (rp__wire_open(buf, msglen, &h, &r) != RP_OK)
        return RP_EPROTO;
    bool separate = h.flags & RP__BATCH_SEPARATE;
    if (rp__wire_get_batch_known(&r, &h, &b, sv->fn_last ? sv->fn_raw : NULL, sv->fn_rawlen) !=
        RP_OK) {
        if (separate && drop_next(sv, tag) != RP_OK)
            return RP_EMPI;
        return RP_EPROTO;
    }
    lw->job[s] = b.job;
    lw->seq[s] = b.seq;
    sd->start = (size_t)b.start;
    sd->count = (size_t)b.count;
    sd->chunk = (size_t)b.chunk;
    sd->in_size = (size_t)b.in_size;
    sd->flags = b.flags;
    sd->timeout_ns = b.timeout_ns;
    sd->retries = b.retries;
    sd->untimed = b.untimed;
    size_t inbytes = (size_t)(b.in_size * b.count);
    size_t outbytes = (size_t)(b.out_size * b.count);
    sd->in_off = separate ? rp__mpi_align(msglen, 64) : (size_t)(b.input - buf);
    sd->out_off = rp__mpi_align(separate ? sd->in_off + inbytes : msglen, 64);
    sd->res_off = rp__mpi_align(sd->out_off + outbytes, 64);
    sd->out_size = (size_t)b.out_size;
    bool fits = buf == base && inbytes <= sd->cap && outbytes <= sd->cap &&
                sd->res_off + RP__RESULT_FIXED + INLINE_MAX <= sd->cap;
    if (separate) {
        int rc = recv_input(sv, lw, s, tag, inbytes, &fits);
        if (rc != RP_OK)
            return rc;
    }
    if (!fits) { /* the result goes at the start of the region */
        sd->res_off = 0;
        sd->out_size = 0;
    }
    if (lw->gone)
        return rp__mpi_send_returned(sv, lw, s);
    if (!fits)
        return send_batch_failure(sv, lw, s, RP_ENOMEM,
                                  "batch too large for the worker's transfer area");
    /* The task of the last batch again (the same reference, nothing unloaded
     * since): no lookup */
    uint64_t unloads = rp__fnref_unloads();
    rp_task_fn task = sv->fn_last;
    if (!b.fn_known || unloads != sv->fn_unloads) {
        rp__anyfn fn;
        char why[200 + RP__FNREF_NAMEMAX];
        if (b.fn_known) /* (not decoded: the same bytes as the last one's) */
            rp__wire_get_fnref(&(rp__rbuf){ sv->fn_raw, sv->fn_rawlen, RP_OK }, &b.fn);
        sv->fn_last = NULL;
        if (rp__fnref_resolve(&b.fn, &fn, why, sizeof why) != RP_OK) {
            char msg[sizeof why + 100]; /* cut to rp_error_t's 256 bytes later */
            snprintf(msg, sizeof msg, "rank %d on %s: %s", sv->rank, sv->host, why);
            return send_batch_failure(sv, lw, s, RP_EFNREF, msg);
        }
        task = (rp_task_fn)fn;
        if (b.fn_rawlen <= sizeof sv->fn_raw) {
            memcpy(sv->fn_raw, b.fn_raw, b.fn_rawlen);
            sv->fn_rawlen = b.fn_rawlen;
            sv->fn_last = task;
            sv->fn_unloads = unloads;
        }
    }
    sd->fn = task;
    atomic_store(&sd->stop, 0);
    lw->nposted++;
    sv->posted_total++;
    atomic_store(&lw->ctl->posted, lw->nposted);
    if (sv->inproc)
        rp__mpi_inproc_run(sv, lw);
    else if (atomic_load(&lw->ctl->child_sleeps))
        rp__futex_wake(&lw->ctl->posted, INT_MAX);
    return RP_OK;
}
