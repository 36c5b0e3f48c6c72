/* A serving rank's workers: the child process that runs a worker's batches (it
 * never calls MPI), its start and its supervision by the rank, and the in-process
 * mode (RP_MPI_ISOLATE=0) where the rank runs the tasks itself.
 *
 * When a child dies inside a batch, the rank sends the items it finished (their
 * outputs and records) and a DIED message naming the item it was running and its
 * wait status; that batch is over for this rank, and the master puts its unstarted
 * rest back for any worker (the core's dead-worker policy). A replacement child
 * takes the next posted batches. A replacement that cannot start makes the worker
 * gone: its batches, and every later one, are handed back unrun. */
#include "backend_mpi.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- inside the child -------------------------------------------------------------- */

/* The batch a child (or the rank, in-process) runs: the record callbacks' argument. */
struct child_run {
    struct lworker *lw;
    int             s;
};

/* Tests only (RP_TEST_DIE_IN_RECORD=N): the first process of worker 0 is killed
 * halfway through writing its N-th record (a failure or a variable-size output's
 * header) into the record area: its first half is in place, the rest not. With
 * N < 0, just after its -N-th failure record is committed (before the next item). */
static long die_record, records_written;

static void die_in_record(void *at, const void *rec, size_t size)
{
    if (__builtin_expect(die_record > 0, 0) && ++records_written == die_record) {
        memcpy(at, rec, size / 2);
        raise(SIGKILL);
    }
}

static void child_on_fail(void *arg, const rp_error_t *e)
{
    struct child_run *cr = arg;
    size_t size = rp__wire_error_size(e);
    void *p = rp__mpi_record_room(cr->lw, cr->s, size, 0);
    if (!p)
        return;
    if (die_record != 0) {
        char rec[RP__WIRE_ERROR_MAX];
        rp__wire_error_write(rec, e);
        die_in_record(p, rec, size);
    }
    rp__wire_error_write(p, e);
    rp__mpi_record_commit(cr->lw, cr->s, size);
    if (__builtin_expect(die_record < 0, 0) && ++records_written == -die_record)
        raise(SIGKILL);
}

/* rp_output(): room for a variable-size output in the record area. It leaves room
 * for one failure, so that the failure of the item that wrote it can always be
 * recorded. */
static void *child_output(void *arg, size_t index, size_t size)
{
    struct child_run *cr = arg;
    struct slotdesc *sd = &cr->lw->ctl->slot[cr->s];
    char *base = cr->lw->slot[cr->s];
    if (size > sd->cap) /* can never fit; also keeps the sums below from wrapping */
        return NULL;
    if (sd->var_last && sd->var_index == index) /* replaced: the old one is dead */
        rp__wire_var_kill(base + sd->var_last - 1);
    size_t padded = rp__mpi_align(size, 8);
    if (padded < size)
        return NULL;
    size_t before = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    char *p = rp__mpi_record_room(cr->lw, cr->s, RP__WIRE_VAR_HDR + padded, RP__WIRE_ERROR_MAX);
    if (!p)
        return NULL;
    /* Where it is, before it is committed: if the process dies from here on,
     * the rank kills the record (harmless while it is not committed). */
    sd->var_index = index;
    sd->var_last = before + 1;
    if (die_record > 0) {
        char hdr[RP__WIRE_VAR_HDR];
        rp__wire_var_write(hdr, index, size);
        die_in_record(p, hdr, sizeof hdr);
    }
    rp__wire_var_write(p, index, size);
    memset(p + RP__WIRE_VAR_HDR + size, 0, padded - size);
    rp__mpi_record_commit(cr->lw, cr->s, RP__WIRE_VAR_HDR + padded);
    return p + RP__WIRE_VAR_HDR;
}

static void ring_bell(struct server *sv, struct lworker *lw)
{
    rp__mpi_mark(sv, lw);
    atomic_fetch_add(&sv->bell->bell, 1);
    if (atomic_load(&sv->bell->rank_sleeps))
        rp__futex_wake(&sv->bell->bell, INT_MAX);
}

/* In the child: waits until the rank has sent the records of slot s and emptied
 * the area (in-process mode: sends them itself). */
static void flush_records(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    if (sv->inproc) {
        rp__mpi_send_part(sv, lw, s);
        return;
    }
    atomic_store(&sd->flush, 1);
    ring_bell(sv, lw);
    while (atomic_load(&sd->flush)) {
        rp__futex_wait(&sd->flush, 1, 0.1);
        if (getppid() == 1)
            _exit(0);
    }
}

/* How many items may run before the records are sent: each may fail (one record
 * of at most RP__WIRE_ERROR_MAX bytes); the area is flushed first when it is more
 * than half full. An item of a variable-size map also writes its output there, of
 * any size: those run one at a time, each with at least half the area. */
static size_t piece_items(struct server *sv, struct lworker *lw, int s, size_t want)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    size_t area = sd->cap - (sd->res_off + RP__RESULT_FIXED);
    if (sd->rec_len > 0 && sd->rec_len > area / 2)
        flush_records(sv, lw, s);
    if (sd->flags & RP__JOB_VAR)
        return 1;
    size_t fit = rp__mpi_record_free(sd) / RP__WIRE_ERROR_MAX;
    return want < fit ? want : fit > 0 ? fit : 1;
}

bool rp__mpi_run_slot(struct server *sv, struct lworker *lw, rp_ctx_t *ctx, uint32_t k,
                      long *tasks, long max_tasks)
{
    struct wctl *ctl = lw->ctl;
    int s = (int)(k % DEPTH);
    struct slotdesc *sd = &ctl->slot[s];
    if (lw->slot[s] != sd->base) /* the rank moves regions between slots */
        lw->slot[s] = sd->base;
    struct child_run cr = { lw, s };
    ctx->output = (sd->flags & RP__JOB_VAR) ? child_output : NULL;
    ctx->output_arg = &cr;
    atomic_store(&ctl->cur, SIZE_MAX); /* no item of this batch yet */
    atomic_store(&ctl->running_seq, k + 1);
    size_t chunk = sd->chunk ? sd->chunk : sd->count;
    const char *in = lw->slot[s] + sd->in_off;
    char *out = sd->out_size ? lw->slot[s] + sd->out_off : NULL;
    bool whole = true;
    ctx->stop = &sd->stop; /* rp_result_cancel: the rank reports the rest */
    while (sd->resume < sd->count) {
        size_t off = sd->resume;
        /* chunks are counted from the batch's start */
        size_t len = chunk - off % chunk;
        if (len > sd->count - off)
            len = sd->count - off;
        len = piece_items(sv, lw, s, len);
        if (max_tasks > 0 && len > (size_t)(max_tasks - *tasks))
            len = (size_t)(max_tasks - *tasks); /* then it retires */
        sd->var_last = 0;
        /* (a batch that is its whole job is not timed: nobody sizes its rest) */
        double t0 = sd->untimed ? 0 : rp__now();
        if (sd->flags & RP__JOB_BATCH) { /* batch tasks: no per-item stop or limit */
            ctx->ran = len;
            rp__worker_run_batch(ctx, sd->fn, in + off * sd->in_size, sd->in_size,
                                 out ? out + off * sd->out_size : NULL, sd->out_size,
                                 sd->start + off, len, &ctl->cur, child_on_fail, &cr);
        } else if (__builtin_expect(sd->timeout_ns || sd->retries, 0)) { /* limit, retries */
            rp__runctl rc = { &ctl->deadline, sv->inproc ? 0 : sd->timeout_ns, sd->retries };
            rp__worker_run_ctl(ctx, sd->fn, in + off * sd->in_size, sd->in_size,
                               out ? out + off * sd->out_size : NULL, sd->out_size,
                               sd->start + off, len, &ctl->cur, child_on_fail, &cr, &rc);
        } else {
            rp__worker_run(ctx, sd->fn, in + off * sd->in_size, sd->in_size,
                           out ? out + off * sd->out_size : NULL, sd->out_size,
                           sd->start + off, len, &ctl->cur, child_on_fail, &cr);
        }
        if (!sd->untimed)
            sd->compute_ns += (uint64_t)((rp__now() - t0) * 1e9);
        sd->resume = off + ctx->ran;
        *tasks += (long)ctx->ran;
        if (ctx->ran < len)
            break; /* canceled: the batch ends here */
        if (max_tasks > 0 && *tasks >= max_tasks && sd->resume < sd->count) {
            whole = false;
            break;
        }
    }
    atomic_store(&ctl->running_seq, 0);
    ctx->output = NULL;
    ctx->stop = NULL;
    /* the rank may be deciding to kill this child for a canceled batch */
    atomic_thread_fence(memory_order_seq_cst);
    for (uint32_t v; (v = atomic_load_explicit(&ctl->killreq, memory_order_relaxed)) != 0;)
        rp__futex_wait(&ctl->killreq, v, 0.1);
    return whole;
}

/* The child's set-up: default signal actions (a task's crash must be the
 * default action, not MPI's handlers), death with the rank, binding. */
static void child_setup(struct server *sv, struct lworker *lw)
{
    int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGINT, SIGPIPE,
                   SIGCHLD };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() == 1)
        _exit(0);
    if (sv->hello.flags & RP__HELLO_BIND) {
        int base = sv->rank, lsize;
        rp__local_rank_size(&base, &lsize);
        rp__topo_bind(base * sv->nlocal + lw->local);
    }
}

/* Waits for batch k to be posted: spins a little (if `spin`), then sleeps on the
 * futex. */
static void child_await(struct wctl *ctl, uint32_t k, bool spin)
{
    double t0 = rp__now();
    while (atomic_load(&ctl->posted) == k) {
        if (spin && rp__now() - t0 < SPIN_BUSY_S * 4) {
            rp__mpi_pair_pause();
            continue;
        }
        atomic_store(&ctl->child_sleeps, 1);
        if (atomic_load(&ctl->posted) == k)
            rp__futex_wait(&ctl->posted, k, CHILD_WAIT_S);
        atomic_store(&ctl->child_sleeps, 0);
        if (getppid() == 1)
            _exit(0);
    }
}

static void child_main(struct server *sv, struct lworker *lw)
{
    struct wctl *ctl = lw->ctl;
    rp__mpi_reap_in_child(sv);
    child_setup(sv, lw);
    const char *die = getenv("RP_TEST_DIE_IN_RECORD");
    if (die && lw->id == 0 && lw->spawns == 0)
        die_record = atol(die);
    rp_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.worker = lw->id;
    ctx.host = sv->host;
    if (sv->init) {
        rp_error_t e;
        if (rp__worker_init(&ctx, sv->init, sv->initarg, &e) != RP_OK) {
            ctl->init_err = e;
            atomic_store(&ctl->state, CHILD_INIT_FAILED);
            rp__mpi_mark(sv, lw);
            atomic_fetch_add(&sv->bell->bell, 1);
            rp__futex_wake(&sv->bell->bell, INT_MAX);
            _exit(0);
        }
    }
    atomic_store(&ctl->state, CHILD_READY);
    ring_bell(sv, lw);

    long tasks = 0;
    long max_tasks = (long)sv->hello.max_tasks;
    /* The first batch is not spun for: at a pool's start every process of the
     * rank would spin at once, on the cores the rank still forks on, for a batch
     * that comes only once the whole pool is up. Nor, without a core for each
     * (pair_spin), is any batch of a rank with many workers (SPIN_WORKERS_MAX). */
    for (uint32_t k = atomic_load(&ctl->completed), first = k;; k++) {
        child_await(ctl, k, k != first && rp__mpi_pair_polls(sv));
        if (!rp__mpi_run_slot(sv, lw, &ctx, k, &tasks, max_tasks)) {
            atomic_store(&ctl->state, CHILD_RETIRING);
            _exit(0);
        }
        atomic_store(&ctl->completed, k + 1);
        ring_bell(sv, lw);
        if (max_tasks > 0 && tasks >= max_tasks) {
            atomic_store(&ctl->state, CHILD_RETIRING);
            _exit(0);
        }
    }
}

/* ---- the rank's side: start and stop ---------------------------------------------- */

int rp__mpi_spawn_child(struct server *sv, struct lworker *lw)
{
    atomic_store(&lw->ctl->running_seq, 0);
    atomic_store(&lw->ctl->killreq, 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return RP_ESYS;
    if (pid == 0) {
        child_main(sv, lw);
        _exit(0);
    }
    lw->pid = pid;
    lw->spawns++;
    rp__mpi_reap_watch(sv, lw);
    return RP_OK;
}

int rp__mpi_await_child(struct server *sv, struct lworker *lw, rp_error_t *err)
{
    for (;;) {
        int st = atomic_load(&lw->ctl->state);
        if (st == CHILD_READY)
            return RP_OK;
        if (st == CHILD_INIT_FAILED) {
            *err = lw->ctl->init_err;
            waitpid(lw->pid, NULL, 0);
            lw->pid = 0;
            rp__mpi_reap_forget(sv, lw);
            return RP_EINIT;
        }
        int status;
        pid_t r = waitpid(lw->pid, &status, WNOHANG);
        if (r == lw->pid || (r < 0 && errno == ECHILD)) {
            if (r != lw->pid)
                status = -1; /* not known */
            lw->pid = 0;
            rp__mpi_reap_forget(sv, lw);
            if (atomic_load(&lw->ctl->state) == CHILD_INIT_FAILED) {
                *err = lw->ctl->init_err;
                return RP_EINIT;
            }
            char how[128];
            rp__describe_status(how, sizeof how, status);
            rp__error_set(err, RP_EINIT, 0, lw->id, sv->host,
                          "worker %d (rank %d on %s) %s while starting", lw->id, sv->rank,
                          sv->host, how);
            if (status >= 0 && WIFSIGNALED(status))
                err->signal = WTERMSIG(status);
            if (status >= 0 && WIFEXITED(status))
                err->exit_status = WEXITSTATUS(status);
            return RP_EINIT;
        }
        uint32_t b = atomic_load(&sv->bell->bell);
        if (atomic_load(&lw->ctl->state) == CHILD_STARTING)
            rp__futex_wait(&sv->bell->bell, b, 0.002);
    }
}

void rp__mpi_kill_child(struct server *sv, struct lworker *lw)
{
    if (lw->pid > 0) {
        kill(lw->pid, SIGKILL);
        waitpid(lw->pid, NULL, 0);
        lw->pid = 0;
    }
    rp__mpi_reap_forget(sv, lw);
}

void rp__mpi_signal_children(struct server *sv)
{
    for (int i = 0; i < sv->nlocal; i++)
        if (sv->w[i].pid > 0)
            kill(sv->w[i].pid, SIGKILL);
}

void rp__mpi_kill_children(struct server *sv)
{
    rp__mpi_signal_children(sv);
    for (int i = 0; i < sv->nlocal; i++)
        rp__mpi_kill_child(sv, &sv->w[i]);
}

/* ---- the rank's side: deaths ---------------------------------------------------------- */

/* Whether the record area of slot s holds an error record of item index (the item
 * failed, so it was over, before its process died). Also counts the records
 * again: the count is written after the length that covers a new record, so a
 * process killed in between left it one short. */
static bool recorded_failure(struct lworker *lw, int s, size_t index)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp__rbuf r;
    rp__rbuf_init(&r, lw->slot[s] + sd->res_off + RP__RESULT_FIXED, sd->rec_len);
    int kind;
    rp_error_t e;
    uint64_t idx, size;
    const void *data;
    bool found = false;
    size_t n = 0;
    while (rp__wire_next_record(&r, &kind, &e, &idx, &data, &size) == 1) {
        n++;
        if (kind == RP__REC_ERROR && e.index == index)
            found = true;
    }
    sd->nrec = n;
    return found;
}

/* The child died inside batch k (slot s): the items it finished go to the master
 * (with their records), then a DIED message with the item it was running, or
 * with RP__DIED_IDLE the first item it had not started. The batch is over here. */
static int report_death(struct server *sv, struct lworker *lw, uint32_t k, int status,
                        pid_t pid)
{
    struct wctl *ctl = lw->ctl;
    int s = (int)(k % DEPTH);
    struct slotdesc *sd = &ctl->slot[s];
    size_t cur = atomic_load(&ctl->cur);
    bool running = cur >= sd->start + sd->resume && cur < sd->start + sd->count &&
                   !recorded_failure(lw, s, cur);
    /* killed by the rank for a time limit: for this item (it timed out), or for
     * one that ended just before (this one did not fail: it runs again) */
    uint32_t how = running ? 0 : RP__DIED_IDLE;
    if (running && lw->kill_deadline)
        how = atomic_load(&ctl->deadline) == lw->kill_deadline ? RP__DIED_TIMEOUT
                                                               : RP__DIED_IDLE;
    if (running) {
        if (sd->var_last && sd->var_index == cur) /* an output the dead item began */
            rp__wire_var_kill(lw->slot[s] + sd->var_last - 1);
        sd->resume = cur - sd->start; /* the items before it are done */
    } else if (cur >= sd->start + sd->resume && cur < sd->start + sd->count) {
        sd->resume = cur + 1 - sd->start; /* it failed, and died after */
    }
    atomic_store(&sd->flush, 0);
    if (sd->resume == sd->count) { /* every item done: an ordinary end */
        atomic_store(&ctl->completed, k + 1);
        return RP_OK;
    }
    int rc = rp__mpi_send_part(sv, lw, s);
    rp__wire_died m = { .job = lw->job[s], .seq = lw->seq[s],
                        .index = sd->start + sd->resume, .status = status,
                        .pid = (int32_t)pid };
    if (rc == RP_OK)
        rc = rp__wire_put_died(&sv->out, (uint32_t)lw->id, how, &m);
    if (rc == RP_OK) /* (after the results before it) */
        rc = rp__mpi_server_send(sv, sv->out.buf, sv->out.len);
    rp__trace("mpi: worker %d (rank %d, pid %d) ended (status 0x%x) in batch %llu at item "
              "%llu%s", lw->id, sv->rank, (int)pid, (unsigned)status,
              (unsigned long long)m.seq, (unsigned long long)m.index,
              running ? "" : ", between items");
    sd->sent = sd->resume = sd->count;
    atomic_store(&ctl->completed, k + 1);
    rp__mpi_set_nsent(sv, lw, k + 1);
    return rc;
}

static int init_failed(struct server *sv, struct lworker *lw)
{
    char why[300];
    snprintf(why, sizeof why, "its replacement's initializer failed: %s",
             lw->ctl->init_err.message);
    return rp__mpi_worker_gone(sv, lw, why);
}

int rp__mpi_child_ended(struct server *sv, struct lworker *lw, int status)
{
    struct wctl *ctl = lw->ctl;
    pid_t pid = lw->pid;
    lw->pid = 0;
    rp__mpi_reap_forget(sv, lw);
    bool retiring = atomic_load(&ctl->state) == CHILD_RETIRING && status >= 0 &&
                    WIFEXITED(status) && WEXITSTATUS(status) == 0;
    /* what it finished goes first, in order */
    int rc = rp__mpi_send_finished(sv, lw, NULL);
    uint32_t k = atomic_load(&ctl->completed);
    if (rc == RP_OK && !retiring && atomic_load(&ctl->running_seq) == k + 1 && k < lw->nposted)
        rc = report_death(sv, lw, k, status, pid);
    if (rc == RP_OK)
        rc = rp__mpi_send_finished(sv, lw, NULL);
    lw->kill_deadline = 0; /* the next child starts untimed */
    atomic_store(&ctl->deadline, 0);
    if (rc != RP_OK || lw->gone)
        return rc;
    if (atomic_load(&ctl->state) == CHILD_INIT_FAILED) /* no endless respawning */
        return init_failed(sv, lw);
    /* Killed inside its initializer: started again, a few times in a row at most
     * (an initializer that crashes every time would make processes forever). */
    if (atomic_load(&ctl->state) != CHILD_STARTING)
        lw->init_deaths = 0;
    else if (++lw->init_deaths > INIT_DEATHS_MAX)
        return rp__mpi_worker_gone(sv, lw, "its replacement died in its initializer "
                                           "again and again");
    atomic_store(&ctl->state, CHILD_STARTING);
    if (rp__mpi_spawn_child(sv, lw) != RP_OK)
        return rp__mpi_worker_gone(sv, lw, "could not fork a new worker process");
    return RP_OK;
}

int rp__mpi_worker_gone(struct server *sv, struct lworker *lw, const char *why)
{
    if (lw->pid > 0 && atomic_load(&lw->ctl->state) == CHILD_INIT_FAILED) {
        waitpid(lw->pid, NULL, 0);
        lw->pid = 0;
        rp__mpi_reap_forget(sv, lw);
    }
    lw->gone = true;
    rp__trace("mpi: worker %d on rank %d is gone: %s", lw->id, sv->rank, why);
    int rc = rp__mpi_send_finished(sv, lw, NULL);
    for (uint32_t k = atomic_load(&lw->ctl->completed); rc == RP_OK && k < lw->nposted; k++) {
        int s = (int)(k % DEPTH);
        struct slotdesc *sd = &lw->ctl->slot[s];
        atomic_store(&sd->flush, 0);
        rc = rp__mpi_send_part(sv, lw, s); /* what a retired process did of it */
        if (rc == RP_OK)
            rc = rp__mpi_send_returned(sv, lw, s);
        rp__mpi_slot_drain(sv, lw, s);
    }
    atomic_store(&lw->ctl->completed, lw->nposted);
    rp__mpi_set_nsent(sv, lw, lw->nposted);
    return rc;
}

/* ---- in-process mode (RP_MPI_ISOLATE=0) ------------------------------------------
 * Tasks run in the rank itself: no hand-off to a worker process, so the shortest
 * round trips, but a crashing task takes the rank and so the MPI job down. It
 * then says so first: rank, host, worker, item and signal, written with write(2)
 * from the signal handler, before the signal's default action (the one message
 * not made by rp__describe_status, which is not async-signal-safe). */

static struct server  *crash_sv;
static struct lworker *crash_lw;

static char *put_str(char *p, char *end, const char *s)
{
    while (*s && p < end)
        *p++ = *s++;
    return p;
}

static char *put_num(char *p, char *end, unsigned long long v)
{
    char d[24];
    int n = 0;
    do
        d[n++] = (char)('0' + v % 10);
    while ((v /= 10) > 0);
    while (n > 0 && p < end)
        *p++ = d[--n];
    return p;
}

static void inproc_crash(int sig)
{
    char msg[512], *p = msg, *end = msg + sizeof msg - 1;
    p = put_str(p, end, "rankpool: worker ");
    p = put_num(p, end, crash_lw ? (unsigned long long)crash_lw->id : 0);
    p = put_str(p, end, " (rank ");
    p = put_num(p, end, crash_sv ? (unsigned long long)crash_sv->rank : 0);
    p = put_str(p, end, " on ");
    p = put_str(p, end, crash_sv ? crash_sv->host : "?");
    p = put_str(p, end, ") was killed by signal ");
    p = put_num(p, end, (unsigned long long)sig);
    p = put_str(p, end, " while running item ");
    p = put_num(p, end, crash_lw ? (unsigned long long)atomic_load(&crash_lw->ctl->cur) : 0);
    p = put_str(p, end, "; tasks run inside the ranks (RP_MPI_ISOLATE=0), so the MPI job "
                        "stops\n");
    ssize_t w = write(STDERR_FILENO, msg, (size_t)(p - msg));
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

void rp__mpi_inproc_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = inproc_crash;
    sa.sa_flags = SA_RESETHAND | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT };
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++)
        sigaction(sigs[i], &sa, NULL);
}

void rp__mpi_inproc_init(struct server *sv, struct lworker *lw, rp__wire_ready *m)
{
    lw->ctx.worker = lw->id;
    lw->ctx.host = sv->host;
    crash_sv = sv;
    crash_lw = lw;
    m->status = rp__worker_init(&lw->ctx, sv->init, sv->initarg, &m->err);
    crash_lw = NULL;
    m->pid = (int32_t)getpid();
    atomic_store(&lw->ctl->state, m->status == RP_OK ? CHILD_READY : CHILD_INIT_FAILED);
}

/* Runs the batch just posted to lw, here, and marks it completed. */
void rp__mpi_inproc_run(struct server *sv, struct lworker *lw)
{
    uint32_t k = lw->nposted - 1;
    crash_sv = sv;
    crash_lw = lw;
    rp__mpi_run_slot(sv, lw, &lw->ctx, k, &lw->tasks, 0);
    crash_lw = NULL;
    atomic_store(&lw->ctl->completed, k + 1);
    rp__mpi_mark(sv, lw);
}
