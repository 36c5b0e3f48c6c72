/* The local backend's pool thread: it sleeps in poll() on the fork server's
 * socket and an eventfd the workers (and ops->kick) write, and on each wake
 *  - handles the fork server's messages: a dead worker is reported to the core
 *    (rp__job_worker_died: the one dead-worker policy) and what the core hands
 *    back is put back to be claimed; the worker is replaced;
 *  - drains full error rings, resolves suspect claims;
 *  - tells the core about RP__JOB_NOTIFY jobs a worker completed
 *    (rp__job_completed), then runs the core's callbacks (rp__pool_service);
 *  - delivers complete jobs whose slot a queued job needs, and frees the slot. */
#include "local.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

void rp__local_send_fs(struct lpool *lp, int kind, int worker)
{
    struct rp__fs_msg m = { kind, worker, 0, 0 };
    while (send(lp->sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

/* ---- a dead worker --------------------------------------------------------------------- */

/* Worker k died holding a confirmed chunk of lj (slot j) it had not counted:
 * the items before `cur` ran, the core decides about the rest. Under D and L.
 * \return the items the master counts for it. */
static uint64_t held_chunk_died(struct lpool *lp, struct ljob *lj, int j, int k, int pid,
                                int status, struct rp__wslot *ws)
{
    uint64_t start = ws->hstart, end = ws->hstart + ws->hlen;
    uint64_t cur = atomic_load(&ws->cur);
    if (cur < start)
        cur = start;
    if (cur > end)
        cur = end;
    rp__local_mark(lp, lj, start, cur, RP__MARK_ARRIVED); /* they ran: delivered by collect */
    if (lj->var && cur < end) { /* an output the dead item may have begun */
        uint64_t *vs = (uint64_t *)(lp->arena + lj->out_off + cur * 16);
        vs[0] = vs[1] = 0;
    }
    rp__death d = { .worker = k, .pid = pid, .status = status, .host = lp->pool->host,
                    .rank = -1, .why = NULL };
    rp__local_watch_death(lp, lj, ws, &d, cur < end);
    size_t ra, rb;
    rp__job_worker_died(lj->job, &d, start, cur, end, false, &ra, &rb);
    rp__local_mark(lp, lj, cur, ra, RP__MARK_DELIVERED); /* the core queued their arrival */
    rp__local_retry(lp, lj, j, ra, rb);
    return (end - start) - (rb - ra);
}

/* Under D: completes every live job whose items are all counted. */
static void check_all_complete(struct lpool *lp)
{
    for (int j = 0; j < RP__NSLOTS; j++) {
        struct ljob *lj = atomic_load(&lp->table[j]);
        if (lj && !atomic_load(&lj->freed))
            rp__local_check_complete(lp, j, lj->gen);
    }
}

static void on_death(struct lpool *lp, int k, int pid, int status)
{
    if (k < 0 || k >= lp->nworkers)
        return;
    struct rp__wslot *ws = rp__wslot_of(lp, k);
    pthread_mutex_lock(&lp->drain_lock);
    if (atomic_load(&lp->terminating)) { /* terminate accounts for every claim */
        pthread_mutex_unlock(&lp->drain_lock);
        return;
    }
    rp__local_drain(lp); /* its last failures first */
    struct ljob *lj = NULL, *suspect = NULL;
    uint64_t acct = 0;
    int j = -1;
    rp__local_forget_idle(lp, k); /* if it died idle, nobody may count on it */
    pthread_mutex_lock(&lp->lock);
    uint32_t life = atomic_load(&ws->life);
    uint32_t hs = atomic_load(&ws->hstate);
    if (hs != RP__H_NONE) {
        j = (int)ws->hslot;
        lj = atomic_load(&lp->table[j]);
        if (!lj || lj->gen != ws->hgen
            || atomic_load(&lp->hdr->slots[j].state) != RP__SW(lj->gen, RP__SLOT_ACTIVE))
            lj = NULL;
        if (lj && hs == RP__H_CONFIRMED && atomic_load(&ws->done[j]) == ws->hbase)
            acct = held_chunk_died(lp, lj, j, k, pid, status, ws);
        else if (lj && hs == RP__H_TENTATIVE && rp__local_suspect(lp, lj, k, ws))
            suspect = lj;
        atomic_store(&ws->hstate, RP__H_NONE);
    }
    ws->kill_deadline = 0; /* (a kill for a claim not held any more) */
    atomic_store(&ws->deadline, 0);
    rp__trace("local: worker %d (pid %d) ended (status 0x%x, life %u, claim %u)", k, pid,
              (unsigned)status, life, hs);
    /* An initializer that failed in a replacement is not retried; one whose
     * process was killed by a signal is, a few times in a row at most (an
     * initializer that crashes every time would make a replacement forever). */
    bool respawn = !atomic_load(&lp->shutdown);
    if (life == RP__W_STARTING && lp->pool->opts.initializer) {
        if (WIFSIGNALED(status) && lp->init_deaths[k] < RP__INIT_DEATHS_MAX)
            lp->init_deaths[k]++;
        else
            respawn = false;
    } else if (life == RP__W_INITFAIL) {
        respawn = false;
    } else {
        lp->init_deaths[k] = 0; /* it ran its initializer */
    }
    if (respawn) {
        rp__local_send_fs(lp, RP__FS_SPAWN, k);
    } else if (!atomic_load(&lp->shutdown)) {
        atomic_store(&ws->life, RP__W_EMPTY);
        lp->live_workers--;
    }
    bool none_left = lp->live_workers <= 0 && !atomic_load(&lp->shutdown);
    pthread_mutex_unlock(&lp->lock);
    if (lj) {
        struct rp__slot *s = &lp->hdr->slots[j];
        if (acct)
            atomic_fetch_add(&s->mdone, acct);
        if (lj->track) {
            atomic_fetch_add(&s->tseq, 1);
            rp__futex_wake(&s->tseq, INT_MAX);
        }
        rp__local_check_complete(lp, j, lj->gen);
    }
    if (suspect)
        rp__local_audit(lp, suspect);
    /* It may have counted the last items of a job and died before it looked
     * whether the job is complete: nobody else would look. */
    check_all_complete(lp);
    if (none_left)
        rp__local_fail_all(lp, RP_EBROKEN, "no worker left: replacement workers failed to start");
    pthread_mutex_unlock(&lp->drain_lock);
}

static void on_spawnfail(struct lpool *lp, int k)
{
    if (k < 0 || k >= lp->nworkers)
        return;
    pthread_mutex_lock(&lp->drain_lock);
    pthread_mutex_lock(&lp->lock);
    atomic_store(&rp__wslot_of(lp, k)->life, RP__W_EMPTY);
    lp->live_workers--;
    bool none_left = lp->live_workers <= 0 && !atomic_load(&lp->shutdown)
                     && !atomic_load(&lp->terminating);
    pthread_mutex_unlock(&lp->lock);
    if (none_left)
        rp__local_fail_all(lp, RP_EBROKEN, "no worker left: fork failed");
    pthread_mutex_unlock(&lp->drain_lock);
}

static void on_fs_gone(struct lpool *lp)
{
    rp__trace("local: fork server gone%s", atomic_load(&lp->shutdown) ? "" : " unexpectedly");
    atomic_store(&lp->fs_gone, true);
    pthread_mutex_lock(&lp->lock);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    if (!atomic_load(&lp->shutdown) && !atomic_load(&lp->terminating)) {
        pthread_mutex_lock(&lp->drain_lock);
        rp__local_fail_all(lp, RP_EBROKEN, "the worker processes are gone (fork server ended)");
        pthread_mutex_unlock(&lp->drain_lock);
    }
}

void rp__local_handle_msg(struct lpool *lp, const struct rp__fs_msg *m)
{
    switch (m->kind) {
    case RP__FS_DIED:
        on_death(lp, m->worker, m->pid, m->status);
        break;
    case RP__FS_SPAWNFAIL:
        on_spawnfail(lp, m->worker);
        break;
    case RP__FS_KILLED:
        pthread_mutex_lock(&lp->lock);
        atomic_store(&lp->killed, true);
        pthread_cond_broadcast(&lp->cond);
        pthread_mutex_unlock(&lp->lock);
        break;
    default:
        break;
    }
}

/* ---- the work of each wake ----------------------------------------------------------- */

/* Under D: jobs with callbacks that a worker (or fail_all) completed go to the
 * core, once each. */
static void tell_completed(struct lpool *lp)
{
    uint64_t mask = atomic_exchange(&lp->hdr->notify, 0);
    for (; mask; mask &= mask - 1) {
        int j = __builtin_ctzll(mask);
        struct ljob *lj = atomic_load(&lp->table[j]);
        if (lj && atomic_load(&lp->hdr->slots[j].state) == RP__SW(lj->gen, RP__SLOT_DONE)
            && !atomic_exchange(&lj->notified, true))
            rp__job_completed(lj->job);
    }
}

/* Under D: complete jobs without callbacks hold their slot until someone waits
 * for them; when jobs are queued, their outputs are delivered now and the slot
 * given back. \return whether a slot was freed. */
static bool free_done_slots(struct lpool *lp)
{
    if (atomic_load(&lp->hdr->nqueued) <= 0)
        return false;
    bool freed = false;
    for (int j = 0; j < RP__NSLOTS; j++) {
        struct ljob *lj = atomic_load(&lp->table[j]);
        if (!lj || (lj->job->flags & RP__JOB_NOTIFY) || lj->watch || atomic_load(&lj->freed)
            || atomic_load(&lp->hdr->slots[j].state) != RP__SW(lj->gen, RP__SLOT_DONE))
            continue;
        rp__local_deliver_rest(lp, lj);
        rp__local_free_slot(lp, lj);
        freed = true;
    }
    return freed;
}

void rp__local_service(struct lpool *lp)
{
    pthread_mutex_lock(&lp->drain_lock);
    rp__local_drain(lp);
    for (int j = 0; j < RP__NSLOTS; j++) {
        struct ljob *lj = atomic_load(&lp->table[j]);
        if (lj && atomic_load(&lp->hdr->slots[j].suspect))
            rp__local_audit(lp, lj); /* under D: lj cannot be released meanwhile */
    }
    tell_completed(lp);
    bool freed = free_done_slots(lp);
    pthread_mutex_unlock(&lp->drain_lock);
    if (freed)
        rp__local_promote(lp);
    rp__pool_service(lp->pool); /* callbacks, on this thread */
}

void *rp__local_pool_thread(void *arg)
{
    struct lpool *lp = arg;
    bool sock_open = true;
    while (!atomic_load(&lp->stopping)) {
        struct pollfd p[2] = { { lp->efd, POLLIN, 0 }, { sock_open ? lp->sock : -1, POLLIN, 0 } };
        double wait = rp__local_watch_limits(lp); /* time limits: kills the late, -1 if none */
        struct timespec ts = { (time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9) };
        int rc = ppoll(p, 2, wait < 0 ? NULL : &ts, NULL);
        if (rc < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(lp->efd, &v, sizeof v);
            (void)r;
        }
        if (atomic_load(&lp->stopping))
            break;
        if (sock_open && (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            for (;;) {
                struct rp__fs_msg m;
                ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
                if (got == (ssize_t)sizeof m) {
                    rp__local_handle_msg(lp, &m);
                    continue;
                }
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    sock_open = false;
                    on_fs_gone(lp);
                }
                if (got < 0 && errno == EINTR)
                    continue;
                break;
            }
        }
        rp__local_service(lp);
    }
    return NULL;
}
