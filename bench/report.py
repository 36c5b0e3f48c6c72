#!/usr/bin/python3
"""Turns the RESULT lines of one bench/run into a table of medians (min-max over
repetitions), ratios against each peer, the goals of the issues, a CSV and PNG
plots (gnuplot).

  report.py RAW.tsv OUTDIR [--machine FILE]
"""
import argparse
import collections
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys

# openmp: schedule(dynamic, 1); openmp-dyn1000 and openmp-static: trivial items only
IMPLS = ["rankpool-local", "rankpool-mpi", "openmp-static", "openmp-dyn1000", "openmp",
         "python-mp", "mpi4py", "xargs", "mpi-pingpong"]

WORKLOADS = collections.OrderedDict([
    ("w1_trivial", ("trivial items, long -> its square",
                    [("auto", "rate"), ("auto", "time"), ("cs1", "per_item"),
                     ("shared", "time"), ("shared-batch", "time")])),
    ("w2_1ms", ("tasks of ~1 ms CPU: parallel efficiency vs serial",
                [("auto", "efficiency"), ("cs1", "efficiency"), ("auto", "master_cpu"),
                 ("cs1", "master_cpu")])),
    ("w3_imbalanced", ("imbalanced: 4 items 100x longer, 2 first and 2 last",
                       [("auto", "vs_ideal"), ("pyformula", "vs_ideal"),
                        ("auto", "makespan")])),
    ("w4_large", ("1 MiB in, 1 MiB out per item", [("auto", "throughput"),
                                                   ("shared", "throughput")])),
    ("w5_apply", ("back-to-back apply round trips", [("roundtrip", "median"),
                                                     ("roundtrip", "p90")])),
    ("w6_startstop", ("pool start + stop", [("create+close+join", "median"),
                                           ("create+close+join+free", "median"),
                                           ("create+bootup+shutdown", "median")])),
])

SCALING = [("w7_scale_trivial", "rate", "trivial items, automatic chunking"),
           ("w7_scale_cs1", "rate", "trivial items, chunksize 1"),
           ("w7_scale_1ms", "rate", "~1 ms tasks")]

SWEEPS = [("sweep_w1", "time"), ("sweep_w2", "time"), ("sweep_w3", "makespan"),
          ("sweep_w4", "time")]


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a >= 1000:
        return "%.0f" % v
    if a >= 100:
        return "%.1f" % v
    if a >= 10:
        return "%.2f" % v
    if a >= 0.01:
        return "%.3f" % v
    return "%.3g" % v


class Stats:
    def __init__(self, rows):
        self.groups = collections.OrderedDict()
        self.meta = {}
        for r in rows:
            key = (r["workload"], r["variant"], r["impl"], r["workers"], r["metric"])
            self.groups.setdefault(key, []).append(r["value"])
            self.meta[key] = (r["unit"], r["better"])

    def get(self, workload, variant, impl, metric, workers=None):
        """(median, min, max, n, unit, better) or None."""
        cands = [k for k in self.groups if k[0] == workload and k[1] == variant
                 and k[2] == impl and k[4] == metric
                 and (workers is None or k[3] == workers)]
        if not cands:
            return None
        k = cands[0]
        v = self.groups[k]
        return (statistics.median(v), min(v), max(v), len(v)) + self.meta[k]

    def rows(self):
        for k, v in self.groups.items():
            unit, better = self.meta[k]
            yield k + (unit, better, statistics.median(v), min(v), max(v), len(v))


def read_raw(path):
    rows = []
    with open(path) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if len(p) not in (9, 10) or p[0] != "RESULT":
                continue
            run = p[9] if len(p) == 10 else "1"
            if p[2] == "warmup" or p[1].endswith("_warmup"):
                continue
            try:
                value = float(p[8])
            except ValueError:
                continue
            rows.append(dict(workload=p[1], variant=p[2], impl=p[3], workers=int(p[4]),
                             metric=p[5], unit=p[6], better=p[7], value=value,
                             run=run))
    return rows


# (variant, metric) of w1 whose spread between process runs the report shows
RUN_SPREAD = [("auto", "rate"), ("cs1", "per_item"), ("shared", "time"),
              ("shared-batch", "time")]


def run_spread(rows, out):
    """w1 per process run: each run's median, then the median and range of those.
    A process run's median hides the repetitions' noise; the range of the run
    medians shows what differs from one start of the program to the next."""
    per = collections.OrderedDict()
    for r in rows:
        if r["workload"] != "w1_trivial" or (r["variant"], r["metric"]) not in RUN_SPREAD:
            continue
        key = (r["variant"], r["metric"], r["impl"])
        per.setdefault(key, collections.OrderedDict()).setdefault(r["run"], []).append(
            r["value"])
    if not per or max(len(v) for v in per.values()) < 2:
        return
    out += ["", "### w1_trivial: spread over separate process runs", "",
            "Each process run's median (over its repetitions), in run order; then the "
            "median and min-max of those run medians.", "",
            "| variant | metric | impl | runs | per-run medians | median of runs | "
            "min-max of runs |", "|---|---|---|---|---|---|---|"]
    order = {impl: i for i, impl in enumerate(IMPLS)}
    for (variant, metric, impl), runs in sorted(
            per.items(), key=lambda kv: (RUN_SPREAD.index(kv[0][:2]),
                                         order.get(kv[0][2], 99))):
        meds = [statistics.median(v) for v in runs.values()]
        out.append("| %s | %s | %s | %d | %s | %s | %s-%s |" % (
            variant, metric, impl, len(meds), " ".join(fmt(m) for m in meds),
            fmt(statistics.median(meds)), fmt(min(meds)), fmt(max(meds))))


def advantage(ours, theirs):
    """How many times better `ours` is than `theirs` (>1: ours better)."""
    if not ours or not theirs or ours[0] <= 0 or theirs[0] <= 0:
        return None
    if ours[5] == "higher":
        return ours[0] / theirs[0]
    return theirs[0] / ours[0]


def table(st, out):
    for wl, (title, panels) in WORKLOADS.items():
        lines = []
        for variant, metric in panels:
            local = st.get(wl, variant, "rankpool-local", metric)
            mpi = st.get(wl, variant, "rankpool-mpi", metric)
            for impl in IMPLS:
                s = st.get(wl, variant, impl, metric)
                if not s:
                    continue
                a_l = advantage(local, s) if impl != "rankpool-local" else None
                a_m = advantage(mpi, s) if impl != "rankpool-mpi" else None
                lines.append("| %s | %s (%s) | %s | %s | %s-%s | %d | %s | %s |" % (
                    variant, metric, s[4], impl, fmt(s[0]), fmt(s[1]), fmt(s[2]), s[3],
                    ("%.2fx" % a_l) if a_l else "", ("%.2fx" % a_m) if a_m else ""))
        if not lines:
            continue
        out.append("")
        out.append("### %s: %s" % (wl, title))
        out.append("")
        out.append("| variant | metric (unit) | impl | median | min-max | reps "
                   "| rankpool-local better by | rankpool-mpi better by |")
        out.append("|---|---|---|---|---|---|---|---|")
        out.extend(lines)
    # scaling
    lines = []
    for wl, metric, title in SCALING:
        for impl in IMPLS:
            keys = sorted({k[3] for k in st.groups if k[0] == wl and k[2] == impl})
            for w in keys:
                s = st.get(wl, str(w), impl, metric, w)
                if s:
                    lines.append("| %s | %s | %d | %s | %s-%s | %s |" % (
                        title, impl, w, fmt(s[0]), fmt(s[1]), fmt(s[2]), s[4]))
    if lines:
        out += ["", "### w7: scaling with workers (MPI: ranks - 1, oversubscribed past "
                "the cores)", "", "| workload | impl | workers | median | min-max | unit |",
                "|---|---|---|---|---|---|"] + lines


def sweeps(st, out, goals):
    lines = []
    for wl, metric in SWEEPS:
        for impl in ("rankpool-local", "rankpool-mpi"):
            auto = st.get(wl, "auto", impl, metric)
            if not auto:
                continue
            fixed = []
            for k in st.groups:
                if k[0] == wl and k[2] == impl and k[4] == metric and k[1].startswith("cs="):
                    fixed.append((st.get(wl, k[1], impl, metric)[0], k[1]))
            if not fixed:
                continue
            best = min(fixed)
            ratio = auto[0] / best[0]
            lines.append("| %s | %s | %s | %s (%s) | %.3f | %s |" % (
                wl, impl, fmt(auto[0]), fmt(best[0]), best[1], ratio,
                " ".join("%s:%s" % (c, fmt(v)) for v, c in sorted(fixed, key=lambda x:
                                                                   int(x[1][3:])))))
            goals.append(("%s %s: automatic chunking within 10%% of the best fixed "
                          "chunksize (%s)" % (impl, wl, best[1]), ratio <= 1.10,
                          "auto/best = %.3f" % ratio))
    if lines:
        out += ["", "### Automatic chunking against fixed chunksizes (%s, lower is better)"
                % ", ".join("%s %s" % s for s in SWEEPS), "",
                "| sweep | impl | auto | best fixed | auto/best | every fixed chunksize |",
                "|---|---|---|---|---|---|"] + lines


def check_goals(st, goals):
    def g(wl, v, impl, m):
        return st.get(wl, v, impl, m)

    def goal(text, ok, detail):
        goals.append((text, ok, detail))

    L, M = "rankpool-local", "rankpool-mpi"
    a, p = g("w1_trivial", "auto", L, "rate"), g("w1_trivial", "auto", "python-mp", "rate")
    if a and p:
        r = a[0] / p[0]
        goal("local, 1M trivial items: >= 50x Python Pool.map throughput", r >= 50,
             "%.1fx" % r)
    for omp, label in (("openmp-dyn1000", "schedule(dynamic, 1000)"),
                       ("openmp-static", "schedule(static)")):
        a, o = g("w1_trivial", "auto", L, "time"), g("w1_trivial", "auto", omp, "time")
        if a and o:
            r = a[0] / o[0]
            goal("local, 1M trivial items: within 3x of OpenMP %s's time" % label, r <= 3,
                 "%.2fx" % r)
    # shared buffers (rp_pool_alloc): against the OpenMP loop's own auto rows
    for v, omp, label, lim in (("shared-batch", "openmp-static", "schedule(static)", 1.5),
                               ("shared", "openmp-dyn1000", "schedule(dynamic, 1000)", 2)):
        a, o = g("w1_trivial", v, L, "time"), g("w1_trivial", "auto", omp, "time")
        if a and o:
            r = a[0] / o[0]
            goal("local, 1M trivial items, %s over shared buffers: <= %gx OpenMP %s's time"
                 % ("batch task" if v == "shared-batch" else "per-item task", lim, label),
                 r <= lim, "%.2fx" % r)
    a, o = g("w4_large", "shared", L, "throughput"), g("w4_large", "auto", "openmp", "throughput")
    if a and o:
        r = a[0] / o[0]
        goal("local, 1 MiB items over shared buffers: >= 50% of the OpenMP loop's throughput",
             r >= 0.5, "%.0f%%" % (100 * r))
    a = g("w1_trivial", "cs1", L, "per_item")
    if a:
        goal("local, chunksize 1: <= 100 ns per item", a[0] <= 100, "%s ns" % fmt(a[0]))
    for v in ("auto", "cs1"):
        a = g("w2_1ms", v, L, "efficiency")
        if a:
            goal("local, 1 ms tasks (%s): >= 98%% efficiency" % v, a[0] >= 98,
                 "%s %%" % fmt(a[0]))
    for v in ("auto", "cs1"):
        a = g("w2_1ms", v, L, "master_cpu")
        if a:
            goal("local, 1 ms tasks (%s): master uses <= 5%% of a core" % v, a[0] <= 5,
                 "%s %%" % fmt(a[0]))
    a = g("w5_apply", "roundtrip", L, "median")
    if a:
        goal("local, apply round trip <= 10 us", a[0] <= 10, "%s us" % fmt(a[0]))
    a = g("w6_startstop", "create+close+join", L, "median")
    if a:
        goal("local, create + close + join <= 1 ms", a[0] <= 1, "%s ms" % fmt(a[0]))
    a, p = g("w1_trivial", "auto", M, "rate"), g("w1_trivial", "auto", "mpi4py", "rate")
    if a and p:
        r = a[0] / p[0]
        goal("mpi, 1M trivial items: >= 50x mpi4py.futures throughput", r >= 50,
             "%.1fx" % r)
    a = g("w1_trivial", "cs1", M, "per_item")
    if a:
        goal("mpi, chunksize 1: <= 2 us per item", a[0] <= 2000, "%s ns" % fmt(a[0]))
    a, p = g("w5_apply", "roundtrip", M, "median"), g("w5_apply", "roundtrip",
                                                      "mpi-pingpong", "median")
    if a and p:
        r = a[0] / p[0]
        goal("mpi, apply round trip within 3x of a raw MPI ping-pong", r <= 3,
             "%.2fx (%s us vs %s us)" % (r, fmt(a[0]), fmt(p[0])))
    for impl in (L, M):
        a = g("w3_imbalanced", "auto", impl, "makespan")
        p = g("w3_imbalanced", "pyformula", impl, "makespan")
        if a and p:
            goal("%s, imbalanced: automatic chunking beats Python's default formula"
                 % impl, a[0] < p[0], "%s s vs %s s" % (fmt(a[0]), fmt(p[0])))


# ---- plots ----------------------------------------------------------------------

def gnuplot(script, outdir):
    gp = shutil.which("gnuplot")
    if not gp:
        print("report: gnuplot not found, no plots", file=sys.stderr)
        return False
    r = subprocess.run([gp], input=script, text=True, cwd=outdir,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        print("report: gnuplot failed:\n" + r.stderr, file=sys.stderr)
        return False
    return True


def gp_str(s):
    return s.replace("\\", "").replace('"', "").replace("'", "")


def term(w, h):
    return "set terminal pngcairo size %d,%d font 'Sans,9' noenhanced\n" % (w, h)


def bar_panel(path, title, ylabel, data, log):
    """data: [(label, median, min, max)] -> one histogram panel with error bars."""
    with open(path, "w") as f:
        for label, med, lo, hi in data:
            f.write('"%s" %g %g %g\n' % (label, med, lo, hi))
    s = "set title '%s'\nset ylabel '%s'\n" % (title.replace("'", ""), ylabel)
    s += "set style data histograms\nset style histogram errorbars gap 1 lw 1\n"
    s += "set style fill solid 0.6 border -1\nset boxwidth 0.8\nset xtics rotate by -25\n"
    s += "set grid ytics\nunset key\n"
    s += "set logscale y\n" if log else "unset logscale y\nset yrange [0:*]\n"
    s += ("plot '%s' using 2:3:4:xtic(1) lc rgb '#4477aa', '' using 0:2:(sprintf('%%.3g', $2)) "
          "with labels offset 0,0.7 font ',8' notitle\n" % os.path.basename(path))
    return s


def plots(st, outdir, machine):
    made = []
    datadir = outdir
    for wl, (title, panels) in WORKLOADS.items():
        ps = []
        for variant, metric in panels:
            data = []
            unit = better = None
            for impl in IMPLS:
                s = st.get(wl, variant, impl, metric)
                if s:
                    data.append((impl, s[0], s[1], s[2]))
                    unit, better = s[4], s[5]
            if data:
                ps.append((variant, metric, unit, better, data))
        if not ps:
            continue
        cols = len(ps)
        script = term(420 * cols, 420) + "set output '%s.png'\n" % wl
        script += "set multiplot layout 1,%d title \"%s: %s\\n%s\"\n" % (
            cols, wl, title, gp_str(machine))
        for i, (variant, metric, unit, better, data) in enumerate(ps):
            vals = [d[1] for d in data if d[1] > 0]
            log = len(vals) > 1 and max(vals) / min(vals) > 30
            script += bar_panel(os.path.join(datadir, "%s_%d.dat" % (wl, i)),
                                "%s, %s (%s is better)" % (variant, metric, better),
                                unit, data, log)
        script += "unset multiplot\n"
        if gnuplot(script, outdir):
            made.append(wl + ".png")

    # scaling: lines, one per implementation
    panels = []
    for wl, metric, title in SCALING:
        series = []
        for impl in IMPLS:
            pts = sorted({k[3] for k in st.groups if k[0] == wl and k[2] == impl})
            if not pts:
                continue
            path = os.path.join(datadir, "%s_%s.dat" % (wl, impl))
            with open(path, "w") as f:
                for w in pts:
                    s = st.get(wl, str(w), impl, metric, w)
                    f.write("%d %g %g %g\n" % (w, s[0], s[1], s[2]))
            series.append((impl, os.path.basename(path)))
        if series:
            unit = next(st.get(wl, k[1], k[2], metric)[4] for k in st.groups if k[0] == wl)
            panels.append((wl, title, unit, series))
    if panels:
        script = term(460 * len(panels), 420) + "set output 'w7_scaling.png'\n"
        script += "set multiplot layout 1,%d title \"w7: scaling with workers\\n%s\"\n" % (
            len(panels), gp_str(machine))
        for wl, title, unit, series in panels:
            script += "set title '%s'\nset xlabel 'workers'\nset ylabel '%s'\n" % (title, unit)
            script += "set logscale y\nset grid\nset key bottom right font ',8'\n"
            script += "set xtics 1\n"
            script += "plot " + ", ".join(
                "'%s' using 1:2:3:4 with yerrorlines title '%s'" % (f, impl)
                for impl, f in series) + "\n"
        script += "unset multiplot\n"
        if gnuplot(script, outdir):
            made.append("w7_scaling.png")

    # chunksize sweeps
    ps = []
    for wl, metric in SWEEPS:
        for impl in ("rankpool-local", "rankpool-mpi"):
            vs = [k[1] for k in st.groups if k[0] == wl and k[2] == impl and k[4] == metric]
            if not vs:
                continue
            vs.sort(key=lambda v: -1 if v == "auto" else int(v[3:]))
            data = [(v, ) + st.get(wl, v, impl, metric)[:3] for v in vs]
            ps.append((wl, impl, metric, data))
    if ps:
        script = term(380 * len(ps), 420) + "set output 'sweep_chunksize.png'\n"
        script += ("set multiplot layout 1,%d title \"automatic chunking (auto) vs fixed "
                   "chunksizes, seconds, lower is better\\n%s\"\n" %
                   (len(ps), gp_str(machine)))
        for i, (wl, impl, metric, data) in enumerate(ps):
            script += bar_panel(os.path.join(datadir, "%s_%s.dat" % (wl, impl)),
                                "%s %s" % (wl, impl), metric + " (s)", data, False)
        script += "unset multiplot\n"
        if gnuplot(script, outdir):
            made.append("sweep_chunksize.png")
    return made


def warnings(machine):
    """What makes this run's numbers unreliable, read from the machine line."""
    ws = []
    if "QUICK" in machine:
        ws.append("quick run (small sizes, one repetition): a smoke test, not a "
                  "measurement; the goal checks below mean nothing here.")
    m = re.search(r"load ([0-9.]+) [0-9.]+ [0-9.]+ at start", machine)
    c = re.search(r"(\d+) cores available", machine)
    if m and c and float(m.group(1)) > 0.25 * int(c.group(1)):
        ws.append("the machine was busy at the start (load %s on %s cores): other "
                  "processes share the cores, rerun on a quiet machine." %
                  (m.group(1), c.group(1)))
    return ws


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("outdir")
    ap.add_argument("--machine", default="")
    args = ap.parse_args()
    machine = ""
    if args.machine and os.path.exists(args.machine):
        machine = open(args.machine).read().strip()
    rows = read_raw(args.raw)
    if not rows:
        sys.exit("report: no RESULT lines in %s" % args.raw)
    st = Stats(rows)

    with open(os.path.join(args.outdir, "results.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "variant", "impl", "workers", "metric", "unit", "better",
                    "median", "min", "max", "reps"])
        for r in st.rows():
            w.writerow(list(r[:7]) + ["%.6g" % r[7], "%.6g" % r[8], "%.6g" % r[9], r[10]])

    out = ["# rankpool benchmark results", "", "Machine: " + machine, ""]
    for w in warnings(machine):
        out += ["**Warning:** " + w, ""]
    out.append("Medians over repetitions, with min-max. \"better by\" = how many times "
               "better rankpool is than that row (> 1: rankpool ahead).")
    table(st, out)
    run_spread(rows, out)
    placement = os.path.join(args.outdir, "placement.txt")
    if os.path.exists(placement) and os.path.getsize(placement) > 0:
        out += ["", "rankpool-local's chunksize-1 maps with where the master and the "
                "workers ran right after each (`--placement`): `placement.txt`."]
    goals = []
    sweeps(st, out, goals)
    check_goals(st, goals)
    if goals:
        out += ["", "### Goals from the issues", "", "| goal | result | measured |",
                "|---|---|---|"]
        for text, ok, detail in goals:
            out.append("| %s | %s | %s |" % (text, "met" if ok else "MISSED", detail))
    made = plots(st, args.outdir, machine)
    if made:
        out += ["", "Plots: " + ", ".join(made)]
    text = "\n".join(out) + "\n"
    with open(os.path.join(args.outdir, "results.md"), "w") as f:
        f.write(text)
    sys.stdout.write(text)


if __name__ == "__main__":
    main()
