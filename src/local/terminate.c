/* The local backend when work stops for good: terminate (every worker killed,
 * every unprocessed item canceled), and a broken pool (no worker left, the fork
 * server gone: every pending item fails with RP_EBROKEN). Either way every live
 * job is completed by the master: items held by a dead worker through the
 * core's dead-worker policy (rp__job_worker_died, which cancels them when the
 * pool is terminating), unclaimed ones through rp__job_cancel (or the broken
 * pool's failure); queued jobs through the core's counting, slot jobs through
 * their slot (the CAS to DONE elects one completer, so a worker finishing at
 * the same moment cannot complete one twice). */
#include "local.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* terminate: the fork server's answer, at most (terminate and free return within a
 * second whatever the fork server does); a stopped one is not waited for at all */
#define KILL_WAIT_S 0.4

/* ---- failing every live job (under D) ------------------------------------------------- */

struct failing {
    struct lpool *lp;
    struct ljob  *lj;
    bool          term;   /* the pool is terminated: the core cancels */
    rp_error_t    e;      /* else: the broken pool's failure */
    uint64_t      count;  /* items accounted for */
};

/* Items [a, b) will never run; the core records their arrival for an iterator. */
static void fail_span(void *arg, uint64_t a, uint64_t b)
{
    struct failing *f = arg;
    if (b <= a)
        return;
    f->count += b - a;
    if (f->term) {
        rp__job_cancel(f->lj->job, a, b, false);
    } else {
        rp__job_fail_range(f->lj->job, a, b - a, &f->e);
        rp__job_deliver(f->lj->job, a, b, NULL);
    }
    rp__local_mark(f->lp, f->lj, a, b, RP__MARK_DELIVERED);
}

/* The chunk worker w held of f->lj (slot j), if it had not counted it. A claim
 * that was only tentative goes to *maybe. Under L. */
static void held_chunk(struct failing *f, int j, int w, struct rp__span *maybe)
{
    struct lpool *lp = f->lp;
    struct rp__wslot *ws = rp__wslot_of(lp, w);
    uint32_t hs = atomic_load(&ws->hstate);
    if (hs == RP__H_NONE || (int)ws->hslot != j || ws->hgen != f->lj->gen)
        return;
    atomic_store(&ws->hstate, RP__H_NONE);
    uint64_t start = ws->hstart, end = ws->hstart + ws->hlen;
    if (atomic_load(&ws->done[j]) != ws->hbase)
        return; /* counted before it died */
    if (hs == RP__H_TENTATIVE) {
        *maybe = (struct rp__span){ start, end };
        return;
    }
    uint64_t cur = atomic_load(&ws->cur);
    cur = cur < start ? start : cur > end ? end : cur;
    rp__local_mark(lp, f->lj, start, cur, RP__MARK_ARRIVED); /* they ran */
    if (!f->term) {
        f->count += cur - start;
        fail_span(f, cur, end);
        return;
    }
    rp__death d = { .worker = w, .pid = atomic_load(&ws->pid), .status = -1,
                    .host = lp->pool->host, .rank = -1, .why = NULL };
    size_t ra, rb;
    rp__job_worker_died(f->lj->job, &d, start, cur, end, false, &ra, &rb);
    rp__local_mark(lp, f->lj, cur, end, RP__MARK_DELIVERED);
    fail_span(f, ra, rb); /* nothing, the pool being terminated */
    f->count += end - start - (rb - ra);
}

/* Accounts for every unprocessed item of slot job lj and completes it. */
static void fail_slot_job(struct failing *f)
{
    struct lpool *lp = f->lp;
    struct ljob *lj = f->lj;
    while (atomic_load(&lj->publishing)) /* its input is still being copied */
        sched_yield();
    int j = atomic_load(&lj->slot);
    f->count = 0;
    pthread_mutex_lock(&lp->lock);
    rp__local_take_unclaimed(lp, lj, fail_span, f);
    /* claims that may or may not have happened: the dead worker's, or another's
     * that finished; the counts tell (exact with one) */
    struct rp__span maybe[2 * RP__MAXWORKERS];
    size_t nmaybe = 0;
    for (size_t i = 0; i < lj->nsus && nmaybe < RP__MAXWORKERS; i++)
        maybe[nmaybe++] = (struct rp__span){ lj->sus[i].a, lj->sus[i].b };
    lj->nsus = 0;
    for (int w = 0; w < lp->nworkers; w++) {
        struct rp__span m = { 0, 0 };
        held_chunk(f, j, w, &m);
        if (m.b > m.a)
            maybe[nmaybe++] = m;
    }
    uint64_t counted = rp__local_counted(lp, j) + f->count, n = lj->job->n;
    uint64_t missing = counted < n ? n - counted : 0;
    for (size_t i = 0; i < nmaybe; i++)
        if (maybe[i].b - maybe[i].a <= missing) {
            missing -= maybe[i].b - maybe[i].a;
            fail_span(f, maybe[i].a, maybe[i].b);
        }
    atomic_store(&lp->hdr->slots[j].suspect, 0);
    pthread_mutex_unlock(&lp->lock);
    atomic_fetch_add(&lp->hdr->slots[j].mdone, f->count);
    rp__local_slot_complete(lp, j, lj->gen);
}

void rp__local_fail_all(struct lpool *lp, int code, const char *msg)
{
    struct failing f = { .lp = lp, .term = atomic_load(&lp->terminating) };
    rp__local_drain(lp);
    pthread_mutex_lock(&lp->lock);
    if (!atomic_exchange(&lp->broken, true)) {
        lp->broken_code = code;
        snprintf(lp->broken_msg, sizeof lp->broken_msg, "%s", msg);
    }
    rp__error_set(&f.e, lp->broken_code, 0, -1, lp->pool->host, "%s", lp->broken_msg);
    /* queued jobs get no slot any more; nor does anything submitted from now on */
    for (struct ljob *q = lp->qhead; q; q = q->qnext)
        q->queued = false;
    lp->qhead = lp->qtail = NULL;
    atomic_store(&lp->hdr->nqueued, 0);
    struct ljob *head = lp->live;
    pthread_mutex_unlock(&lp->lock);
    /* Under D no ljob is freed, and new ones are only added before head: the
     * list from head on stays as it is. */
    for (struct ljob *lj = head; lj; lj = lj->next) {
        if (rp__local_job_done(lj))
            continue;
        f.lj = lj;
        if (atomic_load(&lj->slot) >= 0) {
            fail_slot_job(&f);
        } else if (f.term) {
            rp__job_cancel(lj->job, 0, lj->job->n, true);
        } else {
            rp__job_fail_range(lj->job, 0, lj->job->n, &f.e);
            rp__job_processed(lj->job, lj->job->n);
        }
    }
    pthread_mutex_lock(&lp->lock);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
    rp__local_wake_master(lp); /* jobs with callbacks completed in their slot */
}

/* ---- terminate ------------------------------------------------------------------------ */

void rp__local_reap_fs(struct lpool *lp)
{
    if (lp->fs_pid <= 0)
        return;
    int st;
    while (waitpid(lp->fs_pid, &st, 0) < 0 && errno == EINTR)
        ;
    lp->fs_pid = 0; /* or a user's SIGCHLD handler took it (ECHILD): gone too */
}

/* Whether process pid has ended: a zombie, or gone (from /proc/<pid>/stat;
 * without /proc, assumed). */
/* The state letter of pid in /proc (R, S, D, T, t, Z, X...), or 'X' when gone. */
static char proc_state(pid_t pid)
{
    char path[40], buf[256];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 'X';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 'X';
    buf[n] = '\0';
    const char *p = strrchr(buf, ')'); /* after the name, which may hold anything */
    return !p || p[1] == '\0' ? 'X' : p[2];
}

static bool proc_ended(pid_t pid)
{
    char st = proc_state(pid);
    return st == 'Z' || st == 'X';
}

/* terminate when the fork server does not answer (stopped, or hung): the master
 * kills the workers itself. The fork server is stopped first, so that it reaps
 * nothing meanwhile: every pid in the worker slots is then still one of its
 * children (it clears a slot's pid before reaping), alive or a zombie, never a
 * reused pid. Each worker gets SIGKILL (which also ends a stopped process) and is
 * waited for until it is a zombie; then the fork server is killed and reaped, and
 * init reaps the zombies. */
static void kill_workers(struct lpool *lp)
{
    rp__trace("local: the fork server does not answer: killing the workers by pid");
    if (lp->fs_pid > 0)
        kill(lp->fs_pid, SIGSTOP);
    pid_t pids[RP__MAXWORKERS];
    for (int k = 0; k < lp->nworkers; k++) {
        pids[k] = atomic_load(&rp__wslot_of(lp, k)->pid);
        if (pids[k] > 0)
            kill(pids[k], SIGKILL);
    }
    double end = rp__now() + KILL_WAIT_S;
    for (int k = 0; k < lp->nworkers; k++)
        while (pids[k] > 0 && !proc_ended(pids[k]) && rp__now() < end)
            usleep(1000);
    if (lp->fs_pid > 0) {
        kill(lp->fs_pid, SIGKILL);
        rp__local_reap_fs(lp);
    }
    pthread_mutex_lock(&lp->lock);
    atomic_store(&lp->fs_gone, true);
    atomic_store(&lp->killed, true);
    pthread_cond_broadcast(&lp->cond);
    pthread_mutex_unlock(&lp->lock);
}

/* From a callback on the pool thread: nobody else reads the fork server's
 * answer, so read it here. */
static void await_killed_here(struct lpool *lp, double deadline)
{
    while (!atomic_load(&lp->killed) && !atomic_load(&lp->fs_gone)) {
        double left = deadline - rp__now();
        struct pollfd p = { lp->sock, POLLIN, 0 };
        if (left <= 0 || poll(&p, 1, (int)(left * 1000) + 1) == 0)
            break;
        struct rp__fs_msg m;
        ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
        if (got == (ssize_t)sizeof m)
            rp__local_handle_msg(lp, &m);
        else if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN))
            atomic_store(&lp->fs_gone, true);
    }
}

int rp__local_terminate(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return RP_OK;
    pthread_mutex_lock(&lp->lock);
    if (atomic_load(&lp->terminating)) {
        pthread_mutex_unlock(&lp->lock);
        return RP_OK;
    }
    atomic_store(&lp->terminating, true);
    pthread_mutex_unlock(&lp->lock);

    /* Every worker killed and reaped by the fork server; if it does not answer
     * within KILL_WAIT_S, by the master (kill_workers). */
    double deadline = rp__now() + KILL_WAIT_S;
    if (!atomic_load(&lp->fs_gone))
        rp__local_send_fs(lp, RP__FS_KILLALL, -1);
    if (lp->thread_started && pthread_equal(pthread_self(), lp->thread))
        await_killed_here(lp, deadline);
    pthread_mutex_lock(&lp->lock);
    while (!atomic_load(&lp->killed) && !atomic_load(&lp->fs_gone)) {
        double left = deadline - rp__now();
        if (left <= 0)
            break;
        rp__local_cond_wait(lp, left < 0.01 ? left : 0.01);
        char st = lp->fs_pid > 0 ? proc_state(lp->fs_pid) : 'R';
        if (st == 'T' || st == 't')
            break; /* stopped: it will not answer */
    }
    bool answered = atomic_load(&lp->killed) || atomic_load(&lp->fs_gone);
    pthread_mutex_unlock(&lp->lock);
    if (!answered)
        kill_workers(lp);

    pthread_mutex_lock(&lp->drain_lock);
    rp__local_fail_all(lp, RP_ECANCELED, "canceled: the pool was terminated");
    pthread_mutex_unlock(&lp->drain_lock);
    return RP_OK;
}
