#!/bin/sh
# The semantic suite and the MPI-specific suite on 3 MPI ranks.
exec "${top_builddir:-.}/tests/mpi-driver" 3 tests/test_semantics tests/test_mpi
