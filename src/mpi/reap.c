/* How a serving rank learns that its workers' processes ended: a pidfd per process
 * (Linux 5.3+) in one epoll set, asked without blocking at the rank's checks, so a
 * check costs the processes that ended, not one walk over every child. waitid(P_ALL)
 * walked every child of the rank in the kernel (15% of a 500-worker rank's CPU),
 * and an unreaped child of the program's own hid the workers' ends from it. A
 * process whose pidfd cannot be had (no pidfd_open: ENOSYS; no epoll; out of
 * descriptors, or fewer than FDS_SPARE left to the program) is counted unwatched, and while any is, server.c also looks as it
 * did before (waitid, or every worker in turn). A worker process closes the copies
 * its fork gave it (rp__mpi_reap_in_child): they would take the task's descriptors
 * (up to the rank's limit less FDS_SPARE) and are of no use there; a close costs
 * the child well under a microsecond each, against a millisecond or more for the
 * fork itself at such counts. */
#include "backend_mpi.h"

#include <errno.h>
#include <limits.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Descriptors left to the program and to MPI: a pidfd numbered above the soft
 * RLIMIT_NOFILE less this many is given back, and its process left unwatched. */
#define FDS_SPARE 128

void rp__mpi_reap_init(struct server *sv)
{
    struct rlimit rl;
    sv->reap_fd_max = INT_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
        sv->reap_fd_max = rl.rlim_cur > FDS_SPARE ? (int)(rl.rlim_cur - FDS_SPARE) : 0;
    sv->unwatched = 0;
    for (int i = 0; i < sv->nlocal; i++)
        sv->w[i].pidfd = -1;
    sv->reap_fd = sv->inproc ? -1 : epoll_create1(EPOLL_CLOEXEC);
    sv->reaping = true;
}

void rp__mpi_reap_end(struct server *sv)
{
    if (sv->reaping && sv->reap_fd >= 0)
        close(sv->reap_fd);
    sv->reaping = false;
}

static int pidfd_of(pid_t pid)
{
#ifdef SYS_pidfd_open
    /* (by number: glibc before 2.36 has no wrapper) */
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    (void)pid;
    errno = ENOSYS;
    return -1;
#endif
}

void rp__mpi_reap_watch(struct server *sv, struct lworker *lw)
{
    if (!sv->reaping || lw->pid <= 0)
        return;
    lw->pidfd = sv->reap_fd >= 0 ? pidfd_of(lw->pid) : -1;
    if (lw->pidfd >= sv->reap_fd_max) {
        close(lw->pidfd);
        lw->pidfd = -1;
        errno = EMFILE;
    }
    if (lw->pidfd >= 0) {
        struct epoll_event ev = { .events = EPOLLIN, .data.u32 = (uint32_t)lw->local };
        if (epoll_ctl(sv->reap_fd, EPOLL_CTL_ADD, lw->pidfd, &ev) == 0)
            return;
        int e = errno;
        close(lw->pidfd);
        lw->pidfd = -1;
        errno = e;
    }
    if (sv->unwatched++ == 0)
        rp__trace("mpi: rank %d: worker %d's process has no pidfd (%s): ended processes "
                  "are looked for with waitid while one has none", sv->rank, lw->id,
                  strerror(errno));
    lw->unwatched = true;
}

void rp__mpi_reap_in_child(struct server *sv)
{
    if (!sv->reaping)
        return;
    for (int i = 0; i < sv->nlocal; i++)
        if (sv->w[i].pidfd >= 0)
            close(sv->w[i].pidfd);
    if (sv->reap_fd >= 0)
        close(sv->reap_fd);
    sv->reaping = false;
}

void rp__mpi_reap_forget(struct server *sv, struct lworker *lw)
{
    if (lw->pidfd >= 0) {
        epoll_ctl(sv->reap_fd, EPOLL_CTL_DEL, lw->pidfd, NULL);
        close(lw->pidfd);
        lw->pidfd = -1;
    }
    if (lw->unwatched) {
        lw->unwatched = false;
        sv->unwatched--;
    }
}

int rp__mpi_reap_watched(struct server *sv)
{
    if (!sv->reaping || sv->reap_fd < 0)
        return RP_OK;
    for (int round = 0; round <= sv->nlocal / 64; round++) { /* 64 at a time */
        struct epoll_event ev[64];
        int n = epoll_wait(sv->reap_fd, ev, 64, 0);
        if (n < 0)
            return errno == EINTR ? RP_OK : RP_ESYS;
        for (int e = 0; e < n; e++) {
            struct lworker *lw = &sv->w[ev[e].data.u32];
            if (lw->pidfd < 0 || lw->pid <= 0)
                continue;
            int status;
            pid_t r = waitpid(lw->pid, &status, WNOHANG);
            if (r == 0)
                continue; /* (readable only once it ended: not yet reapable) */
            /* ECHILD: the program reaped it (waitpid(-1)); how it ended is lost */
            int rc = rp__mpi_child_ended(sv, lw, r == lw->pid ? status : -1);
            rp__mpi_mark(sv, lw);
            if (rc != RP_OK)
                return rc;
        }
        if (n < 64)
            break;
    }
    return RP_OK;
}
