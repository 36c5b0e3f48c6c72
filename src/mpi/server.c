/* A serving rank: its part of rp_pool_create (the pool's settings, its workers'
 * processes, READY for each, the master's verdict) and its loop, which receives
 * batches into the workers' regions, sends back what they finished, supervises
 * their processes, and ends at the master's STOP or TERMINATE. An idle rank polls
 * MPI for a while, then naps; while a worker computes the rank sleeps on the bell
 * its children ring (backend_mpi.h, "waiting"). */
#include "backend_mpi.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

void rp__mpi_server_free(struct server *sv)
{
    rp__mpi_kill_children(sv);
    rp__mpi_reap_end(sv);
    rp__mpi_bundle_end(sv);
    free(sv->lead_ids);
    sv->lead_ids = NULL;
    /* a region whose send was abandoned stays mapped (the library may still read
     * it), and with it every worker's: they are one mapping */
    bool leaked = false;
    for (int i = 0; i < sv->nlocal; i++)
        for (int s = 0; s < DEPTH; s++)
            leaked = leaked || sv->w[i].leaked[s];
    if (sv->slots && !leaked)
        munmap(sv->slots, sv->slots_bytes);
    if (sv->ctls)
        munmap(sv->ctls, sv->ctls_bytes);
    free(sv->w);
    if (sv->bell)
        munmap(sv->bell, sizeof *sv->bell);
    free(sv->initarg);
    free(sv->rbuf);
    rp__wbuf_free(&sv->out);
}

static void *shared_map(size_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* The workers' transfer areas: a shared memory file (memfd) as large as every
 * area, mapped whole. Its pages are allocated, and charged to the system's commit
 * limit, only as batches touch them, so each area holds what its largest batch
 * needed and grows on demand, even with strict overcommit (vm.overcommit_memory=2),
 * which charges an anonymous shared mapping in full at once. Without memfd, an
 * anonymous mapping (reserve-free where the system allows it). */
static void *areas_map(size_t bytes)
{
    /* (by number: the declaration needs _GNU_SOURCE before the first system header) */
    int fd = (int)syscall(SYS_memfd_create, "rankpool-areas", MFD_CLOEXEC);
    if (fd < 0)
        return shared_map(bytes);
    void *p = MAP_FAILED;
    if (ftruncate(fd, (off_t)bytes) == 0)
        p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
    close(fd);
    return p == MAP_FAILED ? shared_map(bytes) : p;
}

int rp__mpi_server_ctl(struct server *sv, unsigned kind, uint32_t worker, int32_t status)
{
    if (rp__wire_put_ctl(&sv->out, kind, worker, status, 0) != RP_OK)
        return RP_ENOMEM;
    return rp__mpi_server_send(sv, sv->out.buf, sv->out.len);
}

/* Asks every worker's process in turn whether it ended. */
static int scan_children(struct server *sv)
{
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        int rc = RP_OK;
        if (lw->pid > 0) {
            int status;
            pid_t r = waitpid(lw->pid, &status, WNOHANG);
            if (r == lw->pid)
                rc = rp__mpi_child_ended(sv, lw, status);
            else if (r < 0 && errno == ECHILD)
                rc = rp__mpi_child_ended(sv, lw, -1);
            if (r != 0)
                rp__mpi_mark(sv, lw);
        }
        if (rc != RP_OK)
            return rc;
    }
    return RP_OK;
}

int rp__mpi_server_cancel(struct server *sv, uint64_t job, uint32_t flags)
{
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        struct wctl *ctl = lw->ctl;
        for (uint32_t k = atomic_load(&ctl->completed); k < lw->nposted; k++) {
            int s = (int)(k % DEPTH);
            if (lw->job[s] != job)
                continue;
            /* The kill first, then the stop word: a child killed in the batch is
             * never half-way through ending it early. */
            if ((flags & RP_CANCEL_KILL) && !sv->inproc && lw->pid > 0) {
                atomic_store(&ctl->killreq, 1);
                if (atomic_load(&ctl->running_seq) == k + 1 && kill(lw->pid, SIGKILL) == 0) {
                    /* its death is found and reported as any other; killreq stays
                     * up until its replacement starts */
                } else {
                    atomic_store(&ctl->killreq, 0);
                    rp__futex_wake(&ctl->killreq, INT_MAX);
                }
            }
            atomic_store(&ctl->slot[s].stop, 1);
        }
    }
    return RP_OK;
}

/* The workers' processes that ended: those watched through their pidfd (reap.c),
 * at the cost of the ends, not of the children. While a process is unwatched
 * (no pidfd), also in one system call when none did, not one per worker (with
 * hundreds of workers a rank spent its time in waitpid): waitid without reaping
 * shows an ended child of this process, reaped here if it is a worker's. An ended
 * child of the program's own is left to the program; while it is there it hides
 * the workers' ends from waitid, so every worker is asked in turn instead, at most
 * every SCAN_S (not at every check: with 1,000 workers that was 1,000 system calls
 * per CHECK_S). */
static int reap_children(struct server *sv)
{
    int rc = rp__mpi_reap_watched(sv);
    if (rc != RP_OK || (sv->reap_fd >= 0 && sv->unwatched == 0))
        return rc;
    for (;;) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
            return errno == ECHILD ? scan_children(sv) : RP_OK;
        if (si.si_pid == 0)
            return RP_OK; /* none ended */
        struct lworker *lw = NULL;
        for (int i = 0; i < sv->nlocal && !lw; i++)
            if (sv->w[i].pid == si.si_pid)
                lw = &sv->w[i];
        if (!lw) {
            double now = rp__now();
            if (now - sv->asked < SCAN_S)
                return RP_OK;
            sv->asked = now;
            return scan_children(sv);
        }
        int status;
        pid_t r = waitpid(lw->pid, &status, 0);
        int rc = rp__mpi_child_ended(sv, lw, r == lw->pid ? status : -1);
        rp__mpi_mark(sv, lw);
        if (rc != RP_OK)
            return rc;
    }
}

/* A timed item past its deadline (the one its process publishes): the process is
 * killed, found by reap_children and replaced; child.c reports the timeout. */
static void kill_overdue(struct server *sv, struct lworker *lw)
{
    uint64_t dl = lw->pid > 0 ? atomic_load(&lw->ctl->deadline) : 0;
    if (dl && dl != lw->kill_deadline && rp__now_ns() >= dl) {
        lw->kill_deadline = dl;
        rp__trace("mpi: worker %d (rank %d, pid %d) is past its item's time limit: "
                  "killed", lw->id, sv->rank, (int)lw->pid);
        kill(lw->pid, SIGKILL);
    }
}

/* Worker lw's part of a turn: kills its process past an item's time limit, sends
 * what its process finished or asks to send, looks at its sends in progress. */
static int serve_one(struct server *sv, struct lworker *lw, int *events)
{
    int rc = RP_OK;
    kill_overdue(sv, lw);
    if (!lw->gone && lw->pid > 0 && atomic_load(&lw->ctl->state) == CHILD_INIT_FAILED) {
        char why[300];
        snprintf(why, sizeof why, "its replacement's initializer failed: %s",
                 lw->ctl->init_err.message);
        rc = rp__mpi_worker_gone(sv, lw, why);
    }
    uint32_t done = atomic_load(&lw->ctl->completed);
    if (rc == RP_OK && done < lw->nposted && lw->pid > 0) {
        /* the child waits for the records of its batch to be sent */
        struct slotdesc *sd = &lw->ctl->slot[done % DEPTH];
        if (atomic_load(&sd->flush)) {
            rc = rp__mpi_send_part(sv, lw, (int)(done % DEPTH));
            atomic_store(&sd->flush, 0);
            rp__futex_wake(&sd->flush, INT_MAX);
            (*events)++;
        }
    }
    if (rc == RP_OK)
        rc = rp__mpi_send_finished(sv, lw, events);
    if (rc != RP_OK)
        return rc;
    bool still = false;
    for (int s = 0; s < DEPTH; s++)
        if (lw->sending[s]) {
            int flag = 0;
            MPI_Testall(2, lw->req[s], &flag, MPI_STATUSES_IGNORE);
            if (flag)
                lw->sending[s] = false;
            still = still || lw->sending[s];
        }
    if (!still)
        sv->sending[lw->local / 64] &= ~(1ull << (lw->local % 64));
    return RP_OK;
}

/* Sends the results of every batch the children finished; checks on the children.
 * Only the workers marked dirty (by their process, or by this rank) and those with
 * a send in progress are looked at; every worker every SCAN_S, in case, and for
 * the time limits, which no process marks (a deadline passes by itself: a timed
 * item is killed at most SCAN_S late, well inside the documented 50 ms). `now`
 * is the serving loop's clock (read every RANK_CLOCK_TURNS idle turns). */
static int serve_workers(struct server *sv, bool check_children, double now, int *events)
{
    if (check_children && !sv->inproc) {
        int rc = reap_children(sv);
        if (rc != RP_OK)
            return rc;
    }
    bool all = now - sv->scanned >= SCAN_S;
    if (all)
        sv->scanned = now;
    for (int wd = 0; wd * 64 < sv->nlocal; wd++) {
        uint64_t bits = atomic_exchange(&sv->bell->dirty[wd], 0) | sv->sending[wd];
        if (all)
            bits = ~0ull;
        for (; bits; bits &= bits - 1) {
            int i = wd * 64 + __builtin_ctzll(bits);
            if (i >= sv->nlocal)
                break;
            int rc = serve_one(sv, &sv->w[i], events);
            if (rc != RP_OK)
                return rc;
        }
    }
    return RP_OK;
}

/* Reports how far each worker's running batch is (PROGRESS), at most every
 * PROGRESS_S and only when the count moved: the master's rp_result_progress then
 * counts items, not batches. The child stores the item it runs (ctl->cur) anyway;
 * the batch is read twice around it, so a batch that ended meanwhile is skipped. */
static int report_progress(struct server *sv)
{
    if (sv->posted_total == sv->sent_total)
        return RP_OK; /* no batch here */
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        if (lw->pid <= 0)
            continue;
        uint32_t run = atomic_load(&lw->ctl->running_seq);
        if (run == 0 || run - 1 >= lw->nposted)
            continue;
        int s = (int)((run - 1) % DEPTH);
        const struct slotdesc *sd = &lw->ctl->slot[s];
        size_t cur = atomic_load(&lw->ctl->cur);
        if (atomic_load(&lw->ctl->running_seq) != run || cur == SIZE_MAX || cur < sd->start)
            continue;
        size_t items = cur - sd->start;
        if (items > sd->count)
            items = sd->count;
        if (items == 0 || (lw->prog_seq == lw->seq[s] && items <= lw->prog_items))
            continue;
        rp__wire_progress m = { .job = lw->job[s], .seq = lw->seq[s], .items = items };
        if (rp__wire_put_progress(&sv->out, (uint32_t)lw->id, &m) != RP_OK)
            return RP_ENOMEM;
        int rc = sv->bundling && rp__mpi_bundle_room(sv, sv->out.len)
                     ? rp__mpi_bundle_add(sv, sv->out.buf, sv->out.len)
                              : rp__mpi_server_send(sv, sv->out.buf, sv->out.len);
        if (rc != RP_OK)
            return rc;
        lw->prog_seq = lw->seq[s];
        lw->prog_items = items;
    }
    return RP_OK;
}

/* Has a worker marked something for this rank? */
static bool any_dirty(const struct server *sv)
{
    for (int wd = 0; wd * 64 < sv->nlocal; wd++)
        if (atomic_load(&sv->bell->dirty[wd]))
            return true;
    return false;
}

/* Receives one message from the master. \return RP_OK, RP_DONE (STOP/TERMINATE
 * handled: leave the loop), or a failure. */
static int serve_message(struct server *sv, MPI_Message *msg, MPI_Status *st)
{
    int count = 0;
    MPI_Get_count(st, MPI_BYTE, &count);
    int tag = st->MPI_TAG;
    if (tag >= TAG_WORK0 && tag < TAG_WORK0 + sv->nlocal) {
        struct lworker *lw = &sv->w[tag - TAG_WORK0];
        int s = (int)(lw->nposted % DEPTH);
        rp__mpi_slot_drain(sv, lw, s);
        rp__mpi_slot_pick(lw, s);
        char *buf = lw->slot[s];
        char *tmp = NULL;
        if ((size_t)count > SLOT_BYTES / 2) {
            tmp = malloc((size_t)count);
            buf = tmp;
        }
        if (!buf || MPI_Mrecv(buf, count, MPI_BYTE, msg, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            free(tmp);
            return RP_EMPI;
        }
        int rc = rp__mpi_post_batch(sv, lw, s, tag, buf, (size_t)count);
        free(tmp);
        if (rc == RP_EPROTO)
            return rp__mpi_server_ctl(sv, RP__MSG_PROTO, (uint32_t)lw->id, RP_EPROTO);
        return rc;
    }
    if ((size_t)count > sv->rcap) {
        char *b = realloc(sv->rbuf, (size_t)count);
        if (!b)
            return RP_ENOMEM;
        sv->rbuf = b;
        sv->rcap = (size_t)count;
    }
    if (MPI_Mrecv(sv->rbuf, count, MPI_BYTE, msg, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return RP_EMPI;
    if (tag != TAG_CTL)
        return rp__mpi_server_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO);
    return rp__mpi_serve_ctl(sv, sv->rbuf, (size_t)count);
}

int rp__mpi_serve_ctl(struct server *sv, const char *buf, size_t count)
{
    rp__wire_hdr h;
    rp__rbuf r;
    int32_t status;
    uint64_t seq;
    if (rp__wire_open(buf, count, &h, &r) == RP_OK && h.kind == RP__MSG_CANCEL) {
        uint64_t job;
        uint32_t flags;
        if (rp__wire_get_cancel(&r, &h, &job, &flags) != RP_OK)
            return rp__mpi_server_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO);
        return rp__mpi_server_cancel(sv, job, flags);
    }
    if (rp__wire_open(buf, count, &h, &r) == RP_OK && h.kind == RP__MSG_BUNDLE) {
        int rc = rp__mpi_bundle_batches(sv, buf, count);
        if (rc == RP_EPROTO)
            return rp__mpi_server_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO);
        return rc;
    }
    if (rp__wire_open(buf, count, &h, &r) != RP_OK ||
        (h.kind != RP__MSG_STOP && h.kind != RP__MSG_TERMINATE) ||
        rp__wire_get_ctl(&r, &status, &seq) != RP_OK)
        return rp__mpi_server_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO);
    /* STOP comes after every job finished, TERMINATE at any time: either way the
     * children go now; results not sent yet are not wanted. BYE goes once every
     * child is sent SIGKILL (a killed process never returns to the program),
     * before they are reaped: an exit is kernel work about as long as a fork (it
     * unmaps what the fork mapped); 256 of them took 0.3-1.1 s on 2 cores, longer
     * than TERMINATE_WAIT_S, and the master need not wait for that. ALIVE first:
     * the master then knows this rank is not hung, and waits for its BYE as long
     * as after a STOP even when it terminates (the kills alone took a rank of 256
     * workers up to 0.8 s, losing its core to the processes it woke to die). */
    int rc = rp__mpi_server_ctl(sv, RP__MSG_ALIVE, 0, RP_OK); /* (the kills go on) */
    const char *slow = getenv("RP_TEST_SLOW_STOP"); /* tests only: kills that take S s */
    if (slow && h.kind == RP__MSG_TERMINATE)
        rp__mpi_sleep(atof(slow));
    sv->leaving = true;
    double t0 = rp__now();
    rp__mpi_signal_children(sv);
    for (int i = 0; i < sv->nlocal; i++)
        for (int s = 0; s < DEPTH; s++)
            rp__mpi_slot_drain(sv, &sv->w[i], s);
    int bye = rp__mpi_server_ctl(sv, RP__MSG_BYE, 0, RP_OK);
    rc = rc == RP_OK ? bye : rc;
    double t1 = rp__now();
    rp__mpi_kill_children(sv);
    rp__trace("mpi: rank %d: %d workers killed in %.3f s, BYE sent, reaped %.3f s later",
              sv->rank, sv->nlocal, t1 - t0, rp__now() - t1);
    return rc == RP_OK ? RP_DONE : rc;
}

/* The serving loop: until the master says STOP or TERMINATE. */
static int serve_loop(struct server *sv)
{
    double idle_since = rp__now(), nap = 20e-6, checked = 0, reported = 0, now = 0;
    double probed = 0;
    /* Turns spun idle since the clock was read: spinning for the next batch,
     * the clock is read every RANK_CLOCK_TURNS turns only (a read can cost as
     * much as the turn's poll, and the turn is what a batch waits to be seen) */
    unsigned spun = 0;
    rp__mpi_precise_naps();
    for (;;) {
        int events = 0;
        if (sv->pre) { /* receives posted in advance (prepost.c) */
            int rc = rp__mpi_prepost_poll(sv, &events);
            if (rc == RP_DONE)
                return RP_OK;
            if (rc != RP_OK)
                return rc;
        }
        /* with them, probe only for what they do not take, every CHECK_S */
        bool probe = !sv->pre || now - probed >= CHECK_S;
        if (probe)
            probed = now;
        for (int m = 0; m < 32 && probe; m++) {
            int flag = 0, tag = MPI_ANY_TAG;
            MPI_Message msg;
            MPI_Status st;
            if (sv->pre && (tag = rp__mpi_prepost_stray(sv)) < 0)
                break;
            if (MPI_Improbe(0, tag, sv->comm, &flag, &msg, &st) != MPI_SUCCESS)
                return RP_EMPI;
            if (!flag)
                break;
            events++;
            int rc = serve_message(sv, &msg, &st);
            if (rc == RP_DONE)
                return RP_OK;
            if (rc != RP_OK)
                return rc;
            if (sv->inproc)
                break; /* the batch ran here: its result goes out first */
        }
        /* a look for dead children is a system call: every CHECK_S, not at every
         * turn of a polling loop; the kernel's waitid walks every child, so while
         * it is used (a process without a pidfd, reap.c) a rank of many workers
         * looks less often (CHECK_S per 8 workers: 12.9 ms for 1,024), not more
         * system time per worker */
        if (spun == 0 || spun >= RANK_CLOCK_TURNS) {
            now = rp__now();
            spun = 0;
        }
        bool walks = sv->reap_fd < 0 || sv->unwatched > 0;
        bool check = now - checked >= CHECK_S * (walks ? 1 + sv->nlocal / 8 : 1);
        if (check)
            checked = now;
        int rc = serve_workers(sv, check, now, &events); /* (the turn's clock) */
        if (rc == RP_OK && now - reported >= PROGRESS_S) {
            reported = now;
            rc = report_progress(sv);
        }
        if (rc == RP_OK) /* the turn's results, in one message (bundle.c) */
            rc = rp__mpi_bundle_flush(sv);
        if (rc != RP_OK)
            return rc;
        /* holding batches: the master hears from this rank at least every ALIVE_S,
         * however long the tasks (silence means gone: stranded.c) */
        if (now - sv->alive_at >= ALIVE_S) {
            sv->alive_at = now;
            bool holding = sv->posted_total != sv->sent_total;
            if (holding && (rc = rp__mpi_server_ctl(sv, RP__MSG_ALIVE, 0, RP_OK)) != RP_OK)
                return rc;
        }
        if (events) {
            idle_since = rp__now();
            nap = 20e-6;
            spun = 0;
            continue;
        }
        /* While a child computes, sleep on the bell (the child rings it when
         * done) at once: the core is the child's; poll briefly first only when
         * the rank and its child each have a core (pair_spin), or, yielding, for
         * a few children (SPIN_WORKERS_MAX: a rank of hundreds that yields loses
         * its turn to them, one that sleeps is woken ahead of them) or a lone
         * child on a node with a core per rank (rp__mpi_pair_polls). Idle, poll
         * MPI for longer (the master may be sending), then take short naps. */
        bool computing = sv->posted_total != sv->sent_total;
        double spin = !computing ? SPIN_IDLE_S : rp__mpi_pair_polls(sv) ? SPIN_BUSY_S : 0;
        if (now - idle_since < spin) {
            if (computing) {
                rp__mpi_pair_pause();
                spun = 0;
            } else {
                rp__mpi_idle_pause();
                spun = rp__mpi_yield_when_idle ? 0 : spun + 1;
            }
            continue;
        }
        spun = 0;
        uint32_t b = atomic_load(&sv->bell->bell);
        atomic_store(&sv->bell->rank_sleeps, 1);
        if (!any_dirty(sv)) {
            if (computing)
                rp__futex_wait(&sv->bell->bell, b, nap);
            else
                rp__mpi_sleep(nap);
        }
        atomic_store(&sv->bell->rank_sleeps, 0);
        nap = fmin(nap * 2, SLEEP_MAX_S);
    }
}

static int serve(struct server *sv)
{
    rp__mpi_prepost_init(sv);
    int rc = serve_loop(sv);
    rp__mpi_prepost_free(sv);
    return rc;
}

/* Can this node hold n worker processes per rank? Each rank of the job on this
 * node (OMPI_COMM_WORLD_LOCAL_SIZE) runs about as many, and every process counts
 * against the user's RLIMIT_NPROC (ulimit -u) and the system's pid_max.
 * \return NULL, or why not (written to buf). */
static const char *node_limit(const struct server *sv, int n, char *buf, size_t len)
{
    if (n <= 0)
        return NULL;
    const char *ls = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
    long local = ls && atol(ls) > 0 ? atol(ls) : 1;
    long want = local * (n + 1L); /* the worker processes and the ranks */
    if (sv->lead_ids) /* a leader: the node's worker processes are all its own */
        want = n + local;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (unsigned long long)want > (unsigned long long)rl.rlim_cur) {
        snprintf(buf, len, "rank %d on %s: %d worker processes on each of the %ld ranks of "
                           "this node make about %ld processes, more than RLIMIT_NPROC (%llu) "
                           "allows", sv->rank, sv->host, n, local, want,
                 (unsigned long long)rl.rlim_cur);
        return buf;
    }
    long pid_max = 0;
    FILE *f = fopen("/proc/sys/kernel/pid_max", "r");
    if (f) {
        if (fscanf(f, "%ld", &pid_max) != 1)
            pid_max = 0;
        fclose(f);
    }
    if (pid_max > 0 && want > pid_max / 2) {
        snprintf(buf, len, "rank %d on %s: %d worker processes on each of the %ld ranks of "
                           "this node make about %ld processes, more than half the process "
                           "ids of the system (pid_max %ld)", sv->rank, sv->host, n, local,
                 want, pid_max);
        return buf;
    }
    return NULL;
}

/* The pool's settings (HELLO), or the master's early verdict (GO: *go set, and
 * the master takes no further part in the start-up). */
static int receive_hello(struct server *sv, bool *go)
{
    size_t len = 0;
    int rc = rp__mpi_bcast_msg(sv->comm, NULL, &sv->rbuf, &sv->rcap, &len);
    if (rc != RP_OK)
        return rc;
    rp__wire_hdr h;
    rp__rbuf r;
    if (rp__wire_open(sv->rbuf, len, &h, &r) != RP_OK)
        return RP_EPROTO;
    if (h.kind == RP__MSG_GO) {
        *go = true; /* the master gave up before starting */
        int32_t status;
        uint64_t seq;
        if (rp__wire_get_ctl(&r, &status, &seq) != RP_OK)
            return RP_EPROTO;
        return status < 0 ? status : RP_EPROTO;
    }
    if (h.kind != RP__MSG_HELLO || rp__wire_get_hello(&r, &sv->hello) != RP_OK)
        return RP_EPROTO;
    if (sv->hello.initarg_size > 0) {
        sv->initarg = malloc((size_t)sv->hello.initarg_size);
        if (!sv->initarg)
            return RP_ENOMEM;
        memcpy(sv->initarg, sv->hello.initarg, (size_t)sv->hello.initarg_size);
    }
    sv->hello.initarg = sv->initarg;
    sv->inproc = sv->hello.flags & RP__HELLO_INPROCESS;
    return RP_OK;
}

/* This rank's workers and their shared memory (a failed mapping is reported per
 * worker, in its READY). */
static int map_workers(struct server *sv)
{
    int nranks = (int)sv->hello.nranks, nworkers = (int)sv->hello.nworkers;
    int me = sv->rank - 1;
    sv->nlocal = me < nranks ? nworkers / nranks + (me < nworkers % nranks) : 0;
    if (sv->hello.flags & RP__HELLO_LEADERS) /* (leader.c) */
        sv->nlocal = sv->nlead;
    sv->bell = shared_map(sizeof *sv->bell);
    sv->w = calloc((size_t)(sv->nlocal > 0 ? sv->nlocal : 1), sizeof *sv->w);
    if (!sv->bell || !sv->w)
        return RP_ENOMEM;
    rp__mpi_reap_init(sv);
    /* One mapping for every worker's control page, one for all their regions: a
     * fork copies one mapping, not five per worker (with hundreds of workers per
     * rank, copying the others' mappings made each fork slower than the last). */
    size_t n = (size_t)(sv->nlocal > 0 ? sv->nlocal : 0);
    sv->ctls_bytes = rp__mpi_align(n * sizeof(struct wctl), 4096);
    sv->slots_bytes = n * DEPTH * SLOT_BYTES;
    if (n > 0) {
        sv->ctls = shared_map(sv->ctls_bytes);
        sv->slots = areas_map(sv->slots_bytes);
    }
    bool mapped = sv->ctls && sv->slots;
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        lw->id = sv->lead_ids ? sv->lead_ids[i] : me + i * nranks;
        lw->local = i;
        lw->ctl = mapped ? &((struct wctl *)sv->ctls)[i] : NULL;
        for (int s = 0; s < DEPTH; s++) {
            lw->slot[s] = mapped ? sv->slots + ((size_t)i * DEPTH + s) * SLOT_BYTES : NULL;
            lw->req[s][0] = lw->req[s][1] = MPI_REQUEST_NULL;
        }
    }
    return RP_OK;
}

/* Starts worker lw (its process, or in-process its initializer) unless `refuse`
 * (RP_OK or a code, with why) says it must not; its READY goes in *m, but for a
 * process started (m->status == RP_OK, lw->pid set): start_wait tells. */
static void start_worker(struct server *sv, struct lworker *lw, int refuse, const char *why,
                         rp__wire_ready *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->host, sizeof m->host, "%s", sv->host);
    bool mapped = lw->ctl != NULL;
    for (int s = 0; s < DEPTH; s++)
        mapped = mapped && lw->slot[s] != NULL;
    if (refuse != RP_OK) {
        m->status = refuse;
        rp__error_set(&m->err, refuse, 0, lw->id, sv->host, "%s", why);
    } else if (!mapped) {
        m->status = RP_ENOMEM;
        rp__error_set(&m->err, RP_ENOMEM, 0, lw->id, sv->host,
                      "rank %d on %s: cannot map the transfer area", sv->rank, sv->host);
    } else if (sv->inproc) {
        rp__mpi_inproc_init(sv, lw, m);
    } else {
        atomic_store(&lw->ctl->state, CHILD_STARTING);
        if (rp__mpi_spawn_child(sv, lw) != RP_OK) {
            m->status = RP_ESYS;
            rp__error_set(&m->err, RP_ESYS, 0, lw->id, sv->host,
                          "rank %d on %s: fork failed: %s", sv->rank, sv->host,
                          strerror(errno));
        }
    }
}

/* The READY of a worker whose process start_worker started: once it is ready. */
static void start_wait(struct server *sv, struct lworker *lw, rp__wire_ready *m)
{
    if (m->status != RP_OK || sv->inproc || lw->pid <= 0)
        return;
    m->status = rp__mpi_await_child(sv, lw, &m->err);
    m->pid = (int32_t)lw->pid;
}

/* Starts every worker of this rank at once (their initializers run side by side),
 * then collects their READYs into a blob for the master. */
static int start_workers(struct server *sv, int refuse, const char *why, rp__wbuf *blob)
{
    rp__wire_ready *m = calloc((size_t)(sv->nlocal > 0 ? sv->nlocal : 1), sizeof *m);
    if (!m)
        return RP_ENOMEM;
    double t0 = rp__now();
    for (int i = 0; i < sv->nlocal; i++)
        start_worker(sv, &sv->w[i], refuse, why, &m[i]);
    double t1 = rp__now();
    int rc = RP_OK;
    for (int i = 0; i < sv->nlocal && rc == RP_OK; i++) {
        start_wait(sv, &sv->w[i], &m[i]);
        if (rp__wire_put_ready(&sv->out, (uint32_t)sv->w[i].id, &m[i]) != RP_OK ||
            rp__mpi_blob_add(blob, &sv->out) != RP_OK)
            rc = RP_ENOMEM;
    }
    rp__trace("mpi: rank %d started %d workers: forks %.3f s, all ready %.3f s later",
              sv->rank, sv->nlocal, t1 - t0, rp__now() - t1);
    free(m);
    return rc;
}

/* A serving rank's part of rp_pool_create: the settings, the workers, READY for
 * each, the master's verdict, then serving. */
int rp__mpi_server_run(struct server *sv, rp_error_t *err)
{
    bool go = false;
    int rc = receive_hello(sv, &go);
    if (go)
        return rc;
    int lrc = rp__mpi_server_leaders(sv); /* (collective: before any return) */
    const char *step = rc != RP_OK ? "the pool's settings" : "the node leaders' step";
    if (rc == RP_OK)
        rc = lrc;
    if (rc != RP_OK) { /* the master waits for every rank's answer: none from here */
        rp__trace("mpi: rank %d on %s gives no start-up answer: %s: %s", sv->rank, sv->host,
                  step, rp_strerror(rc));
        int32_t status;
        if (rp__mpi_gather_blobs(sv->comm, NULL, NULL, NULL, NULL) == RP_OK)
            rp__mpi_bcast_status(sv->comm, &status);
        return rc;
    }
    rp__mpi_decide_yield(sv->inproc);
    if (sv->inproc)
        rp__mpi_inproc_handlers();
    /* refused before any process starts: a task's object this rank cannot find,
     * more processes than the node holds */
    int refuse = RP_OK;
    char why[300] = "", limit[300];
    if (sv->hello.has_init) {
        rp__anyfn fn;
        char what[300] = "";
        refuse = rp__fnref_resolve(&sv->hello.init, &fn, what, sizeof what);
        sv->init = (rp_init_fn)fn;
        if (refuse != RP_OK)
            snprintf(why, sizeof why, "initializer: rank %d on %s: %s", sv->rank, sv->host,
                     what);
    }
    /* (a rank that cannot set up its workers still answers, for none of them) */
    int mrc = map_workers(sv);
    const char *too_many = node_limit(sv, sv->nlocal, limit, sizeof limit);
    if (too_many) {
        refuse = RP_EINVAL;
        snprintf(why, sizeof why, "%s", too_many);
    }
    if (sv->nlocal > RANK_WORKERS_MAX) { /* a leader, for its node */
        refuse = RP_EINVAL;
        snprintf(why, sizeof why, "rank %d on %s: with RP_MPI_LEADERS=1 this node's leader "
                 "would host %d workers, more than %d", sv->rank, sv->host, sv->nlocal,
                 RANK_WORKERS_MAX);
    }
    rp__wbuf blob;
    rp__wbuf_init(&blob);
    if (mrc == RP_OK)
        mrc = start_workers(sv, refuse, why, &blob);
    double t0 = rp__now();
    rc = rp__mpi_gather_blobs(sv->comm, mrc == RP_OK ? &blob : NULL, NULL, NULL, NULL);
    rp__wbuf_free(&blob);
    int32_t status = RP_EMPI;
    if (rc == RP_OK)
        rc = rp__mpi_bcast_status(sv->comm, &status);
    rp__trace("mpi: rank %d waited %.3f s for the other ranks' answers and the verdict",
              sv->rank, rp__now() - t0);
    if (rc != RP_OK)
        return rc;
    if (status != RP_OK) {
        rp__error_set(err, status, 0, -1, sv->host, "the pool could not start (%s)",
                      rp_strerror(status));
        return status;
    }
    if (mrc != RP_OK)
        return mrc;
    return serve(sv);
}
