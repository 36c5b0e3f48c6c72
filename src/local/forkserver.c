/* The local backend's fork server: a single-threaded copy of the program, forked
 * by the master at pool creation, that forks every worker (the first ones and
 * each replacement) and reaps them. Workers are therefore never forked from a
 * threaded process and are not children of the user's program: a user's SIGCHLD
 * handler or wait() cannot take them.
 *
 * It talks to the master over a SOCK_SEQPACKET socketpair (struct rp__fs_msg).
 * EOF on the socket, or a new parent, means the master is gone: it kills every
 * worker, reaps them and exits. It never returns into the user's program and
 * never calls malloc. */
#include "local.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t pids[RP__MAXWORKERS];  /* this fork server's workers, by number */
static int nlive;

/* Exits (the fork server or a worker): the shared region goes first. A memory
 * checker that scans a process's memory at exit (valgrind's leak check) would
 * otherwise read all of it, and reading an untouched page of the reserved region
 * allocates it: gigabytes per exiting process. */
void rp__region_exit(struct rp__fs_conf *c, int status)
{
    munmap(c->region, c->region_size);
    _exit(status);
}

static void send_msg(struct rp__fs_conf *c, int kind, int worker, int pid, int status)
{
    struct rp__fs_msg m = { kind, worker, pid, status };
    while (send(c->sock, &m, sizeof m, MSG_NOSIGNAL) < 0 && errno == EINTR)
        ;
}

static void spawn(struct rp__fs_conf *c, int k, int sigfd)
{
    struct rp__wslot *ws = c->wslot(c->lp, k);
    atomic_store(&ws->life, RP__W_STARTING);
    atomic_store(&ws->pid, 0);
    pid_t me = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        /* The worker dies with the fork server (which is single-threaded, so the
         * "parent thread" of PR_SET_PDEATHSIG is the whole process). */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != me)
            rp__region_exit(c, 1);
        close(c->sock);
        close(sigfd);
        char name[16];
        snprintf(name, sizeof name, "rp-worker-%d", k);
        prctl(PR_SET_NAME, name);
        sigaction(SIGCHLD, &c->chld, NULL);
        sigaction(SIGINT, &c->intr, NULL);
        sigprocmask(SIG_SETMASK, &c->mask, NULL);
        c->worker_main(c->lp, k);
        rp__region_exit(c, 0);
    }
    if (pid < 0) {
        atomic_store(&ws->life, RP__W_EMPTY);
        send_msg(c, RP__FS_SPAWNFAIL, k, 0, errno);
        return;
    }
    atomic_store(&ws->pid, pid);
    pids[k] = pid;
    nlive++;
}

static int find(struct rp__fs_conf *c, pid_t pid)
{
    for (int k = 0; k < c->nworkers; k++)
        if (pids[k] == pid)
            return k;
    return -1;
}

/* Reaps what has ended; reports deaths unless quiet. A worker's pid is cleared
 * from its slot before the worker is reaped (looked at with WNOWAIT first): while
 * this process does not run, every pid in the slots still names one of its
 * children, alive or a zombie, so the master may kill by it (see kill_workers()
 * in terminate.c). */
static void reap(struct rp__fs_conf *c, bool block, bool quiet)
{
    for (;;) {
        siginfo_t si;
        si.si_pid = 0;
        if (waitid(P_ALL, 0, &si, WEXITED | WNOWAIT | (block ? 0 : WNOHANG)) < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        pid_t pid = si.si_pid;
        if (pid <= 0)
            return;
        int k = find(c, pid);
        if (k >= 0)
            atomic_store(&c->wslot(c->lp, k)->pid, 0);
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (k < 0)
            continue;
        pids[k] = 0;
        nlive--;
        if (!quiet)
            send_msg(c, RP__FS_DIED, k, pid, st);
        if (block && nlive == 0)
            return;
    }
}

static void kill_all(struct rp__fs_conf *c)
{
    for (int k = 0; k < c->nworkers; k++)
        if (pids[k] > 0)
            kill(pids[k], SIGKILL);
    while (nlive > 0) {
        int before = nlive;
        reap(c, true, true);
        if (nlive == before)  /* ECHILD: nothing left to wait for */
            break;
    }
}

void rp__forkserver_main(struct rp__fs_conf *c)
{
    prctl(PR_SET_NAME, "rp-forkserver");
    /* SIGCHLD through a signalfd, with the default action (SIG_IGN would make
     * the kernel reap our workers); Ctrl-C is the master's business. */
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    sigaction(SIGCHLD, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGPIPE, &sa, NULL);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sigfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0)
        rp__region_exit(c, 127);

    memset(pids, 0, sizeof pids);
    nlive = 0;
    /* A pool joined at once needs no workers: look at the shutdown flag first. */
    for (int k = 0; k < c->nworkers && !atomic_load(&c->hdr->shutdown); k++)
        spawn(c, k, sigfd);

    bool quitting = false, killed = false;
    double quit_at = 0;
    for (;;) {
        struct pollfd p[2] = { { c->sock, POLLIN, 0 }, { sigfd, POLLIN, 0 } };
        int rc = poll(p, 2, 1000);
        if (rc < 0 && errno != EINTR)
            break;
        if (getppid() != c->master)
            break;  /* the master is gone (EOF may be held up by a stray copy) */
        if (quitting && rp__now() - quit_at > 5.0)
            break;  /* idle workers exit at once; one that does not is killed */
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sigfd, &si, sizeof si) > 0)
                ;
            reap(c, false, killed || quitting);
        }
        if (quitting && nlive == 0)
            rp__region_exit(c, 0);
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            struct rp__fs_msg m;
            ssize_t got = recv(c->sock, &m, sizeof m, MSG_DONTWAIT);
            if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR))
                break;  /* the master is gone */
            if (got != (ssize_t)sizeof m)
                continue;
            switch (m.kind) {
            case RP__FS_SPAWN:
                if (!killed && !quitting && !atomic_load(&c->hdr->shutdown) && m.worker >= 0
                    && m.worker < c->nworkers && pids[m.worker] == 0)
                    spawn(c, m.worker, sigfd);
                break;
            case RP__FS_KILLALL:
                killed = true;
                kill_all(c);
                send_msg(c, RP__FS_KILLED, -1, 0, 0);
                break;
            case RP__FS_QUIT:
                quitting = true;
                quit_at = rp__now();
                if (nlive == 0)
                    rp__region_exit(c, 0);
                break;
            default:
                break;
            }
        }
    }
    kill_all(c);
    rp__region_exit(c, 0);
}
