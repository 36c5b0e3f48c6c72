/* What the soak program (tests/soak.c) sees of processes and resources through
 * /proc: the process table (to find worker processes to kill and to count what a
 * pool leaves behind), one process's open descriptors, memory and shared
 * mappings, the use of /dev/shm; and those resources over time, with the verdict
 * on whether they grow. Linux only; no rankpool calls here. */
#ifndef RP_SOAK_PROC_H
#define RP_SOAK_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/* One row of the process table. */
typedef struct sp_proc {
    pid_t pid, ppid;
    char  state;        /* R, S, D, Z, T, ... */
    char  comm[32];
} sp_proc;

/* Reads the whole process table into procs (at most max rows). \return rows. */
int sp_scan(sp_proc *procs, int max);

/* Descendants of any of roots[0..nroots) (not the roots) in a table from sp_scan:
 * their indexes into procs go to out (at most max). \return how many. With
 * depth 1, only the direct children. */
int sp_descendants(const sp_proc *procs, int n, const pid_t *roots, int nroots, int depth,
                   int *out, int max);

/* Has pid stopped running (a zombie, or gone)? */
bool sp_dead(pid_t pid);

/* Resources of this process and of the machine's /dev/shm at one moment. */
typedef struct sp_usage {
    int    fds;          /* open descriptors */
    double rss_mb;       /* resident memory */
    double heap_mb;      /* malloc'd and not freed (mallinfo2): what a leak grows */
    double vm_gb;        /* virtual size (a leaked pool region shows here) */
    int    maps;         /* mappings */
    int    shared_maps;  /* MAP_SHARED mappings (local pools' regions, MPI segments) */
    double shared_gb;    /* their virtual size */
    double shm_mb;       /* bytes in files under /dev/shm (all users) */
    int    shm_files;    /* files under /dev/shm */
} sp_usage;

void sp_usage_self(sp_usage *u);

/* Resources at one moment, with the run's counters then. */
typedef struct sp_sample {
    double   t;
    uint64_t items, kills, pools;
    int      procs;
    sp_usage u;
} sp_sample;

/* Samples over time (a growable array). */
typedef struct sp_series {
    sp_sample *s;
    int        n, cap;
} sp_series;

void sp_series_add(sp_series *se, const sp_sample *s);
/* Prints the first and last value of each resource of a series taken after each
 * pool and whether it grows: its largest value in the last third of the samples
 * (after a warm-up tenth) above that of the first third by more than a slack.
 * \return how many grow (a sample with processes left behind counts as one). */
int  sp_judge_series(FILE *f, const char *who, const sp_series *se);
/* Prints about 12 evenly spaced rows of a series: time, counters, resources. */
void sp_print_curve(FILE *f, const sp_series *curve);

/* Prints the processes in the table that descend from roots (and the roots), with
 * state and kernel wait channel, to stderr: what a report of a hang shows. */
void sp_print_tree(const pid_t *roots, int nroots);

#endif /* RP_SOAK_PROC_H */
