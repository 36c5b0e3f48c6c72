/* The mpi backend's ops (struct rp__backend_ops): start (every rank: the serving
 * ranks serve inside it), and on the master submit, drive, release, kick, join,
 * terminate and destroy; and the calls of rankpool_mpi.h. */
#include "backend_mpi.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void rp__mpi_kick_locked(struct mpi_pool *mp)
{
    mp->kicked = true;
    pthread_cond_signal(&mp->kick);
}

static void kick_pool_thread(struct mpi_pool *mp)
{
    pthread_mutex_lock(&mp->lock);
    rp__mpi_kick_locked(mp);
    pthread_mutex_unlock(&mp->lock);
}

/* ---- start (the master) ----------------------------------------------------------------- */

static void master_free(struct mpi_pool *mp)
{
    if (mp->w)
        for (int i = 0; i < mp->nworkers; i++)
            for (int k = 0; k < DEPTH; k++) {
                rp__wbuf_free(&mp->w[i].fl[k].buf);
                rp__wbuf_free(&mp->w[i].fl[k].copy);
            }
    free(mp->w);
    free(mp->rank_broken);
    free(mp->rank_bye);
    free(mp->rank_first);
    free(mp->rank_wlist);
    rp__mpi_silent_close(mp);
    rp__mpi_bundle_close(mp);
    free(mp->rbuf);
    rp__wbuf_free(&mp->ctl);
    rp__sched_close(&mp->sched);
    free(atomic_load(&mp->spare_mjob));
    pthread_mutex_destroy(&mp->plock);
    pthread_mutex_destroy(&mp->lock);
    pthread_cond_destroy(&mp->cond);
    pthread_cond_destroy(&mp->kick);
}

/* RP_MPI_ISOLATE=0 in the master's environment: tasks run inside the ranks. */
static bool in_process_wanted(void)
{
    const char *v = getenv("RP_MPI_ISOLATE");
    return v && (strcmp(v, "0") == 0 || strcmp(v, "no") == 0 || strcmp(v, "off") == 0);
}

/* Builds the pool's settings (HELLO) for the serving ranks in *hb. */
static int build_hello(struct mpi_pool *mp, const rp_pool_opts_t *opts, rp__wbuf *hb,
                       rp_error_t *err)
{
    rp__wire_hello hello = { .nworkers = (uint32_t)mp->nworkers,
                             .nranks = (uint32_t)mp->nranks,
                             .max_tasks = opts->max_tasks_per_worker,
                             .flags = (opts->bind ? RP__HELLO_BIND : 0) |
                                      (in_process_wanted() ? RP__HELLO_INPROCESS : 0) |
                                      (mp->leaders ? RP__HELLO_LEADERS : 0) };
    if (opts->initializer) {
        hello.has_init = 1;
        if (rp__fnref_make((rp__anyfn)opts->initializer, &hello.init) != RP_OK) {
            rp__error_set(err, RP_EFNREF, 0, -1, mp->host,
                          "the initializer is not a function of a loaded object that the "
                          "ranks can identify (a build-id, or a readable file)");
            return RP_EFNREF;
        }
    }
    if (opts->initarg_size > 0) {
        hello.initarg = opts->initarg;
        hello.initarg_size = opts->initarg_size;
    }
    if (rp__wire_put_hello(hb, &hello) != RP_OK || hb->len > INT_MAX) {
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host,
                      "out of memory building the message with the initializer argument");
        return RP_ENOMEM;
    }
    return RP_OK;
}

/* Takes the READYs of one rank's blob. \return RP_OK or RP_EPROTO. */
static int take_readies(struct mpi_pool *mp, int src, const char *p, size_t len, int *seen,
                        int *verdict, int *first_worker, rp_error_t *err)
{
    rp__rbuf blob;
    rp__rbuf_init(&blob, p, len);
    while (blob.left > 0) {
        uint32_t n = rp__rbuf_u32(&blob);
        const char *msg = rp__rbuf_get(&blob, n);
        rp__wire_hdr h;
        rp__rbuf r;
        rp__wire_ready m;
        if (!msg || rp__wire_open(msg, n, &h, &r) != RP_OK || h.kind != RP__MSG_READY ||
            h.worker >= (uint32_t)mp->nworkers ||
            (!mp->leaders && 1 + (int)h.worker % mp->nranks != src) ||
            rp__wire_get_ready(&r, &m) != RP_OK)
            return RP_EPROTO;
        struct mworker *w = &mp->w[h.worker];
        if (w->id >= 0)
            return RP_EPROTO; /* twice */
        if (mp->leaders) { /* its leader answers for it: it lives there */
            w->rank = src;
            w->tag = TAG_WORK0 + mp->rank_first[src]++;
        }
        (*seen)++;
        w->id = (int)h.worker;
        w->pid = m.pid;
        w->alive = m.status == RP_OK;
        snprintf(w->host, sizeof w->host, "%s", m.host);
        if (m.status != RP_OK && w->id < *first_worker) {
            *first_worker = w->id;
            *verdict = m.status;
            *err = m.err;
            err->code = m.status;
            err->worker = w->id;
            snprintf(err->host, sizeof err->host, "%s", m.host);
        }
    }
    return RP_OK;
}

/* Collects every worker's READY (one blob per rank, gathered). \return the
 * verdict (the failure of the lowest worker that failed, in *err), or RP_EPROTO
 * for a malformed or missing answer. */
static int collect_ready(struct mpi_pool *mp, rp_error_t *err)
{
    for (int i = 0; i < mp->nworkers; i++) {
        struct mworker *w = &mp->w[i];
        w->id = -1;
        w->rank = 1 + i % mp->nranks;
        w->tag = TAG_WORK0 + i / mp->nranks;
        for (int k = 0; k < DEPTH; k++) {
            rp__wbuf_init(&w->fl[k].buf);
            rp__wbuf_init(&w->fl[k].copy);
            w->fl[k].req = w->fl[k].dreq = MPI_REQUEST_NULL;
        }
    }
    char *all = NULL;
    int *counts = NULL, *displs = NULL;
    int rc = rp__mpi_gather_blobs(mp->comm, NULL, &all, &counts, &displs);
    if (rc != RP_OK) {
        rp__error_set(err, rc, 0, -1, mp->host, "gathering the workers' start-up answers "
                      "failed (%s)", rp_strerror(rc));
        for (int i = 0; i < mp->nworkers; i++)
            mp->w[i].id = i;
        return rc;
    }
    int verdict = RP_OK, first_worker = INT_MAX, seen = 0, bad = -1;
    for (int rk = 1; rk < mp->size && bad < 0; rk++)
        if (take_readies(mp, rk, all + displs[rk], (size_t)counts[rk], &seen, &verdict,
                         &first_worker, err) != RP_OK)
            bad = rk;
    for (int i = 0; i < mp->nworkers; i++)
        if (mp->w[i].id < 0) {
            if (bad < 0)
                bad = mp->w[i].rank;
            mp->w[i].id = i;
        }
    free(all);
    free(counts);
    free(displs);
    if (bad >= 0) {
        rp__error_set(err, RP_EPROTO, 0, -1, mp->host,
                      "no usable start-up answer from rank %d: it could not take the "
                      "pool's settings or set up its workers (another rankpool version "
                      "on that rank, or out of memory there; RP_DEBUG=1 on the ranks "
                      "traces why)", bad);
        return RP_EPROTO;
    }
    return verdict;
}

static int master_start(rp_pool_t *pool, struct mpi_pool *mp, const rp_pool_opts_t *opts,
                        rp_error_t *err)
{
    /* what the scheduler is told about this transport */
    const rp__sched_conf conf = { .depth = DEPTH, .depth_long = DEPTH_LONG,
                                  .short_s = SHORT_BATCH_S, .min_s = BATCH_MIN_S,
                                  .max_items = BATCH_ITEMS, .max_bytes = BATCH_BYTES };
    int rc = RP_OK;
    if (opts->initarg_size > RP_MPI_INITARG_MAX) {
        /* refused before anything is copied: the ranks learn it from GO */
        rp__error_set(err, RP_EINVAL, 0, -1, mp->host,
                      "initarg_size %zu is more than the mpi backend sends to its ranks: "
                      "RP_MPI_INITARG_MAX is %zu bytes (2 GiB - 1 MiB)", opts->initarg_size,
                      (size_t)RP_MPI_INITARG_MAX);
        rc = RP_EINVAL;
    }
    mp->nworkers = opts->workers > 0 ? opts->workers : mp->size - 1;
    mp->nranks = mp->nworkers < mp->size - 1 ? mp->nworkers : mp->size - 1;
    mp->w = calloc((size_t)mp->nworkers, sizeof *mp->w);
    mp->rank_broken = calloc((size_t)mp->size, sizeof *mp->rank_broken);
    mp->rank_bye = calloc((size_t)mp->size, sizeof *mp->rank_bye);
    /* (in-process, a rank runs its workers in turn: all of a node's on one core) */
    mp->leaders = !in_process_wanted() && rp__mpi_leaders_wanted(mp->nranks, mp->nworkers);
    if (mp->leaders) /* counts each leader's workers as they answer */
        mp->rank_first = calloc((size_t)mp->size + 1, sizeof *mp->rank_first);
    /* Tests only: what a given-up rank still sends is left unread, as by a master
     * that has ended the pool: the rank must leave by itself. */
    mp->leave_unread = getenv("RP_TEST_UNREAD_GIVEN_UP") != NULL;
    /* Tests only: a buffer given back is handed to the pool thread, as when plock
     * is busy (outbox.c). */
    mp->hand_over = getenv("RP_TEST_BUF_HAND_OVER") != NULL;
    if (rc == RP_OK && (!mp->w || !mp->rank_broken || !mp->rank_bye ||
                        (mp->leaders && !mp->rank_first) ||
                        rp__sched_open(&mp->sched, &conf, (uint32_t)mp->nworkers) != 0)) {
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host, "out of memory");
        rc = RP_ENOMEM;
    }
    if (rc == RP_OK && (rp__mpi_silent_open(mp, in_process_wanted()) != RP_OK ||
                        rp__mpi_bundle_open(mp) != RP_OK)) {
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host, "out of memory");
        rc = RP_ENOMEM;
    }
    rp__mpi_decide_yield(in_process_wanted());
    /* The settings, or the verdict when the master gives up already (GO) */
    rp__wbuf hb;
    rp__wbuf_init(&hb);
    if (rc == RP_OK)
        rc = build_hello(mp, opts, &hb, err);
    if (rc != RP_OK && rp__wire_put_ctl(&hb, RP__MSG_GO, 0, rc, 0) != RP_OK) {
        rp__wbuf_free(&hb);
        return rc; /* (cannot be: a control message is a few bytes) */
    }
    size_t ignored;
    int brc = rp__mpi_bcast_msg(mp->comm, &hb, NULL, NULL, &ignored);
    rp__wbuf_free(&hb);
    if (rc == RP_OK && brc != RP_OK) {
        rp__error_set(err, RP_EMPI, 0, -1, mp->host, "broadcasting the pool's settings failed");
        rc = RP_EMPI;
    }
    if (rc != RP_OK)
        return rc;
    if (mp->leaders) { /* the master hosts no worker, but takes part */
        int leader;
        bool *members = NULL;
        rp__mpi_node_leader(mp->comm, mp->nranks, &leader, &members);
        free(members);
    }
    rc = collect_ready(mp, err);
    if (rc == RP_OK && rp__mpi_rank_lists(mp) != RP_OK) {
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host, "out of memory");
        rc = RP_ENOMEM;
    }
    int32_t verdict = rc;
    if (rp__mpi_bcast_status(mp->comm, &verdict) != RP_OK && rc == RP_OK) {
        rp__error_set(err, RP_EMPI, 0, -1, mp->host, "broadcasting the start's verdict failed");
        rc = RP_EMPI;
    }
    if (rc != RP_OK)
        return rc;
    pool->nworkers = mp->nworkers;
    if (pthread_create(&mp->thread, NULL, rp__mpi_progress_main, mp) != 0) {
        /* the ranks are serving already: stop them */
        rp__mpi_send_all_ranks(mp, RP__MSG_STOP);
        for (int rk = 1; rk < mp->size; rk++)
            rp__mpi_recv_ctl(mp->comm, MPI_ANY_SOURCE, &mp->rbuf, &mp->rcap, NULL);
        rp__error_set(err, RP_ESYS, 0, -1, mp->host, "cannot start the pool thread");
        return RP_ESYS;
    }
    mp->thread_started = true;
    return RP_OK;
}

/* ---- start (every rank) ------------------------------------------------------------------ */

/* A serving rank's rp_pool_create: it serves until the master is done. */
static int serve_pool(rp_pool_t *pool, struct mpi_pool *mp, rp_error_t *err)
{
    struct server *sv = calloc(1, sizeof *sv);
    if (!sv) {
        rp__mpi_end(&mp->comm, false);
        return RP_ENOMEM;
    }
    sv->comm = mp->comm;
    sv->rank = mp->rank;
    snprintf(sv->host, sizeof sv->host, "%s", pool->host);
    rp__wbuf_init(&sv->out);
    for (int q = 0; q < 2; q++) {
        rp__wbuf_init(&sv->bout[q]);
        sv->breq[q] = MPI_REQUEST_NULL;
    }
    mp->sv = sv;
    pool->is_master = false;
    /* The rank's worker processes are its children: while it serves, how they end
     * is its own to see. A program's SIGCHLD setting (SIG_IGN, SA_NOCLDWAIT: they
     * would be reaped for it; a handler that reaps them) is put back after. */
    struct sigaction dfl = { .sa_handler = SIG_DFL }, user;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &user);
    int rc = rp__mpi_server_run(sv, err);
    sigaction(SIGCHLD, &user, NULL);
    pool->nworkers = (int)sv->hello.nworkers;
    if (rc != RP_OK) {
        if (err->code == 0)
            rp__error_set(err, rc, 0, -1, sv->host, "rank %d: %s", sv->rank, rp_strerror(rc));
        rp__mpi_server_free(sv);
        free(sv);
        rp__mpi_end(&mp->comm, false);
    }
    return rc;
}

static int mpi_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    struct mpi_pool *mp = calloc(1, sizeof *mp);
    if (!mp) {
        rp__error_set(err, RP_ENOMEM, 0, -1, pool->host, "out of memory");
        return RP_ENOMEM;
    }
    snprintf(mp->host, sizeof mp->host, "%s", pool->host);
    mp->pool = pool;
    mp->comm = MPI_COMM_NULL;
    int rc = rp__mpi_begin(opts, &mp->comm, err, mp->host);
    if (rc != RP_OK) {
        free(mp);
        return rc;
    }
    MPI_Comm_rank(mp->comm, &mp->rank);
    MPI_Comm_size(mp->comm, &mp->size);
    pool->bdata = mp;
    if (mp->rank != 0) {
        rc = serve_pool(pool, mp, err);
    } else {
        pthread_mutex_init(&mp->lock, NULL);
        pthread_mutex_init(&mp->plock, NULL);
        rp__cond_init_monotonic(&mp->cond);
        rp__cond_init_monotonic(&mp->kick);
        rp__wbuf_init(&mp->ctl);
        mp->preq = MPI_REQUEST_NULL;
        rc = master_start(pool, mp, opts, err);
        if (rc != RP_OK) {
            master_free(mp);
            /* after a malformed start-up message, more may be on their way */
            rp__mpi_end(&mp->comm, rc == RP_EPROTO);
        }
    }
    if (rc != RP_OK) {
        free(mp);
        pool->bdata = NULL;
    } else {
        rp__mpi_started_add(pool);
    }
    return rc;
}

/* ---- jobs ---------------------------------------------------------------------------- */

static int mpi_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    if (mp->retired) /* stopped at exit */
        return RP_ECLOSED;
    /* The last job's record, kept by mpi_release: for a job of the same task
     * (back-to-back applies) its reference stands, with no lookup, unless an
     * object was unloaded since it was made (another may now sit at the same
     * address: then the task's pointer is looked up again). */
    struct mjob *mj = atomic_exchange(&mp->spare_mjob, NULL);
    uint64_t unloads = rp__fnref_unloads();
    if (mj && mj->fn_of == (rp__anyfn)job->fn && mj->fn_unloads == unloads) {
        mj->next = NULL;
        atomic_store(&mj->running, 0);
    } else {
        if (mj)
            memset(mj, 0, sizeof *mj);
        else if (!(mj = calloc(1, sizeof *mj)))
            return RP_ENOMEM;
        if (rp__fnref_make((rp__anyfn)job->fn, &mj->fn) != RP_OK) {
            free(mj);
            return RP_EFNREF;
        }
        mj->fn_of = (rp__anyfn)job->fn;
        mj->fn_unloads = unloads;
    }
    mj->job = job;
    mj->too_large = job->in_size > RP_MPI_ITEM_MAX ||
                    (!(job->flags & RP__JOB_VAR) &&
                     job->out_size > RP_MPI_ITEM_MAX - job->in_size);
    /* (n * in_size fits: the core checked it against PTRDIFF_MAX) */
    mj->in_pool = rp__pool_owns(pool, job->in, job->n * job->in_size);
    job->bdata = mj;
    atomic_fetch_add(&mp->unfinished, 1);
    /* Send the first batches from here when nobody else is moving messages (no
     * thread hand-off for an apply); wake the pool thread only for what is left.
     * (The job may be complete, even released, once plock is left.) */
    bool kick = true;
    if (pthread_mutex_trylock(&mp->plock) == 0) {
        if (!mp->terminating) {
            rp__mpi_submit_now(mp, mj);
            kick = rp__sched_has_work(&mp->sched);
            mj = NULL;
        }
        pthread_mutex_unlock(&mp->plock);
    }
    if (mj) { /* for whoever holds plock next */
        pthread_mutex_lock(&mp->lock);
        if (mp->pending_tail)
            mp->pending_tail->next = mj;
        else
            mp->pending = mj;
        mp->pending_tail = mj;
        atomic_fetch_add(&mp->npending, 1);
        pthread_mutex_unlock(&mp->lock);
    }
    if (kick || atomic_load(&mp->deep))
        kick_pool_thread(mp);
    return RP_OK;
}

/* Polls MPI on the caller's thread for a moment: a short job's result comes back
 * without waking any other thread. The core then sleeps on the job's done word,
 * which the pool thread sets. */
static void mpi_drive(rp_pool_t *pool, struct rp__job *job, double until)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    double now = rp__now();
    if (now >= until || rp__done_is(atomic_load(&job->done)))
        return;
    double spin_until = fmin(until, now + SPIN_IDLE_S);
    /* The pool thread itself (a callback that waits for a job of its pool): no
     * other thread would move the job's messages, or carry out a terminate, so
     * it does both, to the end. */
    bool self = pthread_equal(pthread_self(), mp->thread);
    if (self)
        spin_until = until;
    atomic_fetch_add(&mp->drivers, 1);
    /* Spinning, the clock is read every DRIVE_CLOCK_TURNS turns only: on some
     * machines (VMs) a read costs as much as the turn's MPI_Test, and each
     * turn's cost is what a result waits, on average half of it, before it is
     * seen. (Yielding at each turn, every turn: a yield may last a time slice.) */
    unsigned every = rp__mpi_yield_when_idle ? 1 : DRIVE_CLOCK_TURNS;
    for (unsigned turn = 1; !rp__done_is(atomic_load(&job->done)); turn++) {
        if (turn % every == 0 && (now = rp__now()) >= spin_until)
            break;
        int events = 0;
        if (pthread_mutex_trylock(&mp->plock) == 0) {
            if (self)
                events = rp__mpi_progress_nested(mp);
            else if (!mp->terminating)
                events = rp__mpi_progress_step(mp);
            pthread_mutex_unlock(&mp->plock);
        }
        if (events == 0)
            rp__mpi_idle_pause();
    }
    /* The last driver leaves: the pool thread takes over what is still running;
     * with nothing running, it lets the caller's next wait drive again. */
    bool last = atomic_fetch_sub(&mp->drivers, 1) == 1;
    if (last && atomic_load(&mp->unfinished) == 0) {
        /* (the last clock read: at most DRIVE_CLOCK_TURNS turns old) */
        atomic_store(&mp->drove_ns, (int64_t)(now * 1e9));
    } else if (last) {
        atomic_store(&mp->drove_ns, 0);
        kick_pool_thread(mp);
    }
}

/* The job is complete: the scheduler holds nothing of it any more (its last items
 * were handed out, and it is in no batch in flight), so rp__sched_remove only
 * frees the job's own put-back list, and no lock is needed. */
static void mpi_release(rp_pool_t *pool, struct rp__job *job)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    rp__sched_remove(&mp->sched, &job->sched);
    free(atomic_exchange(&mp->spare_mjob, (struct mjob *)job->bdata));
    job->bdata = NULL;
}

/* Items of batches still running that their ranks reported (PROGRESS) and no
 * RESULT counted yet. */
static size_t mpi_progress(rp_pool_t *pool, struct rp__job *job)
{
    (void)pool;
    struct mjob *mj = job->bdata;
    return mj ? atomic_load(&mj->running) : 0;
}

static void mpi_kick(rp_pool_t *pool)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    atomic_store(&mp->service, true);
    kick_pool_thread(mp);
}

/* ---- the end ----------------------------------------------------------------------------- */

static int mpi_join(rp_pool_t *pool)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    if (!mp || !mp->thread_started)
        return RP_OK;
    pthread_mutex_lock(&mp->lock);
    atomic_store(&mp->want_stop, true);
    rp__mpi_kick_locked(mp);
    pthread_mutex_unlock(&mp->lock);
    pthread_join(mp->thread, NULL);
    mp->thread_started = false;
    return RP_OK;
}

static int mpi_terminate(rp_pool_t *pool)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    if (!mp || !mp->thread_started)
        return RP_OK;
    pthread_mutex_lock(&mp->lock);
    atomic_store(&mp->want_terminate, true);
    rp__mpi_kick_locked(mp);
    /* From a callback (the pool thread itself) it cannot wait for itself: the
     * pool thread stops the workers as soon as the callback returns. */
    bool self = pthread_equal(pthread_self(), mp->thread);
    while (!self && !mp->terminated && !mp->thread_done)
        pthread_cond_wait(&mp->cond, &mp->lock);
    pthread_mutex_unlock(&mp->lock);
    return RP_OK;
}

/* Stops what runs (a master's pool thread, after terminating its work and
 * releasing the serving ranks; a serving rank's worker processes) and frees the
 * pool's communicator; the memory stays for mpi_destroy. Once per pool: from
 * mpi_destroy, or at exit for a pool the program did not free. Not from the pool
 * thread itself (exit() in a callback): that pool is left as it is. */
void rp__mpi_pool_retire(rp_pool_t *pool)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    if (!mp || mp->retired)
        return;
    bool keep = false;
    if (mp->sv) {
        rp__mpi_server_free(mp->sv);
    } else if (mp->thread_started) {
        if (pthread_equal(pthread_self(), mp->thread))
            return;
        mpi_terminate(pool);
        pthread_join(mp->thread, NULL);
        mp->thread_started = false;
    }
    for (int rk = 1; !mp->sv && rk < mp->size; rk++)
        keep = keep || mp->rank_broken[rk];
    if (!mp->sv) {
        rp__mpi_recv_stop(mp);
        rp__mpi_bundle_close(mp);
        rp__mpi_outbox_close(mp);
    }
    rp__mpi_end(&mp->comm, keep);
    mp->retired = true;
}

static void mpi_destroy(rp_pool_t *pool)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    if (!mp)
        return;
    rp__mpi_started_remove(pool);
    rp__mpi_pool_retire(pool);
    if (mp->sv)
        free(mp->sv);
    else
        master_free(mp);
    free(mp);
    pool->bdata = NULL;
}

/* rp_result_cancel: the items not sent to a worker yet are canceled now; each
 * rank holding batches of the job is told (CANCEL): its workers stop before
 * their next item of it, and report the rest canceled (with RP_CANCEL_KILL, the
 * worker processes running one are killed: their deaths come back as DIED, which
 * the core cancels). Blocks on plock: the core calls this holding none of its
 * locks. */
static void mpi_cancel(rp_pool_t *pool, struct rp__job *job, int flags)
{
    struct mpi_pool *mp = rp__mpi_of(pool);
    pthread_mutex_lock(&mp->plock);
    if (mp->terminating || rp__done_is(atomic_load(&job->done)))
        goto out;
    rp__mpi_send_new(mp); /* takes the pending jobs (this one too) into the scheduler */
    bool *tell = calloc((size_t)mp->size, sizeof *tell);
    for (int i = 0; i < mp->nworkers; i++)
        for (int k = 0; k < DEPTH; k++)
            if (mp->w[i].fl[k].used && mp->w[i].fl[k].job == job && tell)
                tell[mp->w[i].rank] = true;
    uint64_t id = job->id;
    if (!rp__done_is(atomic_load(&job->done)))
        rp__mpi_cancel_unsent(mp, job); /* the job may be gone after this */
    for (int rk = 1; tell && rk < mp->size; rk++) {
        if (!tell[rk] || mp->rank_broken[rk] ||
            rp__wire_put_cancel(&mp->ctl, id, (uint32_t)flags) != RP_OK)
            continue;
        if (MPI_Send(mp->ctl.buf, (int)mp->ctl.len, MPI_BYTE, rk, TAG_CTL, mp->comm) !=
            MPI_SUCCESS)
            rp__mpi_break_rank(mp, rk, "a CANCEL could not be sent");
    }
    free(tell);
out:
    pthread_mutex_unlock(&mp->plock);
}

const struct rp__backend_ops rp__backend_mpi = {
    .name = "mpi",
    .start = mpi_start,
    .submit = mpi_submit,
    .drive = mpi_drive,
    .collect = NULL,  /* results are delivered as they arrive */
    .progress = mpi_progress, /* items of batches still running (PROGRESS) */
    .release = mpi_release,
    .kick = mpi_kick,
    .close = NULL,    /* nothing to do: jobs run on */
    .join = mpi_join,
    .terminate = mpi_terminate,
    .destroy = mpi_destroy,
    .initarg_max = RP_MPI_INITARG_MAX,
    .cancel = mpi_cancel,
    .watch = NULL,    /* completion is counted here, in the core's ledger */
    .kills = true,
    .buf_release = rp__mpi_buf_release, /* kept while a send from it is pending */
};

/* ---- rankpool_mpi.h ------------------------------------------------------------------ */

int rp_pool_create_comm(rp_pool_t **pool, const rp_pool_opts_t *opts, MPI_Comm comm,
                        rp_error_t *err)
{
    rp_pool_opts_t o;
    if (opts)
        o = *opts;
    else
        memset(&o, 0, sizeof o);
    o.backend = "mpi";
    o.comm = &comm;
    return rp_pool_create_ex(pool, &o, err);
}

MPI_Comm rp_pool_comm(const rp_pool_t *pool)
{
    if (!pool || pool->ops != &rp__backend_mpi || !pool->bdata)
        return MPI_COMM_NULL;
    return ((const struct mpi_pool *)pool->bdata)->comm;
}

int rp_pool_worker_rank(const rp_pool_t *pool, int worker)
{
    if (!pool || pool->ops != &rp__backend_mpi || !pool->bdata)
        return -1;
    const struct mpi_pool *mp = pool->bdata;
    if (worker < 0 || worker >= mp->nworkers || mp->nranks <= 0)
        return -1;
    if (mp->leaders && mp->w)
        return mp->w[worker].rank;
    return 1 + worker % mp->nranks;
}
