/* Ranks that fall silent: work stranded on a node the master cannot reach.
 *
 * A serving rank that holds batches says ALIVE every ALIVE_S, even while its
 * workers compute one long task, so silence means the rank (or the network to its
 * node) is not there. The master notes when it last heard from each rank. A rank
 * silent for RP_MPI_STRANDED_TIMEOUT seconds (default 30) while it holds batches:
 * its workers get no more work, and every item of its batches that has not come
 * back goes back to the scheduler, to run on the other workers at once (items are
 * pure functions of their inputs: running one twice is harmless). The batches stay
 * *stranded*: their slots stay taken (their sends may still be in progress), and
 * whatever the rank sends for them later is received and dropped. When the rank
 * answers again, each of its workers comes back once its stranded batches are
 * accounted for. A rank silent for RP_MPI_UNREACHABLE_TIMEOUT seconds (default
 * 120) is given up for good, as one that broke the protocol, without waiting for
 * Open MPI to decide the connection is dead; if no worker is left, what nobody
 * can run fails with RP_EWORKER naming the rank and its host.
 *
 * Not in in-process mode (RP_MPI_ISOLATE=0): a rank running a task there says
 * nothing until it is done. Under plock, but rp__mpi_silent_open. */
#include "backend_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A deadline from the environment (envtime.c): 0 for never. */
static double env_deadline(const char *name, double def)
{
    double t = rp__env_seconds(name, def, true);
    return isinf(t) ? 0 : t;
}

int rp__mpi_silent_open(struct mpi_pool *mp, bool inproc)
{
    mp->lost_code = RP_EBROKEN;
    mp->stranded_s = inproc ? 0 : env_deadline("RP_MPI_STRANDED_TIMEOUT", STRANDED_S);
    mp->unreachable_s = inproc ? 0 : env_deadline("RP_MPI_UNREACHABLE_TIMEOUT", UNREACHABLE_S);
    /* a few ALIVEs must fit in the deadline; the second is not before the first */
    if (mp->stranded_s > 0 && mp->stranded_s < 4 * ALIVE_S)
        mp->stranded_s = 4 * ALIVE_S;
    if (mp->unreachable_s > 0 && mp->unreachable_s < 4 * ALIVE_S)
        mp->unreachable_s = 4 * ALIVE_S;
    if (mp->unreachable_s > 0 && mp->unreachable_s < mp->stranded_s)
        mp->unreachable_s = mp->stranded_s;
    mp->rank_heard = calloc((size_t)mp->size, sizeof *mp->rank_heard);
    mp->rank_held = calloc((size_t)mp->size, sizeof *mp->rank_held);
    mp->rank_silent = calloc((size_t)mp->size, sizeof *mp->rank_silent);
    if (!mp->rank_heard || !mp->rank_held || !mp->rank_silent)
        return RP_ENOMEM;
    double now = rp__now();
    for (int rk = 0; rk < mp->size; rk++)
        mp->rank_heard[rk] = now;
    return RP_OK;
}

void rp__mpi_silent_close(struct mpi_pool *mp)
{
    free(mp->rank_heard);
    free(mp->rank_held);
    free(mp->rank_silent);
}

/* Worker w, lost while its rank was silent, runs again once the rank answered and
 * none of its batches is stranded. */
static void maybe_back(struct mpi_pool *mp, struct mworker *w)
{
    if (!w->stranded || mp->rank_silent[w->rank] || mp->rank_broken[w->rank])
        return;
    for (int k = 0; k < DEPTH; k++)
        if (w->fl[k].used)
            return;
    w->stranded = false;
    w->alive = true;
    rp__sched_worker_back(&mp->sched, (uint32_t)w->id);
    rp__trace("mpi: worker %d (rank %d on %s) runs again", w->id, w->rank, w->host);
}

void rp__mpi_heard(struct mpi_pool *mp, int src)
{
    if (src <= 0 || src >= mp->size || !mp->rank_heard)
        return;
    mp->rank_heard[src] = rp__now();
    if (!mp->rank_silent[src])
        return;
    mp->rank_silent[src] = false;
    mp->nsilent--;
    rp__trace("mpi: rank %d answered again", src);
    for (int k = mp->rank_first[src]; k < mp->rank_first[src + 1]; k++)
        maybe_back(mp, &mp->w[mp->rank_wlist[k]]);
}

void rp__mpi_held(struct mpi_pool *mp, int rank, int delta)
{
    if (rank <= 0 || rank >= mp->size || !mp->rank_held)
        return;
    if (delta > 0 && mp->rank_held[rank] == 0)
        mp->rank_heard[rank] = rp__now(); /* silence counts from when it has work */
    mp->rank_held[rank] += delta;
}

/* Rank rk said nothing for `quiet` seconds while holding batches: they run
 * elsewhere. */
static void strand(struct mpi_pool *mp, int rk, double quiet)
{
    mp->rank_silent[rk] = true;
    mp->nsilent++;
    uint64_t items = 0;
    const char *host = "?";
    for (int k = mp->rank_first[rk]; k < mp->rank_first[rk + 1]; k++) {
        struct mworker *w = &mp->w[mp->rank_wlist[k]];
        host = w->host;
        if (w->alive) {
            w->alive = false;
            w->stranded = true;
            rp__sched_worker_lost(&mp->sched, (uint32_t)w->id);
        }
        for (int k = 0; k < DEPTH; k++) {
            struct inflight *fl = &w->fl[k];
            if (!fl->used || fl->stranded)
                continue;
            struct rp__job *job = fl->job;
            size_t a = fl->start + fl->got, b = fl->start + fl->count;
            fl->prog = 0; /* what PROGRESS counted of it runs again elsewhere */
            rp__mpi_progress_note(fl);
            fl->stranded = true;
            fl->job_id = job->id;
            fl->job_base = job->index_base;
            fl->job = NULL;
            mp->nexp[fl->exp]--;
            mp->rank_held[rk]--;
            rp__mpi_put_back(mp, job, a, b);
            items += b - a;
        }
    }
    mp->redispatched += items;
    rp__trace("mpi: rank %d on %s has not answered for %.1f s (RP_MPI_STRANDED_TIMEOUT): "
              "%llu items of its batches handed to other workers (%llu in all)",
              rk, host, quiet, (unsigned long long)items,
              (unsigned long long)mp->redispatched);
}

/* Rank rk said nothing for `quiet` seconds: given up. */
static void unreachable(struct mpi_pool *mp, int rk, double quiet)
{
    char why[200];
    const char *host = mp->nworkers >= rk ? mp->w[rk - 1].host : "?";
    snprintf(why, sizeof why, "has not answered for %.0f s (RP_MPI_UNREACHABLE_TIMEOUT): "
                              "its host %s is unreachable", quiet, host);
    if (mp->rank_silent[rk]) {
        mp->rank_silent[rk] = false;
        mp->nsilent--;
    }
    for (int k = mp->rank_first[rk]; k < mp->rank_first[rk + 1]; k++) {
        struct mworker *w = &mp->w[mp->rank_wlist[k]];
        if (w->stranded) { /* lost already: the reason is told here */
            w->stranded = false;
            snprintf(mp->lost_why, sizeof mp->lost_why, "worker %d (rank %d on %s) %s", w->id,
                     w->rank, w->host, why);
        }
    }
    mp->lost_code = RP_EWORKER;
    rp__mpi_break_rank(mp, rk, why);
}

int rp__mpi_silent_check(struct mpi_pool *mp)
{
    if (mp->stranded_s <= 0 && mp->unreachable_s <= 0)
        return 0;
    /* (not a clock read at every poll: it can cost as much as the poll) */
    if (++mp->silent_polls < SILENT_CHECK_TURNS)
        return 0;
    mp->silent_polls = 0;
    double now = rp__now();
    if (now - mp->silent_checked < SILENT_CHECK_S)
        return 0;
    mp->silent_checked = now;
    int events = 0;
    for (int rk = 1; rk < mp->size; rk++) {
        if (mp->rank_broken[rk] || mp->rank_bye[rk])
            continue;
        double quiet = now - mp->rank_heard[rk];
        bool waiting = mp->rank_held[rk] > 0 || mp->rank_silent[rk];
        if (!waiting)
            continue;
        if (mp->unreachable_s > 0 && quiet > mp->unreachable_s) {
            unreachable(mp, rk, quiet);
            events++;
        } else if (!mp->rank_silent[rk] && mp->stranded_s > 0 && quiet > mp->stranded_s) {
            strand(mp, rk, quiet);
            events++;
        }
    }
    return events;
}

int rp__mpi_late(struct mpi_pool *mp, int src, struct mworker *w, struct inflight *fl,
                 uint64_t count, uint64_t out_size, bool separate, bool last)
{
    int rc = RP_OK;
    if (separate && count * out_size > 0) { /* the outputs follow: received, dropped */
        size_t bytes = (size_t)(count * out_size);
        char *sink = malloc(bytes);
        if (!sink || bytes > INT_MAX ||
            MPI_Recv(sink, (int)bytes, MPI_BYTE, src, TAG_DATA, mp->comm,
                     MPI_STATUS_IGNORE) != MPI_SUCCESS)
            rc = RP_EMPI;
        free(sink);
    }
    fl->got += (size_t)count;
    mp->late_dropped += count;
    if (last || fl->got >= fl->count) {
        rp__trace("mpi: worker %d (rank %d): a stranded batch came back late, dropped "
                  "(%llu late items dropped in all)", w->id, w->rank,
                  (unsigned long long)mp->late_dropped);
        rp__mpi_release_inflight(mp, fl, false);
        maybe_back(mp, w);
    }
    return rc;
}
