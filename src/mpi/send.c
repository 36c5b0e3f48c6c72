/* The master's batches out: what the scheduler picked becomes a BATCH message to
 * the worker's rank (the input inline, or, when large, as a second message sent
 * from a copy, or from the buffer of rp_pool_alloc it lies in: see outbox.c),
 * tracked as in flight until its result, its worker's death report, or the end of
 * its rank. Under plock. */
#include "backend_mpi.h"

#include <stdlib.h>
#include <string.h>

/* The class of a batch expected to take `s` seconds (0: not known): the pool
 * thread naps a quarter of the shortest one in flight (progress.c). */
static int expect_class(double s)
{
    static const double upper[] = { 0, 80e-6, 160e-6, 320e-6, 640e-6, LONG_BATCH_S };
    if (s <= 0)
        return EXP_UNKNOWN;
    for (int c = EXP_1; c < EXP_LONG; c++)
        if (s <= upper[c])
            return c;
    return EXP_LONG;
}

/* A batch's send (its message, or its input's copy) and the buffer it reads. */
static void end_send(struct mpi_pool *mp, MPI_Request *req, rp__wbuf *buf, bool cancel)
{
    if (*req == MPI_REQUEST_NULL)
        return;
    if (cancel) { /* a rank given up: it may take the send much later, or never */
        MPI_Cancel(req);
        rp__mpi_outbox_add(mp, req, buf->buf); /* freed once taken */
        rp__wbuf_init(buf);
    } else { /* the rank has taken it (a result came, or it said BYE) */
        MPI_Wait(req, MPI_STATUS_IGNORE);
    }
    *req = MPI_REQUEST_NULL;
}

void rp__mpi_release_inflight(struct mpi_pool *mp, struct inflight *fl, bool cancel)
{
    size_t had = fl->copy.cap;
    end_send(mp, &fl->req, &fl->buf, cancel);
    end_send(mp, &fl->dreq, &fl->copy, cancel); /* (cancel: the copy goes to outbox.c) */
    /* kept for the slot's next batch when small, as long as the pool's copies
     * stay within COPY_BUDGET (at 8 workers every slot keeps its copy) */
    if (fl->copy.cap > COPY_KEEP || mp->copy_bytes > COPY_BUDGET)
        rp__wbuf_free(&fl->copy);
    mp->copy_bytes -= had - fl->copy.cap;
    if (!fl->stranded) { /* (a stranded one was counted out when it was stranded) */
        mp->nexp[fl->exp]--;
        rp__mpi_held(mp, fl->rank, -1);
    }
    fl->stranded = false;
    fl->deferred = false; /* (never sent: its rank was given up in the same pass) */
    fl->prog = 0;
    rp__mpi_progress_note(fl);
    fl->used = false;
    fl->job = NULL;
}

/* The most items of job one batch may hold: what one transfer area holds of their
 * inputs and outputs (a fixed chunk larger than that travels in several batches).
 * A batch task's fixed chunk travels alone: the worker's call is then the batch,
 * and a crash inside it fails that call's items only. */
static size_t batch_fit(const struct rp__job *job)
{
    size_t per = job->in_size + ((job->flags & RP__JOB_VAR) ? 0 : job->out_size);
    size_t fit = RP_MPI_ITEM_MAX / (per ? per : 1);
    if ((job->flags & RP__JOB_BATCH) && job->chunksize && job->chunksize < fit)
        fit = job->chunksize;
    return fit;
}

static struct inflight *free_inflight(struct mworker *w)
{
    for (int k = 0; k < DEPTH; k++)
        if (!w->fl[k].used)
            return &w->fl[k];
    return NULL;
}

int rp__mpi_send_pick(struct mpi_pool *mp, const rp__pick *p)
{
    struct rp__job *job = rp__mpi_job_of(p->job);
    struct mjob *mj = job->bdata;
    struct mworker *w = &mp->w[p->worker];
    size_t start = (size_t)p->start, count = (size_t)p->len, fit = batch_fit(job);
    if (count > fit) { /* the rest goes in the next batches */
        rp__mpi_put_back(mp, job, start + fit, start + count);
        count = fit;
    }
    struct inflight *fl = free_inflight(w);
    if (!fl) { /* cannot be: the scheduler gives a worker at most DEPTH batches */
        rp__mpi_put_back(mp, job, start, start + count);
        rp__sched_finished(&mp->sched, p->worker, NULL, 0, 0);
        return 1;
    }
    bool var = job->flags & RP__JOB_VAR;
    /* The serving rank runs items start + index_base..., so that rp_ctx_index and
     * what comes back name them in the caller's whole call (recv.c subtracts it). */
    rp__wire_batch b = { .job = job->id, .seq = ++w->next_seq,
                         .start = start + job->index_base, .count = count,
                         .chunk = job->chunksize, .in_size = job->in_size,
                         .out_size = var ? 0 : job->out_size, .flags = job->flags,
                         .fn = mj->fn, .untimed = count == job->n };
    if (job->timeout > 0)
        b.timeout_ns = (uint64_t)(job->timeout * 1e9) + 1;
    if (job->retry_raised)
        b.retries = (uint32_t)job->retries;
    /* A large input goes as its own message, from a copy the library owns until the
     * send completes: the caller may reuse its array once the job returns, and a
     * rank that stopped answering may take the send much later (the copy then
     * goes to outbox.c). The slot keeps its copy's memory for its next batches:
     * fresh memory per batch cost a page fault per 4 KiB copied. From a buffer of
     * rp_pool_alloc the input goes as it is: the library frees that memory, and
     * not while a send from it is pending (rp__mpi_buf_release). */
    const char *input = job->in + start * job->in_size;
    size_t inbytes = count * job->in_size;
    bool separate = inbytes > INLINE_MAX;
    bool copied = separate && !mj->in_pool;
    char *copy = NULL;
    if (copied) {
        size_t had = fl->copy.cap;
        fl->copy.len = 0;
        if ((copy = rp__wbuf_grow(&fl->copy, inbytes)))
            memcpy(copy, input, inbytes);
        else
            rp__wbuf_free(&fl->copy); /* (its error mark with it) */
        mp->copy_bytes += fl->copy.cap - had; /* (unsigned: also when it shrank) */
    }
    if ((copied && !copy) ||
        rp__wire_put_batch(&fl->buf, (uint32_t)w->id, &b, separate ? NULL : input) != RP_OK) {
        rp_error_t e;
        rp__error_set(&e, RP_ENOMEM, start, w->id, w->host, "out of memory building a batch");
        rp__sched_finished(&mp->sched, p->worker, NULL, 0, 0);
        rp__mpi_fail_items(mp, job, start, start + count, &e);
        return 1;
    }
    fl->used = true;
    fl->job = job;
    fl->seq = b.seq;
    fl->start = start;
    fl->count = count;
    fl->got = 0;
    fl->exp = expect_class(job->sched.item_s * (double)count);
    mp->nexp[fl->exp]++;
    fl->rank = w->rank;
    fl->stranded = false;
    rp__mpi_held(mp, w->rank, 1);
    rp__trace("mpi: job %llu items [%zu, %zu) -> worker %d", (unsigned long long)job->id,
              start, start + count, w->id);
    fl->req = MPI_REQUEST_NULL;
    if (mp->bundle && !separate) { /* goes with the rank's other batches of this pass */
        rp__mpi_bundle_defer(mp, fl, w);
        return 1;
    }
    MPI_Request dreq = MPI_REQUEST_NULL;
    if (MPI_Isend(fl->buf.buf, (int)fl->buf.len, MPI_BYTE, w->rank, w->tag, mp->comm,
                  &fl->req) != MPI_SUCCESS ||
        (separate && MPI_Isend(copied ? copy : input, (int)inbytes, MPI_BYTE, w->rank, w->tag,
                               mp->comm, copied ? &fl->dreq : &dreq) != MPI_SUCCESS))
        rp__mpi_break_rank(mp, w->rank, "MPI_Isend failed");
    if (separate && !copied) /* from a buffer of rp_pool_alloc: its release waits */
        rp__mpi_outbox_add_from(mp, &dreq, input, inbytes);
    return 1;
}
