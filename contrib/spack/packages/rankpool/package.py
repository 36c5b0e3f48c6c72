# Spack recipe for rankpool: builds the release tarball that `make dist` makes
# (configure included, no autotools needed). See contrib/spack/README.md for how
# to use it before a release is published: a local mirror holding the tarball.
#
#     spack repo add contrib/spack
#     spack install rankpool               # +mpi ~fortran
#     spack install rankpool ~mpi          # local backend only
#     spack install rankpool +fortran      # also the Fortran module (use rankpool)

import os

from spack.package import *


class Rankpool(AutotoolsPackage):
    """Python's multiprocessing.Pool for C programs: map, map_async, apply_async,
    imap, chunking, callbacks and AsyncResult with per-item errors, on forked
    worker processes (local backend) or Open MPI ranks (mpi backend), behind one
    API. Also installs a pkg-config file, a CMake package config, man pages, the
    rankpool-run launcher and Slurm job-script templates."""

    homepage = "https://rankpool.invalid/"  # no public home yet: see README.md
    url = "https://rankpool.invalid/rankpool-0.1.0.tar.gz"

    # A published release adds its checksum here: sha256sum rankpool-X.Y.Z.tar.gz
    version("0.1.0")

    variant("mpi", default=True, description="Build the mpi backend (Open MPI ranks)")
    variant("fortran", default=False,
            description="Build the Fortran 2008 module (librankpool_fortran, rankpool.mod)")

    depends_on("c", type="build")
    depends_on("cxx", type="build")  # the C++ example of make check only
    depends_on("fortran", type="build", when="+fortran")
    depends_on("pkgconfig", type="build")
    depends_on("hwloc@2:")
    # The mpi backend speaks Open MPI (its launch environment, its pkg-config
    # file ompi-c); another MPI is not supported.
    depends_on("openmpi", when="+mpi")
    depends_on("cunit", type="test")

    def configure_args(self):
        args = []
        # --without-mpi: the local-only build (configure accepts it once the
        # backends are split; until then configure ignores it with a warning).
        args += self.with_or_without("mpi")
        args += self.enable_or_disable("fortran")
        return args

    def setup_run_environment(self, env):
        # rankpool-run puts its own libdir on LD_LIBRARY_PATH by itself; programs
        # started directly find the library through the module's path.
        env.prepend_path("LD_LIBRARY_PATH", self.prefix.lib)

    @run_after("install")
    @on_package_attributes(run_tests=True)
    def check_install(self):
        # the installed pieces that users build against
        for path in (
            join_path(self.prefix.include, "rankpool.h"),
            join_path(self.prefix.lib, "pkgconfig", "rankpool.pc"),
            join_path(self.prefix.lib, "cmake", "rankpool", "rankpoolConfig.cmake"),
            join_path(self.prefix.bin, "rankpool-run"),
        ):
            if not os.path.exists(path):
                raise InstallError("missing after install: " + path)
        if self.spec.satisfies("+fortran"):
            if not os.path.exists(join_path(self.prefix.include, "rankpool.mod")):
                raise InstallError("+fortran: rankpool.mod was not installed")
