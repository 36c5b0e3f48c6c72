/* A serving rank of many workers whose batches are long is woken less and talks
 * to the master in fewer messages: its workers do not wake it per result when
 * they hold their next batch, and its results, and the master's batches for it,
 * travel in bundles, as between the master and a node leader (bundle.c).
 *
 * Measured at 4,000-10,000 worker processes of 100 ms tasks on 2 cores: the worker
 * processes switch once per task (their sleep; the next batch is already queued,
 * DEPTH_LONG), the extra switches were the serving ranks' and the master's: each
 * result woke its rank, each turn of the rank's loop probed MPI (which in Open
 * MPI's oversubscribed mode yields the core, sched_yield, when nothing is there)
 * and sent each result and PROGRESS alone (a blocking send that yields while the
 * master's queue is full), and each batch and result was a message the master
 * received or sent alone.
 *
 * So, once the rank's batches last LAZY_BATCH_S or more (a recent average of what
 * its workers reported), and it has more than SPIN_WORKERS_MAX workers (a rank of
 * few workers posts its receives in advance and is left as it is, prepost.c):
 *  - a worker process that finishes such a batch and holds its next one marks its
 *    result without waking the rank (child.c): the rank finds it at its next
 *    turn, at most SLEEP_MAX_S away (its nap), and the worker runs on meanwhile;
 *    a worker with nothing left still rings;
 *  - the results and PROGRESS of a turn go to the master in one BUNDLE (pieces
 *    of at most PACED_BUNDLE_BYTES, under Open MPI's shared-memory eager limit:
 *    each goes out at once); the master, seeing a bundle from a rank, sends that
 *    rank's batches of each dispatch pass in one bundle too (mbundle.on).
 * Tried and left out: turns paced a fixed 1 or 5 ms apart (no wake-up, no probe
 * in between). Fewer switches of the ranks, but at 8,000 workers the maps got
 * slower (5 ms: the master's batches backed up in the shared-memory transport
 * between turns and half the workers starved; 1 ms: 40-64% against 60-70%). */
#include "backend_mpi.h"


/* How long its workers' batches ran: called for each batch a worker finished. */
void rp__mpi_pace_batch(struct server *sv, double seconds)
{
    sv->batch_s = sv->batch_s > 0 ? 0.75 * sv->batch_s + 0.25 * seconds : seconds;
    bool on = !sv->pre && !sv->inproc && sv->batch_s >= LAZY_BATCH_S;
    if (atomic_load(&sv->bell->paced) != on) {
        atomic_store(&sv->bell->paced, on);
        rp__trace("mpi: rank %d: batches of %.1f ms, results %s", sv->rank,
                  1e3 * sv->batch_s, on ? "quiet and bundled" : "ring");
    }
    /* a turn sends what it finished in one message, as a leader does (bundle.c;
     * from then on: a bundle of one part goes as itself) */
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
