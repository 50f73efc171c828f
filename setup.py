"""Build the compiled core: Cython wrapper + C kernels, OpenMP when the compiler has it.

Environment switches:
  RNNFAST_DEBUG=1      -O0 -g and Cython bounds checks (for gdb / debug CI runs)
  RNNFAST_SANITIZE=1   build with AddressSanitizer + UndefinedBehaviorSanitizer
  RNNFAST_NO_OPENMP=1  serial build even when OpenMP is available
  RNNFAST_WIDE_ON_AVX2=1  test build: the AVX-512 variant's code (64-byte vectors, its tile
                       shapes and blocking) compiled for AVX2 and selected on AVX2 CPUs, so
                       a machine without AVX-512 runs that variant's logic
                       (tools/wide_vectors.sh)
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def _compiler():
    return os.environ.get("CC") or sysconfig.get_config_var("CC").split()[0] or "cc"


def _compiles(flags, source="int main(void) { return 0; }\n", werror=True):
    """Whether the C compiler builds and links `source` with `flags`."""
    cc = _compiler()
    if shutil.which(cc) is None:
        return False
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as f:
            f.write(source)
        cmd = [cc, *flags, *(["-Werror"] if werror else []), src, "-o",
               os.path.join(tmp, "probe")]
        try:
            return subprocess.run(cmd, capture_output=True, timeout=120).returncode == 0
        except (OSError, subprocess.SubprocessError):
            return False


def openmp_flags():
    """Compile and link a tiny OpenMP program; return the flags that work, or None."""
    if os.environ.get("RNNFAST_NO_OPENMP"):
        return None
    for flags in (["-fopenmp"], ["-Xpreprocessor", "-fopenmp", "-lomp"]):
        if _compiles(flags, OPENMP_PROBE, werror=False):
            return flags
    return None


debug = bool(os.environ.get("RNNFAST_DEBUG"))
sanitize = bool(os.environ.get("RNNFAST_SANITIZE"))
wide_on_avx2 = bool(os.environ.get("RNNFAST_WIDE_ON_AVX2"))
omp = openmp_flags()
if omp is None and os.environ.get("RNNFAST_NO_OPENMP"):
    print("rnnfast: RNNFAST_NO_OPENMP set, building serial kernels", file=sys.stderr)
elif omp is None:
    warnings.warn("rnnfast: the C compiler has no working OpenMP; building the kernels "
                  "serial (single-threaded). Install libgomp/libomp for parallel kernels.")
    print("rnnfast: OpenMP not found, building serial kernels", file=sys.stderr)

compile_args = ["-std=gnu11", "-O0" if debug else "-O3", "-Wno-unknown-pragmas"]
# Hot loops start on a 64-byte boundary: on Zen 3 the micro-kernel's k loop (116 bytes)
# spans two fetch windows when aligned and three when not, and unrelated edits moved it
# (measured: T5 training 6-10% slower from a shift of 16 bytes). Aligning every loop
# makes the kernels' speed independent of where the linker happens to put them.
if _compiles(["-falign-loops=64"]):
    compile_args.append("-falign-loops=64")
link_args = []
if debug or sanitize:
    compile_args += ["-g", "-fno-omit-frame-pointer"]
if sanitize:
    compile_args += ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]
    link_args += ["-fsanitize=address,undefined"]
if omp:
    compile_args += [f for f in omp if f != "-lomp"]
    link_args += omp if omp[0] == "-fopenmp" else ["-lomp"]

sources = ["rnnfast/_cpu/_kernels.pyx", "csrc/dispatch.c", "csrc/kern_base.c"]
if sysconfig.get_platform().endswith(("x86_64", "amd64")) or "x86_64" in sysconfig.get_platform():
    sources += ["csrc/kern_avx2.c", "csrc/kern_avx512.c"]
    compile_args.append("-DRF_HAVE_X86_VARIANTS")
    if wide_on_avx2:
        # GCC lowers the 64-byte vector type to pairs of AVX2 operations; -Wno-psabi: the
        # ABI note for such vectors does not concern functions internal to one file
        compile_args += ["-DRF_WIDE_ON_AVX2", "-Wno-psabi"]

extensions = [
    Extension(
        "rnnfast._cpu._kernels",
        sources=sources,
        include_dirs=["csrc", np.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        depends=["csrc/rnnfast.h", "csrc/rf_common.h", "csrc/kernels_impl.h",
                 "csrc/kern_template.h"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "initializedcheck": debug,
        },
    ),
)
