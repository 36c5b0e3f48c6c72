/* A serving rank of many workers whose batches are long paces its turns: one turn
 * every few milliseconds sends what its workers finished meanwhile, instead of a
 * turn (a wake-up, a probe of MPI that yields the core) per result.
 *
 * Measured at 4,000-10,000 worker processes of 100 ms tasks on 2 cores: the worker
 * processes switch once per task (their sleep; the next batch is already queued,
 * DEPTH_LONG), but every result woke the rank, and each turn of its loop probed MPI
 * with nothing there, which in Open MPI's oversubscribed mode yields the core
 * (sched_yield): about a switch of a rank for every task. A worker that holds its
 * next batch loses nothing if its result waits a few milliseconds: it runs on.
 *
 * So, once the rank's batches last LAZY_BATCH_S or more (a recent average of what
 * its workers reported), and it has more than SPIN_WORKERS_MAX workers (a rank of
 * few workers posts its receives in advance and is left as it is, prepost.c):
 *  - a worker process that finishes such a batch and holds its next one marks its
 *    result without waking the rank (child.c, rp__mpi_pace_quiet);
 *  - the rank starts a turn at most every LAZY_TURN_S .. batch/20, or at once when
 *    a worker with nothing left rings (its result is wanted now: its next batch
 *    comes only after it) or when the turn received as many messages from the
 *    master as a turn takes (PROBE_MAX: more of a burst may be queued, e.g. the
 *    first batches of a map; the next turn follows at once, as before). A batch
 *    from the master waits for the next turn too: at most LAZY_TURN_MAX_S, or
 *    batch/20, and a worker holding a batch runs on meanwhile;
 *  - the results and PROGRESS of a turn go to the master in one BUNDLE, as from a
 *    node leader (bundle.c): the master receives a message per rank and turn, not
 *    one or two per batch. */
#include "backend_mpi.h"

#include <limits.h>
#include <math.h>

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
    if (on)
        sv->bundling = true;
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
    double period = fmin(fmax(sv->batch_s / 20, LAZY_TURN_S), LAZY_TURN_MAX_S);
    double left = turn_at + period - rp__now();
    if (left > 0) {
        atomic_store(&sv->bell->rank_sleeps, 1);
        rp__futex_wait(&sv->bell->bell, rung, left); /* at once if rung meanwhile */
        atomic_store(&sv->bell->rank_sleeps, 0);
    }
    return true;
}
