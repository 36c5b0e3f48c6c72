#!/bin/bash
# The long-stream benchmark (bench/stream.c, bench/stream.py): the master's peak
# resident set and items/s of an imap of 10^6, 10^7 and 10^8 items of 8 bytes, fed
# lazily by a producer, with a fast consumer and a slow one (DELAY ns of work per
# item), and over an array of 10^8 items; Python's multiprocessing.Pool.imap over a
# generator (default chunksize) in the same run. Every configuration runs as REPS
# separate processes (default 5), interleaved; prints the median, min and max of
# each metric and writes every RESULT line to bench/out/stream.tsv.
#
#   bench/stream.sh [REPS]     environment: BUILD (a build tree of the library,
#                              default _build/bench), PY_N (Python's item count,
#                              default 100000), DELAY (default 200), WORKERS
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${BUILD:-$top/_build/bench}
reps=${1:-5}
py_n=${PY_N:-100000}
delay=${DELAY:-200}
workers=${WORKERS:-$(nproc)}
PYTHON=${PYTHON:-/usr/bin/python3}
out=$here/out
mkdir -p "$out"
if [ ! -f "$build/.libs/librankpool.so" ]; then
    echo "bench/stream.sh: no library in $build (make it, or set BUILD)" >&2
    exit 1
fi
gcc -O2 -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter -I"$top/include" \
    -o "$out/stream" "$here/stream.c" -L"$build/.libs" -Wl,-rpath,"$build/.libs" -lrankpool ||
    exit 1
raw=$out/stream.tsv
: >"$raw"
echo "# $(date -u) $(uname -n) load: $(cut -d' ' -f1-3 /proc/loadavg) workers: $workers" |
    tee -a "$raw"
for rep in $(seq "$reps"); do
    for n in 1e6 1e7 1e8; do
        "$out/stream" producer $n 0 "$workers" >>"$raw" || echo "failed: producer $n" >&2
        "$out/stream" producer $n "$delay" "$workers" >>"$raw" ||
            echo "failed: producer $n slow" >&2
    done
    "$out/stream" array 1e8 0 "$workers" >>"$raw" || echo "failed: array 1e8" >&2
    "$PYTHON" "$here/stream.py" "$py_n" "$workers" >>"$raw" || echo "failed: python" >&2
    echo "rep $rep done ($(date -u +%T), load $(cut -d' ' -f1 /proc/loadavg))"
done
"$PYTHON" - "$raw" <<'EOF'
import collections, statistics, sys
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "RESULT":
        rows[(f[2], f[3], f[5])].append(float(f[8]))
print("| variant | impl | metric | median | min | max | runs |")
print("|---|---|---|---|---|---|---|")
for (variant, impl, metric), v in sorted(rows.items()):
    print("| %s | %s | %s | %.4g | %.4g | %.4g | %d |"
          % (variant, impl, metric, statistics.median(v), min(v), max(v), len(v)))
EOF
