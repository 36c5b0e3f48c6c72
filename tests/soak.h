/* Shared by the soak program's two files: tests/soak.c (the driver: pools, worker
 * kills, terminate, the watchdog, resource tracking, the summary) and
 * tests/soak_ops.c (every operation with the check of its results; the items and
 * tasks are in soak_task.h).
 * See tests/README.md, "The soak program". */
#ifndef RP_SOAK_H
#define RP_SOAK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "rankpool.h"

/* The operations, chosen at random. */
enum soak_kind {
    SK_MAP, SK_MAP_ASYNC, SK_IMAP, SK_IMAP_UNORDERED, SK_APPLY, SK_APPLY_ASYNC,
    SK_MAP_VAR, SK_MAP_VAR_ASYNC, SK_NKINDS
};
extern const char *const soak_kind_name[SK_NKINDS];

/* Counters of the whole run (master only). */
typedef struct soak_stats {
    _Atomic uint64_t jobs[SK_NKINDS];
    _Atomic uint64_t items;          /* items whose outcome was checked */
    _Atomic uint64_t ok;             /* ... succeeded with the right output */
    _Atomic uint64_t raised;         /* ... failed with RP_ETASK as their input says */
    _Atomic uint64_t eworker;        /* ... RP_EWORKER while a worker was killed */
    _Atomic uint64_t canceled;       /* ... RP_ECANCELED after terminate */
    _Atomic uint64_t broken;         /* ... RP_EBROKEN after kills (see soak_ops.c) */
    _Atomic uint64_t unknown;        /* failed, code not reported (sync maps, see below) */
    /* defects: */
    _Atomic uint64_t wrong;          /* success reported with a wrong output */
    _Atomic uint64_t lost;           /* an item that must fail reported as a success */
    _Atomic uint64_t badfail;        /* a failure that nothing explains, or wrong fields */
    _Atomic uint64_t callerr;        /* a call returned a code it must not */
    _Atomic uint64_t badcb;          /* callback not exactly once, or wrong */
    _Atomic uint64_t kills, kill_misses, terminates, pools, create_fails;
    _Atomic uint64_t firsts;         /* (printing only: first of each unexpected code) */
} soak_stats;
extern soak_stats soak_st;

/* Kills of worker processes: started is bumped before kill(), confirmed once the
 * process is dead. Only one thread kills, so kill k is confirmed before k+1 starts. */
extern _Atomic uint64_t soak_kills_started, soak_kills_confirmed;

/* One pool's life. */
typedef struct soak_epoch {
    rp_pool_t  *pool;
    uint64_t    salt;        /* the initializer's argument, mixed into every output */
    int         nworkers;
    long        max_tasks;   /* max_tasks_per_worker */
    atomic_bool stop;        /* submitters finish their operation and return */
    atomic_bool terminated;  /* set just before rp_pool_terminate is called */
    atomic_bool killed;      /* a worker of this pool was (about to be) killed */
} soak_epoch;

/* A thread that submits work, with its watchdog slot. */
typedef struct soak_thread {
    int             id;
    uint64_t        rng;
    soak_epoch     *ep;
    _Atomic double  since;   /* when the current call started, 0 outside calls */
    const char *_Atomic what;
    char            detail[256];          /* the job of the call (for a hang's report) */
    rp_result_t *_Atomic waiting;         /* the result it waits for, or NULL */
} soak_thread;

/* The watchdog's view: a call starts / ends (t may be NULL for the driver). */
void soak_watch(soak_thread *t, const char *what);
void soak_unwatch(soak_thread *t);

/* Counts a defect in *counter and prints its description (the first few of each
 * kind in full). */
void soak_defect(_Atomic uint64_t *counter, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

uint64_t soak_rand(uint64_t *s);
/* Uniform in [lo, hi]; log-uniform in [lo, hi] (lo >= 1). */
uint64_t soak_range(uint64_t *s, uint64_t lo, uint64_t hi);
uint64_t soak_logrange(uint64_t *s, uint64_t lo, uint64_t hi);

/* Options of the run that shape the operations: the kinds allowed (a bit per
 * soak_kind), a fixed failure modulus (-1: random per job), the fewest items. */
extern unsigned soak_kinds_mask;
extern long     soak_fail_mod;
extern size_t   soak_min_items;  /* maps get at least this many items */

/* One random operation on t->ep->pool, with every result checked. \return false
 * when the pool refuses work (closed by terminate): the thread should stop. */
bool soak_op(soak_thread *t);

#endif /* RP_SOAK_H */
