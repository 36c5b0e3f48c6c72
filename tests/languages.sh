#!/bin/sh
# The examples in other languages, on both backends: examples/sweep (Fortran 2008,
# module rankpool) and examples/lambda (C++: a lambda task over std::vector), each
# run locally and under mpirun with 3 ranks. configure builds each one only when
# it finds the compiler: a missing one is reported and skipped; with neither, the
# whole test is skipped (77).
#
# Environment (make check sets it): top_builddir, MPIRUN, RP_LANG_EXAMPLES (the
# examples configure could build, e.g. "examples/lambda examples/sweep").
top_builddir=${top_builddir:-.}
MPIRUN=${MPIRUN:-mpirun}
unset RP_BACKEND RP_WORKERS
built=${RP_LANG_EXAMPLES-}
tmo="timeout -k 5 120"

ran=0
failed=
out=$(mktemp "${TMPDIR:-/tmp}/rankpool-lang.XXXXXX") || exit 99
trap 'rm -f "$out"' EXIT

# run LABEL EXPECT... -- COMMAND...: every EXPECT must be in the output
run() {
    label=$1
    shift
    expects=
    while [ "$1" != -- ]; do expects="$expects
$1"; shift; done
    shift
    echo "=== $label: $*"
    $tmo "$@" >"$out" 2>&1
    rc=$?
    sed 's/^/    /' "$out"
    ok=yes
    [ $rc -eq 0 ] || ok="exit $rc"
    echo "$expects" | while IFS= read -r e; do
        [ -z "$e" ] || grep -qF -- "$e" "$out" || { echo "    (lacks \"$e\")"; exit 1; }
    done || ok="output"
    if [ "$ok" = yes ]; then echo "PASS: $label"; else
        echo "FAIL: $label ($ok)"; failed="$failed $label"; fi
}

mpi="$MPIRUN --oversubscribe --bind-to none -np 3"
for ex in sweep lambda; do
    case " $built " in
    *" examples/$ex "*) ;;
    *)  [ $ex = sweep ] && lang="Fortran compiler" || lang="C++17 compiler"
        echo "SKIP: examples/$ex: configure found no $lang"
        continue ;;
    esac
    ran=1
    bin=$top_builddir/examples/$ex
    if [ $ex = sweep ]; then
        expect_ok="sweep: ok"
        expect_err="item 150 (r = 4.50) failed with 22: rate outside (0, 4]"
    else
        expect_ok="1000 norms, |v[999]| = 12987, 0 wrong"
        expect_err="RP_ETASK at item 500: item 500 is not a number"
    fi
    run "$ex" "backend local" "$expect_ok" "$expect_err" -- "$bin"
    [ "${RP_BUILT_MPI:-yes}" = no ] && continue # built --without-mpi: local only
    run "$ex (mpirun -np 3)" "backend mpi, 2 workers" "$expect_ok" "$expect_err" -- $mpi "$bin"
done

[ $ran -eq 0 ] && { echo "languages.sh: no C++ or Fortran compiler: skipped"; exit 77; }
if [ -n "$failed" ]; then
    echo "languages.sh: FAILED:$failed"
    exit 1
fi
echo "languages.sh: all passed"
