#!/bin/bash
# The mpi backend at scale (bench/scale.c), and mpi4py.futures in the same run
# (bench/scale_mpi4py.py): sleep tasks (ranks wait rather than compute, so that
# many more ranks and workers than cores can be measured) under
# `mpirun --oversubscribe`; beside each --workers map, the same number of bare
# processes sleeping as many tasks (bench/sleepers.c): what this machine allows
# any process pool. Writes bench/out/scale.tsv (RESULT lines) and
# bench/out/scale.md (the table: median efficiency over the repetitions, create
# and close+join times), and prints the table.
#
#   bench/scale.sh [--quick] [--reps N] [--no-mpi4py] [--ranks "2 8 32 64 128"]
#                  [--workers "2048 4096 10000"] [--ms "1 10 100"]
# --quick: ranks 8 and 64, 2,048 workers, 10 and 100 ms, one repetition.
# Environment: BUILD (default _build/bench, as bench/run), MPIRUN, PYTHON.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${BUILD:-$top/_build/bench}
bin=$build/bench-bin
out=$here/out
MPIRUN=${MPIRUN:-mpirun}
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ranks="2 8 32 64 128" workers="2048 4096 10000" mss="1 10 100" reps=3 py=1
while [ $# -gt 0 ]; do
    case $1 in
    --quick) ranks="8 64" workers="2048" mss="10 100" reps=1 ;;
    --reps) reps=$2; shift ;;
    --no-mpi4py) py=0 ;;
    --ranks) ranks=$2; shift ;;
    --workers) workers=$2; shift ;;
    --ms) mss=$2; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/scale.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$build" "$bin" "$out"
if [ ! -f "$build/.libs/librankpool.so" ]; then
    [ -x "$top/configure" ] || (cd "$top" && autoreconf -fi) >/dev/null 2>&1 || exit 1
    [ -f "$build/Makefile" ] || (cd "$build" && "$top/configure" -q) >/dev/null || exit 1
fi
make -C "$build" -j2 librankpool.la >"$bin/make-scale.log" 2>&1 || { echo "build failed" >&2; exit 1; }
gcc -O2 -g -std=gnu11 -o "$bin/rp_scale" "$here/scale.c" -I"$top/include" -I"$here" \
    $(pkg-config --cflags ompi-c) -L"$build/.libs" -Wl,-rpath,"$build/.libs" -lrankpool \
    $(pkg-config --libs ompi-c) || exit 1
gcc -O2 -g -std=gnu11 -o "$bin/sleepers" "$here/sleepers.c" -I"$here" || exit 1
if [ $py = 1 ] && ! "$PYTHON" -c 'import mpi4py.futures' 2>/dev/null; then
    echo "bench/scale.sh: mpi4py is not installed (apt-get install python3-mpi4py): skipped" >&2
    py=0
fi
tsv=$out/scale.tsv
: >"$tsv"
run() { # NP, then the program and its arguments
    local np=$1; shift
    timeout 600 "$MPIRUN" --oversubscribe --bind-to none -np "$np" "$@" 2>>"$out/scale.log" |
        grep '^RESULT' >>"$tsv"
}
for r in $(seq "$reps"); do
    for ms in $mss; do
        for np in $ranks; do
            for mode in map apply; do
                echo "== $np ranks, $mode, $ms ms (rep $r)" >&2
                run "$np" "$bin/rp_scale" --mode $mode --ms "$ms"
                [ $py = 1 ] && [ "$np" -le 64 ] &&
                    run "$np" "$PYTHON" -m mpi4py.futures "$here/scale_mpi4py.py" --mode $mode --ms "$ms"
            done
        done
        for w in $workers; do
            np=$(( w <= 2048 ? 9 : 17 ))
            echo "== $w workers on $np ranks, map, $ms ms (rep $r)" >&2
            run "$np" "$bin/rp_scale" --mode map --ms "$ms" --workers "$w"
            echo "== $w bare sleepers, $ms ms (rep $r)" >&2
            timeout 600 "$bin/sleepers" --workers "$w" --ms "$ms" --variant "${np}r/${w}w/${ms}ms" \
                2>>"$out/scale.log" | grep '^RESULT' >>"$tsv"
        done
    done
done
"$PYTHON" - "$tsv" >"$out/scale.md" <<'PY'
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) == 9:
        rows[(f[1], f[2], f[3], f[5])].append(float(f[8]))
def med(k):
    v = rows.get(k)
    return "%.3g" % statistics.median(v) if v else "-"
keys = sorted({(wl, var) for (wl, var, impl, m) in rows
               if wl not in ("scale_startstop", "scale_ranks")},
              key=lambda k: (k[0], int(k[1].split("/")[2][:-2]), int(k[1].split("/")[1][:-1])))
print("| workload | ranks/workers/task | rankpool eff. % | mpi4py eff. % | bare sleepers eff. % | rankpool tasks/s | master CPU µs/task | create s | close+join s |")
print("|---|---|---|---|---|---|---|---|---|")
for wl, var in keys:
    print("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        wl, var, med((wl, var, "rankpool-mpi", "efficiency")),
        med((wl, var, "mpi4py", "efficiency")), med((wl, var, "sleepers", "efficiency")),
        med((wl, var, "rankpool-mpi", "rate")),
        med((wl, var, "rankpool-mpi", "master_cpu_per_task")),
        med(("scale_startstop", var, "rankpool-mpi", "create")),
        med(("scale_startstop", var, "rankpool-mpi", "close+join"))))
PY
cat "$out/scale.md"
