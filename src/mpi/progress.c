/* The master's progress: one round (new jobs into the scheduler, what it picks
 * out to the workers, what came back in) and the pool thread that runs rounds,
 * runs the core's callbacks when kicked, and carries out stop and terminate.
 *
 * Progress and waiting. Whoever holds plock moves the master's messages: the pool
 * thread, a user thread waiting for a result (ops->drive polls MPI itself for a
 * moment, so a short job needs no hand-off between threads), or a submitting
 * thread sending its first batches. The pool thread sleeps while a waiter polls
 * (and just after, for back-to-back applies), naps relative to the shortest batch
 * in flight while jobs run, and sleeps until a submit kicks it when there is no
 * job at all. */
#include "backend_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- one round ----------------------------------------------------------------------- */

/* One submitted job enters the scheduler (oldest first is its business). A job
 * whose items exceed RP_MPI_ITEM_MAX fails here, whole. */
static void take_job(struct mpi_pool *mp, struct mjob *mj)
{
    struct rp__job *job = mj->job;
    bool var = job->flags & RP__JOB_VAR;
    size_t per = job->in_size + (var ? 0 : job->out_size);
    rp_error_t e;
    if (mj->too_large) {
        rp__error_set(&e, RP_EINVAL, 0, -1, mp->host,
                      "an item of %zu + %zu bytes (in_size + out_size) is more than the "
                      "mpi backend moves: RP_MPI_ITEM_MAX is %zu bytes (256 MiB - 64 KiB)",
                      job->in_size, var ? (size_t)0 : job->out_size, (size_t)RP_MPI_ITEM_MAX);
        rp__mpi_fail_items(mp, job, 0, job->n, &e);
    } else if (rp__sched_add(&mp->sched, &job->sched, job->id, job->n, job->chunksize, per) !=
               0) {
        rp__error_set(&e, RP_ENOMEM, 0, -1, mp->host, "out of memory scheduling a job");
        rp__sched_remove(&mp->sched, &job->sched);
        rp__mpi_fail_items(mp, job, 0, job->n, &e);
    }
}

/* The jobs submitted since the last round enter the scheduler, oldest first. */
static void take_pending(struct mpi_pool *mp)
{
    if (atomic_load(&mp->npending) == 0)
        return;
    pthread_mutex_lock(&mp->lock);
    struct mjob *mj = mp->pending;
    mp->pending = mp->pending_tail = NULL;
    atomic_store(&mp->npending, 0);
    pthread_mutex_unlock(&mp->lock);
    while (mj) {
        struct mjob *next = mj->next;
        take_job(mp, mj);
        mj = next;
    }
}

/* Sends what the scheduler picks until no worker has room or nothing is left. */
static int dispatch(struct mpi_pool *mp)
{
    if (mp->terminating || !rp__sched_has_work(&mp->sched))
        return 0;
    if (mp->sched.alive == 0 && mp->nsilent > 0)
        return 0; /* silent ranks may answer again (stranded.c) */
    if (mp->sched.alive == 0) {
        char msg[sizeof mp->lost_why + 64];
        snprintf(msg, sizeof msg, "the pool has no working worker left: %s", mp->lost_why);
        rp__mpi_fail_unclaimed(mp, mp->lost_code ? mp->lost_code : RP_EBROKEN, msg);
        return 1;
    }
    int events = 0;
    rp__pick p;
    while (rp__sched_next(&mp->sched, &p))
        events += rp__mpi_send_pick(mp, &p);
    rp__mpi_bundle_send(mp);
    return events;
}

int rp__mpi_send_new(struct mpi_pool *mp)
{
    rp__mpi_outbox_poll(mp);
    take_pending(mp);
    return dispatch(mp);
}

int rp__mpi_submit_now(struct mpi_pool *mp, struct mjob *mj)
{
    take_pending(mp); /* (queued by threads that found plock taken: older) */
    take_job(mp, mj);
    return dispatch(mp);
}

int rp__mpi_progress_step(struct mpi_pool *mp)
{
    int events = rp__mpi_send_new(mp);
    return events + rp__mpi_poll_messages(mp);
}

/* ---- stop and terminate ------------------------------------------------------------------ */

void rp__mpi_send_all_ranks(struct mpi_pool *mp, unsigned kind)
{
    for (int rk = 1; rk < mp->size; rk++) {
        if (rp__wire_put_ctl(&mp->ctl, kind, 0, RP_OK, 0) != RP_OK)
            return;
        MPI_Send(mp->ctl.buf, (int)mp->ctl.len, MPI_BYTE, rk, TAG_CTL, mp->comm);
    }
}

/* Where the pool thread is in stopping the ranks. */
struct ending {
    bool   stopping, finished;
    double asked;    /* when TERMINATE or STOP went out */
};

/* Has every rank said BYE since STOP or TERMINATE went out? A rank given up is
 * waited for too, but not beyond ANSWER_WAIT_S (TERMINATE_WAIT_S when
 * terminating): one that is alive leaves the pool once it could send what it had
 * (poll_messages drops it; a rank asked to leave gives up a send nobody reads), a
 * hung one is not waited for. */
static double answer_wait(const struct mpi_pool *mp, const struct ending *st, int rk)
{
    /* A rank that answered STOP or TERMINATE at once (ALIVE) is busy killing its
     * workers, not hung: it gets the time of a STOP and more for each of its
     * workers (1,000 processes took a rank 2.7-4.3 s to kill on 2 cores). */
    if (mp->rank_heard && mp->rank_heard[rk] >= st->asked)
        return ANSWER_WAIT_S + STOP_WAIT_PER_WORKER_S *
                                   (mp->rank_first[rk + 1] - mp->rank_first[rk] + 1);
    return mp->terminating ? TERMINATE_WAIT_S : ANSWER_WAIT_S;
}

static bool all_byes(const struct mpi_pool *mp, const struct ending *st)
{
    double waited = rp__now() - st->asked;
    for (int rk = 1; rk < mp->size; rk++)
        if (!mp->rank_bye[rk] && !(mp->rank_broken[rk] && waited > answer_wait(mp, st, rk)))
            return false;
    return true;
}

/* Terminated, every rank gone: what was in flight the workers held (the core
 * cancels it, the pool terminating), what was never handed out is canceled. */
static void cancel_everything(struct mpi_pool *mp)
{
    take_pending(mp);
    for (int i = 0; i < mp->nworkers; i++)
        rp__mpi_drop_batches(mp, &mp->w[i], "the pool was terminated", false);
    rp__mpi_fail_unclaimed(mp, RP_ECANCELED, NULL);
}

static bool work_outstanding(const struct mpi_pool *mp)
{
    if (rp__sched_has_work(&mp->sched) || atomic_load(&mp->npending) > 0)
        return true;
    for (int c = 0; c < EXP_CLASSES; c++)
        if (mp->nexp[c] > 0)
            return true;
    return false;
}

/* Under plock: moves stop and terminate along. \return events. */
static int end_step(struct mpi_pool *mp, struct ending *st)
{
    int events = 0;
    /* (after STOP, every job is done and the ranks are leaving: a TERMINATE
     * would reach a rank after it left the pool) */
    if (!mp->terminating && !st->stopping && atomic_load(&mp->want_terminate)) {
        rp__mpi_send_all_ranks(mp, RP__MSG_TERMINATE);
        mp->terminating = true;
        st->asked = rp__now();
        events++;
    }
    /* A rank that does not answer within ANSWER_WAIT_S, or TERMINATE_WAIT_S
     * (stopped, hung, its node gone) is given up: nobody waits for it. */
    if ((mp->terminating || st->stopping) && !all_byes(mp, st)) {
        double waited = rp__now() - st->asked;
        for (int rk = 1; rk < mp->size; rk++) {
            double wait = answer_wait(mp, st, rk);
            if (mp->rank_bye[rk] || mp->rank_broken[rk] || waited <= wait)
                continue;
            char why[128];
            snprintf(why, sizeof why, "the pool was %s, and the rank did not answer within %g s",
                     mp->terminating ? "terminated" : "stopped", wait);
            rp__mpi_break_rank(mp, rk, why);
        }
    }
    if (mp->terminating && all_byes(mp, st)) {
        cancel_everything(mp);
        st->finished = true;
    } else if (!mp->terminating && !st->stopping && atomic_load(&mp->want_stop) &&
               !work_outstanding(mp)) {
        rp__mpi_send_all_ranks(mp, RP__MSG_STOP);
        st->stopping = true;
        st->asked = rp__now();
        events++;
    } else if (st->stopping && all_byes(mp, st)) {
        st->finished = true;
    }
    return events;
}

/* ---- the pool thread ------------------------------------------------------------------ */

/* The shortest batch in flight is expected to last about this long (0: one of
 * unknown length, or none): no point polling hard for results of long batches,
 * but answer within a fraction of the short ones. */
static double shortest_inflight(const struct mpi_pool *mp)
{
    static const double lower[EXP_CLASSES] = { 0, 0, 80e-6, 160e-6, 320e-6, 640e-6,
                                               LONG_BATCH_S * 1.001 };
    for (int c = 0; c < EXP_CLASSES; c++)
        if (mp->nexp[c] > 0)
            return lower[c];
    return 0;
}

/* Sleeps up to `sleep` seconds unless kicked (mp->lock held). */
static void nap_locked(struct mpi_pool *mp, double sleep)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    long ns = ts.tv_nsec + (long)(sleep * 1e9);
    ts.tv_sec += ns / 1000000000L;
    ts.tv_nsec = ns % 1000000000L;
    pthread_cond_timedwait(&mp->kick, &mp->lock, &ts);
}

/* The pool thread's rest between rounds. A user thread polling in drive() moves
 * the messages: keep out of its way (it kicks us when it stops with work left),
 * and for a moment after it got its result (back-to-back applies: it will be back
 * at once, and waking this thread would cost it a context switch on its core).
 * Otherwise poll a little while work is coming back, then nap; with no job at
 * all, sleep until a submit kicks. \return false to poll again at once. */
static bool rest(struct mpi_pool *mp, const struct ending *st, double idle_since, double nap,
                 bool long_only)
{
    double now = rp__now();
    double back = (double)atomic_load(&mp->drove_ns) * 1e-9 + SPIN_IDLE_S - now;
    if (atomic_load(&mp->unfinished) > 0)
        back = 0; /* someone may be asleep waiting for it: no resting */
    bool driven = atomic_load(&mp->drivers) > 0;
    if (!driven && back <= 0 && !long_only && !rp__mpi_yield_when_idle &&
        now - idle_since < SPIN_POLL_S) {
        rp__mpi_idle_pause();
        return false;
    }
    double sleep = driven ? SLEEP_MAX_S : back > 0 ? fmax(back, nap) : nap;
    pthread_mutex_lock(&mp->lock);
    /* No job at all: nothing can arrive but what a submit brings, and a submit
     * kicks a deep sleeper. (deep is set before unfinished is looked at, and
     * submit counts unfinished before it looks at deep.) Not once STOP or
     * TERMINATE went out: the ranks' BYEs come then, and nobody kicks for them
     * (a deep sleep there made every join last 0.1-0.4 s). */
    bool deep = false;
    if (!driven && back <= 0 && !st->stopping && !mp->terminating) {
        atomic_store(&mp->deep, true);
        deep = atomic_load(&mp->unfinished) == 0;
        if (deep)
            sleep = IDLE_SLEEP_S;
        else
            atomic_store(&mp->deep, false);
    }
    /* (a stop or terminate asked for and not acted on yet: no sleep; once asked
     * of the ranks, naps until they answer) */
    if (atomic_load(&mp->npending) == 0 && !mp->kicked &&
        !(atomic_load(&mp->want_stop) && !st->stopping) &&
        !(atomic_load(&mp->want_terminate) && !mp->terminating))
        nap_locked(mp, sleep);
    mp->kicked = false;
    if (deep)
        atomic_store(&mp->deep, false);
    pthread_mutex_unlock(&mp->lock);
    return true;
}

int rp__mpi_progress_nested(struct mpi_pool *mp)
{
    struct ending *st = mp->ending;
    int events = end_step(mp, st);
    if (!st->finished)
        events += rp__mpi_progress_step(mp);
    return events;
}

/* Runs the core's callbacks if ops->kick asked for it. \return 1 if it did. */
static int service(struct mpi_pool *mp)
{
    if (!atomic_exchange(&mp->service, false))
        return 0;
    rp__pool_service(mp->pool);
    return 1;
}

void *rp__mpi_progress_main(void *arg)
{
    struct mpi_pool *mp = arg;
    double idle_since = rp__now(), nap = 20e-6;
    rp__mpi_precise_naps();
    struct ending st = { false, false, 0 };
    mp->ending = &st;
    for (;;) {
        pthread_mutex_lock(&mp->plock);
        int events = end_step(mp, &st);
        if (!st.finished)
            events += rp__mpi_progress_step(mp);
        double shortest = shortest_inflight(mp);
        pthread_mutex_unlock(&mp->plock);
        events += service(mp);
        if (st.finished)
            break;
        bool long_only = shortest > LONG_BATCH_S;
        double nap_max = fmax(20e-6, fmin(250e-6, shortest > 0 ? shortest / 4 : 250e-6));
        if (events) {
            idle_since = rp__now();
            nap = 20e-6;
            if (!long_only)
                continue;
        }
        if (rest(mp, &st, idle_since, nap, long_only))
            nap = fmin(nap * 2, nap_max);
    }
    pthread_mutex_lock(&mp->lock);
    if (mp->terminating)
        mp->terminated = true;
    mp->thread_done = true;
    pthread_cond_broadcast(&mp->cond);
    pthread_mutex_unlock(&mp->lock);
    return NULL;
}
