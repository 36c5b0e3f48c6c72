/* Shared by the standalone MPI test programs (tests/mpi_*.c: plain programs run
 * under mpirun by the tests/mpi-*.sh scripts, without CUnit; the CUnit programs
 * use tests/testutil.h): a check that reports a failure and counts it, the
 * monotonic clock, and a task's way of stopping its own rank for a while.
 *
 *   mt_named("mpi_x");                        // or "mpi_x: rank 2"
 *   fails += mt_check(rc == RP_OK, "the map succeeds");
 *   return fails;                             // exit status: failed checks
 */
#ifndef RP_MPITEST_H
#define RP_MPITEST_H

#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

/* How mt_check names the program in its messages. */
static char mt_who[64] = "mpi test";

static inline void mt_named(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(mt_who, sizeof mt_who, fmt, ap);
    va_end(ap);
}

/* \return 0 when ok, else 1 (after saying what failed on stderr). */
static inline int mt_check(bool ok, const char *what)
{
    if (!ok)
        fprintf(stderr, "%s: FAILED: %s\n", mt_who, what);
    return !ok;
}

/* Seconds on the monotonic clock. */
static inline double mt_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static inline void mt_touch(const char *path)
{
    int fd = open(path, O_CREAT | O_WRONLY, 0600);
    if (fd >= 0)
        close(fd);
}

/* Run by a task in an isolated worker process: the first time only (when it
 * creates the file `flag`), stops the worker's rank (its parent) with SIGSTOP
 * for hold_s seconds, then lets it go on. The files `stopped` and `resumed`
 * (either may be NULL) are made once the rank is stopped and just before it
 * runs again. \return whether it stopped the rank. */
static inline int mt_stop_rank_once(const char *flag, double hold_s, const char *stopped,
                                    const char *resumed)
{
    int fd = open(flag, O_CREAT | O_EXCL | O_WRONLY, 0600);
    if (fd < 0)
        return 0;
    close(fd);
    pid_t rank = getppid();
    kill(rank, SIGSTOP);
    if (stopped)
        mt_touch(stopped);
    usleep((useconds_t)(hold_s * 1e6));
    if (resumed)
        mt_touch(resumed);
    kill(rank, SIGCONT);
    return 1;
}

#endif /* RP_MPITEST_H */
