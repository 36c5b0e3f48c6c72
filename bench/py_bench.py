#!/usr/bin/python3
"""Python's pools on the benchmark workloads, printing RESULT lines like the C
programs (see common.h).

  py_bench.py mp     [--workers W] [--reps R] [--quick] [--only w1,...,w7]
  mpirun -np N python3 -m mpi4py.futures py_bench.py mpi4py [same options]

"mp" is multiprocessing.Pool(W); "mpi4py" is mpi4py.futures.MPIPoolExecutor over
the ranks mpirun started (every rank but rank 0 serves). Tasks are Python code, so
the ~1 ms tasks are a Python busy loop calibrated to 1 ms here, and efficiency is
measured against that loop run serially in this process.
"""
import argparse
import math
import os
import resource
import statistics
import sys
import time

W3_BASE_MS = 0.2
W3_FACTOR = 100
ITEM_BYTES = 1 << 20

now = time.perf_counter


def sizes(quick):
    if quick:
        return dict(n1=100000, n1_cs1=20000, n2=200, n2_sweep=100, n3=200, n4=8,
                    k5=500, k6=3)
    return dict(n1=1000000, n1_cs1=100000, n2=2000, n2_sweep=500, n3=1000, n4=64,
                k5=2000, k6=10)


# ---- tasks (module level: they must pickle) -----------------------------------

def square(x):
    return x * x


def spin(n):
    x = 0
    for i in range(n):
        x += i
    return x


def big(b):
    a = bytearray(b)
    a[0] ^= 1
    return a


def calibrate():
    """Iterations of spin() per millisecond (best of a few tries)."""
    n = 20000
    for _ in range(2):  # the second round runs ~10 ms per try
        best = 1e9
        for _ in range(5):
            t0 = now()
            spin(n)
            best = min(best, now() - t0)
        per_ms = max(1, int(n / (best * 1e3)))
        n = per_ms * 10
    return per_ms


def py_chunksize(n, workers):
    c, extra = divmod(n, workers * 4)
    return c + 1 if extra else max(c, 1)


class Bench:
    def __init__(self, args):
        self.args = args
        self.W = args.workers
        self.reps = args.reps
        self.sz = sizes(args.quick)
        self.impl = "python-mp" if args.mode == "mp" else "mpi4py"
        self.iters_ms = calibrate()

    def result(self, wl, variant, workers, metric, unit, better, value):
        print("RESULT\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%.6g" %
              (wl, variant, self.impl, workers, metric, unit, better, value), flush=True)

    def wants(self, name):
        return not self.args.only or name in self.args.only.split(",")

    # -- pool abstraction: multiprocessing.Pool or MPIPoolExecutor
    def open(self, workers):
        if self.args.mode == "mp":
            import multiprocessing
            return multiprocessing.Pool(workers)
        from mpi4py.futures import MPIPoolExecutor
        ex = MPIPoolExecutor()
        ex.bootup(wait=True)
        return ex

    def close(self, pool):
        if self.args.mode == "mp":
            pool.close()
            pool.join()
        else:
            pool.shutdown(wait=True)

    def map(self, pool, fn, items, chunksize):
        if self.args.mode == "mp":
            return pool.map(fn, items, chunksize)
        return list(pool.map(fn, items, chunksize=chunksize))

    def apply(self, pool, fn, x):
        if self.args.mode == "mp":
            return pool.apply(fn, (x,))
        return pool.submit(fn, x).result()

    def pool_size(self, pool):
        if self.args.mode == "mp":
            return self.W
        return pool._max_workers if hasattr(pool, "_max_workers") else self.W

    def auto_chunksize(self, n, workers):
        """multiprocessing.Pool computes its default itself (chunksize=None);
        MPIPoolExecutor's default is 1, which is the cs1 variant, so "auto" uses
        Pool's formula for it too."""
        if self.args.mode == "mp":
            return None
        return py_chunksize(n, workers)

    def cpu(self):
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    # -- workloads
    def trivial_once(self, pool, wl, variant, workers, n, cs):
        items = range(n)
        t0 = now()
        out = self.map(pool, square, items, cs)
        t = now() - t0
        if len(out) != n or out[-1] != (n - 1) * (n - 1):
            print("py_bench: wrong output", file=sys.stderr)
            return
        self.result(wl, variant, workers, "time", "s", "lower", t)
        self.result(wl, variant, workers, "rate", "Mitems/s", "higher", n / t / 1e6)
        self.result(wl, variant, workers, "per_item", "ns", "lower", t / n * 1e9)

    def spin_once(self, pool, wl, variant, workers, items, cs, serial, cpu=True):
        c0 = self.cpu()
        t0 = now()
        out = self.map(pool, spin, items, cs)
        t = now() - t0
        c = self.cpu() - c0
        if len(out) != len(items):
            print("py_bench: wrong output", file=sys.stderr)
            return
        self.result(wl, variant, workers, "time", "s", "lower", t)
        self.result(wl, variant, workers, "efficiency", "%", "higher",
                    100.0 * serial / (workers * t))
        self.result(wl, variant, workers, "rate", "tasks/s", "higher", len(items) / t)
        if cpu:
            self.result(wl, variant, workers, "master_cpu", "% of a core", "lower",
                        100.0 * c / t)

    def serial(self, items):
        t0 = now()
        for x in items:
            spin(x)
        return now() - t0

    def w1(self, pool, W):
        n = self.sz["n1"]
        self.trivial_once(pool, "w1_trivial", "warmup", W, n // 10,
                          self.auto_chunksize(n // 10, W))
        reps = min(self.reps, 3)
        for _ in range(reps):
            self.trivial_once(pool, "w1_trivial", "auto", W, n, self.auto_chunksize(n, W))
        n = self.sz["n1_cs1"]
        if self.args.mode == "mpi4py":
            n //= 10
        for _ in range(reps):
            self.trivial_once(pool, "w1_trivial", "cs1", W, n, 1)

    def w2(self, pool, W):
        n = self.sz["n2"]
        items = [self.iters_ms] * n
        serial = self.serial(items[: n // 4]) * 4
        self.result("w2_1ms", "serial", 1, "time", "s", "lower", serial)
        reps = min(self.reps, 3)
        for _ in range(reps):
            self.spin_once(pool, "w2_1ms", "auto", W, items, self.auto_chunksize(n, W), serial)
        for _ in range(reps):
            self.spin_once(pool, "w2_1ms", "cs1", W, items, 1, serial)

    def w3(self, pool, W):
        n = self.sz["n3"]
        base = int(self.iters_ms * W3_BASE_MS)
        items = [base * W3_FACTOR if (i < 2 or i + 2 >= n) else base for i in range(n)]
        serial = self.serial(items)
        longest = self.serial(items[:1])
        ideal = max(serial / W, longest)
        self.result("w3_imbalanced", "ideal", W, "makespan", "s", "lower", ideal)
        for _ in range(min(self.reps, 3)):
            t0 = now()
            self.map(pool, spin, items, self.auto_chunksize(n, W))
            t = now() - t0
            self.result("w3_imbalanced", "auto", W, "makespan", "s", "lower", t)
            self.result("w3_imbalanced", "auto", W, "vs_ideal", "x ideal", "lower", t / ideal)

    def w4(self, pool, W):
        n = self.sz["n4"]
        items = [bytes([i % 251]) * ITEM_BYTES for i in range(n)]
        for r in range(min(self.reps, 3) + 1):
            t0 = now()
            out = self.map(pool, big, items, self.auto_chunksize(n, W))
            t = now() - t0
            if len(out) != n or out[1][0] != (1 ^ 1):
                print("py_bench: wrong large output", file=sys.stderr)
                return
            if r == 0:
                continue
            self.result("w4_large", "auto", W, "time", "s", "lower", t)
            self.result("w4_large", "auto", W, "throughput", "MiB/s in", "higher", n / t)

    def w5(self, pool, W):
        k = self.sz["k5"]
        if self.args.mode == "mpi4py":
            k //= 2
        for r in range(min(self.reps, 3) + 1):
            lat = []
            for i in range(k):
                t0 = now()
                y = self.apply(pool, square, i)
                lat.append(now() - t0)
                if y != i * i:
                    print("py_bench: wrong apply result", file=sys.stderr)
                    return
            if r == 0:
                continue
            lat.sort()
            self.result("w5_apply", "roundtrip", W, "median", "us", "lower",
                        statistics.median(lat) * 1e6)
            self.result("w5_apply", "roundtrip", W, "p90", "us", "lower",
                        lat[int(0.9 * (k - 1))] * 1e6)

    def w6(self, W):
        k = self.sz["k6"]
        for _ in range(min(self.reps, 3)):
            lat = []
            for _ in range(k):
                t0 = now()
                p = self.open(W)
                self.close(p)
                lat.append(now() - t0)
            variant = ("create+close+join" if self.args.mode == "mp"
                       else "create+bootup+shutdown")
            self.result("w6_startstop", variant, W, "median", "ms", "lower",
                        statistics.median(lat) * 1e3)

    def w7(self):
        reps = min(self.reps, 3)
        n2 = self.sz["n2_sweep"]
        items = [self.iters_ms] * n2
        serial = self.serial(items)
        workers = [self.W]
        if self.args.mode == "mp":  # 1, 2, 4, ..., W
            workers = [1]
            while workers[-1] < self.W:
                workers.append(min(2 * workers[-1], self.W))
        for w in workers:
            pool = self.open(w)
            v = str(w)
            n = self.sz["n1"]
            for _ in range(reps):
                self.trivial_once(pool, "w7_scale_trivial", v, w, n, self.auto_chunksize(n, w))
            n = self.sz["n1_cs1"] // 4
            if self.args.mode == "mpi4py":
                n //= 10
            for _ in range(reps):
                self.trivial_once(pool, "w7_scale_cs1", v, w, n, 1)
            for _ in range(reps):
                self.spin_once(pool, "w7_scale_1ms", v, w, items,
                               self.auto_chunksize(n2, w), serial, cpu=False)
            self.close(pool)

    def run(self):
        W = self.W
        main = [w for w in ("w1", "w2", "w3", "w4", "w5") if self.wants(w)]
        if main:
            pool = self.open(W)
            for w in main:
                getattr(self, w)(pool, W)
            self.close(pool)
        if self.wants("w6"):
            self.w6(W)
        if self.wants("w7"):
            self.w7()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["mp", "mpi4py"])
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    if args.mode == "mpi4py":
        from mpi4py import MPI
        args.workers = MPI.COMM_WORLD.Get_size() - 1
        if args.workers < 1:
            sys.exit("py_bench: mpi4py mode needs mpirun -np 2 or more")
    elif args.workers <= 0:
        args.workers = len(os.sched_getaffinity(0))
    Bench(args).run()


if __name__ == "__main__":
    main()
