#!/bin/sh
# The semantic suite and the MPI-specific suite on 2 MPI ranks; then a pool whose
# serving rank runs another binary (MPMD): its items fail with RP_EFNREF.
driver="${top_builddir:-.}/tests/mpi-driver"
"$driver" 2 tests/test_semantics tests/test_mpi || exit $?
exec "$driver" --mpmd tests/mpi_hosts efnref : tests/mpi_other
