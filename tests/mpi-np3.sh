#!/bin/sh
# The semantic and dispatch suites and the MPI-specific suite on 3 MPI ranks (two
# workers on two ranks); the semantic, crash and MPI suites with node leaders
# (RP_MPI_LEADERS=1: both workers on rank 1; with the cancel and time-limit suites);
# a program started through the launcher
# (launch/rankpool-run --mpi), as users do; the start-up
# deadline (one rank never calls rp_pool_create); a program that returns from main
# without freeing its pool (mpirun must see a clean exit); a rank that falls silent
# (its batches run elsewhere, its reported progress with them; past the second
# deadline its items fail).
top=${top_builddir:-.}
MPIRUN=${MPIRUN:-mpirun}
"$top/tests/mpi-driver" 3 tests/test_semantics tests/test_dispatch tests/test_mpi || exit $?
echo "=== node leaders (RP_MPI_LEADERS=1): rank 1 hosts both workers, rank 2 none"
RP_MPI_LEADERS=1 "$top/tests/mpi-driver" 3 tests/test_semantics tests/test_crash tests/test_mpi \
    tests/test_cancel tests/test_timeout || exit $?
echo "=== $top/launch/rankpool-run --mpi --oversubscribe -n 3 tests/mpi_hosts 1"
timeout 300 "$top/launch/rankpool-run" --mpi --oversubscribe -n 3 "$top/tests/mpi_hosts" 1 ||
    exit 1

mpirun3() {
    timeout 300 "$MPIRUN" --oversubscribe --bind-to none -np 3 -x RP_BACKEND=mpi "$@"
}
echo "=== start-up deadline: rank 2 never calls rp_pool_create (RP_MPI_START_TIMEOUT=2)"
RP_MPI_START_TIMEOUT=2 mpirun3 -x RP_MPI_START_TIMEOUT "$top/tests/mpi_start"
rc=$?
[ $rc -eq 0 ] || { echo "mpi-np3: start-up deadline: status $rc"; exit 1; }

echo "=== a program that returns from main without rp_pool_free"
out=$(mpirun3 "$top/tests/mpi_exit" 2>&1)
rc=$?
echo "$out"
if [ $rc -ne 0 ] || echo "$out" | grep -q "exiting improperly"; then
    echo "mpi-np3: the program without rp_pool_free did not exit cleanly (status $rc)"
    exit 1
fi
[ "$(echo "$out" | grep -c 'serving rank returned')" -eq 2 ] || {
    echo "mpi-np3: the serving ranks did not return from rp_pool_create"
    exit 1
}
echo "=== exit without rp_pool_free: clean"

flag=$(mktemp "${TMPDIR:-/tmp}/rp-silent.XXXXXX") || exit 1
rm -f "$flag"
echo "=== a silent rank: its batch runs elsewhere (RP_MPI_STRANDED_TIMEOUT=1)"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=1 "$top/tests/mpi_silent" stranded "$flag" ||
    { rm -f "$flag"; echo "mpi-np3: silent rank (stranded): failed"; exit 1; }
echo "=== a silent rank inside a stream: a segment's batch runs elsewhere"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=1 "$top/tests/mpi_silent" stream "$flag" ||
    { rm -f "$flag"; echo "mpi-np3: silent rank (stream): failed"; exit 1; }
echo "=== a silent rank past RP_MPI_UNREACHABLE_TIMEOUT=2: its items fail"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=1 -x RP_MPI_UNREACHABLE_TIMEOUT=2 \
    "$top/tests/mpi_silent" unreachable "$flag" ||
    { rm -f "$flag"; echo "mpi-np3: silent rank (unreachable): failed"; exit 1; }
echo "=== a silent rank: what it had processed no longer counts as progress"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=1 "$top/tests/mpi_silent" progress "$flag" ||
    { rm -f "$flag"; echo "mpi-np3: silent rank (progress): failed"; exit 1; }
rm -f "$flag"
echo "=== silent ranks: handled"
