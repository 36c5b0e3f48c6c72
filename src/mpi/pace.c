/* A serving rank of many workers whose batches are long paces its turns: a turn
 * every millisecond sends what its workers finished meanwhile, instead of a turn
 * (a wake-up, then a probe of MPI that yields the core) per result; the master
 * talks to it in bundles, as to a node leader.
 *
 * Measured at 4,000-10,000 worker processes of 100 ms tasks on 2 cores: the worker
 * processes switch once per task (their sleep; the next batch is already queued,
 * DEPTH_LONG), but each result woke the rank, each turn of its loop probed MPI
 * with nothing there, which in Open MPI's oversubscribed mode yields the core
 * (sched_yield), and each batch and result was a message of its own. A worker
 * that holds its next batch loses nothing if its result waits a millisecond: it
 * runs on.
 *
 * So, once the rank's batches last LAZY_BATCH_S or more (a recent average of what
 * its workers reported), and it has more than SPIN_WORKERS_MAX workers (a rank of
 * few workers posts its receives in advance and is left as it is, prepost.c):
 *  - a worker process that finishes such a batch and holds its next one marks its
 *    result without waking the rank (child.c, rp__mpi_pace_quiet);
 *  - the rank starts a turn LAZY_TURN_S after the last one, or at once when a
 *    worker with nothing left rings (its result is wanted now: its next batch
 *    comes only after it). A paced turn receives every message that came from the
 *    master meanwhile (up to PROBE_MAX + DEPTH per worker; then the next turn
 *    follows at once). Turns 5 ms apart were measured too: at 1,000 workers a
 *    rank, 6,700 batches a second, the master's sends backed up in the
 *    shared-memory transport between turns and half the workers starved;
 *  - the results and PROGRESS of a turn go to the master in one BUNDLE, as from a
 *    node leader (bundle.c), in pieces of at most PACED_BUNDLE_BYTES (under Open
 *    MPI's shared-memory eager limit: each goes out at once); the master, seeing
 *    a bundle, sends this rank's batches of each dispatch pass in one bundle too
 *    (mbundle.on). */
#include "backend_mpi.h"

#include <limits.h>

/* How long its workers' batches ran: called for each batch a worker finished. */
void rp__mpi_pace_batch(struct server *sv, double seconds)
{
    sv->batch_s = sv->batch_s > 0 ? 0.75 * sv->batch_s + 0.25 * seconds : seconds;
    bool on = !sv->pre && !sv->inproc && sv->batch_s >= LAZY_BATCH_S;
    if (atomic_load(&sv->bell->paced) != on) {
        atomic_store(&sv->bell->paced, on);
        rp__trace("mpi: rank %d %s its turns (batches of %.1f ms)", sv->rank,
                  on ? "paces" : "no longer paces", 1e3 * sv->batch_s);
    }
    /* a paced turn sends what it finished in one message, as a leader does
     * (bundle.c; from then on: a bundle of one part goes as itself) */
    if (on && !sv->bundling) {
        sv->bundling = true;
        sv->bundle_max = PACED_BUNDLE_BYTES;
    }
}

bool rp__mpi_pace_quiet(const struct server *sv, const struct wctl *ctl, uint32_t k)
{
    return atomic_load(&sv->bell->paced) && atomic_load(&ctl->posted) > k + 1 &&
           (double)ctl->slot[k % DEPTH].compute_ns * 1e-9 >= LAZY_BATCH_S;
}

bool rp__mpi_pace_wait(struct server *sv, uint32_t rung, double turn_at)
{
    if (!atomic_load(&sv->bell->paced) || sv->posted_total == sv->sent_total)
        return false;
    double left = turn_at + LAZY_TURN_S - rp__now();
    if (left > 0) {
        atomic_store(&sv->bell->rank_sleeps, 1);
        rp__futex_wait(&sv->bell->bell, rung, left); /* at once if rung meanwhile */
        atomic_store(&sv->bell->rank_sleeps, 0);
    }
    return true;
}
