#!/bin/sh
# The semantic suite and the MPI-specific suite on 5 MPI ranks.
exec "${top_builddir:-.}/tests/mpi-driver" 5 tests/test_semantics tests/test_mpi
