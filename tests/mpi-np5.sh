#!/bin/sh
# The semantic suite and the MPI-specific suite on 5 MPI ranks; then, with node
# leaders (RP_MPI_LEADERS=1: rank 1 hosts all 4 workers), the semantic, crash,
# cancel and time-limit suites, and a check that batches went to the leader and
# results came back in bundles (several in one message: mpi/bundle.c).
driver=${top_builddir:-.}/tests/mpi-driver
"$driver" 5 tests/test_semantics tests/test_mpi || exit $?
echo "=== node leaders (RP_MPI_LEADERS=1): rank 1 hosts all 4 workers"
RP_MPI_LEADERS=1 "$driver" 5 tests/test_crash tests/test_cancel tests/test_timeout || exit $?
out=$(RP_MPI_LEADERS=1 RP_DEBUG=1 "$driver" 5 tests/test_semantics 2>&1)
rc=$?
echo "$out" | grep -v '^rankpool\[' | tail -20
[ $rc -eq 0 ] || exit $rc
for what in "batches to rank 1 in one bundle" "rank 1: [0-9]* results in one bundle"; do
    n=$(echo "$out" | grep -c "$what")
    echo "=== node leaders: $n times '$what'"
    [ "$n" -gt 0 ] || { echo "mpi-np5: no bundle ('$what')"; exit 1; }
done
