"""mpi4py.futures at scale, the peer of bench/scale.c (bench/scale.sh):

    mpirun -np R python3 -m mpi4py.futures bench/scale_mpi4py.py --mode map|apply --ms T

Tasks sleep T ms. map: executor.map over N items (chunksize as multiprocessing.Pool
would choose); apply: N submit() calls, then every result. Efficiency = N * T /
(workers * time). Prints RESULT lines (bench/common.h) with impl "mpi4py"."""
import argparse
import time


def task_sleep(x):
    ms, i = x
    time.sleep(ms / 1000.0)
    return i * 3 + 1


def main():
    from mpi4py.futures import MPIPoolExecutor
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="map")
    ap.add_argument("--ms", type=int, default=10)
    ap.add_argument("--items", type=int, default=0)
    a = ap.parse_args()
    ex = MPIPoolExecutor()
    ex.bootup(wait=True)
    w = ex._max_workers if hasattr(ex, "_max_workers") and ex._max_workers else 1
    from mpi4py import MPI
    ranks = MPI.COMM_WORLD.Get_size()
    n = a.items or w * max(4, 2000 // max(a.ms, 1))
    items = [(a.ms, i) for i in range(n)]
    t0 = time.monotonic()
    if a.mode == "apply":
        futs = [ex.submit(task_sleep, x) for x in items]
        out = [f.result() for f in futs]
    else:
        cs, extra = divmod(n, w * 4)
        out = list(ex.map(task_sleep, items, chunksize=cs + (1 if extra else 0)))
    t = time.monotonic() - t0
    ex.shutdown(wait=True)
    if out != [i * 3 + 1 for i in range(n)]:
        raise SystemExit("scale_mpi4py: wrong output")
    variant = "%dr/%dw/%dms" % (ranks, w, a.ms)
    eff = 100.0 * n * a.ms * 1e-3 / w / t
    for metric, unit, better, v in (("efficiency", "%", "higher", eff),
                                    ("rate", "tasks/s", "higher", n / t),
                                    ("time", "s", "lower", t)):
        print("RESULT\tscale_%s\t%s\tmpi4py\t%d\t%s\t%s\t%s\t%.6g"
              % (a.mode, variant, w, metric, unit, better, v), flush=True)


if __name__ == "__main__":
    main()
