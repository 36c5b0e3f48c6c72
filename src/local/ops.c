/* The local backend's operations table, and its start and stop: the shared
 * region, the fork server, the first workers (and their initializers), the pool
 * thread; join and destroy. The per-job ops are in job.c and deliver.c,
 * terminate in terminate.c. */
#include "local.h"

#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- registry: children forked by the user do not keep our descriptors -------- */

static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lpool *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_prepare(void) { pthread_mutex_lock(&reg_lock); }
static void reg_parent(void) { pthread_mutex_unlock(&reg_lock); }
static void reg_child(void)
{
    /* Any fork: the child must not hold the master's ends, or a fork server
     * would not see EOF when its master goes. (A fork server's own ends are
     * registered only after it is forked.) */
    for (struct lpool *lp = reg_head; lp; lp = lp->reg_next) {
        close(lp->sock);
        close(lp->efd);
    }
    reg_head = NULL;
    pthread_mutex_init(&reg_lock, NULL);
}
static void reg_init(void) { pthread_atfork(reg_prepare, reg_parent, reg_child); }

static void reg_add(struct lpool *lp)
{
    pthread_mutex_lock(&reg_lock);
    lp->reg_next = reg_head;
    reg_head = lp;
    pthread_mutex_unlock(&reg_lock);
}

static void reg_remove(struct lpool *lp)
{
    pthread_mutex_lock(&reg_lock);
    for (struct lpool **pp = &reg_head; *pp; pp = &(*pp)->reg_next)
        if (*pp == lp) {
            *pp = lp->reg_next;
            break;
        }
    pthread_mutex_unlock(&reg_lock);
}

/* ---- start ----------------------------------------------------------------------- */

static struct rp__wslot *wslot_cb(void *lp, int k) { return rp__wslot_of(lp, k); }

static void unmap_and_close(struct lpool *lp)
{
    reg_remove(lp);
    if (lp->sock >= 0)
        close(lp->sock);
    if (lp->efd >= 0)
        close(lp->efd);
    lp->sock = lp->efd = -1;
    if (lp->base)
        munmap(lp->base, lp->map_size);
    lp->base = NULL;
}

/* Frees the backend's master-side state (the region is already unmapped). */
static void free_lpool(rp_pool_t *pool, struct lpool *lp)
{
    free(lp->fl);
    free(atomic_load(&lp->spare));
    pthread_mutex_destroy(&lp->lock);
    pthread_mutex_destroy(&lp->drain_lock);
    pthread_cond_destroy(&lp->cond);
    free(lp);
    pool->bdata = NULL;
}

/* The region: header, worker slots, then a large arena and var heap that cost
 * nothing until touched (MAP_NORESERVE); smaller if the kernel refuses. */
static int map_region(struct lpool *lp, int nw)
{
    size_t page = 4096;
    size_t hdr_sz = rp__align_up(sizeof(struct rp__hdr), page);
    lp->wstride = rp__align_up(sizeof(struct rp__wslot), RP__CL);
    size_t w_sz = rp__align_up((uint64_t)nw * lp->wstride, page);
    uint64_t big = UINT64_C(16) << 30;
    for (;;) {
        lp->map_size = hdr_sz + w_sz + 2 * big;
        void *m = mmap(NULL, lp->map_size, PROT_READ | PROT_WRITE,
                       MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m != MAP_FAILED) {
            lp->base = m;
            break;
        }
        if (big <= (UINT64_C(64) << 20))
            return RP_ESYS;
        big /= 4;
    }
    lp->hdr = (struct rp__hdr *)lp->base;
    lp->wbase = lp->base + hdr_sz;
    lp->arena = lp->wbase + w_sz;
    lp->arena_size = big;
    lp->var = lp->arena + big;
    lp->var_size = big;
    /* Tests only: a smaller var heap, to fill it quickly. */
    const char *vh = getenv("RP_TEST_VAR_HEAP");
    if (vh && strtoull(vh, NULL, 10) >= (1u << 20) && strtoull(vh, NULL, 10) < big)
        lp->var_size = strtoull(vh, NULL, 10);
    lp->vseg_size = (lp->var_size / RP__VSEGS) & ~(uint64_t)(page - 1);
    lp->var_size = lp->vseg_size * RP__VSEGS;
    lp->fl = malloc(16 * sizeof *lp->fl);
    if (!lp->fl)
        return RP_ENOMEM;
    lp->capfl = 16;
    lp->nfl = 1;
    lp->fl[0].off = 0;
    lp->fl[0].size = big;
    /* Idle workers that may spin: one per core this process may use (counted
     * cheaply; hwloc would cost a topology load per pool). */
    cpu_set_t cpus;
    int ncores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : 1;
    lp->hdr->max_spin = ncores > 1 ? (uint32_t)ncores : 1;
    lp->hdr->idlew = (uint32_t)(nw + 63) / 64;
    return RP_OK;
}

/* Forks the fork server, which forks the workers. */
static int start_fork_server(struct lpool *lp)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
        return RP_ESYS;
    lp->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (lp->efd < 0) {
        close(sv[0]);
        close(sv[1]);
        return RP_ESYS;
    }
    lp->conf.hdr = lp->hdr;
    lp->conf.region = lp->base;
    lp->conf.region_size = lp->map_size;
    lp->conf.wslot = wslot_cb;
    lp->conf.worker_main = rp__local_worker_main;
    lp->conf.lp = lp;
    lp->conf.nworkers = lp->nworkers;
    lp->conf.sock = sv[1];
    lp->conf.efd = lp->efd;
    lp->conf.master = getpid();
    pthread_sigmask(SIG_SETMASK, NULL, &lp->conf.mask);
    sigaction(SIGCHLD, NULL, &lp->conf.chld);
    sigaction(SIGINT, NULL, &lp->conf.intr);

    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        close(sv[0]);
        rp__forkserver_main(&lp->conf);
    }
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        return RP_ESYS;
    }
    lp->fs_pid = pid;
    lp->sock = sv[0];
    /* Children the user forks from now on do not get the region. */
    madvise(lp->base, lp->map_size, MADV_DONTFORK);
    reg_add(lp);
    return RP_OK;
}

/* A first worker that died or could not be forked during start: RP_EINIT. */
static int init_died(struct lpool *lp, const struct rp__fs_msg *m, rp_error_t *err)
{
    struct rp__wslot *ws = rp__wslot_of(lp, m->worker);
    if (atomic_load(&ws->life) == RP__W_INITFAIL) {
        if (err)
            *err = ws->init_err;
        return RP_EINIT;
    }
    if (!err)
        return RP_EINIT;
    if (m->kind == RP__FS_SPAWNFAIL) {
        rp__error_set(err, RP_EINIT, 0, m->worker, lp->pool->host,
                      "could not fork worker %d: %s", m->worker, strerror(m->status));
        return RP_EINIT;
    }
    char how[128];
    rp__describe_status(how, sizeof how, m->status);
    rp__error_set(err, RP_EINIT, 0, m->worker, lp->pool->host,
                  "worker %d (pid %d) %s during its initializer", m->worker, m->pid, how);
    if (WIFSIGNALED(m->status))
        err->signal = WTERMSIG(m->status);
    else if (WIFEXITED(m->status))
        err->exit_status = WEXITSTATUS(m->status);
    return RP_EINIT;
}

/* Waits, before the pool thread exists, until every first worker ran its
 * initializer. */
static int wait_init(struct lpool *lp, rp_error_t *err)
{
    for (;;) {
        int ready = 0;
        for (int k = 0; k < lp->nworkers; k++) {
            struct rp__wslot *ws = rp__wslot_of(lp, k);
            uint32_t life = atomic_load(&ws->life);
            if (life == RP__W_READY)
                ready++;
            else if (life == RP__W_INITFAIL) {
                if (err)
                    *err = ws->init_err;
                return RP_EINIT;
            }
        }
        if (ready == lp->nworkers)
            return RP_OK;
        struct pollfd p[2] = { { lp->efd, POLLIN, 0 }, { lp->sock, POLLIN, 0 } };
        if (poll(p, 2, 100) < 0 && errno != EINTR)
            return RP_ESYS;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(lp->efd, &v, sizeof v);
            (void)r;
        }
        if (!(p[1].revents & (POLLIN | POLLHUP | POLLERR)))
            continue;
        struct rp__fs_msg m;
        ssize_t got = recv(lp->sock, &m, sizeof m, MSG_DONTWAIT);
        if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
            if (err)
                rp__error_set(err, RP_ESYS, 0, -1, lp->pool->host,
                              "the fork server ended during start");
            return RP_ESYS;
        }
        if (got != (ssize_t)sizeof m || m.worker < 0 || m.worker >= lp->nworkers)
            continue;
        if (m.kind == RP__FS_DIED && atomic_load(&rp__wslot_of(lp, m.worker)->life) == RP__W_READY) {
            /* past its initializer, killed from outside: replace it */
            rp__local_forget_idle(lp, m.worker);
            rp__local_send_fs(lp, RP__FS_SPAWN, m.worker);
            continue;
        }
        if (m.kind == RP__FS_DIED || m.kind == RP__FS_SPAWNFAIL)
            return init_died(lp, &m, err);
    }
}

static int local_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    if (opts && opts->workers < 0)
        return RP_EINVAL;
    /* By default: $RP_WORKERS (rankpool-run -n N), else one per usable core (at
     * most $SLURM_CPUS_PER_TASK). */
    int nw = opts ? opts->workers : 0;
    bool from_env = nw == 0;
    if (nw == 0 && rp__env_workers(&nw) != RP_OK) {
        if (err)
            rp__error_set(err, RP_EINVAL, 0, -1, pool->host,
                          "RP_WORKERS must be a whole number from 1 to %d", RP__MAXWORKERS);
        return RP_EINVAL;
    }
    from_env = from_env && nw > 0;
    if (nw == 0)
        nw = rp__default_workers();
    if (nw < 1)
        nw = 1;
    if (nw > RP__MAXWORKERS) {
        if (err)
            rp__error_set(err, RP_EINVAL, 0, -1, pool->host,
                          "at most %d local workers (%s is %d)", RP__MAXWORKERS,
                          from_env ? "RP_WORKERS" : "opts.workers", nw);
        return RP_EINVAL;
    }
    pthread_once(&reg_once, reg_init);
    struct lpool *lp = calloc(1, sizeof *lp);
    if (!lp)
        return RP_ENOMEM;
    lp->pool = pool;
    lp->nworkers = nw;
    lp->sock = lp->efd = -1;
    pool->bdata = lp;
    pool->nworkers = nw;
    if (pool->host[0] == '\0')
        rp__hostname(pool->host, sizeof pool->host);
    pthread_mutex_init(&lp->lock, NULL);
    pthread_mutex_init(&lp->drain_lock, NULL);
    pthread_cond_init(&lp->cond, NULL);
    lp->free_slots = ~UINT64_C(0);
    lp->live_workers = nw;

    int rc = map_region(lp, nw);
    if (rc != RP_OK)
        goto fail;
    atomic_store(&lp->hdr->init_report, opts && opts->initializer ? 1u : 0u);
    if ((rc = start_fork_server(lp)) != RP_OK)
        goto fail;
    if (opts && opts->initializer) {
        rc = wait_init(lp, err);
        if (rc != RP_OK) {
            close(lp->sock); /* EOF: the fork server kills the workers and exits */
            lp->sock = -1;
            rp__local_reap_fs(lp);
            goto fail;
        }
    }
    atomic_store(&lp->hdr->init_report, 0);

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int prc = pthread_create(&lp->thread, NULL, rp__local_pool_thread, lp);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (prc != 0) {
        close(lp->sock);
        lp->sock = -1;
        rp__local_reap_fs(lp);
        rc = RP_ESYS;
        goto fail;
    }
    lp->thread_started = true;
    return RP_OK;

fail:
    if (err && rc != RP_EINIT)
        rp__error_set(err, rc, 0, -1, pool->host, "local backend: %s", rp_strerror(rc));
    unmap_and_close(lp);
    free_lpool(pool, lp);
    return rc;
}

/* ---- stop ------------------------------------------------------------------------- */

static void local_kick(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (lp)
        rp__local_wake_master(lp);
}

static void stop_thread(struct lpool *lp)
{
    if (!lp->thread_started)
        return;
    atomic_store(&lp->stopping, true);
    rp__local_wake_master(lp);
    pthread_join(lp->thread, NULL);
    lp->thread_started = false;
}

static int local_join(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return RP_OK;
    if (atomic_exchange(&lp->shutdown, true) == false) {
        atomic_store(&lp->hdr->shutdown, 1);
        atomic_fetch_add(&lp->hdr->work_seq, 1);
        rp__futex_wake(&lp->hdr->work_seq, INT_MAX);
        if (!atomic_load(&lp->fs_gone))
            rp__local_send_fs(lp, RP__FS_QUIT, -1);
    }
    rp__local_reap_fs(lp);
    stop_thread(lp);
    /* What the thread had not seen yet: jobs with callbacks completed as it
     * stopped reach the core (which runs their callbacks after join). */
    rp__local_service(lp);
    return RP_OK;
}

static void local_destroy(rp_pool_t *pool)
{
    struct lpool *lp = pool->bdata;
    if (!lp)
        return;
    if (getpid() == pool->owner_pid || pool->owner_pid == 0) {
        if (!atomic_load(&lp->shutdown))
            local_join(pool);
        stop_thread(lp);
        unmap_and_close(lp);
    }
    /* Jobs never released by the core (should not happen) are dropped. */
    while (lp->live) {
        struct ljob *lj = lp->live;
        lp->live = lj->next;
        if (lj->job)
            lj->job->bdata = NULL;
        free(lj->holes);
        free(lj->sus);
        free(lj->pend);
        free(lj);
    }
    free_lpool(pool, lp);
}

const struct rp__backend_ops rp__backend_local = {
    .name = "local",
    .start = local_start,
    .submit = rp__local_submit,
    .drive = NULL,      /* waiters spin on the done word, then sleep on it */
    .collect = rp__local_collect,
    .progress = rp__local_progress,
    .release = rp__local_release,
    .kick = local_kick,
    .close = NULL,      /* nothing to do: queued and running jobs go on */
    .join = local_join,
    .terminate = rp__local_terminate,
    .destroy = local_destroy,
    .initarg_max = 0,   /* no limit: workers inherit the copy through fork */
    .cancel = rp__local_cancel,
    .kills = true,
    .watch = rp__local_watch,
    .buf_alloc = rp__local_buf_alloc, /* blocks of the arena */
    .buf_free = rp__local_buf_free,
    .runs_on = rp__local_runs_on,
};
