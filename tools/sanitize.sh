#!/usr/bin/env bash
# Build rnnfast with AddressSanitizer + UndefinedBehaviorSanitizer in a scratch copy of
# this tree and run tests against that build. Any report fails the run: UBSan halts on
# the first error, ASan aborts. Leak detection is off (CPython keeps its arenas).
#
#   tools/sanitize.sh                 # the whole test suite
#   tools/sanitize.sh --short         # the subset CI runs (agreement incl. ONNX options, fuzz findings, threads, packs, streaming)
#   tools/sanitize.sh tests/test_x.py # any pytest arguments
#
# Needs gcc with libasan/libubsan (exit status 77 when missing) and the build requirements
# (pip install "cython>=3" setuptools numpy).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}

if [ "${1:-}" = "--short" ]; then
  shift
  set -- tests/test_agreement.py tests/test_agreement_stack.py tests/test_fuzz_findings.py \
         tests/test_thread_safety.py tests/test_packed_inference.py \
         tests/test_semantics_agreement.py tests/test_stream.py "$@"
fi
[ $# -gt 0 ] || set -- tests

asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
if [ ! -e "$asan" ] || [ ! -e "$ubsan" ]; then
  echo "sanitize: gcc has no libasan/libubsan here (apt install gcc); skipped"
  exit 77
fi

# shellcheck source=tools/scratch_build.sh
. "$root/tools/scratch_build.sh"
scratch_build sanitize RNNFAST_SANITIZE=1 "building with -fsanitize=address,undefined"

# the tests import this scratch build (the current directory comes first on sys.path),
# never an installed rnnfast
export LD_PRELOAD="$asan:$ubsan"
# reports go to files (pytest captures the tests' stderr): printed when the run fails
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:allocator_may_return_null=1:log_path=$work/report
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:log_path=$work/report
status=0
"$py" -m pytest -q -p no:cacheprovider "$@" || status=$?
if ls "$work"/report* >/dev/null 2>&1; then
  echo "sanitize: REPORTS"; cat "$work"/report*; exit 1
fi
[ "$status" -eq 0 ] || { echo "sanitize: pytest failed (status $status)"; exit "$status"; }
"$py" -c 'import os, rnnfast
assert os.path.dirname(rnnfast.__file__).startswith(os.getcwd()), rnnfast.__file__
print("sanitize: clean; the tests ran against the sanitized build", rnnfast.__file__)'
