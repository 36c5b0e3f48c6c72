#!/bin/sh
# Sends the master made to a rank it stopped waiting for (tests/mpi_sends.c): a
# rank stopped while a map's large inputs go to it; the map returns (its items run
# on the other rank's worker; or the rank is given up for good), the caller unmaps
# the input, the rank runs again and takes what it was sent: no rank may crash,
# and later maps are right. The same with the input in a buffer of rp_pool_alloc
# (sent from it as it is), given back or freed with the pool while the rank is
# stopped.
top=${top_builddir:-.}
MPIRUN=${MPIRUN:-mpirun}
mpirun3() {
    timeout 300 "$MPIRUN" --oversubscribe --bind-to none -np 3 -x RP_BACKEND=mpi "$@"
}
flag=$(mktemp "${TMPDIR:-/tmp}/rp-sends.XXXXXX") || exit 1
rm -f "$flag"
fail=0
echo "=== a stranded rank's pending sends (RP_MPI_STRANDED_TIMEOUT=2)"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=2 "$top/tests/mpi_sends" stranded "$flag" ||
    { echo "mpi-sends: stranded: failed"; fail=1; }
echo "=== a given-up rank's pending sends (RP_MPI_UNREACHABLE_TIMEOUT=4)"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=2 -x RP_MPI_UNREACHABLE_TIMEOUT=4 \
    "$top/tests/mpi_sends" unreachable "$flag" ||
    { echo "mpi-sends: unreachable: failed"; fail=1; }
echo "=== the pool freed and MPI finalized while sends to a stopped rank are pending"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=2 "$top/tests/mpi_sends" free "$flag" ||
    { echo "mpi-sends: free: failed"; fail=1; }
echo "=== the input in a pool buffer, given back while sends from it are pending"
for mode in pool poolfree pooldrop; do
    mpirun3 -x RP_MPI_STRANDED_TIMEOUT=2 "$top/tests/mpi_sends" $mode "$flag" ||
        { echo "mpi-sends: $mode: failed"; fail=1; }
done
echo "=== the same, the buffer handed to the pool thread (as when its lock is busy)"
mpirun3 -x RP_MPI_STRANDED_TIMEOUT=2 -x RP_TEST_BUF_HAND_OVER=1 "$top/tests/mpi_sends" pool \
    "$flag" || { echo "mpi-sends: pool, handed over: failed"; fail=1; }
rm -f "$flag" "$flag.stopped" "$flag.resumed"
[ $fail -eq 0 ] && echo "=== pending sends to a stopped rank: handled"
exit $fail
