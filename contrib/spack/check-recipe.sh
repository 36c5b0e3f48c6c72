#!/bin/bash
# Checks contrib/spack's recipe without Spack: loads package.py against a small
# stand-in for spack.package that records its directives and gives the two helpers
# configure_args uses (with_or_without, enable_or_disable) Spack's meaning; prints
# the configure arguments of each variant combination; then builds the release
# tarball with those arguments, installs it, and checks what the recipe's
# check_install checks (and, for ~fortran, that no Fortran module is installed).
#
#     contrib/spack/check-recipe.sh rankpool-X.Y.Z.tar.gz [WORKDIR]
#
# ~mpi passes --without-mpi, which this configure does not know yet: it warns and
# builds the mpi backend anyway; the check says so instead of failing.
set -u -o pipefail
here=$(cd "$(dirname "$0")" && pwd)
tarball=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
work=${2:-$(mktemp -d "${TMPDIR:-/tmp}/rankpool-spack.XXXXXX")}
mkdir -p "$work"
jobs=$(nproc); ((jobs > 2)) && jobs=2
failed=0

# ---- the recipe, evaluated -------------------------------------------------------
mkdir -p "$work/stub/spack"
cat >"$work/stub/spack/__init__.py" <<'PY'
PY
cat >"$work/stub/spack/package.py" <<'PY'
"""A stand-in for spack.package: directives are recorded, not acted on."""
import os
DIRECTIVES = []
def _directive(name):
    def record(*args, **kwargs):
        DIRECTIVES.append((name, args, kwargs))
        return lambda f: f
    return record
for _n in ("version", "variant", "depends_on", "conflicts", "license", "maintainers",
           "patch", "provides", "requires"):
    globals()[_n] = _directive(_n)
def run_after(*a, **k): return lambda f: f
def run_before(*a, **k): return lambda f: f
def on_package_attributes(**k): return lambda f: f
def join_path(*parts): return os.path.join(*parts)
class InstallError(Exception): pass
class Spec:
    def __init__(self, variants): self.variants = variants
    def satisfies(self, s):
        return all(self.variants[v[1:]] == (v[0] == "+") for v in s.split())
class AutotoolsPackage:
    def __init__(self, spec): self.spec = spec
    def with_or_without(self, name):
        return ["--with-" + name if self.spec.variants[name] else "--without-" + name]
    def enable_or_disable(self, name):
        return ["--enable-" + name if self.spec.variants[name] else "--disable-" + name]
__all__ = [n for n in dir() if not n.startswith("_")] + ["os"]
PY
args_of() {  # +mpi|~mpi +fortran|~fortran
    PYTHONPATH=$work/stub python3 - "$here/packages/rankpool/package.py" "$@" <<'PY'
import importlib.util, sys
spec = importlib.util.spec_from_file_location("recipe", sys.argv[1])
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
import spack.package as sp
variants = {n: d.get("default") for (k, a, d) in sp.DIRECTIVES if k == "variant" for n in a[:1]}
assert set(variants) == {"mpi", "fortran"}, variants
for v in sys.argv[2:]:
    variants[v[1:]] = v[0] == "+"
pkg = m.Rankpool(sp.Spec(variants))
print(" ".join(pkg.configure_args()))
PY
}

# ---- each variant: configure, build, install, check -------------------------------
build_variant() {
    local label=$1 args d prefix
    shift
    args=$(args_of "$@") || { echo "FAIL: recipe: $label"; failed=$((failed + 1)); return; }
    echo "=== $label: ./configure $args"
    d=$work/$label
    rm -rf "$d" && mkdir -p "$d" && tar -xzf "$tarball" -C "$d" || return 1
    prefix=$d/prefix
    (
        set -e
        cd "$d"/rankpool-*/
        ./configure -q --prefix="$prefix" $args 2>&1 | tee configure.out
        make -j"$jobs" >/dev/null
        make install >/dev/null
        for f in include/rankpool.h lib/pkgconfig/rankpool.pc \
            lib/cmake/rankpool/rankpoolConfig.cmake bin/rankpool-run \
            share/man/man3/rp_map.3 share/man/man1/rankpool-run.1; do
            test -e "$prefix/$f" || { echo "missing after install: $f"; exit 1; }
        done
        case " $args " in
        *" --enable-fortran "*) test -e "$prefix/include/rankpool.mod" ||
            { echo "+fortran: no rankpool.mod"; exit 1; } ;;
        *" --disable-fortran "*) ! test -e "$prefix/include/rankpool.mod" ||
            { echo "~fortran: rankpool.mod installed"; exit 1; } ;;
        esac
        if grep -q "unrecognized options: --without-mpi" configure.out; then
            echo "NOTE: this configure has no --without-mpi yet: the mpi backend was built"
        fi
    ) || { echo "FAIL: $label"; failed=$((failed + 1)); return; }
    echo "PASS: $label"
}

build_variant default
build_variant mpi-fortran +mpi +fortran
build_variant nompi ~mpi ~fortran
[ -z "${2:-}" ] && rm -rf "$work"
echo "check-recipe: $((3 - failed)) passed, $failed failed"
exit $((failed > 0))
