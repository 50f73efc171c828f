"""Thread-count control: set_num_threads, the environment, and OpenMP's limit
(what threadpoolctl and OMP_NUM_THREADS change)."""
import os

import pytest
from conftest import run_python

import rnnfast
from rnnfast import _config

kernels = pytest.importorskip("rnnfast._cpu._kernels", reason="compiled backend not built")


def test_set_and_get():
    saved = _config._num_threads
    try:
        rnnfast.set_num_threads(1)
        assert rnnfast.get_num_threads() == 1
        rnnfast.set_num_threads(None)
        assert rnnfast.get_num_threads() >= 1
    finally:
        _config._num_threads = saved


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_bad_values(bad):
    with pytest.raises((TypeError, ValueError), match="set_num_threads"):
        rnnfast.set_num_threads(bad)


def run_fresh(code, **env):
    full = dict(os.environ)
    for k in ("RNNFAST_NUM_THREADS", "OMP_NUM_THREADS"):
        full.pop(k, None)
    full.update(env)
    out = run_python(code, env=full)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_environment_variables_and_openmp_cap():
    code = "import rnnfast; print(rnnfast.get_num_threads())"
    assert run_fresh(code, RNNFAST_NUM_THREADS="3", OMP_NUM_THREADS="8") == "3"
    # OMP_NUM_THREADS alone sets the count, and caps RNNFAST_NUM_THREADS
    assert run_fresh(code, OMP_NUM_THREADS="1") == "1"
    assert run_fresh(code, RNNFAST_NUM_THREADS="4", OMP_NUM_THREADS="2") == "2"


def test_threadpoolctl_limits_rnnfast():
    pytest.importorskip("threadpoolctl")
    code = (
        "import rnnfast, threadpoolctl\n"
        "rnnfast.set_num_threads(4)\n"
        "libs = [p['filepath'] for p in threadpoolctl.threadpool_info()\n"
        "        if p['user_api'] == 'openmp']\n"
        "assert libs, 'rnnfast OpenMP runtime not visible to threadpoolctl'\n"
        "with threadpoolctl.threadpool_limits(1, user_api='openmp'):\n"
        "    inside = rnnfast.get_num_threads()\n"
        "print(inside, rnnfast.get_num_threads())\n"
    )
    inside, after = run_fresh(code, OMP_NUM_THREADS="4").split()
    assert inside == "1" and after == "4"
