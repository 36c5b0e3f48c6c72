#!/usr/bin/env python3
"""The long-stream benchmark's Python peer (bench/stream.c): n items (ints, squared by
the task) from a generator through multiprocessing.Pool.imap with its default
chunksize, the master's resident set read after the pool is created ("start") and
every 65536 items; the peak is the highest of those and VmHWM at the end.

    stream.py N [WORKERS]

Prints RESULT lines (bench/common.h): rss_start_mb, rss_peak_growth_mb, items_per_s.
"""
import multiprocessing as mp
import os
import sys
import time


def square(x):
    return x * x


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return -1


def count_up(n):
    for i in range(n):
        yield i


def main():
    n = int(float(sys.argv[1]))
    workers = int(sys.argv[2]) if len(sys.argv) > 2 else os.cpu_count()
    with mp.Pool(workers) as pool:
        start = peak = status_kb("VmRSS:")
        t0 = time.monotonic()
        got = wrong = 0
        for i, v in enumerate(pool.imap(square, count_up(n))):
            wrong += v != i * i
            got += 1
            if got & 0xFFFF == 0:
                peak = max(peak, status_kb("VmRSS:"))
        t = time.monotonic() - t0
        peak = max(peak, status_kb("VmHWM:"))
    variant = "producer-n%.0e-delay0" % n
    for metric, unit, better, value in (
            ("rss_start_mb", "MB", "lower", start / 1024),
            ("rss_peak_growth_mb", "MB", "lower", (peak - start) / 1024),
            ("items_per_s", "items/s", "higher", got / t)):
        print("RESULT\tstream\t%s\tpython-mp\t%d\t%s\t%s\t%s\t%.1f"
              % (variant, workers, metric, unit, better, value))
    if got != n or wrong:
        print("stream.py: %d of %d items, %d wrong" % (got, n, wrong), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
