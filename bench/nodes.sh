#!/bin/bash
# Node leaders across (simulated) nodes: bench/scale.c over 2-8 hosts built by
# tests/hosts.sh (network namespaces, TCP over veths between hosts, Open MPI's
# shared memory within one), N ranks per host, RP_MPI_LEADERS=0 and 1 alternated
# run by run, map and apply flood; and an MPI ping-pong (bench/pingpong.c) between
# two hosts and within one, under the same mpirun setup. Needs root. Writes
# bench/out/nodes.tsv (RESULT lines, each after the hosts, the leaders setting and
# the most processes seen on the machine beside the run's own, the load average
# before it) and
# bench/out/nodes.md (medians [ranges] of efficiency, the master's messages and
# CPU per task; runs beside more than --busy other processes are left out of the
# medians and counted), and prints the table.
#
#   bench/nodes.sh [--hosts "2"] [--ranks "8 16 32"] [--workers "0"] [--ms "1 10"]
#                  [--modes "map apply"] [--reps 3] [--busy 1000] [--no-pingpong]
#                  [--name nodes]
# --ranks: ranks per host (the master is one of host a's); --workers: workers per
# host (opts.workers = that x hosts; 0: one per serving rank); --name: the output
# files' name in bench/out.
# Environment: BUILD (default _build/bench, as bench/run), MPIRUN.
set -u
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
build=${BUILD:-$top/_build/bench}
bin=$build/bench-bin
out=$here/out
hostss="2" ranks="8 16 32" workers="0" mss="1 10" modes="map apply" reps=3 busy=1000 pp=1 name=nodes
while [ $# -gt 0 ]; do
    case $1 in
    --hosts) hostss=$2; shift ;;
    --ranks) ranks=$2; shift ;;
    --workers) workers=$2; shift ;;
    --ms) mss=$2; shift ;;
    --modes) modes=$2; shift ;;
    --reps) reps=$2; shift ;;
    --busy) busy=$2; shift ;;
    --no-pingpong) pp=0 ;;
    --name) name=$2; shift ;;
    -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench/nodes.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "bench/nodes.sh: needs root (network namespaces)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$bin" "$out"
if [ ! -f "$build/.libs/librankpool.so" ]; then
    [ -x "$top/configure" ] || (cd "$top" && autoreconf -fi) >/dev/null 2>&1 || exit 1
    [ -f "$build/Makefile" ] || (cd "$build" && "$top/configure" -q) >/dev/null || exit 1
fi
make -C "$build" -j2 librankpool.la >"$bin/make-nodes.log" 2>&1 || { echo "build failed" >&2; exit 1; }
mpi="$(pkg-config --cflags ompi-c) -I$top/include -I$here"
gcc -O2 -g -std=gnu11 -o "$bin/rp_scale" "$here/scale.c" $mpi -L"$build/.libs" \
    -Wl,-rpath,"$build/.libs" -lrankpool $(pkg-config --libs ompi-c) &&
    gcc -O2 -g -std=gnu11 -o "$bin/pingpong" "$here/pingpong.c" $mpi \
        $(pkg-config --libs ompi-c) || exit 1

work=$(mktemp -d "${TMPDIR:-/tmp}/rp-nodes.XXXXXX") || exit 1
. "$top/tests/hosts.sh"
sampler=
cleanup() {
    [ -n "$sampler" ] && kill "$sampler" 2>/dev/null
    hosts_cleanup
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
hosts_btl=tcp,vader,self
tsv=$out/$name.tsv
: >"$tsv"

# the most processes on the machine besides this run's own, sampled every second
# into $work/others until killed
others() {
    local most=0 n
    while :; do
        n=$(($(ls -d /proc/[0-9]* 2>/dev/null | wc -l) - $(for x in $hosts_all; do
            ip netns pids rp$x$hosts_id; done 2>/dev/null | wc -l)))
        [ "$n" -gt "$most" ] && most=$n && echo "$most" >"$work/others"
        sleep 1
    done
}

# run H TAG PROG ARGS...: one mpirun over the built hosts; RESULT lines to the tsv
run() {
    local h=$1 tag=$2 load
    shift 2
    load=$(cut -d' ' -f1 /proc/loadavg)
    echo 0 >"$work/others"
    others &
    sampler=$!
    hosts_mpirun "$work/out" 900 "$@" & # waited for: a signal ends the wait at once
    wait $!
    local rc=$?
    kill "$sampler" 2>/dev/null
    wait "$sampler" 2>/dev/null
    sampler=
    [ $rc -eq 0 ] || { echo "  failed ($rc):" >&2; tail -n 5 "$work/out" >&2; }
    grep '^RESULT' "$work/out" | sed "s|^|$h\t$tag\t$(cat "$work/others")\t$load\t|" >>"$tsv"
}

for h in $hostss; do
    for n in $ranks; do
        hosts_cleanup
        hosts_build "$h" "$n" "$work" || { echo "bench/nodes.sh: $hosts_why" >&2; exit 1; }
        if [ $pp = 1 ] && [ "$n" = "$(echo $ranks | cut -d' ' -f1)" ]; then
            for where in hosts host; do # rank 1 on host b; both on host a
                hosts_np=2
                [ $where = hosts ] && sed -i 's/slots=.*/slots=1/' "$work/hosts"
                echo "== ping-pong, $where" >&2
                run "$h" "pingpong-$where" "$bin/pingpong" --reps 5
                sed -i "s/slots=.*/slots=$n/" "$work/hosts"
            done
        fi
        hosts_np=$((h * n))
        for r in $(seq "$reps"); do
            for w in $workers; do
                for ms in $mss; do
                    for mode in $modes; do
                        for lead in 0 1; do
                            echo "== $h hosts x $n ranks, $((w * h)) workers, $mode, $ms ms," \
                                "leaders $lead (rep $r, $(cut -d' ' -f1 /proc/loadavg))" >&2
                            run "$h" "leaders$lead" -x RP_MPI_LEADERS=$lead "$bin/rp_scale" \
                                --mode "$mode" --ms "$ms" --workers $((w * h))
                        done
                    done
                done
            done
        done
    done
done
hosts_cleanup

python3 - "$tsv" "$busy" >"$out/$name.md" <<'PY'
import sys, statistics, collections
busy = int(sys.argv[2])
rows, dropped = collections.defaultdict(list), collections.Counter()
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if len(f) != 13:
        continue
    h, tag, others, wl, var, metric, v = f[0], f[1], int(f[2]), f[5], f[6], f[9], float(f[12])
    key = (h, var, wl, tag)
    if metric in ("efficiency", "median"):
        rows[key + ("load",)].append(float(f[3]))
    if others > busy:
        if metric in ("efficiency", "median"):
            dropped[key] += 1
        continue
    rows[key + (metric,)].append(v)
def cell(k, fmt):
    v = rows.get(k)
    if not v:
        return "-"
    m = fmt % statistics.median(v)
    return m if len(v) == 1 else "%s [%s-%s]" % (m, fmt % min(v), fmt % max(v))
print("| hosts | ranks/workers/task | run | efficiency % off | on | master msgs/task off | on | master CPU µs/task off | on | runs (busy) | load |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
keys = sorted({(h, var, wl) for (h, var, wl, tag, m) in rows if wl.startswith("scale_")
               and wl not in ("scale_startstop", "scale_ranks")},
              key=lambda k: (int(k[0]), int(k[1].split("/")[2][:-2]),
                             int(k[1].split("/")[0][:-1]), int(k[1].split("/")[1][:-1]), k[2]))
for h, var, wl in keys:
    c = [cell((h, var, wl, "leaders%d" % l, m), f)
         for m, f in (("efficiency", "%.1f"), ("master_msgs_per_task", "%.2f"),
                      ("master_cpu_per_task", "%.1f")) for l in (0, 1)]
    n = [len(rows.get((h, var, wl, "leaders%d" % l, "efficiency"), [])) for l in (0, 1)]
    d = [dropped[(h, var, wl, "leaders%d" % l)] for l in (0, 1)]
    ld = rows.get((h, var, wl, "leaders0", "load"), []) + rows.get((h, var, wl, "leaders1", "load"), [])
    print("| %s | %s | %s | %s | %d/%d (%d/%d) | %s |" % (h, var, wl[6:], " | ".join(c), n[0], n[1],
          d[0], d[1], "%.0f-%.0f" % (min(ld), max(ld)) if ld else "-"))
for where in ("hosts", "host"):
    for m in ("median", "p90"):
        v = [r for k, r in rows.items() if k[3] == "pingpong-" + where and k[4] == m]
        if v:
            print("\nping-pong round trip, %s, %s: %s" % (
                "two hosts (TCP)" if where == "hosts" else "one host (shared memory)", m,
                "%.1f [%.1f-%.1f] µs" % (statistics.median(v[0]), min(v[0]), max(v[0]))))
PY
cat "$out/$name.md"
