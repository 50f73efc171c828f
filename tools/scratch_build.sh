# Sourced by tools/sanitize.sh and tools/wide_vectors.sh (needs $root and $py set):
#   scratch_build NAME SETTING WHAT
# copies the sources and tests into a fresh temporary folder (removed on exit), builds
# the extension in place there with the environment SETTING (VAR=value, see setup.py),
# and leaves the shell in that folder, whose path is in $work. Prints the build log and
# exits 1 if the build fails.
scratch_build() {
  local name=$1 setting=$2 what=$3
  work=$(mktemp -d "${TMPDIR:-/tmp}/rnnfast-$name.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  cp -r "$root/csrc" "$root/rnnfast" "$root/tests" "$root/setup.py" "$root/pyproject.toml" \
        "$root/README.md" "$work/"
  find "$work/rnnfast" \( -name '*.so' -o -name '__pycache__' \) -prune -exec rm -rf {} +
  cd "$work"
  echo "$name: $what in $work"
  env "$setting" "$py" setup.py -q build_ext --inplace >build.log 2>&1 || {
    cat build.log; exit 1; }
}
