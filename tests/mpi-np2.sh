#!/bin/sh
# On 2 MPI ranks: the semantic, dispatch, crash, reliability, timeout, progress, journal,
# buffer, stream, handle and re-entry suites (shared
# with the local backend) and the MPI-specific suite; a pool whose serving rank
# runs another binary (MPMD: RP_EFNREF); the same with two programs linked without
# a build-id whose task sits at the same offset (refused, while one such program
# on both ranks works); and the in-process mode
# (RP_MPI_ISOLATE=0), where a crashing task stops the job with a message naming
# rank, host, item and signal instead of hanging.
top=${top_builddir:-.}
driver=$top/tests/mpi-driver
"$driver" 2 tests/test_semantics tests/test_dispatch tests/test_crash tests/test_reliability \
    tests/test_cancel tests/test_timeout tests/test_progress tests/test_journal tests/test_buffers \
    tests/test_stream tests/test_handles tests/test_reentry tests/test_mpi || exit $?
"$driver" --mpmd tests/mpi_hosts efnref : tests/mpi_other || exit $?
"$driver" --mpmd tests/mpi_nobid same : tests/mpi_nobid || exit $?
"$driver" --mpmd tests/mpi_nobid other : tests/mpi_nobid_other || exit $?

MPIRUN=${MPIRUN:-mpirun}
run() {
    timeout 300 "$MPIRUN" --oversubscribe --bind-to none -np 2 -x RP_BACKEND=mpi \
        -x RP_MPI_ISOLATE "$top/tests/mpi_hosts" "$@"
}
ulimit -c 0 2>/dev/null
echo "=== RP_MPI_SPIN=1: the rank and its worker process spin for each other; a map"
out=$(RP_MPI_SPIN=1 RP_DEBUG=1 timeout 300 "$MPIRUN" --oversubscribe --bind-to none -np 2 \
    -x RP_BACKEND=mpi -x RP_MPI_SPIN -x RP_DEBUG "$top/tests/mpi_hosts" 1 2>&1) || {
    echo "$out" | tail -20
    echo "mpi-np2: a map with RP_MPI_SPIN=1 failed"
    exit 1
}
echo "$out" | grep -q "pair spin on, .*(RP_MPI_SPIN set)" || {
    echo "$out" | tail -20
    echo "mpi-np2: the serving rank did not take RP_MPI_SPIN=1"
    exit 1
}
echo "=== worker processes: a crash fails its item"
RP_MPI_ISOLATE=1 run crash || exit 1
export RP_MPI_ISOLATE=0
echo "=== in-process: a map"
run 1 || exit 1
echo "=== in-process: a crash stops the job"
out=$(run crash 2>&1)
rc=$?
echo "$out" | grep -v '^\[' | head -20
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then
    echo "mpi-np2: the job did not stop as it should (status $rc)"
    exit 1
fi
echo "$out" | grep -q "rank 1 on .*killed by signal 11 while running item 5" || {
    echo "mpi-np2: no message naming rank, host, signal and item"
    exit 1
}
echo "=== in-process crash: stopped with status $rc, message seen"
