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
initializer cancel as_completed timelimit inplace"

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
# ... and its progress bar's last line (on stderr: a stream draws its own bar)
run files "files: progress bar" "(100%)" sh -c '"$0" "$1" 2>&1 >/dev/null' "$ex/files" "$docdir"

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

# ---- resume: a sweep killed half-way, then rerun with its journal ---------------
# The first run's master (the pid it prints; under mpirun rank 0, whose death
# ends the job) is killed with SIGKILL once its journal holds some points (~100);
# the rerun must compute only some of them and end with the same numbers as a
# run that was never interrupted.
jdir=$(mktemp -d "${TMPDIR:-/tmp}/rankpool-resume.XXXXXX") || exit 99
trap 'rm -f "$out"; rm -rf "$jdir"' EXIT
size_of() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }
resume() { # resume LABEL LAUNCHER...
    rl=$1
    shift
    rm -f "$jdir/whole" "$jdir/killed"
    run resume "resume ($rl, whole)" "2000 computed now" "$@" "$ex/resume" "$jdir/whole"
    whole=$(grep "mean exponent" "$out")
    echo "=== resume ($rl): killed half-way, then rerun"
    "$@" "$ex/resume" "$jdir/killed" >"$jdir/first.out" 2>&1 &
    pid=$!
    # the master's pid known (mpirun forwards its output late) and ~100 points kept
    n=0 master=
    while { [ -z "$master" ] || [ "$(size_of "$jdir/killed")" -lt 4000 ]; } && [ $n -lt 2400 ]; do
        sleep 0.02
        n=$((n + 1))
        master=$(sed -n 's/^resume: .*(pid \([0-9]*\))$/\1/p' "$jdir/first.out")
    done
    if [ -n "$master" ]; then kill -KILL "$master"; else kill -TERM $pid; fi 2>/dev/null
    wait $pid
    echo "    first run ended with status $? ($(size_of "$jdir/killed") bytes of journal)"
    run resume "resume ($rl, rerun)" "restored from the journal" "$@" "$ex/resume" "$jdir/killed"
    now=$(sed -n 's/.* restored from the journal, \([0-9]*\) computed now/\1/p' "$out")
    if [ -z "$now" ] || [ "$now" -le 0 ] || [ "$now" -ge 2000 ]; then
        echo "FAIL: resume ($rl): the rerun computed ${now:-?} of 2000 points"
        failed="$failed resume-$rl"
    elif [ "$(grep "mean exponent" "$out")" != "$whole" ]; then
        echo "FAIL: resume ($rl): the rerun's numbers differ from the whole run's"
        failed="$failed resume-$rl"
    else
        echo "PASS: resume ($rl): the rerun computed $now of 2000 points, same numbers"
    fi
}
resume local
if [ "${RP_BUILT_MPI:-yes}" != no ] && command -v "$MPIRUN" >/dev/null 2>&1; then
    resume "mpirun -np 3" $MPIRUN --oversubscribe --bind-to none -np 3
fi

if [ -n "$failed" ]; then
    echo "examples.sh: FAILED:$failed"
    exit 1
fi
echo "examples.sh: all examples passed"
exit 0
