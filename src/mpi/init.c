/* The mpi backend's set-up, shared by both roles: MPI initialisation and
 * finalisation, the pools of this process (one per communicator; those not freed
 * are stopped at exit), the start-up handshake that makes sure every rank called
 * rp_pool_create, the pool's communicator, and how waiting loops share the node's
 * cores (backend_mpi.h). */
#include "backend_mpi.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* ---- waiting ------------------------------------------------------------------------ */

bool rp__mpi_yield_when_idle = true;
bool rp__mpi_pair_spin = false;
bool rp__mpi_pair_yield = false;

void rp__mpi_decide_yield(bool inproc)
{
    int lrank, local = 0; /* 0: the launcher does not say */
    rp__local_rank_size(&lrank, &local);
    int ncores = rp__topo_ncores();
    rp__mpi_yield_when_idle = local <= 0 || local > ncores;
    rp__mpi_pair_spin = !inproc && local > 0 && 2 * local <= ncores;
    /* RP_MPI_SPIN in a rank's environment overrides the guess: 1, the rank and its
     * task process spin for each other (a core each is known to be free, e.g. a
     * launcher that does not say how many ranks share the node); 0, never */
    const char *v = getenv("RP_MPI_SPIN");
    if (v && !inproc && (strcmp(v, "1") == 0 || strcmp(v, "0") == 0))
        rp__mpi_pair_spin = v[0] == '1';
    /* A core for each rank but not for each rank and its worker process (the
     * master's waiting thread polls on one of them): the pair polls each other
     * briefly, yielding, as on an oversubscribed node; a rank of one worker only */
    rp__mpi_pair_yield = !inproc && !rp__mpi_pair_spin && !rp__mpi_yield_when_idle &&
                         !(v && strcmp(v, "0") == 0);
    rp__trace("mpi waiting: %d ranks on this node, %d cores: pair spin %s, idle %s%s",
              local, ncores, rp__mpi_pair_spin ? "on" : rp__mpi_pair_yield ? "yields" : "off",
              rp__mpi_yield_when_idle ? "yields" : "spins", v ? " (RP_MPI_SPIN set)" : "");
}

void rp__mpi_precise_naps(void)
{
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
}

/* ---- MPI and the pools of this process ------------------------------------------------ */

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
        rp__mpi_pool_retire(pools[i]);
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
void rp__mpi_started_add(rp_pool_t *pool)
{
    pthread_mutex_lock(&init_lock);
    if (nstarted < MAX_LIVE)
        started[nstarted++] = pool;
    pthread_mutex_unlock(&init_lock);
}

void rp__mpi_started_remove(rp_pool_t *pool)
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

/* RP_MPI_START_TIMEOUT: seconds, or no limit (envtime.c); else the default. */
static double start_timeout(void)
{
    return rp__env_seconds("RP_MPI_START_TIMEOUT", START_TIMEOUT_S, true);
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
            rp__mpi_sleep(nap);
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
            rp__mpi_sleep(nap);
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

int rp__mpi_begin(const rp_pool_opts_t *opts, MPI_Comm *comm, rp_error_t *err,
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
void rp__mpi_end(MPI_Comm *comm, bool keep)
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

long rp__mpi_recv_ctl(MPI_Comm comm, int src, char **buf, size_t *cap, int *from)
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
