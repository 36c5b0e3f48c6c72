/* The local backend's shared region and fork-server protocol: what the master,
 * the fork server and the workers see in common. Layout, invariants and the
 * claiming protocol are described in doc/internals.md ("The local backend").
 *
 * Region: [hdr][slots][workers][arena][var heap], one MAP_SHARED|MAP_ANONYMOUS
 * mapping at the same address in every process (inherited through fork). */
#ifndef RP_LOCAL_SHM_H
#define RP_LOCAL_SHM_H

#include "internal.h"

#include <signal.h>
#include <stdalign.h>

#define RP__CL 64                 /* cache line */
#define RP__NSLOTS 64             /* jobs in flight at once (more wait in a queue) */
#define RP__NRANGES 16            /* per job: the main range + retried ranges */
#define RP__RING 32               /* error records per worker */
#define RP__MAXWORKERS 1024
#define RP__VSEGS 256             /* segments of the var heap, each owned by one job */

/* A range word packs a tag (24 bits) and an item index (40 bits): a claim is a
 * CAS on the whole word, so a stale claimer fails once the range is reused. */
#define RP__IDX_BITS 40
#define RP__IDX_MASK ((UINT64_C(1) << RP__IDX_BITS) - 1)
#define RP__IDX_NONE RP__IDX_MASK /* "no item": >= any end */
#define RP__RW(tag, idx) (((uint64_t)(tag) << RP__IDX_BITS) | (uint64_t)(idx))
#define RP__RW_IDX(w) ((w) & RP__IDX_MASK)
#define RP__RW_TAG(w) ((uint32_t)((w) >> RP__IDX_BITS))
#define RP__MAX_ITEMS (RP__IDX_MASK - 1)

/* The var heap is cut into RP__VSEGS segments; a segment belongs to one job from
 * the rp_output() that takes it until the master has copied that job's outputs.
 * Owner word of a segment: 0 when free, RP__VTRIM while the master gives its
 * pages back, else the job (slot, generation). A job's current segment, in its
 * slot: (segment + 1) << 40 | bytes used in it, or 0 for none. */
#define RP__VOWNER(slot, gen) (((uint64_t)(gen) << 8 | (uint64_t)(slot)) + 1)
#define RP__VTRIM UINT64_MAX
#define RP__VCUR(seg, used) ((((uint64_t)(seg) + 1) << 40) | (uint64_t)(used))
#define RP__VCUR_SEG(v) (((v) >> 40) - 1)
#define RP__VCUR_USED(v) ((v) & RP__IDX_MASK)

/* Slot state word (also a futex): gen << 2 | one of these. */
enum { RP__SLOT_FREE = 0, RP__SLOT_ACTIVE = 1, RP__SLOT_DONE = 2 };
#define RP__SW(gen, st) ((uint32_t)(((gen) << 2) | (st)))

struct rp__range {
    alignas(RP__CL) _Atomic uint64_t next; /* tag | first unclaimed index */
    _Atomic uint64_t end;                  /* one past the last item */
};

struct rp__slot {
    /* read-mostly parameters, written by the master before the job is published */
    alignas(RP__CL) uint64_t id;
    uint32_t     gen;            /* job generation (30 bits used in the state word) */
    uint32_t     flags;          /* RP__JOB_* */
    rp_task_fn   fn;
    uint64_t     n, in_size, out_size, chunksize;
    uint64_t     in_off, out_off, mark_off;  /* in the arena */
    _Atomic uint32_t nranges;
    uint32_t     tag;            /* last range tag used (master only) */
    alignas(RP__CL) _Atomic uint32_t state;   /* RP__SW(gen, st); futex of waiters */
    _Atomic uint32_t waiters;
    alignas(RP__CL) _Atomic uint32_t tseq;    /* RP__JOB_TRACK: bumped per chunk */
    _Atomic uint32_t twaiters;
    _Atomic uint32_t suspect;    /* claims of dead workers not yet resolved */
    alignas(RP__CL) _Atomic uint64_t mdone;   /* items the master accounted for */
    alignas(RP__CL) _Atomic uint64_t vcur;    /* RP__JOB_VAR: current segment */
    struct rp__range range[RP__NRANGES];
};

/* Worker life, in its slot. */
enum { RP__W_EMPTY, RP__W_STARTING, RP__W_READY, RP__W_INITFAIL, RP__W_RETIRED };
/* What a worker holds (hold.state). */
enum { RP__H_NONE, RP__H_TENTATIVE, RP__H_CONFIRMED };

struct rp__ring_entry {
    uint32_t   slot, gen;
    rp_error_t e;
};

struct rp__wslot {
    /* the chunk held, written by the worker only; read by the master after its death */
    alignas(RP__CL) _Atomic uint32_t hstate;
    uint32_t hslot, hgen, hrange, htag;
    uint64_t hstart, hlen, hbase;
    _Atomic size_t cur;          /* the item running (rp__worker_run stores it) */
    /* life */
    alignas(RP__CL) _Atomic int32_t pid;
    _Atomic uint32_t life;       /* RP__W_* */
    uint64_t   processed;        /* items run by this process (max_tasks_per_worker) */
    rp_error_t init_err;
    /* items processed per job slot: only this worker writes them */
    alignas(RP__CL) _Atomic uint64_t done[RP__NSLOTS];
    /* error ring: the worker writes head, the master tail */
    alignas(RP__CL) _Atomic uint32_t head;
    alignas(RP__CL) _Atomic uint32_t tail;
    _Atomic uint32_t full;       /* the worker waits on tail for room */
    struct rp__ring_entry ring[RP__RING];
};

struct rp__hdr {
    alignas(RP__CL) _Atomic uint32_t work_seq; /* futex of idle workers */
    _Atomic uint32_t nsleep;
    _Atomic uint32_t nspin;                   /* idle workers spinning */
    uint32_t         max_spin;                /* more would only take cores from others */
    alignas(RP__CL) _Atomic uint64_t work_mask; /* slots that may have work */
    _Atomic uint32_t shutdown;
    _Atomic uint32_t init_report;             /* workers write the eventfd at init */
    _Atomic int32_t  nqueued;                 /* jobs waiting for a slot (master) */
    alignas(RP__CL) _Atomic uint64_t vseg[RP__VSEGS]; /* owner of each var segment */
    alignas(RP__CL) struct rp__slot slots[RP__NSLOTS];
};

/* Fork-server messages (SOCK_SEQPACKET, one struct per message). */
enum {
    RP__FS_SPAWN = 1,  /* master -> fs: start worker `worker` */
    RP__FS_KILLALL,    /* master -> fs: SIGKILL every worker, reap, answer KILLED */
    RP__FS_QUIT,       /* master -> fs: reap the (exiting) workers, then exit */
    RP__FS_DIED,       /* fs -> master: worker `worker` (pid) ended with `status` */
    RP__FS_SPAWNFAIL,  /* fs -> master: fork failed for `worker` */
    RP__FS_KILLED,     /* fs -> master: every worker is reaped */
};
struct rp__fs_msg {
    int32_t kind, worker, pid, status;
};

/* What the fork server needs; lives in the master's memory, inherited by fork. */
struct rp__fs_conf {
    struct rp__hdr   *hdr;
    struct rp__wslot *(*wslot)(void *lp, int k);
    void (*worker_main)(void *lp, int k);   /* never returns */
    void   *lp;
    int     nworkers;
    void   *region;    /* the shared region, unmapped before exiting */
    size_t  region_size;
    int     sock;      /* the fork server's end */
    int     efd;       /* eventfd to wake the master's pool thread */
    pid_t   master;
    /* the signal state to give back to workers */
    sigset_t         mask;
    struct sigaction chld, intr;
};

/* Runs the fork server in a freshly forked child; never returns. */
void rp__forkserver_main(struct rp__fs_conf *c) __attribute__((noreturn));
/* Unmaps the shared region and _exits: how the fork server and workers end. */
void rp__region_exit(struct rp__fs_conf *c, int status) __attribute__((noreturn));

#endif /* RP_LOCAL_SHM_H */
