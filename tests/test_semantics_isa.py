"""ONNX semantics: the general compiled path of every kernel variant this CPU can run
(RNNFAST_ISA forces one) agrees with the reference, float64, forward and gradients."""
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
cases = [
    (rnnfast.LSTM, dict(proj_size=3, peephole=True, input_forget=True, clip=0.9,
                        activations=["HardSigmoid", "Softsign", "Elu"])),
    (rnnfast.LSTM, dict(peephole=True, activations=["Sigmoid", "Softplus", "Tanh"])),
    (rnnfast.GRU, dict(clip=0.5, activations=["Softsign", "ScaledTanh"],
                       activation_alpha=[None, 1.2], activation_beta=[None, 0.7])),
    (rnnfast.GRU, dict(reset_after=False, clip=0.4)),
    (rnnfast.RNN, dict(activations=["LeakyRelu", "ThresholdedRelu"],
                       activation_alpha=[0.1, 0.05], clip=2.0)),
]
for cls, kw in cases:
    for lengths in (None, np.array([9, 4, 1, 9, 0])):
        outs = []
        for backend in ("cpu", "reference"):
            m = cls(11, 13, num_layers=2, bidirectional=True, dtype=np.float64, seed=3,
                    backend=backend, **kw)
            if getattr(m, "peephole", False):
                for name, p in m.named_parameters():
                    if name.startswith("weight_peep"):
                        p[...] = np.linspace(-0.5, 0.5, p.size)
            x = np.random.default_rng(0).standard_normal((9, 5, 11))
            y, _ = m(x, lengths=lengths)
            dx, _, g = m.backward(np.cos(y))
            outs.append([y, dx] + list(g.values()))
        for a, b in zip(*outs):
            diff = float(np.abs(a - b).max())
            if diff > 1e-14:
                worst = max(worst, diff / float(np.abs(b).max()))
assert worst <= 1e-12, worst
print(worst)
"""


@pytest.mark.parametrize("isa", AVAILABLE)
def test_general_path_variant_agrees_with_reference(isa):
    env = dict(os.environ, RNNFAST_ISA=isa)
    out = run_python(CHECK.format(isa=isa), env=env)
    assert out.returncode == 0, out.stderr[-2000:]
