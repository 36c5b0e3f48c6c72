#!/bin/sh
# The semantic suite and the MPI-specific suite on 3 MPI ranks; then a program
# started through the launcher (launch/rankpool-run --mpi), as users do.
top=${top_builddir:-.}
"$top/tests/mpi-driver" 3 tests/test_semantics tests/test_mpi || exit $?
echo "=== $top/launch/rankpool-run --mpi --oversubscribe -n 3 tests/mpi_hosts 1"
timeout 120 "$top/launch/rankpool-run" --mpi --oversubscribe -n 3 "$top/tests/mpi_hosts" 1
