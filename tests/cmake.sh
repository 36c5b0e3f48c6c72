#!/bin/sh
# find_package(rankpool) from an installed rankpool: installs this build tree into
# a temporary DESTDIR, builds examples/cmake (square with rankpool::rankpool, spmd
# with rankpool::mpi) with CMake against it, and runs both: square locally, spmd
# under mpirun with 3 ranks. Skips (77) without cmake.
#
# Environment (make check sets it): top_builddir, top_srcdir, MAKE, RP_PREFIX
# (configure's prefix), RP_CFLAGS and RP_LDFLAGS (the build's: a sanitizer build's
# library needs programs built with the same flags), MPIRUN.
top_builddir=${top_builddir:-.}
top_srcdir=${top_srcdir:-.}
MAKE=${MAKE:-make}
MPIRUN=${MPIRUN:-mpirun}
unset RP_BACKEND RP_WORKERS
if ! command -v cmake >/dev/null 2>&1; then
    echo "cmake.sh: cmake not installed (Debian: apt-get install cmake): skipped"
    exit 77
fi
[ -n "${RP_PREFIX:-}" ] || { echo "cmake.sh: RP_PREFIX is not set"; exit 99; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rankpool-cmake.XXXXXX") || exit 99
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

echo "=== $MAKE install DESTDIR=$tmp/dest"
$MAKE -C "$top_builddir" install DESTDIR="$tmp/dest" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log"; fail "make install"; }
inst=$tmp/dest$RP_PREFIX
ls "$inst"/lib*/cmake/rankpool/rankpoolConfig.cmake >/dev/null 2>&1 ||
    fail "no rankpoolConfig.cmake installed under $inst"

echo "=== cmake -S examples/cmake -DCMAKE_PREFIX_PATH=$inst"
cmake -S "$top_srcdir/examples/cmake" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$inst" \
    -DCMAKE_C_FLAGS="${RP_CFLAGS:-}" -DCMAKE_EXE_LINKER_FLAGS="${RP_LDFLAGS:-}" \
    >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "cmake configure"; }
cmake --build "$tmp/build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "cmake --build"; }

# the programs link the installed library (the one in DESTDIR), not the build tree's
lib=$(ldd "$tmp/build/square" | sed -n 's/.*librankpool[^ ]* => \([^ ]*\).*/\1/p')
echo "square uses $lib"
case $lib in "$tmp"/dest/*) ;; *) fail "square does not use the installed library" ;; esac

echo "=== ./square"
timeout -k 5 120 "$tmp/build/square" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
[ $rc -eq 0 ] && grep -q "backend local" "$tmp/out" || fail "square (exit $rc)"

if [ "${RP_BUILT_MPI:-yes}" = no ]; then
    [ -e "$tmp/build/spmd" ] && fail "spmd built against a rankpool without MPI"
    echo "cmake.sh: built --without-mpi: no spmd (rankpool::mpi is not found)"
else
    echo "=== $MPIRUN -np 3 ./spmd"
    timeout -k 5 120 "$MPIRUN" --oversubscribe --bind-to none -np 3 "$tmp/build/spmd" \
        >"$tmp/out" 2>&1
    rc=$?
    cat "$tmp/out"
    [ $rc -eq 0 ] && grep -q "2 workers on 3 ranks" "$tmp/out" &&
        grep -q "sum of cubes .*: ok" "$tmp/out" || fail "spmd (exit $rc)"
fi

# find_package with an incompatible version is refused
mkdir -p "$tmp/v"
cat >"$tmp/v/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.13)
project(v C)
find_package(rankpool 9.0 REQUIRED)
CM
if cmake -S "$tmp/v" -B "$tmp/vb" -DCMAKE_PREFIX_PATH="$inst" >"$tmp/v.log" 2>&1; then
    fail "find_package(rankpool 9.0) succeeded"
fi
grep -q "not compatible\|version" "$tmp/v.log" || { cat "$tmp/v.log"; fail "version refusal"; }
echo "cmake.sh: all passed"
