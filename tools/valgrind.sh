#!/usr/bin/env bash
# valgrind memcheck over a small workload (tools/memcheck_driver.py) against a debug
# build (-O0 -g, Cython bounds checks) made in a scratch copy of this tree. Exits non-zero
# when the workload fails or on any memcheck error (invalid read/write, use of an
# uninitialised value in a branch or a system call) with a frame in rnnfast's compiled
# code; CPython's own start-up reports are counted, not failed (tools/valgrind_report.py).
#
#   tools/valgrind.sh
#
# CPython's small-object allocator is switched off (PYTHONMALLOC=malloc) so every
# allocation is visible to memcheck. Kernels run the AVX2 variant (valgrind emulates no
# AVX-512).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-python}
command -v valgrind >/dev/null || { echo "valgrind: not installed (apt install valgrind)"; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rnnfast-valgrind.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
cp -r "$root/csrc" "$root/rnnfast" "$root/tools" "$root/setup.py" "$root/pyproject.toml" \
      "$root/README.md" "$work/"
find "$work/rnnfast" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
cd "$work" || exit 1
echo "valgrind: debug build in $work"
RNNFAST_DEBUG=1 "$py" setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }

PYTHONMALLOC=malloc RNNFAST_ISA=avx2 PYTHONPATH="$work" \
  valgrind --tool=memcheck --leak-check=no --track-origins=yes \
           --num-callers=30 --log-file=valgrind.log \
           "$py" tools/memcheck_driver.py
[ $? -eq 0 ] || { echo "valgrind: the workload failed"; tail -30 valgrind.log; exit 1; }
"$py" tools/valgrind_report.py valgrind.log
