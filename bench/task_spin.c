/* One process per task, for the xargs -P peer: spins bench_spin(N) for each
 * argument N. `task_spin --calibrate` prints the iterations per ms;
 * `task_spin --serial N...` prints the seconds the arguments take serially. */
#include "common.h"

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "--calibrate")) {
        printf("%llu\n", (unsigned long long)bench_calibrate());
        return 0;
    }
    int serial = argc > 1 && !strcmp(argv[1], "--serial");
    volatile uint64_t sink = 0;
    double t0 = bench_now();
    for (int i = 1 + serial; i < argc; i++)
        sink += bench_spin(strtoull(argv[i], NULL, 10));
    if (serial)
        printf("%.6f\n", bench_now() - t0);
    (void)sink;
    return 0;
}
