/* What this machine allows any process pool: W processes that do nothing but the
 * tasks of bench/scale.c (sleep T ms, K times each), no pool at all. Efficiency =
 * K * T / time until the last one is done: the ceiling of a map of sleep tasks on
 * W worker processes here, the wake-ups of W sleepers alone (bench/scale.sh runs
 * it beside rankpool for the same worker counts).
 *
 *   sleepers --workers W [--ms T] [--items N] [--variant V] [--map-mb M]
 *
 * N items in all (default W * max(4, 2000 / T), as rp_scale: K = N / W each). The
 * processes are forked first, then all started at once (a pipe closed); each
 * reports its end on another pipe. --map-mb M: the parent first maps and touches
 * M MiB in 400 mappings, as a serving rank does before it forks, so that the
 * sleepers inherit as large a memory map as rankpool's workers (0: none).
 * Prints RESULT lines (bench/common.h): workload scale_map, variant V (default
 * "<W>w/<T>ms"), implementation "sleepers". */
#include "common.h"

#include <errno.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* What a rank holds when it forks: many mappings, some touched. */
static void map_like_a_rank(long mb)
{
    const int n = 400;
    size_t each = ((size_t)mb << 20) / n;
    each = (each + 4095) & ~(size_t)4095;
    for (int i = 0; i < n && each > 0; i++) {
        /* alternate protections so that the kernel cannot merge neighbours */
        char *p = mmap(NULL, each, i % 2 ? PROT_READ | PROT_WRITE : PROT_READ,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p != MAP_FAILED && i % 2)
            memset(p, 1, each);
    }
}

int main(int argc, char **argv)
{
    long workers = 0, ms = 100, items = 0, mb = 0;
    const char *variant = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--workers"))
            workers = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--ms"))
            ms = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--items"))
            items = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--variant"))
            variant = argv[i + 1];
        else if (!strcmp(argv[i], "--map-mb"))
            mb = atol(argv[i + 1]);
    }
    if (workers <= 0 || ms < 0) {
        fprintf(stderr, "usage: sleepers --workers W [--ms T] [--items N] [--variant V] "
                        "[--map-mb M]\n");
        return 2;
    }
    if (items <= 0)
        items = workers * (ms > 0 && 2000 / ms > 4 ? 2000 / ms : 4);
    long k = items / workers > 0 ? items / workers : 1;
    char vbuf[64];
    if (!variant) {
        snprintf(vbuf, sizeof vbuf, "%ldw/%ldms", workers, ms);
        variant = vbuf;
    }
    if (mb > 0)
        map_like_a_rank(mb);
    int go[2], done[2];
    if (pipe(go) != 0 || pipe(done) != 0) {
        perror("sleepers: pipe");
        return 1;
    }
    long started = 0;
    for (; started < workers; started++) {
        pid_t p = fork();
        if (p < 0) {
            perror("sleepers: fork");
            break;
        }
        if (p == 0) {
            char c;
            close(go[1]);
            close(done[0]);
            if (read(go[0], &c, 1) < 0)
                _exit(1);
            for (long j = 0; j < k; j++)
                sleep_ms(ms);
            _exit(write(done[1], "x", 1) == 1 ? 0 : 1);
        }
    }
    close(go[0]);
    close(done[1]);
    sleep(1); /* the last forks settle */
    double t0 = bench_now();
    close(go[1]); /* every sleeper starts */
    long got = 0;
    char buf[4096];
    while (got < started) {
        ssize_t r = read(done[0], buf, sizeof buf);
        if (r <= 0)
            break;
        got += r;
    }
    double t = bench_now() - t0;
    while (wait(NULL) > 0 || errno == EINTR)
        ;
    if (started < workers || got < started) {
        fprintf(stderr, "sleepers: %ld of %ld processes started, %ld finished\n", started,
                workers, got);
        return 1;
    }
    double ideal = (double)k * (double)ms * 1e-3;
    printf("RESULT\tscale_map\t%s\tsleepers\t%ld\tefficiency\t%%\thigher\t%.6g\n", variant,
           workers, 100.0 * ideal / t);
    printf("RESULT\tscale_map\t%s\tsleepers\t%ld\ttime\ts\tlower\t%.6g\n", variant, workers, t);
    return 0;
}
