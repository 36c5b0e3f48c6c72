#!/bin/sh
# Runs every example as a test (make check builds them as check_PROGRAMS), then the
# same binaries under real mpirun with 3 ranks, where the main example must say
# "backend mpi": one program, either backend.
# An example prints what it computes and exits non-zero on any failure.
#
# Environment (make check sets it, see AM_TESTS_ENVIRONMENT): top_builddir, MPIRUN,
# OMPI_ALLOW_RUN_AS_ROOT*. Every example also runs under mpirun (about 0.3 s each);
# RP_EXAMPLES_MPI=square runs only the main one there.

top_builddir=${top_builddir:-.}
# The backend is chosen by how the examples are started here, not by the caller.
unset RP_BACKEND
MPIRUN=${MPIRUN:-mpirun}
ex=$top_builddir/examples
# Every example finishes in about a second; a hang is a failure, not a stuck build.
limit=120
if command -v timeout >/dev/null 2>&1; then tmo="timeout -k 5 $limit"; else tmo=; fi

examples="square square_async people callback error_callback failing_task
no_return_wait two_async_join chunksize map process imap_unordered starmap divisors
initializer"

failed=
out=$(mktemp "${TMPDIR:-/tmp}/rankpool-examples.XXXXXX") || exit 99
trap 'rm -f "$out"' EXIT

# run NAME LABEL EXPECT COMMAND...: runs COMMAND, shows its output, and records a
# failure if it exits non-zero or (EXPECT not empty) its output lacks EXPECT.
run() {
    name=$1 label=$2 expect=$3
    shift 3
    echo "=== $label: $*"
    $tmo "$@" >"$out" 2>&1
    rc=$?
    sed 's/^/    /' "$out"
    if [ $rc -ne 0 ]; then
        [ $rc -eq 124 ] && echo "    (killed after ${limit}s)"
        echo "FAIL: $label (exit $rc)"
        failed="$failed $label"
    elif [ -n "$expect" ] && ! grep -q "$expect" "$out"; then
        echo "FAIL: $label (output lacks \"$expect\")"
        failed="$failed $label"
    else
        echo "PASS: $label"
    fi
}

# ---- every example, locally ---------------------------------------------------
for name in $examples; do
    if [ ! -x "$ex/$name" ]; then
        echo "FAIL: $ex/$name is not built"
        failed="$failed $name"
        continue
    fi
    expect=
    [ "$name" = square ] && expect="backend local"
    run "$name" "$name" "$expect" "$ex/$name"
done
# files: every file under a folder (the sources' doc/), paths read lazily
docdir=${top_srcdir:-$top_builddir/..}/doc
run files files "0 failed, 0 skipped, backend local" "$ex/files" "$docdir"

# ---- the same binary under mpirun ---------------------------------------------
if [ "${RP_BUILT_MPI:-yes}" = no ]; then
    echo "examples.sh: built --without-mpi: the examples run locally only"
elif ! command -v "$MPIRUN" >/dev/null 2>&1; then
    echo "FAIL: no MPI launcher ($MPIRUN); install openmpi-bin or configure MPIRUN="
    failed="$failed mpirun"
else
    mpi="$MPIRUN --oversubscribe --bind-to none -np 3"
    # An example's libtool wrapper sets up the library path and execs the binary;
    # it was already run once above, so no rank has to relink it.
    run square "square (mpirun -np 3)" "backend mpi" $mpi "$ex/square"
    if [ "${RP_EXAMPLES_MPI:-all}" = all ]; then
        for name in $examples; do
            [ "$name" = square ] && continue
            run "$name" "$name (mpirun -np 3)" "" $mpi "$ex/$name"
        done
    fi
    run files "files (mpirun -np 3)" "backend mpi" $mpi "$ex/files" "$docdir"
fi

# ---- rankpool_mpi.h: a task farm inside an MPI program (MPI only) --------------
if [ "${RP_BUILT_MPI:-yes}" != no ] && command -v "$MPIRUN" >/dev/null 2>&1; then
    run spmd "spmd (mpirun -np 3)" "sum of cubes .*: ok" \
        $MPIRUN --oversubscribe --bind-to none -np 3 "$ex/spmd"
fi

if [ -n "$failed" ]; then
    echo "examples.sh: FAILED:$failed"
    exit 1
fi
echo "examples.sh: all examples passed"
exit 0
