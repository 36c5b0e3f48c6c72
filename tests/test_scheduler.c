/* The scheduler: every item of [0, n) handed out exactly once, chunk sizes as
 * asked (fixed, limited, automatic), also under concurrent claims. */
#define _GNU_SOURCE /* CPU_SET, sched_setaffinity */
#include "testutil.h"
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Claims everything single-threaded; counts how often each item was handed out. */
static int claim_all(rp__sched_t *s, size_t n, size_t limit, size_t *nchunks,
                     size_t *lens, size_t maxlens)
{
    unsigned char *hits = calloc(n ? n : 1, 1);
    size_t start, len, k = 0;
    int bad = 0;
    while ((len = rp__sched_claim(s, limit, &start)) > 0) {
        if (start + len > n) {
            bad++;
            break;
        }
        for (size_t i = start; i < start + len; i++)
            hits[i]++;
        if (lens && k < maxlens)
            lens[k] = len;
        k++;
    }
    for (size_t i = 0; i < n; i++)
        bad += hits[i] != 1;
    free(hits);
    if (nchunks)
        *nchunks = k;
    return bad;
}

static void test_scheduler_fixed_chunks_cover_once(void)
{
    rp__sched_t s;
    size_t lens[8], k;
    rp__sched_init(&s, 10, 3, 4);
    CU_ASSERT_EQUAL(rp__sched_remaining(&s), 10);
    CU_ASSERT_EQUAL(claim_all(&s, 10, 0, &k, lens, 8), 0);
    CU_ASSERT_EQUAL(k, 4);
    CU_ASSERT_EQUAL(lens[0], 3);
    CU_ASSERT_EQUAL(lens[1], 3);
    CU_ASSERT_EQUAL(lens[2], 3);
    CU_ASSERT_EQUAL(rp__sched_remaining(&s), 0);
}

static void test_scheduler_last_chunk_short(void)
{
    rp__sched_t s;
    size_t lens[8], k;
    rp__sched_init(&s, 10, 4, 2);
    CU_ASSERT_EQUAL(claim_all(&s, 10, 0, &k, lens, 8), 0);
    CU_ASSERT_EQUAL(k, 3);
    CU_ASSERT_EQUAL(lens[2], 2);
    size_t start = 77;
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 0, &start), 0); /* nothing left, repeatedly */
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 0, &start), 0);
}

static void test_scheduler_chunk_larger_than_n(void)
{
    rp__sched_t s;
    size_t start = 5;
    rp__sched_init(&s, 3, 100, 2);
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 0, &start), 3);
    CU_ASSERT_EQUAL(start, 0);
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 0, &start), 0);
}

static void test_scheduler_empty(void)
{
    rp__sched_t s;
    size_t start;
    rp__sched_init(&s, 0, 0, 2);
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 0, &start), 0);
    CU_ASSERT_EQUAL(rp__sched_remaining(&s), 0);
}

static void test_scheduler_limit_caps_chunks(void)
{
    rp__sched_t s;
    size_t lens[64], k;
    rp__sched_init(&s, 100, 10, 2);
    CU_ASSERT_EQUAL(claim_all(&s, 100, 4, &k, lens, 64), 0);
    CU_ASSERT_EQUAL(k, 25);
    size_t over = 0;
    for (size_t i = 0; i < k; i++)
        over += lens[i] > 4;
    CU_ASSERT_EQUAL(over, 0);
    /* And with automatic chunks. */
    rp__sched_init(&s, 1000, 0, 1);
    size_t start;
    CU_ASSERT_EQUAL(rp__sched_claim(&s, 7, &start), 7);
    CU_ASSERT_EQUAL(start, 0);
    CU_ASSERT_EQUAL(rp__sched_remaining(&s), 993);
}

static void test_scheduler_auto_chunks_shrink(void)
{
    rp__sched_t s;
    size_t lens[4096], k;
    size_t n = 100000;
    rp__sched_init(&s, n, 0, 4);
    CU_ASSERT_EQUAL(claim_all(&s, n, 0, &k, lens, 4096), 0);
    CU_ASSERT_FATAL(k <= 4096);
    /* Guided: ceil(remaining / 8); never growing; ends with single items. */
    CU_ASSERT_EQUAL(lens[0], n / 8);
    size_t grew = 0;
    for (size_t i = 1; i < k; i++)
        grew += lens[i] > lens[i - 1];
    CU_ASSERT_EQUAL(grew, 0);
    CU_ASSERT_EQUAL(lens[k - 1], 1);
    CU_ASSERT_TRUE(k < 200); /* few dispatches for many items */
}

static void test_scheduler_auto_formula(void)
{
    CU_ASSERT_EQUAL(rp__sched_auto(100, 100, 2), 25);
    CU_ASSERT_EQUAL(rp__sched_auto(100, 9, 2), 3);   /* ceil(9/4) */
    CU_ASSERT_EQUAL(rp__sched_auto(100, 1, 8), 1);
    CU_ASSERT_EQUAL(rp__sched_auto(100, 0, 8), 0);
    CU_ASSERT_EQUAL(rp__sched_auto(100, 100, 0), 50); /* nworkers < 1 counts as 1 */
    CU_ASSERT_EQUAL(rp__sched_auto(SIZE_MAX, SIZE_MAX, 1), SIZE_MAX / 2 + 1);
}

struct claimer {
    rp__sched_t   *s;
    size_t         limit;
    _Atomic unsigned char *hits;
    size_t         claims;
};

static void *claim_thread(void *arg)
{
    struct claimer *c = arg;
    size_t start, len;
    while ((len = rp__sched_claim(c->s, c->limit, &start)) > 0) {
        for (size_t i = start; i < start + len; i++)
            atomic_fetch_add(&c->hits[i], 1);
        c->claims++;
    }
    return NULL;
}

static void concurrent_cover(size_t n, size_t chunksize, size_t limit)
{
    enum { T = 4 };
    rp__sched_t s;
    rp__sched_init(&s, n, chunksize, T);
    _Atomic unsigned char *hits = calloc(n, sizeof *hits);
    pthread_t t[T];
    struct claimer c[T];
    for (int i = 0; i < T; i++) {
        c[i] = (struct claimer){ &s, limit, hits, 0 };
        pthread_create(&t[i], NULL, claim_thread, &c[i]);
    }
    for (int i = 0; i < T; i++)
        pthread_join(t[i], NULL);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += atomic_load(&hits[i]) != 1;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rp__sched_remaining(&s), 0);
    free((void *)hits);
}

static void test_scheduler_concurrent_claims_exact(void)
{
    concurrent_cover(200000, 1, 0);
    concurrent_cover(200000, 7, 0);
    concurrent_cover(200000, 0, 0);
    concurrent_cover(200000, 0, 3);
}

/* The scheduler in memory shared by processes (as the local backend uses it):
 * forked children claim concurrently, each item is handed out once. */
static void test_scheduler_shared_memory_processes(void)
{
    enum { P = 3 };
    size_t n = 100000;
    size_t bytes = sizeof(rp__sched_t) + n;
    void *mem = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    CU_ASSERT_FATAL(mem != MAP_FAILED);
    rp__sched_t *s = mem;
    _Atomic unsigned char *hits = (_Atomic unsigned char *)(s + 1);
    rp__sched_init(s, n, 0, P);
    fflush(NULL);
    pid_t pids[P];
    for (int i = 0; i < P; i++) {
        pids[i] = fork();
        if (pids[i] == 0) {
            size_t start, len;
            while ((len = rp__sched_claim(s, 5, &start)) > 0)
                for (size_t k = start; k < start + len; k++)
                    atomic_fetch_add(&hits[k], 1);
            _exit(0);
        }
    }
    for (int i = 0; i < P; i++) {
        int status = 1;
        if (pids[i] > 0)
            waitpid(pids[i], &status, 0);
        CU_ASSERT_TRUE(pids[i] > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    size_t bad = 0;
    for (size_t k = 0; k < n; k++)
        bad += atomic_load(&hits[k]) != 1;
    CU_ASSERT_EQUAL(bad, 0);
    CU_ASSERT_EQUAL(rp__sched_remaining(s), 0);
    munmap(mem, bytes);
}

/* The workers the scheduler shares out default to the cores this process may use:
 * restricted to one CPU, a process sees one core. Checked in a child, so the
 * restriction stays there; the parent asks only afterwards, since the count is
 * cached per process (and inherited by a child forked later). */
static void test_scheduler_default_workers_follow_affinity(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(0, &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0)
            _exit(2);
        _exit(rp__topo_ncores() == 1 ? 0 : 1); /* first call in this child: not cached */
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Here, unrestricted (the count is cached from now on: this comes last). */
    int all = rp__topo_ncores();
    CU_ASSERT_TRUE(all >= 1);
    CU_ASSERT_TRUE(all <= sysconf(_SC_NPROCESSORS_ONLN));
}

/* Binding worker k puts it on one allowed core (modulo their number). */
static void test_scheduler_bind_to_one_core(void)
{
    fflush(NULL);
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        int ncores = rp__topo_ncores();
        if (rp__topo_bind(ncores + 1) != RP_OK) /* wraps around */
            _exit(1);
        cpu_set_t set;
        CPU_ZERO(&set);
        if (sched_getaffinity(0, sizeof set, &set) != 0)
            _exit(2);
        /* one core: its hardware threads only (1 here unless SMT) */
        long per_core = sysconf(_SC_NPROCESSORS_ONLN) / (ncores > 0 ? ncores : 1);
        _exit(CPU_COUNT(&set) >= 1 && CPU_COUNT(&set) <= (per_core > 0 ? per_core : 1) ? 0
                                                                                      : 3);
    }
    int status = 0;
    CU_ASSERT_EQUAL(waitpid(pid, &status, 0), pid);
    CU_ASSERT_TRUE(WIFEXITED(status));
    CU_ASSERT_EQUAL(WEXITSTATUS(status), 0);
}

int main(int argc, char **argv)
{
    static const tu_test tests[] = {
        TU_TEST(test_scheduler_fixed_chunks_cover_once),
        TU_TEST(test_scheduler_last_chunk_short),
        TU_TEST(test_scheduler_chunk_larger_than_n),
        TU_TEST(test_scheduler_empty),
        TU_TEST(test_scheduler_limit_caps_chunks),
        TU_TEST(test_scheduler_auto_chunks_shrink),
        TU_TEST(test_scheduler_auto_formula),
        TU_TEST(test_scheduler_concurrent_claims_exact),
        TU_TEST(test_scheduler_shared_memory_processes),
        TU_TEST(test_scheduler_default_workers_follow_affinity),
        TU_TEST(test_scheduler_bind_to_one_core),
        TU_END
    };
    return tu_run("scheduler", tests, argc, argv);
}
