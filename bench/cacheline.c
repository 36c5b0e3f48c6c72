/* The cost of moving one cache line between two CPUs: two threads, pinned to
 * CPU A and CPU B, hand a counter back and forth (each waits for the other's
 * increment). Used to explain chunksize 1's two speeds (bench/README.md).
 *
 *   cacheline [A B]     (default 0 1)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { HANDOVERS = 2000000 };
static _Alignas(64) _Atomic long counter;
static int cpu[2];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *player(void *arg)
{
    long me = (long)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu[me], &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        perror("cacheline: sched_setaffinity");
    for (;;) {
        long v = atomic_load_explicit(&counter, memory_order_acquire);
        if (v >= HANDOVERS)
            return NULL;
        if ((v & 1) == me)
            atomic_store_explicit(&counter, v + 1, memory_order_release);
        else if (cpu[0] == cpu[1])
            sched_yield(); /* one CPU: let the other thread have its turn */
    }
}

int main(int argc, char **argv)
{
    cpu[0] = argc > 2 ? atoi(argv[1]) : 0;
    cpu[1] = argc > 2 ? atoi(argv[2]) : 1;
    pthread_t t[2];
    double t0 = now();
    for (long i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, player, (void *)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("cpus %d and %d: %.1f ns per hand-over of one cache line\n", cpu[0], cpu[1],
           (now() - t0) / HANDOVERS * 1e9);
    return 0;
}
