#!/usr/bin/env bash
# Run the AVX-512 kernel variant's code on a CPU without AVX-512. The variants are one
# template (csrc/kern_template.h) instantiated per vector width; the avx512 one has its
# own tile shapes, row tiles, GEMM micro-kernel and k-slices, which a machine without
# AVX-512 never executes. This builds a scratch copy with RNNFAST_WIDE_ON_AVX2=1 (that
# variant compiled for AVX2, GCC splitting each 64-byte vector operation in two) and runs
# tests against it: every result the wide code computes is checked as usual.
#
#   tools/wide_vectors.sh                 # the whole test suite
#   tools/wide_vectors.sh --short         # the subset CI runs
#   tools/wide_vectors.sh tests/test_x.py # any pytest arguments
#
# Needs an x86-64 CPU with AVX2 and FMA (exit status 77 otherwise) and the build
# requirements (pip install "cython>=3" setuptools numpy).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}

if [ "${1:-}" = "--short" ]; then
  shift
  set -- tests/test_agreement.py tests/test_agreement_stack.py tests/test_isa_variants.py \
         tests/test_fast_path.py tests/test_packed_inference.py tests/test_fuzz_findings.py \
         tests/test_semantics_agreement.py tests/test_stream.py tests/test_thread_safety.py "$@"
fi
[ $# -gt 0 ] || set -- tests

if ! grep -qw avx2 /proc/cpuinfo 2>/dev/null || ! grep -qw fma /proc/cpuinfo 2>/dev/null; then
  echo "wide_vectors: this CPU has no AVX2+FMA (or no /proc/cpuinfo); skipped"
  exit 77
fi

# shellcheck source=tools/scratch_build.sh
. "$root/tools/scratch_build.sh"
scratch_build wide_vectors RNNFAST_WIDE_ON_AVX2=1 "building the avx512 variant for AVX2"

# the tests import this scratch build (the current directory comes first on sys.path);
# make sure of it, and that the wide variant is the one selected
"$py" -c 'import os, rnnfast
from rnnfast._cpu import _kernels
assert os.path.dirname(rnnfast.__file__).startswith(os.getcwd()), rnnfast.__file__
assert _kernels.isa_name() == "avx512", _kernels.isa_name()
print("wide_vectors: kernels", _kernels.isa_name(), "from", rnnfast.__file__)'
"$py" -m pytest -q -p no:cacheprovider "$@"
echo "wide_vectors: the avx512 variant passed on this CPU"
