"""pytest-benchmark front end of bench/denormals.py: the same call on ordinary and on
subnormal inputs, one group per (case, dtype). Compare the two rows of a group; the
NumPy loop (no FTZ/DAZ) is the control for what subnormals cost on this machine."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import denormals  # noqa: E402

CASE_NAMES = ["rnnfast inference", "rnnfast training", "NumPy loop (control)"]


@pytest.mark.parametrize("inputs", ["normal", "subnormal"])
@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_denormals(benchmark, dtype, case, inputs, bench_threads, bench_env):
    import rnnfast
    rnnfast.set_num_threads(bench_threads)
    cases, normal, tiny = denormals._cases(dtype, T=50, N=8, H=256)
    make = dict(cases)[case]
    benchmark.group = f"denormals {case} {np.dtype(dtype).name}"
    benchmark.name = f"{case}-{inputs}"
    benchmark.extra_info.update(case=case, dtype=np.dtype(dtype).name, inputs=inputs,
                                threads=bench_threads, shape="LSTM T=50 N=8 I=H=256")
    benchmark(make(normal if inputs == "normal" else tiny))
