"""Shared helpers of the tests/test_semantics_*.py files (ONNX semantics options)."""
import numpy as np

from rnnfast import functional as F

#: every ONNX activation with non-default alpha / beta where it has any
ALL_ACTS = [
    ("Relu", None, None), ("Tanh", None, None), ("Sigmoid", None, None),
    ("Affine", 0.7, 0.2), ("LeakyRelu", 0.05, None), ("ThresholdedRelu", 0.1, None),
    ("ScaledTanh", 1.3, 0.6), ("HardSigmoid", 0.3, 0.45), ("Elu", 0.8, None),
    ("Softsign", None, None), ("Softplus", None, None),
]
NUM_ACTS = {"RNN_TANH": 1, "RNN_RELU": 1, "GRU": 2, "LSTM": 3}
MODES = ["RNN_TANH", "GRU", "LSTM"]


def make(mode, *, T=5, N=3, I=4, H=5, L=1, bidir=False, proj=0, peephole=False,
         dtype=np.float64, seed=0, scale=0.6):
    """Random params, input, initial states (float64 values representable in float32)."""
    rng = np.random.default_rng(seed)
    shapes = F.param_shapes(mode, I, H, num_layers=L, bidirectional=bidir, proj_size=proj,
                            peephole=peephole)
    f32 = lambda a: a.astype(np.float32).astype(dtype)  # noqa: E731
    params = {k: f32(rng.standard_normal(s) * scale) for k, s in shapes.items()}
    D = 2 if bidir else 1
    P = proj or H
    x = f32(rng.standard_normal((T, N, I)))
    h0 = f32(rng.standard_normal((L * D, N, P)) * 0.5)
    hx = h0
    if mode == "LSTM":
        hx = (h0, f32(rng.standard_normal((L * D, N, H)) * 0.5))
    return params, x, hx


def run(mode, params, x, hx, backend, *, H, L=1, bidir=False, proj=0, lengths=None,
        batch_first=False, seed=1, **options):
    """Forward + backward with random upstream gradients; dict of every result."""
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bidir, lengths=lengths,
              batch_first=batch_first, hx=hx, backend=backend, training=True, **options)
    if mode == "LSTM":
        kw["proj_size"] = proj
    out = F.rnn_forward(mode, x, params, **kw)
    rng = np.random.default_rng(seed)
    dy = rng.standard_normal(out.y.shape).astype(x.dtype)
    dh = rng.standard_normal(out.h_n.shape).astype(x.dtype)
    dc = None if out.c_n is None else rng.standard_normal(out.c_n.shape).astype(x.dtype)
    g = F.rnn_backward(out.cache, dy, dh, dc)
    res = {"y": out.y, "h_n": out.h_n, "dx": g.dx, "dh0": g.dh0}
    if out.c_n is not None:
        res["c_n"], res["dc0"] = out.c_n, g.dc0
    res.update({"d_" + k: v for k, v in g.grads.items()})
    return res


def rel_err(a, b):
    """max |a - b| / max |b| (the absolute difference when b is all zeros)."""
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
    scale = float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


def act_options(names_alpha_beta):
    """activations / activation_alpha / activation_beta from [(name, alpha, beta)]."""
    return dict(activations=[n for n, _, _ in names_alpha_beta],
                activation_alpha=[a for _, a, _ in names_alpha_beta],
                activation_beta=[b for _, _, b in names_alpha_beta])
