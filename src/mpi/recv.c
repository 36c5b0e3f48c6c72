/* The master's messages in, and what they mean for the jobs, told to the core:
 * a RESULT's outputs (received straight into job->out) and failures go to the
 * ledger, then its items are counted; a DIED goes to the core's dead-worker policy
 * and the unstarted rest of the batch back to the scheduler; items a gone worker
 * hands back, and those of a rank given up, go back to the scheduler too (or are
 * canceled by the core when the pool is being terminated). Under plock. */
#include "backend_mpi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- what happens to items ----------------------------------------------------------- */

/* Every count of a job is made here, under plock, so whether this one completes
 * the job is known before it is made: a waiter that sees its job complete must
 * find it gone from `unfinished` (it then lets the pool thread rest, see drive). */
void rp__mpi_count(struct mpi_pool *mp, struct rp__job *job, size_t count)
{
    uint64_t before = atomic_load(&job->processed);
    if (count > 0 && before < job->n && before + count >= job->n) {
        atomic_fetch_sub(&mp->unfinished, 1);
        mp->job_ended = true;
    }
    rp__job_processed(job, count); /* the job may be gone after this */
}

void rp__mpi_fail_items(struct mpi_pool *mp, struct rp__job *job, size_t a, size_t b,
                        const rp_error_t *e)
{
    rp__job_fail_range(job, a, b - a, e);
    rp__job_deliver(job, a, b, NULL); /* arrived (failed), for an iterator */
    rp__mpi_count(mp, job, b - a);
}

void rp__mpi_put_back(struct mpi_pool *mp, struct rp__job *job, size_t a, size_t b)
{
    if (b > a && rp__job_canceled(job)) { /* rp_result_cancel: they do not run again */
        rp__job_cancel(job, a, b, false);
        rp__mpi_count(mp, job, b - a);
        return;
    }
    if (b <= a || rp__sched_putback(&mp->sched, &job->sched, a, b) == 0)
        return;
    rp_error_t e;
    rp__error_set(&e, RP_ENOMEM, a, -1, mp->host,
                  "out of memory putting items back to run on another worker");
    rp__mpi_fail_items(mp, job, a, b, &e);
}

void rp__mpi_worker_died(struct mpi_pool *mp, struct rp__job *job, const rp__death *d,
                         size_t a, size_t running, size_t b)
{
    size_t ra, rb;
    rp__job_worker_died(job, d, a, running, b, false, &ra, &rb);
    /* What the core recorded and left to count: the item that ran (the rest goes
     * back, [ra, rb), with that item too when it runs again), or, the pool
     * terminating, [running, b) canceled. */
    size_t recorded = (b - running) - (rb - ra);
    rp__mpi_put_back(mp, job, ra, rb);
    rp__mpi_count(mp, job, recorded);
}

struct withdrawn {
    struct rp__job *job;
    int             code;
    const char     *msg;
    size_t          count;
};

static void fail_withdrawn(void *arg, uint64_t a, uint64_t b)
{
    struct withdrawn *w = arg;
    if (w->code == RP_ECANCELED) {
        rp__job_cancel(w->job, (size_t)a, (size_t)b, false);
    } else {
        rp_error_t e;
        rp__error_set(&e, w->code, (size_t)a, -1, NULL, "%s", w->msg);
        rp__job_fail_range(w->job, (size_t)a, (size_t)(b - a), &e);
        rp__job_deliver(w->job, (size_t)a, (size_t)b, NULL);
    }
    w->count += (size_t)(b - a);
}

void rp__mpi_cancel_unsent(struct mpi_pool *mp, struct rp__job *job)
{
    struct withdrawn w = { job, RP_ECANCELED, NULL, 0 };
    rp__sched_withdraw(&mp->sched, &job->sched, fail_withdrawn, &w);
    rp__mpi_count(mp, job, w.count); /* the job may be gone after this */
}

void rp__mpi_fail_unclaimed(struct mpi_pool *mp, int code, const char *msg)
{
    for (rp__sjob *first; (first = rp__sched_first(&mp->sched));) {
        struct rp__job *job = rp__mpi_job_of(first);
        struct withdrawn w = { job, code, msg, 0 };
        rp__sched_withdraw(&mp->sched, &job->sched, fail_withdrawn, &w);
        rp__mpi_count(mp, job, w.count);
    }
}

/* Worker w gets no more work (gone, or its rank given up). */
static void worker_lost(struct mpi_pool *mp, struct mworker *w, const char *why)
{
    if (!w->alive)
        return;
    w->alive = false;
    rp__sched_worker_lost(&mp->sched, (uint32_t)w->id);
    snprintf(mp->lost_why, sizeof mp->lost_why, "worker %d (rank %d on %s) %s", w->id,
             w->rank, w->host, why);
    rp__trace("mpi: %s", mp->lost_why);
}

/* ---- given-up ranks ------------------------------------------------------------------ */

void rp__mpi_drop_batches(struct mpi_pool *mp, struct mworker *w, const char *why, bool cancel)
{
    rp__death d = { .worker = w->id, .pid = w->pid, .status = -1, .host = w->host,
                    .rank = w->rank, .why = why };
    for (int k = 0; k < DEPTH; k++) {
        struct inflight *fl = &w->fl[k];
        if (!fl->used)
            continue;
        if (fl->stranded) { /* its items run elsewhere already */
            rp__mpi_release_inflight(mp, fl, cancel);
            continue;
        }
        struct rp__job *job = fl->job;
        size_t a = fl->start + fl->got, b = fl->start + fl->count;
        rp__mpi_release_inflight(mp, fl, cancel);
        /* terminating: the core cancels them; else nothing is known to have run:
         * every item runs again elsewhere */
        if (mp->terminating)
            rp__mpi_worker_died(mp, job, &d, a, a, b);
        else
            rp__mpi_put_back(mp, job, a, b);
    }
}

void rp__mpi_break_rank(struct mpi_pool *mp, int rank, const char *why)
{
    if (rank <= 0 || rank >= mp->size || mp->rank_broken[rank])
        return;
    mp->rank_broken[rank] = true;
    mp->nbroken++;
    rp__trace("mpi: giving up on rank %d: %s", rank, why);
    char lost[160];
    snprintf(lost, sizeof lost, "was given up: %s", why);
    for (int k = mp->rank_first ? mp->rank_first[rank] : 0;
         mp->rank_first && k < mp->rank_first[rank + 1]; k++) {
        int i = mp->rank_wlist[k];
        worker_lost(mp, &mp->w[i], lost);
        rp__mpi_drop_batches(mp, &mp->w[i], why, true); /* it may never receive them */
    }
    rp__mpi_bundle_cancel(mp, rank);
}

/* ---- results ---------------------------------------------------------------------------- */

static struct inflight *find_inflight(struct mworker *w, uint64_t seq, uint64_t job)
{
    for (int k = 0; k < DEPTH; k++)
        if (w->fl[k].used && w->fl[k].seq == seq)
            return (w->fl[k].stranded ? w->fl[k].job_id : w->fl[k].job->id) == job
                       ? &w->fl[k]
                       : NULL;
    return NULL;
}

/* Where the item numbers of fl's rank start: its job's index_base (send.c). */
static uint64_t index_base(const struct inflight *fl)
{
    return fl->stranded ? fl->job_base : fl->job->index_base;
}

/* The records of a result, one after the other. */
struct records {
    rp__rbuf    r;
    int         kind;   /* RP__REC_* */
    rp_error_t  e;      /* ERROR */
    uint64_t    index, size;
    const void *data;   /* VAR */
};

static void records_open(struct records *it, const rp__wire_result *m)
{
    rp__rbuf_init(&it->r, m->records, (size_t)m->rec_bytes);
}

/* \return 1 with the next record, 0 at the end, RP_EPROTO when malformed. */
static int records_next(struct records *it)
{
    return rp__wire_next_record(&it->r, &it->kind, &it->e, &it->index, &it->data, &it->size);
}

/* Checks every record of a result before anything is acted on (start: the
 * result's first item as the serving rank names it, with the job's index_base). */
static int check_records(const rp__wire_result *m, size_t start, size_t count, bool var)
{
    struct records it;
    int rc;
    records_open(&it, m);
    while ((rc = records_next(&it)) == 1) {
        uint64_t index = it.kind == RP__REC_ERROR ? it.e.index : it.index;
        if (it.kind != RP__REC_DEAD && (index < start || index - start >= count))
            return RP_EPROTO;
        if (it.kind == RP__REC_VAR && !var)
            return RP_EPROTO;
    }
    return rc == 0 ? RP_OK : RP_EPROTO;
}

/* The records of a checked result: failures and variable-size outputs, to the core
 * (their indexes made the job's own again). */
static void apply_records(const rp__wire_result *m, struct rp__job *job, const struct mworker *w)
{
    struct records it;
    records_open(&it, m);
    while (records_next(&it) == 1) {
        if (it.kind == RP__REC_ERROR) {
            snprintf(it.e.host, sizeof it.e.host, "%s", w->host);
            it.e.index -= job->index_base;
            rp__job_fail(job, &it.e);
        } else if (it.kind == RP__REC_VAR) {
            rp__job_deliver_var(job, (size_t)(it.index - job->index_base), it.data,
                                (size_t)it.size);
        }
    }
}

/* A part whose every item failed with the one record (ALLFAIL). */
static int fail_part(const rp__wire_result *m, struct rp__job *job, const struct mworker *w)
{
    struct records it;
    records_open(&it, m);
    if (records_next(&it) != 1 || it.kind != RP__REC_ERROR)
        return RP_EPROTO;
    snprintf(it.e.host, sizeof it.e.host, "%s", w->host);
    rp__job_fail_range(job, (size_t)m->start, (size_t)m->count, &it.e);
    rp__job_deliver(job, (size_t)m->start, (size_t)(m->start + m->count), NULL);
    return RP_OK;
}

/* The outputs of a checked part: a separate message is received straight into
 * job->out. \return RP_OK with *src where they are (NULL: none travel). */
static int recv_outputs(struct mpi_pool *mp, int from, const rp__wire_result *m,
                        struct rp__job *job, const char **src)
{
    size_t outbytes = (job->flags & RP__JOB_VAR) ? 0 : (size_t)m->count * job->out_size;
    *src = NULL;
    if (outbytes == 0)
        return RP_OK;
    char *dst = job->out + (size_t)m->start * job->out_size;
    if (m->outputs) {
        *src = m->outputs;
        return RP_OK;
    }
    MPI_Status st;
    int got = 0;
    if (MPI_Recv(dst, (int)outbytes, MPI_BYTE, from, TAG_DATA, mp->comm, &st) != MPI_SUCCESS)
        return RP_EMPI;
    MPI_Get_count(&st, MPI_BYTE, &got);
    if ((size_t)got != outbytes)
        return RP_EPROTO;
    *src = dst;
    return RP_OK;
}

/* A RESULT from rank src: the next items of a batch in flight (a batch may come
 * back in several messages, in order, when its failures are many, or before a
 * DIED). \return RP_OK or RP_EPROTO/RP_EMPI (the caller gives up on the rank). */
static int handle_result(struct mpi_pool *mp, int src, const rp__wire_hdr *h, rp__rbuf *r)
{
    rp__wire_result m;
    if (h->worker >= (uint32_t)mp->nworkers || rp__wire_get_result(r, h, &m) != RP_OK)
        return RP_EPROTO;
    struct mworker *w = &mp->w[h->worker];
    struct inflight *fl = w->rank == src ? find_inflight(w, m.seq, m.job) : NULL;
    /* the rank names items with the job's index_base (send.c) */
    if (fl && m.start >= index_base(fl))
        m.start -= index_base(fl);
    else
        fl = NULL;
    if (!fl || m.start != fl->start + fl->got || m.count == 0 ||
        m.count > fl->count - fl->got ||
        ((h->flags & RP__RESULT_RETURNED) && m.count != fl->count - fl->got))
        return RP_EPROTO; /* (handed back: the whole rest of the batch) */
    if (fl->stranded) { /* its items ran elsewhere: dropped */
        if (h->flags & RP__RESULT_GONE)
            w->stranded = false; /* (and it does not come back) */
        bool separate = !(h->flags & (RP__RESULT_ALLFAIL | RP__RESULT_RETURNED)) &&
                        !m.outputs;
        return rp__mpi_late(mp, src, w, fl, m.count, m.out_size, separate,
                            (h->flags & (RP__RESULT_GONE | RP__RESULT_RETURNED)) != 0);
    }
    struct rp__job *job = fl->job;
    bool var = job->flags & RP__JOB_VAR;
    size_t start = (size_t)m.start, count = (size_t)m.count, batch = fl->count;
    int rc;
    const char *outputs;
    if (h->flags & RP__RESULT_RETURNED) {
        rc = RP_OK;
    } else if (h->flags & RP__RESULT_ALLFAIL) {
        rc = fail_part(&m, job, w);
    } else if (m.out_size != (var ? 0 : job->out_size) ||
               check_records(&m, job->index_base + start, count, var) != RP_OK) {
        rc = RP_EPROTO;
    } else if ((rc = recv_outputs(mp, src, &m, job, &outputs)) == RP_OK) {
        /* failures before the arrival: an iterator takes an item as it arrives */
        apply_records(&m, job, w);
        rp__job_deliver(job, start, start + count, outputs);
    }
    if (rc != RP_OK)
        return rc;
    fl->got += count;
    rp__mpi_progress_note(fl); /* before the count: progress never counts twice */
    bool last = fl->got == batch;
    if (last)
        rp__mpi_release_inflight(mp, fl, false);
    if (h->flags & (RP__RESULT_GONE | RP__RESULT_RETURNED))
        worker_lost(mp, w, "is gone: its replacement process could not start");
    else if (last) /* the whole batch's time comes with its last part */
        rp__sched_finished(&mp->sched, (uint32_t)w->id, &job->sched, batch,
                           (double)m.compute_ns * 1e-9);
    if (h->flags & RP__RESULT_RETURNED)
        rp__mpi_put_back(mp, job, start, start + count);
    else
        rp__mpi_count(mp, job, count);
    return RP_OK;
}

/* A DIED from rank src: the worker process running a batch died; the items before
 * m.index came in RESULTs already. */
static int handle_died(struct mpi_pool *mp, int src, const rp__wire_hdr *h, rp__rbuf *r)
{
    rp__wire_died m;
    if (h->worker >= (uint32_t)mp->nworkers || rp__wire_get_died(r, &m) != RP_OK)
        return RP_EPROTO;
    struct mworker *w = &mp->w[h->worker];
    struct inflight *fl = w->rank == src ? find_inflight(w, m.seq, m.job) : NULL;
    if (!fl || m.index != index_base(fl) + fl->start + fl->got)
        return RP_EPROTO;
    if (fl->stranded) /* its items ran elsewhere */
        return rp__mpi_late(mp, src, w, fl, fl->count - fl->got, 0, false, true);
    struct rp__job *job = fl->job;
    size_t a = fl->start + fl->got, b = fl->start + fl->count;
    rp__mpi_release_inflight(mp, fl, false);
    rp__sched_finished(&mp->sched, (uint32_t)w->id, NULL, 0, 0);
    if (h->flags & RP__DIED_IDLE) { /* between items: nothing failed */
        rp__mpi_put_back(mp, job, a, b);
        return RP_OK;
    }
    rp__death d = { .worker = w->id, .pid = m.pid, .status = m.status, .host = w->host,
                    .rank = w->rank, .why = NULL };
    if (h->flags & RP__DIED_TIMEOUT)
        d.timeout = job->timeout > 0 ? job->timeout : 1e-9;
    rp__mpi_worker_died(mp, job, &d, a, a, b);
    return RP_OK;
}

void rp__mpi_progress_note(struct inflight *fl)
{
    if (!fl->job)
        return;
    struct mjob *mj = fl->job->bdata;
    size_t prog = fl->prog < fl->count ? fl->prog : fl->count;
    size_t now = prog > fl->got ? prog - fl->got : 0;
    if (now > fl->shown)
        atomic_fetch_add(&mj->running, now - fl->shown);
    else if (now < fl->shown)
        atomic_fetch_sub(&mj->running, fl->shown - now);
    fl->shown = now;
}

/* A PROGRESS from rank src: items of a batch in flight processed so far. A late
 * one, for a batch already back, is dropped. */
static int handle_progress(struct mpi_pool *mp, int src, const rp__wire_hdr *h, rp__rbuf *r)
{
    rp__wire_progress m;
    if (h->worker >= (uint32_t)mp->nworkers || rp__wire_get_progress(r, &m) != RP_OK)
        return RP_EPROTO;
    struct mworker *w = &mp->w[h->worker];
    if (w->rank != src)
        return RP_EPROTO;
    struct inflight *fl = find_inflight(w, m.seq, m.job);
    if (fl && m.items > fl->prog) {
        fl->prog = m.items > fl->count ? fl->count : (size_t)m.items;
        rp__mpi_progress_note(fl);
    }
    return RP_OK;
}

/* The master's TAG_CTL messages arrive into a receive posted in advance, not
 * probed for and then received: Open MPI matches a message that finds its
 * receive posted straight into that buffer, and an empty poll is one MPI_Test
 * (a probe sets up, searches and frees a receive each time, and a probed
 * message is copied twice). The buffer holds the largest message a rank sends
 * (a result from its whole area); it is reserved, not committed, and after a
 * message larger than PRECV_KEEP its pages are given back. */
static int post_recv(struct mpi_pool *mp)
{
    if (!mp->pbuf) {
        void *p = mmap(NULL, PRECV_BYTES, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (p == MAP_FAILED)
            return RP_ENOMEM;
        mp->pbuf = p;
    }
    if (mp->pbig > PRECV_KEEP)
        madvise(mp->pbuf + PRECV_KEEP, mp->pbig - PRECV_KEEP, MADV_DONTNEED);
    mp->pbig = 0;
    return MPI_Irecv(mp->pbuf, (int)PRECV_BYTES, MPI_BYTE, MPI_ANY_SOURCE, TAG_CTL, mp->comm,
                     &mp->preq) == MPI_SUCCESS
               ? RP_OK
               : RP_EMPI;
}

void rp__mpi_recv_stop(struct mpi_pool *mp)
{
    if (mp->preq != MPI_REQUEST_NULL) {
        MPI_Cancel(&mp->preq);
        MPI_Wait(&mp->preq, MPI_STATUS_IGNORE);
        mp->preq = MPI_REQUEST_NULL;
    }
    if (mp->pbuf)
        munmap(mp->pbuf, PRECV_BYTES);
    mp->pbuf = NULL;
}

/* The master can receive from no rank any more: every rank is given up. */
static long break_all_ranks(struct mpi_pool *mp, const char *why)
{
    for (int rk = 1; rk < mp->size; rk++)
        rp__mpi_break_rank(mp, rk, why);
    return -1;
}

/* Receives the next TAG_CTL message into mp->pbuf (*at), where it stays until
 * the next call. \return its length, 0 when there is none, -1 when ranks were
 * given up for it: the sender (*src set), or every rank when the receive itself
 * failed. */
static long recv_next(struct mpi_pool *mp, int *src, char **at)
{
    int flag = 0, count = 0, rc = RP_OK;
    MPI_Status st;
    if (mp->preq == MPI_REQUEST_NULL && (rc = post_recv(mp)) != RP_OK)
        return break_all_ranks(mp, rc == RP_ENOMEM ? "out of memory receiving a result"
                                                   : "MPI_Irecv failed");
    int mrc = MPI_Test(&mp->preq, &flag, &st);
    if (mrc != MPI_SUCCESS && !flag)
        return break_all_ranks(mp, "MPI_Test failed");
    if (!flag)
        return 0;
    mp->preq = MPI_REQUEST_NULL;
    *src = st.MPI_SOURCE;
    MPI_Get_count(&st, MPI_BYTE, &count);
    mp->pbig = count > 0 ? (size_t)count : 0;
    if (mrc != MPI_SUCCESS || count < 0) { /* (longer than any message of a rank) */
        mp->pbig = PRECV_BYTES;
        rp__mpi_break_rank(mp, *src, "MPI receive failed (message too long?)");
        return -1;
    }
    *at = mp->pbuf;
    return count;
}

/* The separate outputs (TAG_DATA) a rank given up still sends are read and
 * dropped: otherwise that rank waits for their send forever and never leaves the
 * pool. (Its TAG_CTL messages are read, and refused, by poll_messages.) */
static int drop_given_up_data(struct mpi_pool *mp)
{
    int events = 0;
    for (int rk = 1; rk < mp->size; rk++) {
        if (!mp->rank_broken[rk] || mp->rank_bye[rk])
            continue;
        for (;;) {
            int flag = 0, count = 0;
            MPI_Message msg;
            MPI_Status st;
            if (MPI_Improbe(rk, TAG_DATA, mp->comm, &flag, &msg, &st) != MPI_SUCCESS || !flag)
                break;
            MPI_Get_count(&st, MPI_BYTE, &count);
            char *tmp = malloc(count > 0 ? (size_t)count : 1);
            /* (out of memory: received into nothing, truncated, dropped all the same) */
            MPI_Mrecv(tmp, tmp ? count : 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
            free(tmp);
            events++;
        }
    }
    return events;
}

/* The parts of a BUNDLE from a leader (bundle.c): RESULTs and PROGRESS, each as
 * if it had come alone. */
static int handle_bundle(struct mpi_pool *mp, int src, rp__rbuf *r)
{
    uint32_t local;
    const char *part;
    size_t len;
    int rc;
    while ((rc = rp__mpi_bundle_next(r, &local, &part, &len)) == 1) {
        rp__wire_hdr h;
        rp__rbuf pr;
        rc = rp__wire_open(part, len, &h, &pr);
        if (rc == RP_OK && h.kind == RP__MSG_RESULT)
            rc = handle_result(mp, src, &h, &pr);
        else if (rc == RP_OK && h.kind == RP__MSG_PROGRESS)
            rc = handle_progress(mp, src, &h, &pr);
        else
            rc = RP_EPROTO;
        if (rc != RP_OK)
            return rc;
    }
    return rc;
}

int rp__mpi_poll_messages(struct mpi_pool *mp)
{
    int events = 0;
    mp->job_ended = false;
    if (mp->nbroken > 0 && !mp->leave_unread)
        events += drop_given_up_data(mp);
    /* Stop after a message that completes a job: its waiter may be polling,
     * and wants its result now rather than after one more probe. */
    bool drained = false;
    for (int n = 0; n < 64 && !mp->job_ended; n++) {
        int src = -1;
        char *msg = NULL;
        long len = recv_next(mp, &src, &msg);
        if (len == 0) {
            drained = true;
            break;
        }
        events++;
        if (len < 0)
            continue;
        rp__mpi_heard(mp, src);
        rp__wire_hdr h;
        rp__rbuf r;
        int rc = rp__wire_open(msg, (size_t)len, &h, &r);
        if (rc == RP_OK && h.kind == RP__MSG_RESULT)
            rc = handle_result(mp, src, &h, &r);
        else if (rc == RP_OK && h.kind == RP__MSG_DIED)
            rc = handle_died(mp, src, &h, &r);
        else if (rc == RP_OK && h.kind == RP__MSG_PROGRESS)
            rc = handle_progress(mp, src, &h, &r);
        else if (rc == RP_OK && h.kind == RP__MSG_BUNDLE)
            rc = handle_bundle(mp, src, &r);
        else if (rc == RP_OK && h.kind == RP__MSG_BYE)
            mp->rank_bye[src] = true;
        else if (rc == RP_OK && h.kind == RP__MSG_ALIVE)
            ; /* heard, that is all */
        else if (rc == RP_OK && h.kind == RP__MSG_PROTO)
            rp__mpi_break_rank(mp, src, "it received a malformed message");
        else
            rc = RP_EPROTO;
        if (rc != RP_OK)
            rp__mpi_break_rank(mp, src,
                               rc == RP_EPROTO ? "malformed message from it" : "MPI failure");
    }
    /* Silence is judged only with nothing left to read: a master that was away (a
     * long callback on the pool thread) has the ranks' messages still queued. */
    if (drained)
        events += rp__mpi_silent_check(mp);
    return events;
}
