"""Numerical robustness of the compiled layers: huge inputs, NaN isolation, a very long
sequence under truncated BPTT, and float32 accumulation error over a long sequence."""

import numpy as np
import pytest

from rnnfast import functional as F
from rnnfast.nn import GRU, LSTM, RNN


def _cpu_available():
    try:
        F.get_backend("cpu")
    except ImportError:
        return False
    return True


pytestmark = pytest.mark.skipif(not _cpu_available(), reason="rnnfast._cpu is not built")

CLASSES = {"lstm": LSTM, "gru": GRU, "rnn_tanh": RNN}
DTYPES = [np.float32, np.float64]


def _state_list(h):
    return list(h) if isinstance(h, tuple) else [h]


def _backward(layer, dy, h_n):
    if isinstance(layer, LSTM):
        dx, (dh0, dc0), grads = layer.backward(dy, np.ones_like(h_n[0]), np.ones_like(h_n[1]))
        return dx, [dh0, dc0], grads
    dx, dh0, grads = layer.backward(dy, np.ones_like(h_n))
    return dx, [dh0], grads


# ---------------------------------------------------------------- (a) huge inputs
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_huge_inputs_stay_finite(cell, dtype):
    """Inputs of magnitude 1e30 saturate every gate; the activations must not overflow
    (no exp(-x) -> inf -> NaN) in the forward or in the backward pass."""
    layer = CLASSES[cell](5, 6, num_layers=2, bidirectional=True, dtype=dtype, seed=1)
    layer.backend = "cpu"
    rng = np.random.default_rng(0)
    x = (np.sign(rng.standard_normal((7, 3, 5))) * 1e30).astype(dtype)
    x[2, 1, :] = -1e30          # also a step of all-equal huge values
    for lengths in (None, np.array([7, 4, 1])):
        layer.train()
        y, h_n = layer(x, lengths=lengths)
        assert np.isfinite(y).all()
        for s in _state_list(h_n):
            assert np.isfinite(s).all()
        dx, dstates, grads = _backward(layer, np.ones_like(y), h_n)
        assert np.isfinite(dx).all()
        for d in dstates:
            assert np.isfinite(d).all()
        for name, g in grads.items():
            assert np.isfinite(g).all(), name
        layer.eval()
        y2, _ = layer(x, lengths=lengths)
        assert np.isfinite(y2).all()


# ---------------------------------------------------------------- (b) NaN isolation
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_nan_stays_in_its_sequence(cell, dtype):
    """A NaN in one sequence's input makes that sequence's outputs NaN (forward
    direction from the NaN step on, reverse direction up to it, as PyTorch) and leaves
    every other sequence of the batch bitwise unchanged, in forward and backward."""
    T, N, bad = 9, 4, 2
    layer = CLASSES[cell](3, 5, num_layers=2, bidirectional=True, dtype=dtype, seed=2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((T, N, 3)).astype(dtype)
    xn = x.copy()
    xn[4, bad, 1] = np.nan
    y0, h0 = layer(x)
    dx0, _, _ = _backward(layer, np.ones_like(y0), h0)
    y1, h1 = layer(xn)
    dx1, _, _ = _backward(layer, np.ones_like(y1), h1)
    others = [n for n in range(N) if n != bad]
    np.testing.assert_array_equal(y1[:, others], y0[:, others])
    for s0, s1 in zip(_state_list(h0), _state_list(h1)):
        np.testing.assert_array_equal(s1[:, others], s0[:, others])
    np.testing.assert_array_equal(dx1[:, others], dx0[:, others])
    H = 5
    # layer 1 sees NaN at every step via layer 0's two directions
    assert np.isnan(y1[:, bad]).all()
    assert np.isnan(h1[0] if isinstance(h1, tuple) else h1)[:, bad].all()
    assert np.isnan(dx1[:, bad]).any()
    # a single-layer check of the direction pattern (forward t >= 4, reverse t <= 4)
    one = CLASSES[cell](3, H, bidirectional=True, dtype=dtype, seed=3)
    one.eval()
    y, _ = one(xn)
    assert np.isnan(y[4:, bad, :H]).all() and np.isfinite(y[:4, bad, :H]).all()
    assert np.isnan(y[:5, bad, H:]).all() and np.isfinite(y[5:, bad, H:]).all()
    assert np.isfinite(y[:, others]).all()


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_nan_pattern_matches_torch(cell):
    torch = pytest.importorskip("torch")
    layer = CLASSES[cell](3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=4)
    layer.eval()
    net = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn_tanh": torch.nn.RNN}[cell](
        3, 4, num_layers=2, bidirectional=True).double()
    net.load_state_dict({k: torch.from_numpy(v) for k, v in layer.state_dict().items()})
    x = np.random.default_rng(2).standard_normal((6, 3, 3))
    x[2, 0, 0] = np.nan
    x[5, 2, 1] = np.inf
    y, _ = layer(x)
    with torch.no_grad():
        yt, _ = net(torch.from_numpy(x))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(yt.numpy()))


@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_nan_in_padding_is_ignored(cell):
    """Padded steps are never computed: NaN there reaches nothing."""
    layer = CLASSES[cell](3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=5)
    x = np.random.default_rng(3).standard_normal((6, 2, 3))
    lengths = np.array([6, 3])
    y0, h0 = layer(x, lengths=lengths)
    dx0, _, g0 = _backward(layer, np.ones_like(y0), h0)
    x[3:, 1] = np.nan
    y1, h1 = layer(x, lengths=lengths)
    dx1, _, g1 = _backward(layer, np.ones_like(y1), h1)
    np.testing.assert_array_equal(y1, y0)
    for s0, s1 in zip(_state_list(h0), _state_list(h1)):
        np.testing.assert_array_equal(s1, s0)
    np.testing.assert_array_equal(dx1, dx0)
    for k in g0:
        np.testing.assert_array_equal(g1[k], g0[k])


# (found by this test: the compiled backward used to multiply the zero gate gradients of
# padded steps by the padded inputs inside the dW_ih product, and 0 * NaN is NaN)
@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_nan_in_padding_weight_ih_grad(cell):
    layer = CLASSES[cell](3, 4, bidirectional=True, dtype=np.float64, seed=5)
    x = np.random.default_rng(3).standard_normal((6, 2, 3))
    x[3:, 1] = np.nan
    y, h = layer(x, lengths=np.array([6, 3]))
    _, _, grads = _backward(layer, np.ones_like(y), h)
    for k, g in grads.items():
        assert np.isfinite(g).all(), k


# ------------------------------------------------------- (c) long sequence, TBPTT
@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_long_sequence_truncated_bptt(cell):
    """T = 100,000 (I = H = 4, N = 1, float64) in training mode, chunks of 1000 steps
    with a backward per chunk and the state carried; the final state equals one
    inference call over the whole sequence, bitwise."""
    T, K = 100_000, 1000
    layer = CLASSES[cell](4, 4, dtype=np.float64, seed=6)
    x = np.random.default_rng(4).standard_normal((T, 1, 4))
    h = None
    for t in range(0, T, K):
        y, h = layer(x[t:t + K], hx=h)
        _, _, grads = _backward(layer, np.ones_like(y), h)
        assert all(np.isfinite(g).all() for g in grads.values())
    layer.eval()
    y_full, h_full = layer(x)
    for a, b in zip(_state_list(h), _state_list(h_full)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(y, y_full[-K:])


# ------------------------------------------------- (d) float32 accumulation error
@pytest.mark.parametrize("cell", sorted(CLASSES))
def test_float32_accumulation_error(cell):
    """float32 vs float64 over T = 2000 steps, H = 64, I = 16, N = 2, same
    float32-representable weights (default init, seeds 0-2) and inputs (standard
    normal).  Measured max |y32 - y64| over the whole output on the development
    machine (AVX2): LSTM 1.1e-7, GRU 1.4e-7, RNN(tanh) 1.9e-7 -- no growth with T, as
    the default-initialised recurrences are contractive.  Bound: 1e-6 (~5x headroom)."""
    cls = CLASSES[cell]
    worst = 0.0
    for seed in range(3):
        l32 = cls(16, 64, dtype=np.float32, seed=seed)
        l64 = cls(16, 64, dtype=np.float64)
        l64.load_state_dict({k: v.astype(np.float64) for k, v in l32.state_dict().items()})
        l32.eval()
        l64.eval()
        x = np.random.default_rng(seed).standard_normal((2000, 2, 16)).astype(np.float32)
        y32, h32 = l32(x)
        y64, h64 = l64(x.astype(np.float64))
        worst = max(worst, float(np.abs(y32 - y64).max()))
        for a, b in zip(_state_list(h32), _state_list(h64)):
            worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-6, worst


# --- subnormals: the kernels run with FTZ/DAZ on every thread and restore the caller's mode

_TINY = {np.float32: 1e-39, np.float64: 1e-310}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted(CLASSES))
@pytest.mark.parametrize("threads", [1, 2])
def test_subnormal_inputs_are_treated_as_zero(name, dtype, threads):
    """With DAZ every subnormal operand counts as 0, so subnormal inputs, states and
    output gradients give bitwise the results of exact zeros. With no bias every
    pre-activation is subnormal, so without DAZ on some thread the two differ (the
    NumPy reference, which runs without DAZ, is the control)."""
    import rnnfast
    rng = np.random.default_rng(3)
    T, N, I, H = 6, 5, 7, 9
    layer = CLASSES[name](I, H, num_layers=2, bidirectional=True, bias=False, dtype=dtype,
                          seed=2)
    D = 2 * 2
    tiny = dtype(_TINY[dtype])
    x = (rng.standard_normal((T, N, I)) * tiny).astype(dtype)
    h0 = (rng.standard_normal((D, N, H)) * tiny).astype(dtype)
    dy = (rng.standard_normal((T, N, 2 * H)) * tiny).astype(dtype)
    assert 0 < np.abs(x).max() < np.finfo(dtype).tiny
    hx = (h0, h0.copy()) if name == "lstm" else h0
    zx = (np.zeros_like(h0), np.zeros_like(h0)) if name == "lstm" else np.zeros_like(h0)
    old = rnnfast.get_num_threads()
    rnnfast.set_num_threads(threads)
    try:
        runs = {}
        for backend in ("cpu", "reference"):
            layer.backend = backend
            for xi, hi, dyi in ((x, hx, dy), (np.zeros_like(x), zx, np.zeros_like(dy))):
                y, h_n = layer(xi, hi)
                grads = _backward(layer, dyi, h_n)[2]
                runs.setdefault(backend, []).append(
                    (y, grads["weight_ih_l0"], grads["weight_hh_l1_reverse"]))
    finally:
        rnnfast.set_num_threads(old)
    same = [[np.array_equal(a, b) for a, b in zip(*runs[k])] for k in ("cpu", "reference")]
    assert same[0] == [True, True, True]
    assert not any(same[1]), "control: without DAZ subnormal inputs must change the result"


@pytest.mark.parametrize("dtype", DTYPES)
def test_caller_float_mode_is_restored(dtype):
    """FTZ/DAZ stay inside the kernels: NumPy arithmetic on subnormals after an rnnfast
    call still produces subnormals, on this thread."""
    tiny = np.array([_TINY[dtype]], dtype)
    before = tiny * dtype(0.5)
    layer = LSTM(3, 4, dtype=dtype, seed=0)
    layer(np.ones((2, 1, 3), dtype))
    after = tiny * dtype(0.5)
    assert before[0] != 0 and np.array_equal(before, after)
