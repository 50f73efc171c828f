"""Every kernel variant this CPU can run agrees with the reference (RNNFAST_ISA forces one)."""
import os

import pytest
from conftest import run_python

kernels = pytest.importorskip("rnnfast._cpu._kernels", reason="compiled backend not built")

ORDER = ["baseline", "avx2", "avx512"]
AVAILABLE = ORDER[:ORDER.index(kernels.isa_name()) + 1]

CHECK = r"""
import numpy as np, rnnfast
from rnnfast._cpu import _kernels
assert _kernels.isa_name() == {isa!r}, _kernels.isa_name()
worst = 0.0
for cls, kw in [(rnnfast.LSTM, dict(proj_size=3)), (rnnfast.LSTM, {{}}), (rnnfast.GRU, {{}}),
                (rnnfast.GRU, dict(reset_after=False)), (rnnfast.RNN, {{}})]:
    for lengths in (None, np.array([9, 4, 1, 9, 7])):
        outs = []
        for backend in ("cpu", "reference"):
            m = cls(11, 13, num_layers=2, bidirectional=True, dtype=np.float64, seed=3,
                    backend=backend, **kw)
            x = np.random.default_rng(0).standard_normal((9, 5, 11))
            y, _ = m(x, lengths=lengths)
            dx, _, g = m.backward(np.cos(y))
            outs.append([y, dx] + list(g.values()))
        for a, b in zip(*outs):
            worst = max(worst, float(np.abs(a - b).max() / np.abs(b).max()))
assert worst <= 1e-12, worst
print(worst)
"""


@pytest.mark.parametrize("isa", AVAILABLE)
def test_variant_agrees_with_reference(isa):
    env = dict(os.environ, RNNFAST_ISA=isa)
    out = run_python(CHECK.format(isa=isa), env=env)
    assert out.returncode == 0, out.stderr[-2000:]


def test_unsupported_request_is_ignored():
    env = dict(os.environ, RNNFAST_ISA="no-such-isa")
    out = run_python("from rnnfast._cpu import _kernels; print(_kernels.isa_name())", env=env)
    assert out.stdout.strip() == kernels.isa_name()
