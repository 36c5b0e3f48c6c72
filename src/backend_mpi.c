/* The mpi backend: the pool's workers are MPI ranks (started by mpirun/srun).
 *
 * Roles. Rank 0 of the pool's communicator (a named duplicate of the one given) is
 * the master: rp_pool_create returns there at once, and a progress thread (the
 * backend's "pool thread") moves work. Every other rank serves inside
 * rp_pool_create until the master stops it. A serving rank hosts one or more
 * workers (worker w lives on rank 1 + w % nranks); each worker is a child process
 * the rank forked, which runs the tasks and never calls MPI. The rank supervises it:
 * when it dies (signal, exit), the item it was running fails with RP_EWORKER
 * naming host, rank and signal, a new child takes its place and carries on with
 * the rest of the batch. So a crashing task never takes MPI down with it.
 *
 * Data path. The master cuts jobs with rp__sched_claim into *batches* (one or
 * more chunks of consecutive items, the task as an rp__fnref) and sends them with
 * MPI_Isend, several in flight per worker, so workers never wait for a round trip.
 * Batch sizes are guided (a fraction of what is left) and, once the workers have
 * reported what items cost, at least BATCH_MIN_S of work. Small inputs are copied
 * into the batch message; large ones follow as a second message sent straight
 * from the caller's array. A serving rank receives a batch straight into a memory
 * region it shares with the worker's child (MPI_Mprobe + MPI_Mrecv), posts it, and
 * the child runs it with rp__worker_run, writing outputs and failure records into
 * the same region. The rank then sends the result from that region: a header with
 * the records, and the outputs, which the master receives straight into job->out
 * (small outputs ride inline in the header message).
 *
 * Messages are framed and checked by wire.c: a malformed message makes the
 * master give up on that rank (its items fail with RP_EPROTO), never crash.
 *
 * Progress and waiting. Whoever holds plock moves the master's messages: the pool
 * thread, a user thread waiting for a result (it polls MPI itself for a moment, so
 * a short job needs no hand-off between threads), or a submitting thread sending
 * its first batches. Others only trylock plock. Waiters then sleep on a condition
 * variable; the pool thread sleeps while a waiter polls (and just after, for
 * back-to-back applies), and backs off to short naps when idle, relative to the
 * expected batch time; a serving rank and its child take turns on one core (the
 * one waiting for the other sleeps on a futex, see decide_yield), and an idle
 * rank polls for a while, then naps.
 *
 * Locks (master): pool->lock, then a result's lock, then mp->lock; plock is only
 * ever taken with trylock by user threads, so holding it while calling into the
 * core (rp__job_fail*) cannot deadlock. Callbacks (rp__job_done) run on the pool
 * thread with no lock held. */
#define _GNU_SOURCE 1
#include "backend.h"
#include "fnref.h"
#include "wire.h"

#include "rankpool_mpi.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Message tags, all on the pool's own communicator but TAG_START (start-up, on the
 * communicator the pool is created on, before its duplicate exists). TAG_WORK0 + i
 * routes a batch to the i-th worker of a rank (so it lands in that worker's
 * memory); what to run is in the payload. */
enum { TAG_START = 7300, TAG_CTL = 7301, TAG_DATA = 7302, TAG_WORK0 = 7310 };

#define DEPTH        4                  /* batches in flight per worker */
#define BATCH_BYTES  ((size_t)4 << 20)  /* input + output bytes per batch, soft */
#define BATCH_ITEMS  ((size_t)1 << 18)  /* items per batch, at most */
#define INLINE_MAX   ((size_t)16 << 10) /* outputs up to this ride in the header */
#define BATCH_MIN_S  200e-6             /* shortest batch once item cost is known */
#define SHORT_BATCH_S 100e-6            /* shorter batches need DEPTH in flight */
#define LONG_BATCH_S 1e-3               /* for longer ones the pool thread naps */
#define SLOT_BYTES   ((size_t)256 << 20)/* virtual size of a batch's shared region */
#define SPIN_IDLE_S  1e-3               /* poll this long before sleeping */
#define SPIN_BUSY_S  50e-6              /* ... while a child computes */
#define SPIN_POLL_S  50e-6              /* the pool thread, after an event */
#define CHECK_S      100e-6             /* a rank looks for dead children this often */
#define SLEEP_MAX_S  1e-3               /* longest idle sleep */
#define IDLE_SLEEP_S 0.1                /* the pool thread's sleep with no job at all */
#define ANSWER_WAIT_S 3.0               /* longest wait for a rank's BYE (terminate, join) */

/* ---- small helpers ----------------------------------------------------------------- */

static int futex_wait(_Atomic uint32_t *addr, uint32_t val, double timeout)
{
    struct timespec ts, *tp = NULL;
    if (timeout >= 0) {
        ts.tv_sec = (time_t)timeout;
        ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
        tp = &ts;
    }
    return (int)syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT, val, tp, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}

static void sleep_s(double s)
{
    struct timespec ts = { (time_t)s, (long)((s - (double)(time_t)s) * 1e9) };
    nanosleep(&ts, NULL);
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* How waiting loops share the node's cores, decided once per pool start from the
 * ranks on this node (rp__local_rank_size: mpirun's or srun's word) and its usable
 * cores. The aim is at most one spinner per core at any moment:
 * - A serving rank and its worker process wait for each other in turn (a batch
 *   posted, a batch done). Unless there are cores for both (pair_spin), whichever
 *   waits sleeps on a futex at once and the other has the core: the rank sleeps
 *   while its worker computes, the worker sleeps while the rank polls MPI. Only
 *   on an oversubscribed node (yield_when_idle) do they poll a little first,
 *   yielding, which beats a futex hand-off when everything shares one core.
 * - Polling MPI (an idle rank, the master's waiting thread) spins with a pause
 *   instruction for a while, then naps or sleeps; it gives the core away
 *   (sched_yield) only when this node runs more ranks than it has cores, as Open
 *   MPI does. The master's pool thread sleeps while a user thread polls. */
static bool yield_when_idle = true;
static bool pair_spin = false;

static void decide_yield(bool inproc)
{
    int lrank, local = 0; /* 0: the launcher does not say */
    rp__local_rank_size(&lrank, &local);
    int ncores = rp__topo_ncores();
    yield_when_idle = local <= 0 || local > ncores;
    pair_spin = !inproc && local > 0 && 2 * local <= ncores;
}

/* One turn of a polling loop. Spinning spins: a loop that gave its core away
 * every so often when there seemed to be a core for each spinner was measured to
 * end up sharing one core with the rank it waits for (the scheduler packs them
 * when other programs load the node), and then each round trip took two of
 * those waits instead of a few microseconds. Every loop is bounded in time
 * (SPIN_IDLE_S and less) before it sleeps. */
static inline void idle_pause(void)
{
    if (yield_when_idle)
        sched_yield();
    else
        cpu_relax();
}

/* Threads that nap (short timed sleeps) want them short: no timer slack. */
static void precise_naps(void)
{
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

static size_t align_up(size_t v, size_t a)
{
    return (v + a - 1) & ~(a - 1);
}

static const char *signal_name(int sig)
{
    const char *s = sig > 0 ? strsignal(sig) : NULL;
    return s ? s : "unknown signal";
}

/* ---- MPI set-up shared by both roles ------------------------------------------------ */

static pthread_mutex_t init_lock = PTHREAD_MUTEX_INITIALIZER;
static bool we_initialized;   /* this library called MPI_Init_thread */
static pid_t init_pid;        /* ... in this process (not in a forked worker) */
static int  live_pools;       /* mpi pools not yet destroyed, in this process */
/* Their communicators: a second pool over the same group while one runs would
 * wait forever for ranks that are serving the first. */
#define MAX_LIVE 64
static MPI_Comm live_comms[MAX_LIVE];
static int      nlive_comms;
/* The pools that started and are not freed yet, which exit_cleanup stops. */
static rp_pool_t *started[MAX_LIVE];
static int        nstarted;
static pid_t      exit_pid;   /* the process whose pools those are */
static uint64_t   start_seq;  /* start-ups led by this process as a master */

static void pool_retire(rp_pool_t *pool);

/* At exit: the pools the program did not free are stopped (a master terminates
 * its work and releases its serving ranks, which return from rp_pool_create), so
 * that every rank can finalise MPI; then, if the library initialised MPI, it
 * finalises it. MPI cannot be initialised twice, so that happens here, after the
 * last pool, not at each rp_pool_free: a program may create pool after pool. */
static void exit_cleanup(void)
{
    rp_pool_t *pools[MAX_LIVE];
    int n = 0, fin = 0, init = 0;
    pthread_mutex_lock(&init_lock);
    if (getpid() != exit_pid) { /* a forked child: none of this is its own */
        pthread_mutex_unlock(&init_lock);
        return;
    }
    n = nstarted;
    memcpy(pools, started, (size_t)n * sizeof *pools);
    nstarted = 0;
    pthread_mutex_unlock(&init_lock);
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (!init || fin)
        return;
    for (int i = 0; i < n; i++)
        pool_retire(pools[i]);
    pthread_mutex_lock(&init_lock);
    bool mine = we_initialized && live_pools == 0 && getpid() == init_pid;
    pthread_mutex_unlock(&init_lock);
    if (mine)
        MPI_Finalize();
}

static void register_exit(void)
{
    exit_pid = getpid();
    atexit(exit_cleanup);
}

/* A pool that started: exit_cleanup stops it if the program does not free it. */
static void started_add(rp_pool_t *pool)
{
    pthread_mutex_lock(&init_lock);
    if (nstarted < MAX_LIVE)
        started[nstarted++] = pool;
    pthread_mutex_unlock(&init_lock);
}

static void started_remove(rp_pool_t *pool)
{
    pthread_mutex_lock(&init_lock);
    for (int i = 0; i < nstarted; i++)
        if (started[i] == pool) {
            started[i] = started[--nstarted];
            break;
        }
    pthread_mutex_unlock(&init_lock);
}

/* ---- start-up: is every rank there? --------------------------------------------------
 * rp_pool_create is collective, but a rank that never calls it must not leave the
 * others waiting forever in MPI_Comm_dup. Before anything collective the master
 * asks every rank (JOIN) and collects the answers (JOINED) for at most
 * RP_MPI_START_TIMEOUT seconds, then tells the ranks that answered whether the pool
 * starts (START). A serving rank waits as long for the master's JOIN, then for as
 * long as the master said it waits. These few messages travel on the given
 * communicator (tag TAG_START), as the pool's duplicate does not exist yet; each
 * start-up has its own number, so what a failed one left behind (the JOIN to a rank
 * that never came, the answer of one that came too late) is dropped by the next. */

#define START_TIMEOUT_S 60.0   /* RP_MPI_START_TIMEOUT's default */
#define START_GRACE_S   5.0    /* a serving rank waits this much longer than the master */

/* RP_MPI_START_TIMEOUT: seconds (> 0, "inf" for no limit); else the default. */
static double start_timeout(void)
{
    const char *v = getenv("RP_MPI_START_TIMEOUT");
    if (!v || !*v)
        return START_TIMEOUT_S;
    char *end;
    double t = strtod(v, &end);
    if (*end != '\0' || !(t > 0)) {
        rp__trace("mpi: RP_MPI_START_TIMEOUT=%s is not a number of seconds: %g s", v,
                  START_TIMEOUT_S);
        return START_TIMEOUT_S;
    }
    return t;
}

static int start_send(MPI_Comm base, int dest, unsigned kind, uint32_t worker, int32_t status,
                      uint64_t seq)
{
    rp__wbuf w;
    rp__wbuf_init(&w);
    int rc = rp__wire_put_ctl(&w, kind, worker, status, seq);
    if (rc == RP_OK &&
        MPI_Send(w.buf, (int)w.len, MPI_BYTE, dest, TAG_START, base) != MPI_SUCCESS)
        rc = RP_EMPI;
    rp__wbuf_free(&w);
    return rc;
}

struct start_msg {
    unsigned kind;   /* 0: malformed (dropped) */
    uint32_t worker;
    int32_t  status;
    uint64_t seq;
    int      from;
};

/* Receives a start-up message from src (MPI_ANY_SOURCE ok) if one has come.
 * \return 1 (one in *m), 0 (none), RP_EMPI. */
static int start_poll(MPI_Comm base, int src, struct start_msg *m)
{
    int flag = 0, count = 0;
    MPI_Message msg;
    MPI_Status st;
    if (MPI_Improbe(src, TAG_START, base, &flag, &msg, &st) != MPI_SUCCESS)
        return RP_EMPI;
    if (!flag)
        return 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    char small[64], *buf = count <= (int)sizeof small ? small : malloc((size_t)count);
    if (!buf)
        return RP_EMPI;
    int ok = MPI_Mrecv(buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) == MPI_SUCCESS;
    rp__wire_hdr h;
    rp__rbuf r;
    memset(m, 0, sizeof *m);
    m->from = st.MPI_SOURCE;
    if (ok && rp__wire_open(buf, (size_t)count, &h, &r) == RP_OK &&
        rp__wire_get_ctl(&r, &m->status, &m->seq) == RP_OK) {
        m->kind = h.kind;
        m->worker = h.worker;
    }
    if (buf != small)
        free(buf);
    return 1;
}

/* Writes "2, 5, 7" (the ranks not marked in joined[]) into buf. */
static void missing_ranks(const char *joined, int size, char *buf, size_t len)
{
    size_t at = 0;
    int listed = 0, missing = 0;
    buf[0] = '\0';
    for (int rk = 1; rk < size; rk++) {
        if (joined[rk])
            continue;
        missing++;
        if (at + 16 < len && listed < 24) {
            at += (size_t)snprintf(buf + at, len - at, "%s%d", listed ? ", " : "", rk);
            listed++;
        }
    }
    if (listed < missing)
        snprintf(buf + at, len - at, ", ... (%d in all)", missing);
}

/* The master's side. Under init_lock. */
static int start_master(MPI_Comm base, int size, rp_error_t *err, const char *host)
{
    double timeout = start_timeout();
    uint64_t seq = ++start_seq;
    uint32_t ms = timeout * 1e3 >= (double)UINT32_MAX ? UINT32_MAX : (uint32_t)(timeout * 1e3);
    char *joined = calloc((size_t)size, 1);
    if (!joined) {
        rp__error_set(err, RP_ENOMEM, 0, -1, host, "out of memory");
        return RP_ENOMEM;
    }
    int rc = RP_OK, missing = size - 1;
    for (int rk = 1; rk < size && rc == RP_OK; rk++)
        rc = start_send(base, rk, RP__MSG_JOIN, ms, RP_OK, seq);
    double deadline = rp__now() + timeout, nap = 20e-6;
    while (rc == RP_OK && missing > 0) {
        struct start_msg m;
        int got = start_poll(base, MPI_ANY_SOURCE, &m);
        if (got < 0) {
            rc = got;
        } else if (got > 0) {
            if (m.kind == RP__MSG_JOINED && m.seq == seq && m.from > 0 && m.from < size &&
                !joined[m.from]) {
                joined[m.from] = 1;
                missing--;
            }
            nap = 20e-6;
        } else if (rp__now() >= deadline) {
            break;
        } else {
            sleep_s(nap);
            nap = fmin(nap * 2, 10e-3);
        }
    }
    int verdict = rc != RP_OK ? rc : missing > 0 ? RP_EMPI : RP_OK;
    for (int rk = 1; rk < size; rk++)
        if (joined[rk])
            start_send(base, rk, RP__MSG_START, 0, verdict, seq);
    if (rc != RP_OK) {
        rp__error_set(err, rc, 0, -1, host, "the start-up messages could not be sent");
    } else if (missing > 0) {
        char list[200];
        missing_ranks(joined, size, list, sizeof list);
        rp__error_set(err, RP_EMPI, 0, -1, host,
                      "rank%s %s of the communicator did not call rp_pool_create within "
                      "%g s (RP_MPI_START_TIMEOUT): every rank must call it",
                      missing > 1 ? "s" : "", list, timeout);
    }
    free(joined);
    return verdict;
}

/* A serving rank's side. Under init_lock. */
static int start_server(MPI_Comm base, int rank, rp_error_t *err, const char *host)
{
    double timeout = start_timeout();
    double deadline = rp__now() + timeout, nap = 20e-6;
    uint64_t seq = 0;
    bool asked = false;
    for (;;) {
        struct start_msg m;
        int got = start_poll(base, 0, &m);
        if (got < 0) {
            rp__error_set(err, RP_EMPI, 0, -1, host, "rank %d: MPI_Improbe failed", rank);
            return RP_EMPI;
        }
        if (got == 0) {
            if (rp__now() >= deadline)
                break;
            sleep_s(nap);
            nap = fmin(nap * 2, 10e-3);
            continue;
        }
        nap = 20e-6;
        if (m.kind == RP__MSG_JOIN) {
            /* the master asks (maybe a master that has given up long ago: then
             * its START never comes, and the wait below ends) */
            seq = m.seq;
            asked = true;
            double wait = m.worker == UINT32_MAX ? INFINITY : m.worker * 1e-3;
            deadline = rp__now() + wait + START_GRACE_S;
            if (start_send(base, 0, RP__MSG_JOINED, 0, RP_OK, seq) != RP_OK) {
                rp__error_set(err, RP_EMPI, 0, -1, host, "rank %d: MPI_Send failed", rank);
                return RP_EMPI;
            }
        } else if (m.kind == RP__MSG_START && asked && m.seq == seq) {
            if (m.status == RP_OK)
                return RP_OK;
            rp__error_set(err, m.status, 0, -1, host,
                          "rank %d: the pool did not start: not every rank called "
                          "rp_pool_create within the start-up deadline (RP_MPI_START_TIMEOUT; "
                          "rank 0 names the missing ones)", rank);
            return m.status;
        } /* else: left over from an earlier start-up */
    }
    rp__error_set(err, RP_EMPI, 0, -1, host,
                  asked ? "rank %d: rank 0 (the master) asked, then said nothing within "
                          "%g s (RP_MPI_START_TIMEOUT)"
                        : "rank %d: rank 0 (the master) did not call rp_pool_create within "
                          "%g s (RP_MPI_START_TIMEOUT): every rank must call it",
                  rank, timeout);
    return RP_EMPI;
}

/* The most worker processes one serving rank runs (the local backend's limit for
 * a whole pool). */
#define RANK_WORKERS_MAX 1024

/* The checks every rank makes alike, before anything collective: the
 * communicator, its size, the worker count. \return RP_OK or a code with *why. */
static int check_comm(const rp_pool_opts_t *opts, MPI_Comm base, char *why, size_t len)
{
    int inter = 0, size = 0;
    if (base == MPI_COMM_NULL) {
        snprintf(why, len, "the communicator is MPI_COMM_NULL");
        return RP_EINVAL;
    }
    if (MPI_Comm_test_inter(base, &inter) != MPI_SUCCESS || inter) {
        snprintf(why, len, "the communicator is an intercommunicator: a pool needs an "
                           "intracommunicator (MPI_Intercomm_merge gives one)");
        return RP_EINVAL;
    }
    for (int i = 0; i < nlive_comms; i++) {
        int cmp = MPI_UNEQUAL;
        MPI_Comm_compare(base, live_comms[i], &cmp);
        if (cmp == MPI_IDENT || cmp == MPI_CONGRUENT) {
            snprintf(why, len, "a pool is already running on this communicator (its other "
                               "ranks are serving it): free that pool first");
            return RP_EINVAL;
        }
    }
    if (nlive_comms == MAX_LIVE) {
        snprintf(why, len, "too many mpi pools at once");
        return RP_EINVAL;
    }
    MPI_Comm_size(base, &size);
    if (size < 2) {
        snprintf(why, len, "the mpi backend needs at least 2 ranks (one master, one or more "
                           "workers): start the program with mpirun -np N, N >= 2");
        return RP_EBACKEND;
    }
    long nranks = size - 1, workers = opts->workers > 0 ? opts->workers : nranks;
    long per_rank = (workers + nranks - 1) / nranks;
    if (per_rank > RANK_WORKERS_MAX) {
        snprintf(why, len, "%ld workers on %ld serving ranks would be %ld worker processes "
                           "on a rank: at most %d per rank", workers, nranks, per_rank,
                 RANK_WORKERS_MAX);
        return RP_EINVAL;
    }
    return RP_OK;
}

static int mpi_begin(const rp_pool_opts_t *opts, MPI_Comm *comm, rp_error_t *err,
                     const char *host)
{
    static pthread_once_t exit_once = PTHREAD_ONCE_INIT;
    int init = 0, fin = 0;
    pthread_mutex_lock(&init_lock);
    MPI_Finalized(&fin);
    if (fin) {
        pthread_mutex_unlock(&init_lock);
        rp__error_set(err, RP_EMPI, 0, -1, host, "MPI was already finalized");
        return RP_EMPI;
    }
    MPI_Initialized(&init);
    if (!init) {
        int provided = 0;
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
            pthread_mutex_unlock(&init_lock);
            rp__error_set(err, RP_EMPI, 0, -1, host, "MPI_Init_thread failed");
            return RP_EMPI;
        }
        we_initialized = true;
        init_pid = getpid();
    } else {
        int provided = MPI_THREAD_SINGLE;
        MPI_Query_thread(&provided);
        if (provided < MPI_THREAD_SERIALIZED)
            rp__trace("mpi: MPI was initialised without thread support; the pool's "
                      "progress thread calls MPI while the program does not");
    }
    pthread_once(&exit_once, register_exit);
    live_pools++;

    /* Everything up to the duplicate under init_lock, so that two threads cannot
     * both start a pool on one communicator. */
    MPI_Comm base = opts->comm ? *(const MPI_Comm *)opts->comm : MPI_COMM_WORLD;
    char why[300] = "";
    int rank = 0;
    int code = check_comm(opts, base, why, sizeof why);
    if (code == RP_OK) {
        MPI_Comm_rank(base, &rank);
        int size = 0;
        MPI_Comm_size(base, &size);
        code = rank == 0 ? start_master(base, size, err, host)
                         : start_server(base, rank, err, host);
        if (code == RP_OK && MPI_Comm_dup(base, comm) != MPI_SUCCESS) {
            code = RP_EMPI;
            snprintf(why, sizeof why, "MPI_Comm_dup failed");
        }
    }
    if (code != RP_OK) {
        live_pools--;
        pthread_mutex_unlock(&init_lock);
        if (why[0])
            rp__error_set(err, code, 0, -1, host, "%s", why);
        return code;
    }
    live_comms[nlive_comms++] = *comm;
    pthread_mutex_unlock(&init_lock);
    MPI_Comm_set_name(*comm, "rankpool");
    MPI_Comm_set_errhandler(*comm, MPI_ERRORS_RETURN);
    return RP_OK;
}

/* The pool is gone. Its communicator is freed, unless `keep`: when the master gave
 * up on a rank that may still send (stopped, then resumed). Open MPI reuses a freed
 * communicator's context id for the next one, and holds a message that arrives for
 * a freed id for that next communicator, where it takes the place of a message of
 * the next pool: a kept one keeps its id, and its late messages are never read. */
static void mpi_end(MPI_Comm *comm, bool keep)
{
    pthread_mutex_lock(&init_lock);
    for (int i = 0; i < nlive_comms; i++)
        if (live_comms[i] == *comm) {
            live_comms[i] = live_comms[--nlive_comms];
            break;
        }
    live_pools--;
    pthread_mutex_unlock(&init_lock);
    if (*comm != MPI_COMM_NULL && !keep)
        MPI_Comm_free(comm);
    *comm = MPI_COMM_NULL;
}

/* Receives one TAG_CTL message from src (MPI_ANY_SOURCE ok) into *buf (grown);
 * blocking. \return its length, or -1. */
static long recv_ctl(MPI_Comm comm, int src, char **buf, size_t *cap, int *from)
{
    MPI_Message msg;
    MPI_Status st;
    if (MPI_Mprobe(src, TAG_CTL, comm, &msg, &st) != MPI_SUCCESS)
        return -1;
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    if ((size_t)count > *cap) {
        char *b = realloc(*buf, (size_t)count);
        if (!b) {
            MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE); /* truncates: dropped */
            return -1;
        }
        *buf = b;
        *cap = (size_t)count;
    }
    if (MPI_Mrecv(*buf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS)
        return -1;
    if (from)
        *from = st.MPI_SOURCE;
    return count;
}

/* ======================================================================================
 * Serving ranks: the workers' child processes and their supervision
 * ==================================================================================== */

/* One batch's region, shared by the rank and its worker's child:
 *   [0, msglen)                  the BATCH message as received
 *   [out_off, out_off + outbytes) fixed outputs, written by the child
 *   [res_off, ...)               the RESULT message: fixed part, records (child),
 *                                then inline outputs (rank)
 * The records (failures, variable-size outputs) need not fit all at once: before
 * running more items the child makes sure the record area has room for a failure
 * of each (piece_items); when it has not, the rank sends what is there as a result
 * for the items done so far, and the child goes on with an empty area. So a batch
 * may come back as several RESULT messages, each for the next items in order. */
struct slotdesc {
    /* set by the rank before posting */
    rp_task_fn fn;
    size_t     in_off, in_size, out_off, out_size, start, count, chunk;
    size_t     res_off, cap;
    uint32_t   flags;
    /* progress, written by whoever owns the slot (the child while running) */
    size_t     resume;      /* items [0, resume) of the batch are processed */
    size_t     sent;        /* items [0, sent) were reported in earlier results */
    _Atomic uint32_t flush; /* 1: the child waits for the rank to send the records */
    size_t     rec_len;     /* bytes of records after res_off + RP__RESULT_FIXED */
    size_t     nrec;
    size_t     var_last;    /* offset of the current item's VAR record + 1, or 0 */
    size_t     var_index;
    uint64_t   compute_ns;  /* time spent running it (all children) */
};

enum { CHILD_STARTING, CHILD_READY, CHILD_INIT_FAILED, CHILD_RETIRING };

/* The page a worker's child shares with its rank. */
struct wctl {
    _Atomic uint32_t posted;       /* batches posted by the rank (futex word) */
    _Atomic uint32_t child_sleeps;
    _Atomic uint32_t completed;    /* batches finished by the child */
    _Atomic uint32_t running_seq;  /* the batch the child is in, + 1 (0: none) */
    _Atomic size_t   cur;          /* the item the child is running */
    _Atomic int      state;        /* CHILD_* */
    rp_error_t       init_err;
    struct slotdesc  slot[DEPTH];
};

/* The page all children of a rank share with it: the rank sleeps on `bell`. */
struct rankbell {
    _Atomic uint32_t bell;
    _Atomic uint32_t rank_sleeps;
};

struct lworker {
    int            id;          /* global worker number */
    int            local;       /* index among this rank's workers */
    pid_t          pid;         /* 0: no child */
    bool           gone;        /* could not be (re)started: its batches fail */
    struct wctl   *ctl;
    char          *slot[DEPTH]; /* shared regions */
    uint64_t       seq[DEPTH];  /* the master's batch number in each slot */
    uint64_t       job[DEPTH];
    uint32_t       nposted;     /* == ctl->posted */
    uint32_t       nsent;       /* batches whose results were sent */
    MPI_Request    req[DEPTH][2];
    bool           sending[DEPTH];
    rp_ctx_t       ctx;         /* in-process mode: the worker's context */
    long           tasks;
};

struct server {
    MPI_Comm          comm;
    bool              inproc;   /* tasks run in the rank itself (RP_MPI_ISOLATE=0) */
    int               rank;
    char              host[64];
    rp__wire_hello    hello;
    void             *initarg;
    rp_init_fn        init;
    int               nlocal;
    struct lworker   *w;
    struct rankbell  *bell;
    rp__wbuf          out;      /* small control messages */
    char             *rbuf;
    size_t            rcap;
};

/* ---- inside the child -------------------------------------------------------------- */

struct child_run {
    struct wctl     *ctl;
    struct slotdesc *sd;
    char            *base;
};

/* Bytes of the record area of sd still free. */
static size_t record_free(const struct slotdesc *sd)
{
    size_t at = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    return at < sd->cap ? sd->cap - at : 0;
}

/* Room for bytes more records, leaving `keep` bytes free; NULL if they do not fit. */
static void *record_room(struct child_run *cr, size_t bytes, size_t keep)
{
    struct slotdesc *sd = cr->sd;
    size_t at = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    if (bytes > record_free(sd) || keep > record_free(sd) - bytes)
        return NULL;
    sd->rec_len += bytes;
    return cr->base + at;
}

/* Room for a variable-size output: it leaves room for one failure, so that the
 * failure of the item that wrote it can always be recorded. */
static void *child_heap(struct child_run *cr, size_t bytes)
{
    return record_room(cr, bytes, RP__WIRE_ERROR_MAX);
}

static void child_on_fail(void *arg, const rp_error_t *e)
{
    struct child_run *cr = arg;
    void *p = record_room(cr, rp__wire_error_size(e), 0);
    if (p) {
        rp__wire_error_write(p, e);
        cr->sd->nrec++;
    }
}

static void *child_output(void *arg, size_t index, size_t size)
{
    struct child_run *cr = arg;
    struct slotdesc *sd = cr->sd;
    if (size > sd->cap) /* can never fit; also keeps the sums below from wrapping */
        return NULL;
    if (sd->var_last && sd->var_index == index) /* replaced: the old one is dead */
        rp__wire_var_kill(cr->base + sd->var_last - 1);
    size_t padded = align_up(size, 8);
    if (padded < size)
        return NULL;
    size_t before = sd->res_off + RP__RESULT_FIXED + sd->rec_len;
    char *p = child_heap(cr, RP__WIRE_VAR_HDR + padded);
    if (!p)
        return NULL;
    rp__wire_var_write(p, index, size);
    memset(p + RP__WIRE_VAR_HDR + size, 0, padded - size);
    sd->nrec++;
    sd->var_last = before + 1;
    sd->var_index = index;
    return p + RP__WIRE_VAR_HDR;
}

static int send_part(struct server *sv, struct lworker *lw, int s);

/* Flags of a RESULT beside RP__RESULT_INLINE: the whole batch failed with the one
 * error record (ALLFAIL); the worker is gone, send it nothing more (GONE). */
enum { RESULT_ALLFAIL = 2u, RESULT_GONE = 4u };

/* In the child: waits until the rank has sent the records of slot s and emptied
 * the area (in-process mode: sends them itself). */
static void flush_records(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    if (sv->inproc) {
        send_part(sv, lw, s);
        return;
    }
    atomic_store(&sd->flush, 1);
    atomic_fetch_add(&sv->bell->bell, 1);
    if (atomic_load(&sv->bell->rank_sleeps))
        futex_wake(&sv->bell->bell);
    while (atomic_load(&sd->flush)) {
        futex_wait(&sd->flush, 1, 0.1);
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
    size_t fit = record_free(sd) / RP__WIRE_ERROR_MAX;
    return want < fit ? want : fit > 0 ? fit : 1;
}

/* Runs batch k of lw (from where it was left) with ctx: in the worker process,
 * or in the rank itself (in-process mode). \return false when the worker must
 * retire first (max_tasks reached mid-batch; the rest is for its replacement). */
static bool run_slot(struct server *sv, struct lworker *lw, rp_ctx_t *ctx, uint32_t k,
                     long *tasks, long max_tasks)
{
    struct wctl *ctl = lw->ctl;
    int s = (int)(k % DEPTH);
    struct slotdesc *sd = &ctl->slot[s];
    struct child_run cr = { ctl, sd, lw->slot[s] };
    ctx->output = (sd->flags & RP__JOB_VAR) ? child_output : NULL;
    ctx->output_arg = &cr;
    atomic_store(&ctl->running_seq, k + 1);
    size_t chunk = sd->chunk ? sd->chunk : sd->count;
    const char *in = cr.base + sd->in_off;
    char *out = sd->out_size ? cr.base + sd->out_off : NULL;
    bool whole = true;
    while (sd->resume < sd->count) {
        size_t off = sd->resume;
        /* chunks are counted from the batch's start */
        size_t len = chunk - off % chunk;
        if (len > sd->count - off)
            len = sd->count - off;
        len = piece_items(sv, lw, s, len);
        sd->var_last = 0;
        double t0 = rp__now();
        rp__worker_run(ctx, sd->fn, in + off * sd->in_size, sd->in_size,
                       out ? out + off * sd->out_size : NULL, sd->out_size, sd->start + off,
                       len, &ctl->cur, child_on_fail, &cr);
        sd->compute_ns += (uint64_t)((rp__now() - t0) * 1e9);
        sd->resume = off + len;
        *tasks += (long)len;
        if (max_tasks > 0 && *tasks >= max_tasks && sd->resume < sd->count) {
            whole = false;
            break;
        }
    }
    atomic_store(&ctl->running_seq, 0);
    ctx->output = NULL;
    return whole;
}

static void child_main(struct server *sv, struct lworker *lw)
{
    struct wctl *ctl = lw->ctl;
    /* The task's crash must be the default action, not MPI's handlers. */
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

    rp_ctx_t ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.worker = lw->id;
    ctx.host = sv->host;
    if (sv->init) {
        rp_error_t e;
        if (rp__worker_init(&ctx, sv->init, sv->initarg, &e) != RP_OK) {
            ctl->init_err = e;
            atomic_store(&ctl->state, CHILD_INIT_FAILED);
            atomic_fetch_add(&sv->bell->bell, 1);
            futex_wake(&sv->bell->bell);
            _exit(0);
        }
    }
    atomic_store(&ctl->state, CHILD_READY);
    atomic_fetch_add(&sv->bell->bell, 1);
    if (atomic_load(&sv->bell->rank_sleeps))
        futex_wake(&sv->bell->bell);

    long tasks = 0;
    long max_tasks = (long)sv->hello.max_tasks;
    for (uint32_t k = atomic_load(&ctl->completed);; k++) {
        /* wait for batch k: spin a little, then sleep on the futex */
        uint32_t posted;
        double t0 = rp__now();
        while ((posted = atomic_load(&ctl->posted)) == k) {
            if ((pair_spin || yield_when_idle) && rp__now() - t0 < SPIN_BUSY_S * 4) {
                idle_pause();
                continue;
            }
            atomic_store(&ctl->child_sleeps, 1);
            if (atomic_load(&ctl->posted) == k)
                futex_wait(&ctl->posted, k, 0.1);
            atomic_store(&ctl->child_sleeps, 0);
            if (getppid() == 1)
                _exit(0);
        }
        if (!run_slot(sv, lw, &ctx, k, &tasks, max_tasks)) {
            atomic_store(&ctl->state, CHILD_RETIRING);
            _exit(0);
        }
        atomic_store(&ctl->completed, k + 1);
        atomic_fetch_add(&sv->bell->bell, 1);
        if (atomic_load(&sv->bell->rank_sleeps))
            futex_wake(&sv->bell->bell);
        if (max_tasks > 0 && tasks >= max_tasks) {
            atomic_store(&ctl->state, CHILD_RETIRING);
            _exit(0);
        }
    }
}

/* ---- the rank's side ---------------------------------------------------------------- */

static int spawn_child(struct server *sv, struct lworker *lw)
{
    atomic_store(&lw->ctl->running_seq, 0);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0)
        return RP_ESYS;
    if (pid == 0) {
        child_main(sv, lw);
        _exit(0);
    }
    lw->pid = pid;
    return RP_OK;
}

/* Waits for a starting child's verdict (READY or INIT_FAILED) or its death. */
static int await_child_start(struct server *sv, struct lworker *lw, rp_error_t *err)
{
    for (;;) {
        int st = atomic_load(&lw->ctl->state);
        if (st == CHILD_READY)
            return RP_OK;
        if (st == CHILD_INIT_FAILED) {
            *err = lw->ctl->init_err;
            waitpid(lw->pid, NULL, 0);
            lw->pid = 0;
            return RP_EINIT;
        }
        int status;
        pid_t r = waitpid(lw->pid, &status, WNOHANG);
        if (r == lw->pid || (r < 0 && errno == ECHILD)) {
            lw->pid = 0;
            if (atomic_load(&lw->ctl->state) == CHILD_INIT_FAILED) {
                *err = lw->ctl->init_err;
                return RP_EINIT;
            }
            rp__error_set(err, RP_EINIT, 0, lw->id, sv->host,
                          "worker %d (rank %d on %s) died while starting (%s %d)", lw->id,
                          sv->rank, sv->host,
                          r == lw->pid && WIFSIGNALED(status) ? "signal" : "exit status",
                          r == lw->pid && WIFSIGNALED(status) ? WTERMSIG(status)
                          : r == lw->pid ? WEXITSTATUS(status) : -1);
            if (r == lw->pid && WIFSIGNALED(status))
                err->signal = WTERMSIG(status);
            return RP_EINIT;
        }
        uint32_t b = atomic_load(&sv->bell->bell);
        if (atomic_load(&lw->ctl->state) == CHILD_STARTING)
            futex_wait(&sv->bell->bell, b, 0.002);
    }
}

static void kill_child(struct lworker *lw)
{
    if (lw->pid > 0) {
        kill(lw->pid, SIGKILL);
        waitpid(lw->pid, NULL, 0);
        lw->pid = 0;
    }
}

static void server_free(struct server *sv)
{
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        kill_child(lw);
        for (int s = 0; s < DEPTH; s++)
            if (lw->slot[s])
                munmap(lw->slot[s], SLOT_BYTES);
        if (lw->ctl)
            munmap(lw->ctl, sizeof *lw->ctl);
    }
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

static void slot_drain(struct lworker *lw, int s);

/* Sends a result for the items of slot s processed and not reported yet, [sent,
 * resume): the whole batch (the child finished it, or the worker is gone) or the
 * part before a flush of the record area (send_part). */
static int send_result(struct server *sv, struct lworker *lw, int s, uint32_t extra_flags)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    char *base = lw->slot[s];
    size_t first = sd->sent, count = sd->resume - sd->sent;
    size_t outbytes = sd->out_size * count;
    const char *outputs = base + sd->out_off + first * sd->out_size;
    uint32_t flags = extra_flags;
    size_t len = RP__RESULT_FIXED + sd->rec_len;
    if (outbytes > 0 && outbytes <= INLINE_MAX &&
        sd->res_off + len + outbytes <= sd->cap) {
        memcpy(base + sd->res_off + len, outputs, outbytes);
        len += outbytes;
        flags |= RP__RESULT_INLINE;
    }
    /* the time the batch took, with its last part */
    uint64_t ns = sd->resume == sd->count ? sd->compute_ns : 0;
    rp__wire_result m = { .job = lw->job[s], .seq = lw->seq[s], .start = sd->start + first,
                          .count = count, .out_size = sd->out_size, .nrec = sd->nrec,
                          .rec_bytes = sd->rec_len, .compute_ns = ns };
    rp__wire_result_write(base + sd->res_off, (uint32_t)lw->id, flags, &m, len);
    sd->sent = sd->resume;
    lw->req[s][0] = lw->req[s][1] = MPI_REQUEST_NULL;
    if (MPI_Isend(base + sd->res_off, (int)len, MPI_BYTE, 0, TAG_CTL, sv->comm,
                  &lw->req[s][0]) != MPI_SUCCESS)
        return RP_EMPI;
    if (outbytes > 0 && !(flags & RP__RESULT_INLINE) &&
        MPI_Isend(outputs, (int)outbytes, MPI_BYTE, 0, TAG_DATA, sv->comm,
                  &lw->req[s][1]) != MPI_SUCCESS)
        return RP_EMPI;
    lw->sending[s] = true;
    if (sv->inproc) /* the rank computes next: finish the transfer first */
        slot_drain(lw, s);
    return RP_OK;
}

/* The record area of slot s is full: sends the items processed so far with their
 * records, waits until they are out, and empties the area for the rest of the
 * batch. Every record in the area is of an item in [sent, resume) (or a dead
 * variable-size output, of no item). */
static int send_part(struct server *sv, struct lworker *lw, int s)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    int rc = RP_OK;
    if (sd->resume > sd->sent) {
        rc = send_result(sv, lw, s, lw->gone ? RESULT_GONE : 0);
        slot_drain(lw, s);
    }
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->var_last = 0;
    return rc;
}

/* Appends an error record for an item of slot s that the rank fails itself (the
 * item at resume); sends what the area holds first if there is no room. */
static void slot_fail_item(struct server *sv, struct lworker *lw, int s, rp_error_t *e)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    struct child_run cr = { lw->ctl, sd, lw->slot[s] };
    if (rp__wire_error_size(e) > record_free(sd))
        send_part(sv, lw, s);
    child_on_fail(&cr, e);
}

/* A whole batch fails with one error (bad function, bad message, gone worker):
 * a result with the ALLFAIL flag and one record. */
static int send_batch_failure(struct server *sv, struct lworker *lw, int s, int code,
                              const char *msg)
{
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp_error_t e;
    rp__error_set(&e, code, sd->start, lw->id, sv->host, "%s", msg);
    sd->rec_len = 0;
    sd->nrec = 0;
    sd->out_size = 0; /* no outputs travel */
    sd->sent = 0;
    slot_fail_item(sv, lw, s, &e);
    sd->resume = sd->count;
    return send_result(sv, lw, s, RESULT_ALLFAIL | (lw->gone ? RESULT_GONE : 0));
}

/* Waits for the sends of slot s to complete, so the region can be reused. */
static void slot_drain(struct lworker *lw, int s)
{
    if (lw->sending[s]) {
        MPI_Waitall(2, lw->req[s], MPI_STATUSES_IGNORE);
        lw->sending[s] = false;
    }
}

/* ---- in-process mode (RP_MPI_ISOLATE=0) ------------------------------------------
 * Tasks run in the rank itself: no hand-off to a worker process, so the shortest
 * round trips, but a crashing task takes the rank and so the MPI job down. It
 * then says so first: rank, host, worker, item and signal, written with write(2)
 * from the signal handler, before the signal's default action. */

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

static void inproc_handlers(void)
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

/* Runs the batch just posted to lw, here, and marks it completed. */
static void inproc_run(struct server *sv, struct lworker *lw)
{
    uint32_t k = lw->nposted - 1;
    crash_sv = sv;
    crash_lw = lw;
    run_slot(sv, lw, &lw->ctx, k, &lw->tasks, 0);
    crash_lw = NULL;
    atomic_store(&lw->ctl->completed, k + 1);
}

/* Receives (and drops) the next message on tag from the master: the separate
 * input of a batch that cannot run. */
static int drop_next(struct server *sv, int tag)
{
    MPI_Message msg;
    MPI_Status st;
    int count = 0;
    if (MPI_Mprobe(0, tag, sv->comm, &msg, &st) != MPI_SUCCESS)
        return RP_EMPI;
    MPI_Get_count(&st, MPI_BYTE, &count);
    char *tmp = malloc(count > 0 ? (size_t)count : 1);
    int rc = tmp && MPI_Mrecv(tmp, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) == MPI_SUCCESS;
    free(tmp);
    return rc ? RP_OK : RP_EMPI;
}

/* A BATCH message arrived for lw in buf (msglen bytes) on tag: normally slot s
 * itself; a message too large for the slot was received elsewhere and only fails.
 * A separate input (RP__BATCH_SEPARATE) is received here, after the header. */
static int post_batch(struct server *sv, struct lworker *lw, int s, int tag,
                      const char *buf, size_t msglen)
{
    char *base = lw->slot[s];
    struct slotdesc *sd = &lw->ctl->slot[s];
    rp__wire_hdr h;
    rp__rbuf r;
    rp__wire_batch b;
    memset(sd, 0, sizeof *sd);
    sd->cap = SLOT_BYTES;
    sd->res_off = align_up(msglen, 64);
    if (rp__wire_open(buf, msglen, &h, &r) != RP_OK)
        return RP_EPROTO;
    bool separate = h.flags & RP__BATCH_SEPARATE;
    if (rp__wire_get_batch(&r, &h, &b) != RP_OK) {
        if (separate && drop_next(sv, tag) != RP_OK)
            return RP_EMPI;
        return RP_EPROTO;
    }
    lw->job[s] = b.job;
    lw->seq[s] = b.seq;
    sd->start = (size_t)b.start;
    sd->count = (size_t)b.count;
    sd->chunk = (size_t)b.chunk;
    sd->in_size = (size_t)b.in_size;
    sd->flags = b.flags;
    size_t inbytes = (size_t)(b.in_size * b.count);
    size_t outbytes = (size_t)(b.out_size * b.count);
    sd->in_off = separate ? align_up(msglen, 64) : (size_t)(b.input - buf);
    sd->out_off = align_up(separate ? sd->in_off + inbytes : msglen, 64);
    sd->res_off = align_up(sd->out_off + outbytes, 64);
    sd->out_size = (size_t)b.out_size;
    bool fits = buf == base && inbytes <= sd->cap && outbytes <= sd->cap &&
                sd->res_off + RP__RESULT_FIXED + INLINE_MAX <= sd->cap;
    if (separate) {
        int rc = RP_OK;
        if (fits && inbytes <= INT_MAX) {
            MPI_Status st;
            int got = 0;
            if (MPI_Recv(base + sd->in_off, (int)inbytes, MPI_BYTE, 0, tag, sv->comm, &st) !=
                MPI_SUCCESS)
                return RP_EMPI;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if ((size_t)got != inbytes)
                return RP_EPROTO;
        } else {
            fits = false;
            rc = drop_next(sv, tag);
        }
        if (rc != RP_OK)
            return rc;
    }
    if (!fits) {
        sd->res_off = 0;
        sd->out_size = 0;
        return send_batch_failure(sv, lw, s, RP_ENOMEM,
                                  "batch too large for the worker's transfer area");
    }
    if (lw->gone) {
        return send_batch_failure(sv, lw, s, RP_EBROKEN,
                                  "the worker could not be restarted");
    }
    rp__anyfn fn;
    char why[200 + RP__FNREF_NAMEMAX];
    if (rp__fnref_resolve(&b.fn, &fn, why, sizeof why) != RP_OK) {
        char msg[sizeof why + 100]; /* cut to rp_error_t's 256 bytes later */
        snprintf(msg, sizeof msg, "rank %d on %s: %s", sv->rank, sv->host, why);
        return send_batch_failure(sv, lw, s, RP_EFNREF, msg);
    }
    sd->fn = (rp_task_fn)fn;
    lw->nposted++;
    atomic_store(&lw->ctl->posted, lw->nposted);
    if (sv->inproc)
        inproc_run(sv, lw);
    else if (atomic_load(&lw->ctl->child_sleeps))
        futex_wake(&lw->ctl->posted);
    return RP_OK;
}

static void worker_gone(struct server *sv, struct lworker *lw, const char *why);

/* The child of lw died (status from waitpid, or -1 unknown). Fails the item it was
 * running, restarts it, and lets it carry on with the rest. */
static void child_died(struct server *sv, struct lworker *lw, int status)
{
    struct wctl *ctl = lw->ctl;
    pid_t pid = lw->pid;
    lw->pid = 0;
    bool retiring = atomic_load(&ctl->state) == CHILD_RETIRING && status >= 0 &&
                    WIFEXITED(status) && WEXITSTATUS(status) == 0;
    uint32_t running = atomic_load(&ctl->running_seq);
    uint32_t k = atomic_load(&ctl->completed);
    if (!retiring && running == k + 1 && k < lw->nposted) {
        int s = (int)(k % DEPTH);
        struct slotdesc *sd = &ctl->slot[s];
        size_t cur = atomic_load(&ctl->cur);
        if (cur >= sd->start + sd->resume && cur < sd->start + sd->count) {
            rp_error_t e;
            int sig = status >= 0 && WIFSIGNALED(status) ? WTERMSIG(status) : 0;
            int ex = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
            if (sig)
                rp__error_set(&e, RP_EWORKER, cur, lw->id, sv->host,
                              "worker %d (rank %d on %s, pid %d) was killed by signal %d "
                              "(%s) while running item %zu",
                              lw->id, sv->rank, sv->host, (int)pid, sig, signal_name(sig), cur);
            else
                rp__error_set(&e, RP_EWORKER, cur, lw->id, sv->host,
                              "worker %d (rank %d on %s, pid %d) exited with status %d "
                              "while running item %zu",
                              lw->id, sv->rank, sv->host, (int)pid, ex, cur);
            e.signal = sig;
            e.exit_status = ex;
            /* drop a variable-size output the dead item may have begun */
            if (sd->var_last && sd->var_index == cur)
                rp__wire_var_kill(lw->slot[s] + sd->var_last - 1);
            sd->resume = cur - sd->start; /* the items before it are done */
            slot_fail_item(sv, lw, s, &e);
            sd->resume = cur - sd->start + 1;
            rp__trace("mpi: %s", e.message);
        }
        /* it died waiting for its records to be sent: send them now, while
         * nobody else writes there */
        if (atomic_load(&sd->flush)) {
            send_part(sv, lw, s);
            atomic_store(&sd->flush, 0);
        }
    }
    if (lw->gone)
        return;
    if (atomic_load(&ctl->state) == CHILD_INIT_FAILED) {
        /* a replacement whose initializer fails: no endless respawning */
        char why[300];
        snprintf(why, sizeof why, "its replacement's initializer failed: %s",
                 ctl->init_err.message);
        worker_gone(sv, lw, why);
        return;
    }
    atomic_store(&ctl->state, CHILD_STARTING);
    if (spawn_child(sv, lw) != RP_OK)
        worker_gone(sv, lw, "could not fork a new worker process");
}

/* lw cannot run tasks any more (its replacement's initializer failed, fork
 * failed): the unprocessed items of its posted batches fail, and every batch sent
 * to it from now on fails at once; the master stops using it. */
static void worker_gone(struct server *sv, struct lworker *lw, const char *why)
{
    lw->gone = true;
    rp__trace("mpi: worker %d on rank %d is gone: %s", lw->id, sv->rank, why);
    for (uint32_t k = atomic_load(&lw->ctl->completed); k < lw->nposted; k++) {
        int s = (int)(k % DEPTH);
        struct slotdesc *sd = &lw->ctl->slot[s];
        atomic_store(&sd->flush, 0);
        for (size_t i = sd->resume; i < sd->count; i++) {
            rp_error_t e;
            rp__error_set(&e, RP_EBROKEN, sd->start + i, lw->id, sv->host,
                          "worker %d (rank %d on %s) is gone: %s", lw->id, sv->rank,
                          sv->host, why);
            sd->resume = i;
            slot_fail_item(sv, lw, s, &e);
        }
        sd->resume = sd->count;
    }
    atomic_store(&lw->ctl->completed, lw->nposted);
}

static int send_ctl(struct server *sv, unsigned kind, uint32_t worker, int32_t status)
{
    if (rp__wire_put_ctl(&sv->out, kind, worker, status, 0) != RP_OK)
        return RP_ENOMEM;
    return MPI_Send(sv->out.buf, (int)sv->out.len, MPI_BYTE, 0, TAG_CTL, sv->comm) ==
                   MPI_SUCCESS
               ? RP_OK
               : RP_EMPI;
}

/* Sends the results of every batch the children finished; checks on the children. */
static int serve_workers(struct server *sv, bool check_children, int *events)
{
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        if (check_children && lw->pid > 0) {
            int status;
            pid_t r = waitpid(lw->pid, &status, WNOHANG);
            if (r == lw->pid)
                child_died(sv, lw, status);
            else if (r < 0 && errno == ECHILD)
                child_died(sv, lw, -1);
        }
        if (!lw->gone && lw->pid > 0 &&
            atomic_load(&lw->ctl->state) == CHILD_INIT_FAILED) {
            char why[300];
            snprintf(why, sizeof why, "its replacement's initializer failed: %s",
                     lw->ctl->init_err.message);
            waitpid(lw->pid, NULL, 0);
            lw->pid = 0;
            worker_gone(sv, lw, why);
        }
        uint32_t done = atomic_load(&lw->ctl->completed);
        if (done < lw->nposted && lw->pid > 0) {
            /* the child waits for the records of its batch to be sent */
            struct slotdesc *sd = &lw->ctl->slot[done % DEPTH];
            if (atomic_load(&sd->flush)) {
                int rc = send_part(sv, lw, (int)(done % DEPTH));
                atomic_store(&sd->flush, 0);
                futex_wake(&sd->flush);
                if (rc != RP_OK)
                    return rc;
                (*events)++;
            }
        }
        while (lw->nsent != done) {
            int s = (int)(lw->nsent % DEPTH);
            int rc = send_result(sv, lw, s, lw->gone ? RESULT_GONE : 0);
            if (rc != RP_OK)
                return rc;
            lw->nsent++;
            (*events)++;
        }
        for (int s = 0; s < DEPTH; s++)
            if (lw->sending[s]) {
                int flag = 0;
                MPI_Testall(2, lw->req[s], &flag, MPI_STATUSES_IGNORE);
                if (flag)
                    lw->sending[s] = false;
            }
    }
    return RP_OK;
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
        slot_drain(lw, s);
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
        int rc = post_batch(sv, lw, s, tag, buf, (size_t)count);
        free(tmp);
        if (rc == RP_EPROTO)
            return send_ctl(sv, RP__MSG_PROTO, (uint32_t)lw->id, RP_EPROTO);
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
    rp__wire_hdr h;
    rp__rbuf r;
    int32_t status;
    uint64_t seq;
    if (tag != TAG_CTL || rp__wire_open(sv->rbuf, (size_t)count, &h, &r) != RP_OK ||
        (h.kind != RP__MSG_STOP && h.kind != RP__MSG_TERMINATE) ||
        rp__wire_get_ctl(&r, &status, &seq) != RP_OK)
        return send_ctl(sv, RP__MSG_PROTO, 0, RP_EPROTO);
    /* STOP comes after every job finished, TERMINATE at any time: either way the
     * children go now; results not sent yet are not wanted. */
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        kill_child(lw);
        for (int s = 0; s < DEPTH; s++)
            slot_drain(lw, s);
    }
    int rc = send_ctl(sv, RP__MSG_BYE, 0, RP_OK);
    return rc == RP_OK ? RP_DONE : rc;
}

/* The serving loop: until the master says STOP or TERMINATE. */
static int serve(struct server *sv)
{
    double idle_since = rp__now(), nap = 20e-6, checked = 0;
    precise_naps();
    for (;;) {
        int events = 0;
        for (int m = 0; m < 32; m++) {
            int flag = 0;
            MPI_Message msg;
            MPI_Status st;
            if (MPI_Improbe(0, MPI_ANY_TAG, sv->comm, &flag, &msg, &st) != MPI_SUCCESS)
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
        /* waitpid is a system call: look for dead children every CHECK_S, not
         * at every turn of a polling loop */
        double now = rp__now();
        bool check = now - checked >= CHECK_S;
        if (check)
            checked = now;
        int rc = serve_workers(sv, check, &events);
        if (rc != RP_OK)
            return rc;
        if (events) {
            idle_since = rp__now();
            nap = 20e-6;
            continue;
        }
        /* While a child computes, sleep on the bell (the child rings it when
         * done) at once: the core is the child's; poll briefly first only when
         * the rank and its child each have a core (pair_spin). Idle, poll MPI
         * for longer (the master may be sending), then take short naps. */
        bool computing = false;
        for (int i = 0; i < sv->nlocal; i++)
            if (atomic_load(&sv->w[i].ctl->completed) != sv->w[i].nposted)
                computing = true;
        double spin = !computing ? SPIN_IDLE_S : pair_spin || yield_when_idle ? SPIN_BUSY_S : 0;
        if (now - idle_since < spin) {
            idle_pause();
            continue;
        }
        uint32_t b = atomic_load(&sv->bell->bell);
        atomic_store(&sv->bell->rank_sleeps, 1);
        bool changed = false;
        for (int i = 0; i < sv->nlocal; i++)
            if (atomic_load(&sv->w[i].ctl->completed) != sv->w[i].nsent)
                changed = true;
        if (!changed) {
            if (computing)
                futex_wait(&sv->bell->bell, b, nap);
            else
                sleep_s(nap);
        }
        atomic_store(&sv->bell->rank_sleeps, 0);
        nap = fmin(nap * 2, SLEEP_MAX_S);
    }
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

/* A serving rank's part of rp_pool_create: the settings, the children, READY for
 * each, the master's verdict, then serving. */
static int server_run(struct server *sv, rp_error_t *err)
{
    long len = recv_ctl(sv->comm, 0, &sv->rbuf, &sv->rcap, NULL);
    if (len < 0)
        return RP_EMPI;
    rp__wire_hdr h;
    rp__rbuf r;
    if (rp__wire_open(sv->rbuf, (size_t)len, &h, &r) != RP_OK)
        return RP_EPROTO;
    if (h.kind == RP__MSG_GO) { /* the master gave up before starting */
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
    decide_yield(sv->inproc);
    if (sv->inproc)
        inproc_handlers();
    int init_rc = RP_OK;
    char init_why[300] = "";
    if (sv->hello.has_init) {
        rp__anyfn fn;
        init_rc = rp__fnref_resolve(&sv->hello.init, &fn, init_why, sizeof init_why);
        sv->init = (rp_init_fn)fn;
    }
    int nranks = (int)sv->hello.nranks, nworkers = (int)sv->hello.nworkers;
    int me = sv->rank - 1;
    sv->nlocal = me < nranks ? nworkers / nranks + (me < nworkers % nranks) : 0;
    sv->bell = shared_map(sizeof *sv->bell);
    sv->w = calloc((size_t)(sv->nlocal > 0 ? sv->nlocal : 1), sizeof *sv->w);
    if (!sv->bell || !sv->w)
        return RP_ENOMEM;
    int rc = RP_OK;
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        lw->id = me + i * nranks;
        lw->local = i;
        lw->ctl = shared_map(sizeof *lw->ctl);
        for (int s = 0; s < DEPTH; s++) {
            lw->slot[s] = shared_map(SLOT_BYTES);
            lw->req[s][0] = lw->req[s][1] = MPI_REQUEST_NULL;
        }
    }
    char limit[300];
    const char *too_many = node_limit(sv, sv->nlocal, limit, sizeof limit);
    for (int i = 0; i < sv->nlocal; i++) {
        struct lworker *lw = &sv->w[i];
        rp__wire_ready m;
        memset(&m, 0, sizeof m);
        snprintf(m.host, sizeof m.host, "%s", sv->host);
        bool mapped = lw->ctl != NULL;
        for (int s = 0; s < DEPTH; s++)
            mapped = mapped && lw->slot[s] != NULL;
        if (too_many) { /* refused before any process starts */
            m.status = RP_EINVAL;
            rp__error_set(&m.err, RP_EINVAL, 0, lw->id, sv->host, "%s", too_many);
        } else if (!mapped) {
            m.status = RP_ENOMEM;
            rp__error_set(&m.err, RP_ENOMEM, 0, lw->id, sv->host,
                          "rank %d on %s: cannot map the transfer area", sv->rank, sv->host);
        } else if (init_rc != RP_OK) {
            m.status = init_rc;
            rp__error_set(&m.err, init_rc, 0, lw->id, sv->host,
                          "initializer: rank %d on %s: %s", sv->rank, sv->host, init_why);
        } else if (sv->inproc) {
            lw->ctx.worker = lw->id;
            lw->ctx.host = sv->host;
            crash_sv = sv;
            crash_lw = lw;
            m.status = rp__worker_init(&lw->ctx, sv->init, sv->initarg, &m.err);
            crash_lw = NULL;
            m.pid = (int32_t)getpid();
            atomic_store(&lw->ctl->state, m.status == RP_OK ? CHILD_READY : CHILD_INIT_FAILED);
        } else {
            atomic_store(&lw->ctl->state, CHILD_STARTING);
            if (spawn_child(sv, lw) != RP_OK) {
                m.status = RP_ESYS;
                rp__error_set(&m.err, RP_ESYS, 0, lw->id, sv->host,
                              "rank %d on %s: fork failed: %s", sv->rank, sv->host,
                              strerror(errno));
            } else {
                m.status = await_child_start(sv, lw, &m.err);
                m.pid = (int32_t)lw->pid;
            }
        }
        if (rp__wire_put_ready(&sv->out, (uint32_t)lw->id, &m) != RP_OK)
            return RP_ENOMEM;
        if (MPI_Send(sv->out.buf, (int)sv->out.len, MPI_BYTE, 0, TAG_CTL, sv->comm) !=
            MPI_SUCCESS)
            return RP_EMPI;
    }
    len = recv_ctl(sv->comm, 0, &sv->rbuf, &sv->rcap, NULL);
    int32_t status;
    uint64_t seq;
    if (len < 0)
        return RP_EMPI;
    if (rp__wire_open(sv->rbuf, (size_t)len, &h, &r) != RP_OK || h.kind != RP__MSG_GO ||
        rp__wire_get_ctl(&r, &status, &seq) != RP_OK)
        return RP_EPROTO;
    if (status != RP_OK) {
        rp__error_set(err, status, 0, -1, sv->host, "the pool could not start (%s)",
                      rp_strerror(status));
        return status;
    }
    rc = serve(sv);
    return rc;
}

/* ======================================================================================
 * The master
 * ==================================================================================== */

struct range {
    size_t start, count;
};

/* The backend's state of one job. */
struct mjob {
    struct rp__job  *job;
    rp__sched_t      sched;
    rp__fnref        fn;
    _Atomic size_t   processed;  /* written by the progress thread only */
    _Atomic bool     done;
    double           item_s;     /* estimated seconds per item, 0 until known */
    bool             too_large;  /* its items exceed RP_MPI_ITEM_MAX: it fails at once */
    struct mjob     *next;       /* pending queue, then the active list */
    /* RP__JOB_TRACK: processed ranges not yet returned by arrivals(), under mp->lock */
    struct range    *arr;
    size_t           arr_head, arr_len, arr_cap;
};

struct inflight {
    struct mjob *mj;
    uint64_t     seq;
    size_t       start, count;
    size_t       got;        /* items [start, start + got) came back already */
    rp__wbuf     buf;
    MPI_Request  req, dreq;  /* the batch, its separate input */
    bool         used;
};

struct mworker {
    int             id, rank, tag;
    bool            alive;
    char            host[64];
    int             pid;
    int             ninflight;
    struct inflight fl[DEPTH];
    uint64_t        next_seq;
};

struct mpi_pool {
    MPI_Comm        comm;
    int             rank, size, nranks, nworkers;
    char            host[64];
    struct server  *sv;          /* serving ranks */

    /* master */
    struct mworker *w;
    pthread_t       thread;
    bool            thread_started;
    pthread_mutex_t lock;
    pthread_cond_t  cond;        /* waiters: a job completed, arrivals, terminated */
    pthread_cond_t  kick;        /* the progress thread's nap */
    struct mjob    *pending, *pending_tail;   /* under lock */
    _Atomic int     npending;
    _Atomic bool    want_stop, want_terminate;
    bool            terminated;  /* under lock */
    bool            thread_done; /* under lock */
    /* Progress: whoever holds plock moves messages: the pool thread, or a user
     * thread waiting for its result (no hand-off to another thread on the fast
     * path), or a submitting one sending its first batches. Others only trylock
     * it, so it never deadlocks against the core's locks. */
    pthread_mutex_t plock;
    _Atomic int     drivers;     /* user threads polling in wait() */
    _Atomic int     unfinished;  /* jobs submitted and not yet processed */
    _Atomic int64_t drove_ns;    /* when a waiter last stopped polling, its job done */
    bool            kicked;      /* under lock: kick was signalled since the last nap */
    _Atomic bool    deep;        /* the pool thread sleeps with no job: submit kicks it */
    bool            job_ended;   /* under plock: a job was completed in this poll */
    bool            terminating; /* under plock */
    struct rp__job **notify;     /* NOTIFY jobs done, for the pool thread; under lock */
    size_t          nnotify, capnotify;
    struct mjob    *active, *active_tail;      /* under plock */
    bool            retired;     /* stopped, its communicator freed (pool_retire) */
    bool           *rank_broken; /* per rank: gave up on it */
    bool           *rank_bye;    /* per rank: said BYE */
    char           *rbuf;
    size_t          rcap;
    rp__wbuf        ctl;
};

static struct mpi_pool *mp_of(rp_pool_t *pool)
{
    return pool->bdata;
}

/* Wakes the pool thread (mp->lock held). */
static void kick_locked(struct mpi_pool *mp)
{
    mp->kicked = true;
    pthread_cond_signal(&mp->kick);
}

static int worker_rank(const struct mpi_pool *mp, int w)
{
    return 1 + w % mp->nranks;
}

static void take_pending(struct mpi_pool *mp);
static int dispatch(struct mpi_pool *mp);
static int poll_messages(struct mpi_pool *mp);

/* ---- completion --------------------------------------------------------------------- */

static void arrivals_push(struct mpi_pool *mp, struct mjob *mj, size_t start, size_t count)
{
    if (!(mj->job->flags & RP__JOB_TRACK) || count == 0)
        return;
    pthread_mutex_lock(&mp->lock);
    if (mj->arr_len == mj->arr_cap) {
        size_t cap = mj->arr_cap ? 2 * mj->arr_cap : 16;
        struct range *a = malloc(cap * sizeof *a);
        if (a) {
            for (size_t i = 0; i < mj->arr_len; i++)
                a[i] = mj->arr[(mj->arr_head + i) % mj->arr_cap];
            free(mj->arr);
            mj->arr = a;
            mj->arr_cap = cap;
            mj->arr_head = 0;
        }
    }
    if (mj->arr_len < mj->arr_cap) {
        mj->arr[(mj->arr_head + mj->arr_len) % mj->arr_cap] = (struct range){ start, count };
        mj->arr_len++;
    }
    pthread_cond_broadcast(&mp->cond);
    pthread_mutex_unlock(&mp->lock);
}

static void active_remove(struct mpi_pool *mp, struct mjob *mj)
{
    struct mjob **pp = &mp->active;
    struct mjob *prev = NULL;
    while (*pp && *pp != mj) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = mj->next;
        if (mp->active_tail == mj)
            mp->active_tail = prev;
    }
    mj->next = NULL;
}

/* count more items of mj are processed (outputs written, failures reported). After
 * the last one the job leaves the progress thread's hands for good. */
static void items_processed(struct mpi_pool *mp, struct mjob *mj, size_t start, size_t count)
{
    arrivals_push(mp, mj, start, count);
    size_t p = atomic_load(&mj->processed) + count;
    atomic_store(&mj->processed, p);
    if (p < mj->job->n)
        return;
    active_remove(mp, mj);
    atomic_fetch_sub(&mp->unfinished, 1);
    mp->job_ended = true;
    struct rp__job *job = mj->job;
    pthread_mutex_lock(&mp->lock);
    if (job->flags & RP__JOB_NOTIFY) {
        /* finish() and the callback run on the pool thread, outside plock */
        if (mp->nnotify == mp->capnotify) {
            size_t cap = mp->capnotify ? 2 * mp->capnotify : 8;
            struct rp__job **a = realloc(mp->notify, cap * sizeof *a);
            if (a) {
                mp->notify = a;
                mp->capnotify = cap;
            }
        }
        if (mp->nnotify < mp->capnotify)
            mp->notify[mp->nnotify++] = job;
        kick_locked(mp);
    } else {
        atomic_store(&mj->done, true);
        pthread_cond_broadcast(&mp->cond);
    }
    pthread_mutex_unlock(&mp->lock);
}

/* On the pool thread: rp__job_done() for the NOTIFY jobs that completed. */
static int run_notifies(struct mpi_pool *mp)
{
    int n = 0;
    for (;;) {
        pthread_mutex_lock(&mp->lock);
        struct rp__job *job = mp->nnotify ? mp->notify[--mp->nnotify] : NULL;
        pthread_mutex_unlock(&mp->lock);
        if (!job)
            return n;
        rp__job_done(job);
        n++;
    }
}

/* One round of progress by whoever holds plock. */
static int progress_step(struct mpi_pool *mp)
{
    take_pending(mp);
    int events = 0;
    if (!mp->terminating)
        events += dispatch(mp);
    return events + poll_messages(mp);
}

static void fail_items(struct mpi_pool *mp, struct mjob *mj, size_t start, size_t count,
                       const rp_error_t *e)
{
    if (count == 0)
        return;
    if (count == 1) {
        rp_error_t one = *e;
        one.index = start;
        rp__job_fail(mj->job, &one);
    } else {
        rp__job_fail_range(mj->job, start, count, e);
    }
    items_processed(mp, mj, start, count);
}

/* Fails every unclaimed item of mj with e. */
static void fail_rest(struct mpi_pool *mp, struct mjob *mj, const rp_error_t *e)
{
    size_t start, len, first = 0, total = 0;
    while ((len = rp__sched_claim(&mj->sched, 0, &start)) > 0) {
        if (total == 0)
            first = start;
        if (start != first + total) { /* cannot happen: we are the only claimer */
            fail_items(mp, mj, first, total, e);
            first = start;
            total = 0;
        }
        total += len;
    }
    fail_items(mp, mj, first, total, e); /* may finish and unlink mj */
}

/* Fails every unclaimed item of every active job with e (terminate, no workers). */
static void fail_unclaimed(struct mpi_pool *mp, const rp_error_t *e)
{
    struct mjob *mj = mp->active;
    while (mj) {
        struct mjob *next = mj->next;
        fail_rest(mp, mj, e);
        mj = next;
    }
}

static void release_inflight(struct mworker *w, struct inflight *fl)
{
    if (fl->req != MPI_REQUEST_NULL)
        MPI_Wait(&fl->req, MPI_STATUS_IGNORE);
    if (fl->dreq != MPI_REQUEST_NULL)
        MPI_Wait(&fl->dreq, MPI_STATUS_IGNORE);
    fl->used = false;
    fl->mj = NULL;
    w->ninflight--;
}

static int alive_workers(const struct mpi_pool *mp)
{
    int n = 0;
    for (int i = 0; i < mp->nworkers; i++)
        n += mp->w[i].alive;
    return n;
}

/* Gives up on a rank: its batches in flight fail with code, and it gets no more. */
static void break_rank(struct mpi_pool *mp, int rank, int code, const char *why)
{
    if (rank <= 0 || rank >= mp->size || mp->rank_broken[rank])
        return;
    mp->rank_broken[rank] = true;
    rp__trace("mpi: giving up on rank %d: %s", rank, why);
    for (int i = 0; i < mp->nworkers; i++) {
        struct mworker *w = &mp->w[i];
        if (w->rank != rank)
            continue;
        w->alive = false;
        for (int k = 0; k < DEPTH; k++) {
            struct inflight *fl = &w->fl[k];
            if (!fl->used)
                continue;
            struct mjob *mj = fl->mj;
            size_t start = fl->start + fl->got, count = fl->count - fl->got;
            MPI_Request *reqs[2] = { &fl->req, &fl->dreq };
            for (int q = 0; q < 2; q++) {
                if (*reqs[q] != MPI_REQUEST_NULL) {
                    MPI_Cancel(reqs[q]);
                    MPI_Request_free(reqs[q]);
                }
                *reqs[q] = MPI_REQUEST_NULL;
            }
            release_inflight(w, fl);
            rp_error_t e;
            rp__error_set(&e, code, start, w->id, w->host,
                          "worker %d (rank %d on %s): %s", w->id, rank, w->host, why);
            fail_items(mp, mj, start, count, &e);
        }
    }
}

/* ---- sending batches --------------------------------------------------------------- */

static int send_batch(struct mpi_pool *mp, struct mworker *w, struct mjob *mj)
{
    struct rp__job *job = mj->job;
    bool var = job->flags & RP__JOB_VAR;
    if (mj->too_large) {
        rp_error_t e;
        rp__error_set(&e, RP_EINVAL, 0, -1, mp->host,
                      "an item of %zu + %zu bytes (in_size + out_size) is more than the mpi "
                      "backend moves: RP_MPI_ITEM_MAX is %zu bytes (256 MiB - 64 KiB)",
                      job->in_size, var ? (size_t)0 : job->out_size, (size_t)RP_MPI_ITEM_MAX);
        fail_rest(mp, mj, &e);
        return 1;
    }
    size_t per = job->in_size + (var ? 0 : job->out_size);
    /* the most items whose inputs and outputs one transfer area holds */
    size_t fit = RP_MPI_ITEM_MAX / (per ? per : 1);
    size_t max_items = BATCH_BYTES / (per ? per : 1);
    if (max_items > BATCH_ITEMS)
        max_items = BATCH_ITEMS;
    if (max_items == 0)
        max_items = 1;
    size_t chunk = job->chunksize;
    size_t start = 0, total = 0, len;
    /* Guided at the message level: a batch is about 1/(2 * workers * DEPTH) of
     * what is left, so each worker's pipeline holds about half its share, the
     * tail is single chunks, and batches are small enough to overlap transfer
     * and computation. */
    size_t remaining = rp__sched_remaining(&mj->sched);
    size_t target = remaining / (2 * (size_t)alive_workers(mp) * DEPTH);
    /* ... but once the items' cost is known, no batch shorter than BATCH_MIN_S:
     * trivial items go in few messages, and the tail still ends within that. */
    if (mj->item_s > 0) {
        double min_items = BATCH_MIN_S / mj->item_s;
        if ((double)target < min_items)
            target = min_items < (double)max_items ? (size_t)min_items : max_items;
    }
    if (target > max_items)
        target = max_items;
    if (chunk == 0) {
        /* the scheduler's automatic chunk, capped by the batch size; once the
         * items' cost is known, claims go on up to the target: near the end the
         * scheduler's guided chunks shrink to single items, and for cheap items
         * that tail would be dozens of tiny batches, each a round trip (1M trivial
         * items: ~40 batches after the last full one, a quarter of the map's time). */
        size_t want = target ? target : 1, s0;
        total = rp__sched_claim(&mj->sched, want, &start);
        while (mj->item_s > 0 && total > 0 && total < want &&
               (len = rp__sched_claim(&mj->sched, want - total, &s0)) > 0)
            total += len;
    } else {
        /* several whole chunks per message; a chunk larger than a transfer
         * area travels in parts */
        if (target < chunk)
            target = chunk;
        if (target > fit)
            target = fit;
        size_t s0;
        while (total < target &&
               (len = rp__sched_claim(&mj->sched, target - total < chunk ? target - total : 0,
                                      &s0)) > 0) {
            if (total == 0)
                start = s0;
            total += len;
            if (total + chunk > target)
                break;
        }
    }
    if (total == 0)
        return 0;
    struct inflight *fl = NULL;
    for (int k = 0; k < DEPTH; k++)
        if (!w->fl[k].used) {
            fl = &w->fl[k];
            break;
        }
    rp__wire_batch b = { .job = job->id, .seq = ++w->next_seq, .start = start,
                         .count = total, .chunk = chunk, .in_size = job->in_size,
                         .out_size = var ? 0 : job->out_size, .flags = job->flags,
                         .fn = mj->fn };
    /* A large input goes as its own message straight from the caller's array. */
    const char *input = job->in + start * job->in_size;
    size_t inbytes = total * job->in_size;
    bool separate = inbytes > INLINE_MAX;
    int rc = rp__wire_put_batch(&fl->buf, (uint32_t)w->id, &b, separate ? NULL : input);
    if (rc != RP_OK) {
        rp_error_t e;
        rp__error_set(&e, rc, start, w->id, w->host, "out of memory building a batch");
        fail_items(mp, mj, start, total, &e);
        return 1;
    }
    fl->used = true;
    fl->mj = mj;
    fl->seq = b.seq;
    fl->start = start;
    fl->count = total;
    fl->got = 0;
    w->ninflight++;
    rp__trace("mpi: job %llu items [%zu, %zu) -> worker %d (%d in flight)",
              (unsigned long long)job->id, start, start + total, w->id, w->ninflight);
    fl->req = fl->dreq = MPI_REQUEST_NULL;
    if (MPI_Isend(fl->buf.buf, (int)fl->buf.len, MPI_BYTE, w->rank, w->tag, mp->comm,
                  &fl->req) != MPI_SUCCESS ||
        (separate && MPI_Isend(input, (int)inbytes, MPI_BYTE, w->rank, w->tag, mp->comm,
                               &fl->dreq) != MPI_SUCCESS)) {
        break_rank(mp, w->rank, RP_EMPI, "MPI_Isend failed");
    }
    return 1;
}

/* Batches in flight per worker for mj: two (one running, one queued) unless the
 * batches are known to be so short that more are needed to cover the round
 * trip. Deeper queues would pin work to a worker that another could have run
 * sooner (imbalanced items). */
/* Expected seconds of the next batch of mj (0: not known yet). */
static double batch_seconds(struct mpi_pool *mp, struct mjob *mj)
{
    size_t remaining = rp__sched_remaining(&mj->sched);
    int alive = alive_workers(mp);
    size_t guided = remaining / (2 * (size_t)(alive > 0 ? alive : 1) * DEPTH);
    return mj->item_s * (double)(guided + 1);
}

static int depth_for(struct mpi_pool *mp, struct mjob *mj)
{
    if (mj->item_s <= 0)
        return 2;
    return batch_seconds(mp, mj) < SHORT_BATCH_S ? DEPTH : 2;
}

/* Keeps every live worker's pipeline full, one batch per worker per round. */
static int dispatch(struct mpi_pool *mp)
{
    int events = 0;
    if (!mp->active)
        return 0;
    if (alive_workers(mp) == 0) {
        rp_error_t e;
        rp__error_set(&e, RP_EBROKEN, 0, -1, mp->host, "the pool has no working worker left");
        fail_unclaimed(mp, &e);
        return 1;
    }
    bool any;
    do {
        any = false;
        for (int i = 0; i < mp->nworkers; i++) {
            struct mworker *w = &mp->w[i];
            if (!w->alive || w->ninflight >= DEPTH)
                continue;
            struct mjob *mj = mp->active;
            while (mj && rp__sched_remaining(&mj->sched) == 0)
                mj = mj->next;
            if (!mj)
                return events;
            if (w->ninflight >= depth_for(mp, mj))
                continue;
            int n = send_batch(mp, w, mj);
            events += n;
            any = any || n > 0;
        }
    } while (any);
    return events;
}

/* ---- receiving results -------------------------------------------------------------- */

/* Applies a RESULT message from rank src: for the next items of a batch in flight
 * (a batch may come back in several messages, in order, when its failures are many;
 * see "One batch's region"). \return RP_OK or RP_EPROTO/RP_EMPI (the caller gives
 * up on the rank). */
static int handle_result(struct mpi_pool *mp, int src, const rp__wire_hdr *h, rp__rbuf *r)
{
    rp__wire_result m;
    if (h->worker >= (uint32_t)mp->nworkers || rp__wire_get_result(r, h, &m) != RP_OK)
        return RP_EPROTO;
    struct mworker *w = &mp->w[h->worker];
    if (w->rank != src)
        return RP_EPROTO;
    struct inflight *fl = NULL;
    for (int k = 0; k < DEPTH; k++)
        if (w->fl[k].used && w->fl[k].seq == m.seq)
            fl = &w->fl[k];
    if (!fl || fl->mj->job->id != m.job || m.start != fl->start + fl->got || m.count == 0 ||
        m.count > fl->count - fl->got)
        return RP_EPROTO;
    struct mjob *mj = fl->mj;
    struct rp__job *job = mj->job;
    bool var = job->flags & RP__JOB_VAR;
    size_t start = (size_t)m.start, count = (size_t)m.count, batch = fl->count;
    bool last = fl->got + count == batch;

    if (h->flags & RESULT_ALLFAIL) {
        rp__rbuf rr;
        rp__rbuf_init(&rr, m.records, (size_t)m.rec_bytes);
        int kind;
        rp_error_t e;
        uint64_t index, size;
        const void *data;
        if (rp__wire_next_record(&rr, &kind, &e, &index, &data, &size) != 1 ||
            kind != RP__REC_ERROR)
            return RP_EPROTO;
        snprintf(e.host, sizeof e.host, "%s", w->host);
        fl->got += count;
        if (last)
            release_inflight(w, fl);
        if (h->flags & RESULT_GONE)
            w->alive = false;
        fail_items(mp, mj, start, count, &e);
        return RP_OK;
    }
    if (m.out_size != (var ? 0 : job->out_size))
        return RP_EPROTO;
    /* check every record before acting on any */
    rp__rbuf rr;
    rp__rbuf_init(&rr, m.records, (size_t)m.rec_bytes);
    int kind, rc;
    rp_error_t e;
    uint64_t index, size;
    const void *data;
    while ((rc = rp__wire_next_record(&rr, &kind, &e, &index, &data, &size)) == 1) {
        if (kind == RP__REC_ERROR)
            index = e.index;
        if (kind != RP__REC_DEAD && (index < start || index - start >= count))
            return RP_EPROTO;
        if (kind == RP__REC_VAR && !var)
            return RP_EPROTO;
    }
    if (rc != 0)
        return RP_EPROTO;
    size_t outbytes = count * (var ? 0 : job->out_size);
    if (outbytes > 0) {
        char *dst = job->out + start * job->out_size;
        if (m.outputs) {
            memcpy(dst, m.outputs, outbytes);
        } else {
            MPI_Status st;
            int got = 0;
            if (MPI_Recv(dst, (int)outbytes, MPI_BYTE, src, TAG_DATA, mp->comm, &st) !=
                MPI_SUCCESS)
                return RP_EMPI;
            MPI_Get_count(&st, MPI_BYTE, &got);
            if ((size_t)got != outbytes)
                return RP_EPROTO;
        }
    }
    rp__rbuf_init(&rr, m.records, (size_t)m.rec_bytes);
    while (rp__wire_next_record(&rr, &kind, &e, &index, &data, &size) == 1) {
        if (kind == RP__REC_ERROR) {
            snprintf(e.host, sizeof e.host, "%s", w->host);
            rp__job_fail(job, &e);
        } else if (kind == RP__REC_VAR) {
            rp__varslot *slot = (rp__varslot *)(job->out + index * sizeof(rp__varslot));
            void *copy = malloc(size ? (size_t)size : 1);
            if (copy) {
                memcpy(copy, data, (size_t)size);
                free(slot->data);
                slot->data = copy;
                slot->size = (size_t)size;
            } else {
                rp__error_set(&e, RP_ENOMEM, (size_t)index, w->id, mp->host,
                              "out of memory receiving a variable-size output");
                rp__job_fail(job, &e);
            }
        }
    }
    fl->got += count;
    if (last)
        release_inflight(w, fl);
    if (h->flags & RESULT_GONE)
        w->alive = false;
    if (last && m.compute_ns > 0) { /* the whole batch's time comes with its last part */
        double t = (double)m.compute_ns * 1e-9 / (double)batch;
        mj->item_s = mj->item_s > 0 ? 0.5 * mj->item_s + 0.5 * t : t;
    }
    items_processed(mp, mj, start, count);
    return RP_OK;
}

static int poll_messages(struct mpi_pool *mp)
{
    int events = 0;
    mp->job_ended = false;
    /* Stop after a message that completes a job: its waiter may be polling,
     * and wants its result now rather than after one more probe. */
    for (int m = 0; m < 64 && !mp->job_ended; m++) {
        int flag = 0;
        MPI_Message msg;
        MPI_Status st;
        if (MPI_Improbe(MPI_ANY_SOURCE, TAG_CTL, mp->comm, &flag, &msg, &st) != MPI_SUCCESS) {
            for (int rk = 1; rk < mp->size; rk++)
                break_rank(mp, rk, RP_EMPI, "MPI_Improbe failed");
            return events + 1;
        }
        if (!flag)
            break;
        events++;
        int count = 0, src = st.MPI_SOURCE;
        MPI_Get_count(&st, MPI_BYTE, &count);
        if ((size_t)count > mp->rcap) {
            char *b = realloc(mp->rbuf, (size_t)count);
            if (!b) {
                MPI_Mrecv(NULL, 0, MPI_BYTE, &msg, MPI_STATUS_IGNORE);
                break_rank(mp, src, RP_ENOMEM, "out of memory receiving a result");
                continue;
            }
            mp->rbuf = b;
            mp->rcap = (size_t)count;
        }
        if (MPI_Mrecv(mp->rbuf, count, MPI_BYTE, &msg, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
            break_rank(mp, src, RP_EMPI, "MPI_Mrecv failed");
            continue;
        }
        rp__wire_hdr h;
        rp__rbuf r;
        int rc = rp__wire_open(mp->rbuf, (size_t)count, &h, &r);
        if (rc == RP_OK && h.kind == RP__MSG_RESULT) {
            rc = handle_result(mp, src, &h, &r);
        } else if (rc == RP_OK && h.kind == RP__MSG_BYE) {
            mp->rank_bye[src] = true;
        } else if (rc == RP_OK && h.kind == RP__MSG_PROTO) {
            break_rank(mp, src, RP_EPROTO, "it received a malformed message");
        } else {
            rc = RP_EPROTO;
        }
        if (rc != RP_OK)
            break_rank(mp, src, rc,
                       rc == RP_EPROTO ? "malformed message from it" : "MPI failure");
    }
    return events;
}

/* ---- the progress thread ------------------------------------------------------------ */

static void send_all_ranks(struct mpi_pool *mp, unsigned kind)
{
    for (int rk = 1; rk < mp->size; rk++) {
        if (rp__wire_put_ctl(&mp->ctl, kind, 0, RP_OK, 0) != RP_OK)
            return;
        MPI_Send(mp->ctl.buf, (int)mp->ctl.len, MPI_BYTE, rk, TAG_CTL, mp->comm);
    }
}

/* Has every rank we still talk to said BYE? */
static bool all_byes(const struct mpi_pool *mp)
{
    for (int rk = 1; rk < mp->size; rk++)
        if (!mp->rank_broken[rk] && !mp->rank_bye[rk])
            return false;
    return true;
}

static void take_pending(struct mpi_pool *mp)
{
    if (atomic_load(&mp->npending) == 0)
        return;
    pthread_mutex_lock(&mp->lock);
    if (mp->pending) {
        if (mp->active_tail)
            mp->active_tail->next = mp->pending;
        else
            mp->active = mp->pending;
        mp->active_tail = mp->pending_tail;
        mp->pending = mp->pending_tail = NULL;
        atomic_store(&mp->npending, 0);
    }
    pthread_mutex_unlock(&mp->lock);
}

static void *progress_main(void *arg)
{
    struct mpi_pool *mp = arg;
    double idle_since = rp__now(), nap = 20e-6;
    precise_naps();
    bool stopping = false, finished = false;
    double asked = 0; /* when TERMINATE or STOP went out */
    while (!finished) {
        int events = 0;
        pthread_mutex_lock(&mp->plock);
        /* (after STOP, every job is done and the ranks are leaving: a TERMINATE
         * would reach a rank after it left the pool) */
        if (!mp->terminating && !stopping && atomic_load(&mp->want_terminate)) {
            send_all_ranks(mp, RP__MSG_TERMINATE);
            mp->terminating = true;
            asked = rp__now();
            events++;
        }
        events += progress_step(mp);
        /* A rank that does not answer within ANSWER_WAIT_S (stopped, hung, its node
         * gone) is given up: its items fail (RP_ECANCELED), nobody waits for it. */
        if ((mp->terminating || stopping) && !all_byes(mp) &&
            rp__now() - asked > ANSWER_WAIT_S) {
            char why[128];
            snprintf(why, sizeof why, "canceled: the pool was %s, and the rank did not "
                                      "answer within %g s",
                     mp->terminating ? "terminated" : "stopped", ANSWER_WAIT_S);
            for (int rk = 1; rk < mp->size; rk++)
                if (!mp->rank_bye[rk])
                    break_rank(mp, rk, RP_ECANCELED, why);
        }
        if (mp->terminating && all_byes(mp)) {
            rp_error_t e;
            rp__error_set(&e, RP_ECANCELED, 0, -1, mp->host, "canceled: the pool was terminated");
            for (int i = 0; i < mp->nworkers; i++) {
                struct mworker *w = &mp->w[i];
                for (int k = 0; k < DEPTH; k++) {
                    struct inflight *fl = &w->fl[k];
                    if (!fl->used)
                        continue;
                    struct mjob *mj = fl->mj;
                    size_t start = fl->start + fl->got, count = fl->count - fl->got;
                    release_inflight(w, fl);
                    fail_items(mp, mj, start, count, &e);
                }
            }
            take_pending(mp);
            fail_unclaimed(mp, &e);
            finished = true;
        } else if (!mp->terminating && !stopping && atomic_load(&mp->want_stop) &&
                   !mp->active && atomic_load(&mp->npending) == 0) {
            send_all_ranks(mp, RP__MSG_STOP);
            stopping = true;
            asked = rp__now();
            events++;
        } else if (stopping && all_byes(mp)) {
            finished = true;
        }
        /* The shortest batch we expect back: no point polling hard for results
         * of long batches, but answer within a fraction of the short ones. */
        double shortest = mp->active ? INFINITY : 0;
        for (struct mjob *mj = mp->active; mj; mj = mj->next)
            shortest = fmin(shortest, batch_seconds(mp, mj));
        bool long_only = shortest > LONG_BATCH_S;
        double nap_max = fmax(20e-6, fmin(250e-6, shortest > 0 ? shortest / 4 : 250e-6));
        pthread_mutex_unlock(&mp->plock);
        events += run_notifies(mp);
        if (finished)
            break;
        if (events) {
            idle_since = rp__now();
            nap = 20e-6;
            if (!long_only)
                continue;
        }
        /* A user thread polling in wait() moves the messages: keep out of its
         * way (it kicks us when it stops with work left), and for a moment
         * after it got its result (back-to-back applies: it will be back at
         * once, and waking this thread would cost it a context switch on its
         * core). Otherwise poll a little while work is coming back, then nap. */
        double now = rp__now();
        double back = (double)atomic_load(&mp->drove_ns) * 1e-9 + SPIN_IDLE_S - now;
        if (atomic_load(&mp->unfinished) > 0)
            back = 0; /* someone may be asleep waiting for it: no resting */
        bool driven = atomic_load(&mp->drivers) > 0;
        if (!driven && back <= 0 && !long_only && !yield_when_idle &&
            now - idle_since < SPIN_POLL_S) {
            idle_pause();
            continue;
        }
        double sleep = driven ? SLEEP_MAX_S : back > 0 ? fmax(back, nap) : nap;
        pthread_mutex_lock(&mp->lock);
        /* No job at all: nothing can arrive but what a submit brings, and a
         * submit kicks a deep sleeper. (deep is set before unfinished is
         * looked at, and submit counts unfinished before it looks at deep.) */
        bool deep = false;
        if (!driven && back <= 0) {
            atomic_store(&mp->deep, true);
            deep = atomic_load(&mp->unfinished) == 0;
            if (deep)
                sleep = IDLE_SLEEP_S;
            else
                atomic_store(&mp->deep, false);
        }
        /* (a stop or terminate asked for and not acted on yet: no sleep; once
         * asked of the ranks, naps until they answer) */
        if (atomic_load(&mp->npending) == 0 && mp->nnotify == 0 && !mp->kicked &&
            !(atomic_load(&mp->want_stop) && !stopping) &&
            !(atomic_load(&mp->want_terminate) && !mp->terminating)) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            long ns = ts.tv_nsec + (long)(sleep * 1e9);
            ts.tv_sec += ns / 1000000000L;
            ts.tv_nsec = ns % 1000000000L;
            pthread_cond_timedwait(&mp->kick, &mp->lock, &ts);
        }
        mp->kicked = false;
        if (deep)
            atomic_store(&mp->deep, false);
        pthread_mutex_unlock(&mp->lock);
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

/* ---- start --------------------------------------------------------------------------- */

static void master_free(struct mpi_pool *mp)
{
    if (mp->w)
        for (int i = 0; i < mp->nworkers; i++)
            for (int k = 0; k < DEPTH; k++)
                rp__wbuf_free(&mp->w[i].fl[k].buf);
    free(mp->w);
    free(mp->rank_broken);
    free(mp->rank_bye);
    free(mp->rbuf);
    rp__wbuf_free(&mp->ctl);
    free(mp->notify);
    pthread_mutex_destroy(&mp->plock);
    pthread_mutex_destroy(&mp->lock);
    pthread_cond_destroy(&mp->cond);
    pthread_cond_destroy(&mp->kick);
}

/* Tells every serving rank the verdict of the start (when status is a failure). */
static void master_go(struct mpi_pool *mp, int status)
{
    for (int rk = 1; rk < mp->size; rk++) {
        if (rp__wire_put_ctl(&mp->ctl, RP__MSG_GO, 0, status, 0) != RP_OK)
            return;
        MPI_Send(mp->ctl.buf, (int)mp->ctl.len, MPI_BYTE, rk, TAG_CTL, mp->comm);
    }
}

/* RP_MPI_ISOLATE=0 in the master's environment: tasks run inside the ranks. */
static bool in_process_wanted(void)
{
    const char *v = getenv("RP_MPI_ISOLATE");
    return v && (strcmp(v, "0") == 0 || strcmp(v, "no") == 0 || strcmp(v, "off") == 0);
}

static int master_start(rp_pool_t *pool, struct mpi_pool *mp, const rp_pool_opts_t *opts,
                        rp_error_t *err)
{
    if (opts->initarg_size > RP_MPI_INITARG_MAX) {
        /* refused before anything is copied: the ranks learn it from GO */
        master_go(mp, RP_EINVAL);
        rp__error_set(err, RP_EINVAL, 0, -1, mp->host,
                      "initarg_size %zu is more than the mpi backend sends to its ranks: "
                      "RP_MPI_INITARG_MAX is %zu bytes (2 GiB - 1 MiB)", opts->initarg_size,
                      (size_t)RP_MPI_INITARG_MAX);
        return RP_EINVAL;
    }
    mp->nworkers = opts->workers > 0 ? opts->workers : mp->size - 1;
    mp->nranks = mp->nworkers < mp->size - 1 ? mp->nworkers : mp->size - 1;
    mp->w = calloc((size_t)mp->nworkers, sizeof *mp->w);
    mp->rank_broken = calloc((size_t)mp->size, sizeof *mp->rank_broken);
    mp->rank_bye = calloc((size_t)mp->size, sizeof *mp->rank_bye);
    if (!mp->w || !mp->rank_broken || !mp->rank_bye) {
        master_go(mp, RP_ENOMEM);
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host, "out of memory");
        return RP_ENOMEM;
    }
    decide_yield(in_process_wanted());
    rp__wire_hello hello = { .nworkers = (uint32_t)mp->nworkers,
                             .nranks = (uint32_t)mp->nranks,
                             .max_tasks = opts->max_tasks_per_worker,
                             .flags = (opts->bind ? RP__HELLO_BIND : 0) |
                                      (in_process_wanted() ? RP__HELLO_INPROCESS : 0) };
    if (opts->initializer) {
        hello.has_init = 1;
        if (rp__fnref_make((rp__anyfn)opts->initializer, &hello.init) != RP_OK) {
            master_go(mp, RP_EFNREF);
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
    rp__wbuf hb;
    rp__wbuf_init(&hb);
    if (rp__wire_put_hello(&hb, &hello) != RP_OK || hb.len > INT_MAX) {
        rp__wbuf_free(&hb);
        master_go(mp, RP_ENOMEM);
        rp__error_set(err, RP_ENOMEM, 0, -1, mp->host,
                      "out of memory building the message with the initializer argument");
        return RP_ENOMEM;
    }
    for (int rk = 1; rk < mp->size; rk++)
        MPI_Send(hb.buf, (int)hb.len, MPI_BYTE, rk, TAG_CTL, mp->comm);
    rp__wbuf_free(&hb);

    int verdict = RP_OK;
    rp_error_t first;
    memset(&first, 0, sizeof first);
    int first_worker = INT_MAX;
    for (int got = 0; got < mp->nworkers; got++) {
        int src = -1;
        long len = recv_ctl(mp->comm, MPI_ANY_SOURCE, &mp->rbuf, &mp->rcap, &src);
        rp__wire_hdr h;
        rp__rbuf r;
        rp__wire_ready m;
        if (len < 0 || rp__wire_open(mp->rbuf, (size_t)len, &h, &r) != RP_OK ||
            h.kind != RP__MSG_READY || h.worker >= (uint32_t)mp->nworkers ||
            rp__wire_get_ready(&r, &m) != RP_OK) {
            master_go(mp, RP_EPROTO);
            rp__error_set(err, RP_EPROTO, 0, -1, mp->host,
                          "malformed start-up message from rank %d", src);
            return RP_EPROTO;
        }
        struct mworker *w = &mp->w[h.worker];
        w->id = (int)h.worker;
        w->rank = worker_rank(mp, w->id);
        w->tag = TAG_WORK0 + w->id / mp->nranks;
        w->pid = m.pid;
        w->alive = m.status == RP_OK;
        snprintf(w->host, sizeof w->host, "%s", m.host);
        for (int k = 0; k < DEPTH; k++) {
            rp__wbuf_init(&w->fl[k].buf);
            w->fl[k].req = w->fl[k].dreq = MPI_REQUEST_NULL;
        }
        if (m.status != RP_OK && w->id < first_worker) {
            first_worker = w->id;
            verdict = m.status;
            first = m.err;
            first.worker = w->id;
            snprintf(first.host, sizeof first.host, "%s", m.host);
        }
    }
    master_go(mp, verdict);
    if (verdict != RP_OK) {
        *err = first;
        err->code = verdict;
        return verdict;
    }
    pool->nworkers = mp->nworkers;
    if (pthread_create(&mp->thread, NULL, progress_main, mp) != 0) {
        /* the ranks are serving already: stop them */
        send_all_ranks(mp, RP__MSG_STOP);
        for (int rk = 1; rk < mp->size; rk++)
            recv_ctl(mp->comm, MPI_ANY_SOURCE, &mp->rbuf, &mp->rcap, NULL);
        rp__error_set(err, RP_ESYS, 0, -1, mp->host, "cannot start the pool thread");
        return RP_ESYS;
    }
    mp->thread_started = true;
    return RP_OK;
}

static int mpi_start(rp_pool_t *pool, const rp_pool_opts_t *opts, rp_error_t *err)
{
    struct mpi_pool *mp = calloc(1, sizeof *mp);
    if (!mp) {
        rp__error_set(err, RP_ENOMEM, 0, -1, pool->host, "out of memory");
        return RP_ENOMEM;
    }
    snprintf(mp->host, sizeof mp->host, "%s", pool->host);
    mp->comm = MPI_COMM_NULL;
    int rc = mpi_begin(opts, &mp->comm, err, mp->host);
    if (rc != RP_OK) {
        free(mp);
        return rc;
    }
    MPI_Comm_rank(mp->comm, &mp->rank);
    MPI_Comm_size(mp->comm, &mp->size);
    pool->bdata = mp;
    if (mp->rank != 0) {
        struct server *sv = calloc(1, sizeof *sv);
        if (!sv) {
            mpi_end(&mp->comm, false);
            free(mp);
            pool->bdata = NULL;
            return RP_ENOMEM;
        }
        sv->comm = mp->comm;
        sv->rank = mp->rank;
        snprintf(sv->host, sizeof sv->host, "%s", pool->host);
        rp__wbuf_init(&sv->out);
        mp->sv = sv;
        pool->is_master = false;
        rc = server_run(sv, err);
        pool->nworkers = (int)sv->hello.nworkers;
        if (rc != RP_OK) {
            if (err->code == 0)
                rp__error_set(err, rc, 0, -1, sv->host, "rank %d: %s", sv->rank,
                              rp_strerror(rc));
            server_free(sv);
            free(sv);
            mpi_end(&mp->comm, false);
            free(mp);
            pool->bdata = NULL;
        } else {
            started_add(pool);
        }
        return rc;
    }
    pthread_mutex_init(&mp->lock, NULL);
    pthread_mutex_init(&mp->plock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mp->cond, &ca);
    pthread_cond_init(&mp->kick, &ca);
    pthread_condattr_destroy(&ca);
    rp__wbuf_init(&mp->ctl);
    rc = master_start(pool, mp, opts, err);
    if (rc != RP_OK) {
        master_free(mp);
        /* after a malformed start-up message, more may be on their way */
        mpi_end(&mp->comm, rc == RP_EPROTO);
        free(mp);
        pool->bdata = NULL;
    } else {
        started_add(pool);
    }
    return rc;
}

/* ---- the rest of the backend interface --------------------------------------------------- */

static int mpi_submit(rp_pool_t *pool, struct rp__job *job)
{
    struct mpi_pool *mp = mp_of(pool);
    if (mp->retired) /* stopped at exit */
        return RP_ECLOSED;
    struct mjob *mj = calloc(1, sizeof *mj);
    if (!mj)
        return RP_ENOMEM;
    if (rp__fnref_make((rp__anyfn)job->fn, &mj->fn) != RP_OK) {
        free(mj);
        return RP_EFNREF;
    }
    mj->job = job;
    mj->too_large = job->in_size > RP_MPI_ITEM_MAX ||
                    (!(job->flags & RP__JOB_VAR) &&
                     job->out_size > RP_MPI_ITEM_MAX - job->in_size);
    rp__sched_init(&mj->sched, job->n, job->chunksize, mp->nworkers);
    atomic_init(&mj->processed, 0);
    atomic_init(&mj->done, job->n == 0);
    job->bdata = mj;
    if (job->n == 0)
        return RP_OK;
    atomic_fetch_add(&mp->unfinished, 1);
    pthread_mutex_lock(&mp->lock);
    if (mp->pending_tail)
        mp->pending_tail->next = mj;
    else
        mp->pending = mj;
    mp->pending_tail = mj;
    atomic_fetch_add(&mp->npending, 1);
    pthread_mutex_unlock(&mp->lock);
    /* Send the first batches from here when nobody else is moving messages (no
     * thread hand-off for an apply); wake the pool thread only for what is left. */
    bool kick = true;
    if (pthread_mutex_trylock(&mp->plock) == 0) {
        if (!mp->terminating) {
            take_pending(mp);
            dispatch(mp);
            kick = rp__sched_remaining(&mj->sched) > 0;
        }
        pthread_mutex_unlock(&mp->plock);
    }
    if (kick || atomic_load(&mp->deep)) {
        pthread_mutex_lock(&mp->lock);
        kick_locked(mp);
        pthread_mutex_unlock(&mp->lock);
    }
    return RP_OK;
}

static bool mpi_done(rp_pool_t *pool, struct rp__job *job)
{
    struct mjob *mj = job->bdata;
    return mj && atomic_load(&mj->done);
}

static int timed_wait(struct mpi_pool *mp, double deadline)
{
    if (isinf(deadline))
        return pthread_cond_wait(&mp->cond, &mp->lock);
    struct timespec ts;
    ts.tv_sec = (time_t)deadline;
    ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
    return pthread_cond_timedwait(&mp->cond, &mp->lock, &ts);
}

static int mpi_wait(rp_pool_t *pool, struct rp__job *job, double timeout)
{
    struct mpi_pool *mp = mp_of(pool);
    struct mjob *mj = job->bdata;
    if (atomic_load(&mj->done))
        return RP_OK;
    if (timeout == 0)
        return RP_ETIMEDOUT;
    double deadline = rp__deadline(timeout);
    /* Poll MPI ourselves for a while: a short job's result comes back without
     * waking any other thread. Then sleep until the pool thread signals. */
    double spin_until = fmin(deadline, rp__now() + SPIN_IDLE_S);
    atomic_fetch_add(&mp->drivers, 1);
    while (!atomic_load(&mj->done) && rp__now() < spin_until) {
        if (pthread_mutex_trylock(&mp->plock) == 0) {
            int ev = mp->terminating ? 0 : progress_step(mp);
            pthread_mutex_unlock(&mp->plock);
            if (ev == 0)
                idle_pause();
        } else {
            idle_pause();
        }
    }
    /* The last driver leaves: the pool thread takes over what is still running;
     * with nothing running, it lets the caller's next wait() drive again. */
    bool last = atomic_fetch_sub(&mp->drivers, 1) == 1;
    if (last && atomic_load(&mp->unfinished) == 0) {
        atomic_store(&mp->drove_ns, (int64_t)(rp__now() * 1e9));
    } else if (last) {
        atomic_store(&mp->drove_ns, 0);
        pthread_mutex_lock(&mp->lock);
        kick_locked(mp);
        pthread_mutex_unlock(&mp->lock);
    }
    int rc = RP_OK;
    pthread_mutex_lock(&mp->lock);
    while (!atomic_load(&mj->done)) {
        if (rp__now() >= deadline) {
            rc = RP_ETIMEDOUT;
            break;
        }
        timed_wait(mp, deadline);
    }
    pthread_mutex_unlock(&mp->lock);
    return rc;
}

static size_t mpi_progress(rp_pool_t *pool, struct rp__job *job)
{
    struct mjob *mj = job->bdata;
    return mj ? atomic_load(&mj->processed) : 0;
}

static void mpi_finish(rp_pool_t *pool, struct rp__job *job)
{
    struct mjob *mj = job->bdata;
    if (!mj)
        return;
    free(mj->arr);
    free(mj);
    job->bdata = NULL;
}

static size_t mpi_arrivals(rp_pool_t *pool, struct rp__job *job, size_t *idx, size_t max,
                           double timeout)
{
    struct mpi_pool *mp = mp_of(pool);
    struct mjob *mj = job->bdata;
    double deadline = rp__deadline(timeout);
    size_t got = 0;
    pthread_mutex_lock(&mp->lock);
    for (;;) {
        while (got < max && mj->arr_len > 0) {
            struct range *rg = &mj->arr[mj->arr_head];
            idx[got++] = rg->start++;
            if (--rg->count == 0) {
                mj->arr_head = (mj->arr_head + 1) % mj->arr_cap;
                mj->arr_len--;
            }
        }
        if (got > 0 || max == 0 || atomic_load(&mj->done) || rp__now() >= deadline)
            break;
        timed_wait(mp, deadline);
    }
    pthread_mutex_unlock(&mp->lock);
    return got;
}

static int mpi_close(rp_pool_t *pool)
{
    return RP_OK;
}

static int mpi_join(rp_pool_t *pool)
{
    struct mpi_pool *mp = mp_of(pool);
    if (!mp || !mp->thread_started)
        return RP_OK;
    pthread_mutex_lock(&mp->lock);
    atomic_store(&mp->want_stop, true);
    kick_locked(mp);
    pthread_mutex_unlock(&mp->lock);
    pthread_join(mp->thread, NULL);
    mp->thread_started = false;
    return RP_OK;
}

static int mpi_terminate(rp_pool_t *pool)
{
    struct mpi_pool *mp = mp_of(pool);
    if (!mp || !mp->thread_started)
        return RP_OK;
    pthread_mutex_lock(&mp->lock);
    atomic_store(&mp->want_terminate, true);
    kick_locked(mp);
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
static void pool_retire(rp_pool_t *pool)
{
    struct mpi_pool *mp = mp_of(pool);
    if (!mp || mp->retired)
        return;
    bool keep = false;
    if (mp->sv) {
        server_free(mp->sv);
    } else if (mp->thread_started) {
        if (pthread_equal(pthread_self(), mp->thread))
            return;
        mpi_terminate(pool);
        pthread_join(mp->thread, NULL);
        mp->thread_started = false;
    }
    for (int rk = 1; !mp->sv && rk < mp->size; rk++)
        keep = keep || mp->rank_broken[rk];
    mpi_end(&mp->comm, keep);
    mp->retired = true;
}

static void mpi_destroy(rp_pool_t *pool)
{
    struct mpi_pool *mp = mp_of(pool);
    if (!mp)
        return;
    started_remove(pool);
    pool_retire(pool);
    if (mp->sv)
        free(mp->sv);
    else
        master_free(mp);
    free(mp);
    pool->bdata = NULL;
}

const struct rp__backend_ops rp__backend_mpi = {
    .name = "mpi",
    .start = mpi_start,
    .submit = mpi_submit,
    .wait = mpi_wait,
    .done = mpi_done,
    .progress = mpi_progress,
    .finish = mpi_finish,
    .arrivals = mpi_arrivals,
    .close = mpi_close,
    .join = mpi_join,
    .terminate = mpi_terminate,
    .destroy = mpi_destroy,
    .initarg_max = RP_MPI_INITARG_MAX,
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
    return 1 + worker % mp->nranks;
}
