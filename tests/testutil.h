/* Shared by the CUnit test programs: a runner whose exit status is the number of
 * failures, and pool creation that works on either backend (under mpirun the
 * serving ranks return from rp_pool_create with is_master false and skip the body).
 *
 *   static void test_x_y(void) {
 *       rp_pool_t *p = tu_pool(2, NULL);
 *       if (!p) return;                 // serving MPI rank, or creation failed
 *       ... assertions, run on the master only ...
 *       tu_pool_done(p);
 *   }
 */
#ifndef RP_TESTUTIL_H
#define RP_TESTUTIL_H

#include <CUnit/Basic.h>
#include <CUnit/CUnit.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rankpool.h"

/* Creates a pool with `workers` workers (0 = default) and the given options
 * (may be NULL). Returns NULL on a serving MPI rank (after it has served) and on
 * failure (recorded as a CUnit failure). */
static inline rp_pool_t *tu_pool(int workers, const rp_pool_opts_t *base)
{
    rp_pool_opts_t o;
    if (base)
        o = *base;
    else
        memset(&o, 0, sizeof o);
    if (o.workers == 0)
        o.workers = workers;
    rp_pool_t *p = NULL;
    int rc = rp_pool_create(&p, &o);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    if (rc != RP_OK)
        return NULL;
    if (!rp_pool_is_master(p)) {
        rp_pool_free(p);
        return NULL;
    }
    return p;
}

/* close + join + free, asserting each step. */
static inline void tu_pool_done(rp_pool_t *p)
{
    CU_ASSERT_EQUAL(rp_pool_close(p), RP_OK);
    CU_ASSERT_EQUAL(rp_pool_join(p), RP_OK);
    rp_pool_free(p);
}

/* Whether this process is the master: rank 0 of the job under mpirun (on the mpi
 * backend pools are created on MPI_COMM_WORLD), always outside mpirun. For the
 * checks of a pool creation that fails on every rank. */
static inline bool tu_master_rank(void)
{
    const char *r = getenv("OMPI_COMM_WORLD_RANK");
    if (!r)
        r = getenv("PMIX_RANK");
    return !r || atoi(r) == 0;
}

/* Monotonic seconds. */
static inline double tu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Sleeps `seconds` (a task's or a test's pause). */
static inline void tu_sleep(double seconds)
{
    struct timespec ts = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    nanosleep(&ts, NULL);
}

/* 0, 1, ..., n-1 (malloc'd; free it). */
static inline long *tu_iota(size_t n)
{
    long *v = malloc((n ? n : 1) * sizeof *v);
    CU_ASSERT_PTR_NOT_NULL_FATAL(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (long)i;
    return v;
}

/* How many of out[0..n) are not i*i. */
static inline int tu_wrong_squares(const long *out, size_t n)
{
    int wrong = 0;
    for (size_t i = 0; i < n; i++)
        wrong += out[i] != (long)(i * i);
    return wrong;
}

/* A pool on the local backend with `workers` workers (unless base sets them),
 * asserting that creation succeeds. */
static inline rp_pool_t *tu_local_pool(int workers, const rp_pool_opts_t *base)
{
    rp_pool_opts_t o;
    if (base)
        o = *base;
    else
        memset(&o, 0, sizeof o);
    o.backend = "local";
    if (!o.workers)
        o.workers = workers;
    rp_pool_t *p = NULL;
    int rc = rp_pool_create(&p, &o);
    CU_ASSERT_EQUAL_FATAL(rc, RP_OK);
    return p;
}

/* The children of process `parent` (zombies included), from /proc: the first
 * `max` pids go to pids[]. \return how many there are, -1 if unreadable. */
static inline int tu_children_of(pid_t parent, pid_t *pids, int max)
{
    char path[96], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)parent, (int)parent);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    int count = 0;
    for (char *save, *s = strtok_r(buf, " \n", &save); s; s = strtok_r(NULL, " \n", &save)) {
        if (count < max)
            pids[count] = (pid_t)atoi(s);
        count++;
    }
    return count;
}

/* Children of this process (zombies included); -1 if unreadable. */
static inline int tu_count_children(void)
{
    return tu_children_of(getpid(), NULL, 0);
}

/* Waits until pid is not running any more (a zombie counts: when its parent was
 * killed, reaping it is init's business), at most `seconds`. */
static inline bool tu_dead(pid_t pid, double seconds)
{
    double end = tu_now() + seconds;
    do {
        if (kill(pid, 0) != 0 && errno == ESRCH)
            return true;
        char path[64], buf[256];
        snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
        FILE *f = fopen(path, "r");
        if (f) {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            fclose(f);
            buf[n] = '\0';
            const char *close_paren = strrchr(buf, ')');
            if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'Z')
                return true;
        }
        tu_sleep(0.002);
    } while (tu_now() < end);
    return false;
}

typedef struct { const char *name; void (*fn)(void); } tu_test;

#ifdef TEST_DLDIR
#include <dlfcn.h>
#include <stdint.h>
/* The task of the small test module libdlmod_<which>.so (tests/dlmod.c), loaded
 * with dlopen; *handle for dlclose. */
typedef int (*tu_dlmod_fn)(const void *, void *, rp_ctx_t *);

static inline tu_dlmod_fn tu_dlmod_open(const char *which, void **handle)
{
    char path[600];
    snprintf(path, sizeof path, "%s/libdlmod_%s.so", TEST_DLDIR, which);
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    CU_ASSERT_PTR_NOT_NULL_FATAL(*handle);
    tu_dlmod_fn f = (tu_dlmod_fn)(uintptr_t)dlsym(*handle, "dlmod_task");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    return f;
}
#endif

/* Runs one suite and returns the number of failures (0 = success). With an
 * argument, runs only the tests whose names contain it. */
static inline int tu_run(const char *suite, const tu_test *tests, int argc, char **argv)
{
    if (CU_initialize_registry() != CUE_SUCCESS)
        return 1;
    CU_pSuite s = CU_add_suite(suite, NULL, NULL);
    for (const tu_test *t = tests; t->name; t++)
        if (argc < 2 || strstr(t->name, argv[1]))
            CU_add_test(s, t->name, t->fn);
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    int failures = (int)CU_get_number_of_failures();
    CU_cleanup_registry();
    return failures;
}

#define TU_TEST(fn) { #fn, fn }
#define TU_END { NULL, NULL }

#endif /* RP_TESTUTIL_H */
