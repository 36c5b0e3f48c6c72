#!/bin/sh
# The semantic suite and the MPI-specific suite on 2 MPI ranks.
exec "${top_builddir:-.}/tests/mpi-driver" 2 tests/test_semantics tests/test_mpi
