"""Shared test helpers."""
import os
import subprocess
import sys
import tempfile

import rnnfast

# the directory holding the rnnfast package this test session imported (site-packages
# in CI, the repository for an in-place build)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(rnnfast.__file__)))


def run_python(code, env=None, timeout=300):
    """Run `python -c code` in a fresh interpreter that imports the same rnnfast as the
    tests (from outside the source tree, whose rnnfast has no compiled core)."""
    full = dict(os.environ if env is None else env)
    full["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + full["PYTHONPATH"]
                                          if full.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-c", code], env=full, capture_output=True,
                          text=True, timeout=timeout, cwd=tempfile.gettempdir())
