#!/bin/bash
# The Slurm job-script templates (launch/*.sbatch), submitted unedited with sbatch
# to a one-node Slurm cluster that this test starts itself (munged, slurmctld,
# slurmd in a temporary directory, on free ports) and stops again:
#   - slurm-local.sbatch with the default allocation (1 CPU: 1 worker) and with
#     -c 2 (2 workers);
#   - slurm-mpi.sbatch with the default allocation (1 task: master + 1 worker,
#     overcommitted) and with -n 2 (3 ranks: both CPUs compute);
#   - srun -c 1 of the local backend (SLURM_CPUS_PER_TASK: 1 worker);
#   - the node-local rank and size the mpi backend derives under srun;
#   - rankpool-run under srun: --oversubscribe and -x translated, --hostfile refused.
# Skips (77) where Slurm or munge is not installed, or not as root (slurmd starts
# job steps as their user).
#
# Environment (make check sets it): top_builddir, top_srcdir.
set -u
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
top_builddir=$(cd "$top_builddir" && pwd)
top_srcdir=$(cd "$top_srcdir" && pwd)
unset RP_BACKEND RP_WORKERS RP_DEBUG
# This test may itself run inside a Slurm job: forget it.
for v in $(env | sed -n 's/^\(SLURM_[A-Z_]*\)=.*/\1/p'); do unset "$v"; done

sbin_path=/usr/sbin:/sbin:$PATH
for prog in munged slurmctld slurmd; do
    if ! PATH=$sbin_path command -v $prog >/dev/null 2>&1; then
        echo "slurm.sh: $prog not installed (Debian: apt-get install slurm-wlm munge): skipped"
        exit 77
    fi
done
for prog in sbatch srun squeue scontrol sacct; do
    command -v $prog >/dev/null 2>&1 || { echo "slurm.sh: no $prog: skipped"; exit 77; }
done
if [ "$(id -u)" -ne 0 ]; then
    echo "slurm.sh: slurmd needs root to start job steps: skipped"
    exit 77
fi
export PATH=$sbin_path

tmp=$(mktemp -d /tmp/rankpool-slurm.XXXXXX) || exit 99
chmod 755 "$tmp"
failed=0
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
pass() { echo "PASS: $*"; }

# ---- the cluster --------------------------------------------------------------
pids=
stop_cluster() {
    local f
    for f in "$tmp/slurmd.pid" "$tmp/slurmctld.pid" "$tmp/munged.pid"; do
        [ -s "$f" ] && kill "$(cat "$f")" 2>/dev/null
    done
    sleep 1
    for f in "$tmp/slurmd.pid" "$tmp/slurmctld.pid" "$tmp/munged.pid"; do
        [ -s "$f" ] && kill -9 "$(cat "$f")" 2>/dev/null
    done
}
cleanup() {
    stop_cluster
    if [ $failed -ne 0 ] || [ -n "${KEEP_SLURM_TMP:-}" ]; then
        for f in "$tmp"/log/*.log; do echo "===== $f"; tail -n 30 "$f"; done
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# a free TCP port (nothing listens on it), from a random start
free_port() {
    local p=$((20000 + (RANDOM % 20000)))
    while ss -ltn 2>/dev/null | awk '{print $4}' | grep -q ":$p\$" ||
        [ "$p" = "${1:-}" ]; do
        p=$((p + 1))
    done
    echo $p
}

mkdir -p "$tmp/munge" "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/jobs"
# munged refuses a socket directory others may write to, and a key others may read
chmod 755 "$tmp/munge"
dd if=/dev/urandom of="$tmp/munge/munge.key" bs=1024 count=1 status=none
chmod 600 "$tmp/munge/munge.key"
sock=$tmp/munge/munge.sock
munged --force --key-file="$tmp/munge/munge.key" --socket="$sock" \
    --pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" \
    --seed-file="$tmp/munge/seed" >/dev/null 2>&1 || {
    echo "slurm.sh: munged does not start:"; cat "$tmp/log/munged.log"; exit 99; }

host=$(hostname -s)
cport=$(free_port)
dport=$(free_port "$cport")
export SLURM_CONF=$tmp/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=rankpooltest
SlurmctldHost=$host
SlurmctldPort=$cport
SlurmdPort=$dport
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=pmix
ReturnToService=2
SchedulerType=sched/builtin
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=10 State=UP
EOF

slurmctld -i >"$tmp/log/slurmctld.out" 2>&1 || { echo "slurm.sh: slurmctld does not start"; exit 99; }
slurmd >"$tmp/log/slurmd.out" 2>&1 || { echo "slurm.sh: slurmd does not start"; exit 99; }

# wait (up to 60 s) for the node to be idle
up=0
for _ in $(seq 60); do
    state=$(sinfo -h -N -o %t 2>/dev/null | head -n1)
    case $state in idle*|mix*) up=1; break ;; esac
    sleep 1
done
if [ $up -ne 1 ]; then
    echo "slurm.sh: the node did not come up (state '${state:-?}')"
    scontrol show node 2>&1 | head -n 20
    failed=1
    exit 1
fi
echo "slurm.sh: one-node cluster up: $host, CPUs=2, ports $cport/$dport"

# ---- jobs ---------------------------------------------------------------------
square=$top_builddir/examples/square
nodeinfo="$top_builddir/tests/test_nodeinfo --print"
templates=$top_srcdir/launch
# the installed launcher is not on PATH here: put the build tree's first
export PATH=$top_builddir/launch:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# submit NAME SBATCH-ARGS...: submits, prints the job id
submit() {
    local name=$1
    shift
    (cd "$tmp/jobs" && PROGRAM=$square sbatch --parsable -J "$name" "$@") 2>&1 |
        tail -n 1 | cut -d';' -f1
}

# wait_jobs ID...: waits (up to 240 s) until none of the jobs is pending or running
wait_jobs() {
    local left
    for _ in $(seq 240); do
        left=$(squeue -h -j "$(echo "$@" | tr ' ' ,)" -o %i 2>/dev/null | wc -l)
        [ "$left" -eq 0 ] && return 0
        sleep 1
    done
    echo "slurm.sh: jobs still queued or running after 240 s:"
    squeue -o '%i %j %T %r'
    scancel "$@"
    return 1
}

# check ID LABEL EXPECT: the job's output has EXPECT and the job completed
check() {
    local id=$1 label=$2 expect=$3 out state
    out=$(ls "$tmp"/jobs/*-"$id".out 2>/dev/null | head -n1)
    state=$(scontrol show job "$id" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p')
    echo "=== $label: job $id, $state, ${out:-no output file}"
    [ -n "$out" ] && sed 's/^/    /' "$out"
    if [ -z "$out" ] || ! grep -q "$expect" "$out"; then
        fail "$label: output lacks \"$expect\""
    elif [ "$state" != COMPLETED ]; then
        fail "$label: job state $state"
    else
        pass "$label"
    fi
}

# built --without-mpi: the local template and srun's own steps only
mpi=yes
[ "${RP_BUILT_MPI:-yes}" = no ] && mpi=no && echo "slurm.sh: built --without-mpi: no mpi jobs"

j1=$(submit local-default "$templates/slurm-local.sbatch")
j2=
[ $mpi = yes ] && j2=$(submit mpi-default "$templates/slurm-mpi.sbatch")
wait_jobs "$j1" $j2 || failed=$((failed + 1))
check "$j1" "slurm-local.sbatch, default allocation" "backend local, 1 workers"
[ $mpi = yes ] && check "$j2" "slurm-mpi.sbatch, default allocation" "backend mpi, 1 workers"

j3=$(submit local-c2 -c 2 "$templates/slurm-local.sbatch")
wait_jobs "$j3" || failed=$((failed + 1))
check "$j3" "slurm-local.sbatch -c 2" "backend local, 2 workers"

if [ $mpi = yes ]; then
    j4=$(submit mpi-n2 -n 2 "$templates/slurm-mpi.sbatch")
    wait_jobs "$j4" || failed=$((failed + 1))
    check "$j4" "slurm-mpi.sbatch -n 2 (both CPUs compute)" "backend mpi, 2 workers"
fi

# srun's own steps, in one allocation of both CPUs
run_step() { # LABEL EXPECT COMMAND...
    local label=$1 expect=$2 out
    shift 2
    out=$(timeout -k 5 120 "$@" 2>&1)
    local rc=$?
    echo "=== $label: $*"
    echo "$out" | sed 's/^/    /'
    if [ $rc -ne 0 ]; then
        fail "$label (exit $rc)"
    elif ! echo "$out" | grep -q -- "$expect"; then
        fail "$label: output lacks \"$expect\""
    else
        pass "$label"
    fi
}
run_step "srun -c 1, local backend: SLURM_CPUS_PER_TASK" "backend local, 1 workers" \
    srun -N 1 -n 1 -c 1 "$square"
run_step "srun -n 2: node-local rank and size" "local rank 1 of 2" \
    srun --mpi=pmix -N 1 -n 2 -l $nodeinfo
# rankpool-run --launcher srun in an allocation of 2 tasks: -n 3 needs
# --oversubscribe (srun --overcommit); -x VAR=VALUE and --tcp reach the ranks
[ $mpi = yes ] && run_step "rankpool-run --oversubscribe under srun" "backend mpi, 2 workers" \
    salloc -Q -n 2 rankpool-run --mpi --launcher srun --oversubscribe -n 3 "$square"
run_step "rankpool-run -x VAR=VALUE, --tcp under srun" "1: RP_TEST_VAR=42 btl=lo" \
    salloc -Q -n 2 rankpool-run --mpi --launcher srun -x RP_TEST_VAR=42 --tcp lo \
    --mpi-args -l -n 2 sh -c 'echo RP_TEST_VAR=$RP_TEST_VAR btl=$OMPI_MCA_btl_tcp_if_include'
run_step "rankpool-run under srun: srun's pmix plugin" "srun' '--mpi=pmix" \
    salloc -Q -n 1 rankpool-run --mpi --launcher srun --dry-run -n 2 true
run_step "rankpool-run --hostfile under srun: refused" "no srun equivalent" \
    sh -c 'rankpool-run --mpi --launcher srun --hostfile /dev/null -n 2 true 2>&1; test $? -eq 2'

[ $failed -eq 0 ] && echo "slurm.sh: all passed" || echo "slurm.sh: $failed FAILED"
exit $((failed > 0))
