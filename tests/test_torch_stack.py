"""rnnfast's stacked layers against PyTorch (float64): outputs, final states, gradients.

A PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` state dict is loaded into the rnnfast
layer; both compute the same scalar loss ``sum(y * Wy) + sum(h_n * Wh) [+ sum(c_n *
Wc)]`` and its gradients (torch autograd vs. rnnfast's backward).  Skipped cleanly when
torch is not installed.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rnnfast import functional as F  # noqa: E402
from rnnfast.nn import GRU, LSTM, RNN  # noqa: E402


def _cpu_available():
    try:
        F.get_backend("cpu")
    except ImportError:
        return False
    return True


BACKENDS = [
    "reference",
    pytest.param("cpu", marks=pytest.mark.skipif(not _cpu_available(),
                                                 reason="rnnfast._cpu is not built")),
]

RTOL = 1e-10


def _close(name, a, b):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, f"{name}: shape {a.shape} != {b.shape}"
    scale = max(np.max(np.abs(b)) if b.size else 0.0, 1e-300)
    err = np.max(np.abs(a - b)) if a.size else 0.0
    assert err <= RTOL * scale + 1e-14, f"{name}: max |diff| {err:.3g}, max |ref| {scale:.3g}"


# (class name, kwargs, unbatched, use lengths)
CASES = [
    ("RNN", dict(num_layers=2, bidirectional=True), False, False),
    ("RNN", dict(num_layers=3, nonlinearity="relu", batch_first=True), False, True),
    ("RNN", dict(num_layers=1, bias=False), True, False),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3), False, True),
    ("LSTM", dict(num_layers=2, batch_first=True, bidirectional=True), False, True),
    ("LSTM", dict(num_layers=3, proj_size=2, bias=False), False, False),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=3), True, False),
    ("GRU", dict(num_layers=3, bidirectional=True), False, True),
    ("GRU", dict(num_layers=2, batch_first=True, bias=False), False, False),
    ("GRU", dict(num_layers=2, bidirectional=True), True, False),
]

OURS = {"RNN": RNN, "LSTM": LSTM, "GRU": GRU}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,kwargs,unbatched,use_lengths", CASES)
def test_matches_torch(backend, kind, kwargs, unbatched, use_lengths):
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    I, H, T, N = 4, 5, 6, 3
    tmod = getattr(torch.nn, kind)(I, H, dtype=torch.float64, **kwargs)
    ours = OURS[kind](I, H, dtype=np.float64, backend=backend, **kwargs)
    ours.load_state_dict(tmod.state_dict())

    bf = kwargs.get("batch_first", False)
    D = 2 if kwargs.get("bidirectional", False) else 1
    L = kwargs.get("num_layers", 1)
    P = kwargs.get("proj_size", 0) or H
    is_lstm = kind == "LSTM"

    if unbatched:
        x = rng.standard_normal((T, I))
        h0 = rng.standard_normal((L * D, P))
        c0 = rng.standard_normal((L * D, H))
    else:
        x = rng.standard_normal((N, T, I) if bf else (T, N, I))
        h0 = rng.standard_normal((L * D, N, P))
        c0 = rng.standard_normal((L * D, N, H))
    lengths = np.array([T, 2, 5]) if use_lengths else None

    # ---- torch
    xt = torch.tensor(x, requires_grad=True)
    h0t = torch.tensor(h0, requires_grad=True)
    c0t = torch.tensor(c0, requires_grad=True)
    hx_t = (h0t, c0t) if is_lstm else h0t
    if use_lengths:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            xt, torch.tensor(lengths), batch_first=bf, enforce_sorted=False)
        out_p, hn_t = tmod(packed, hx_t)
        yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=bf,
                                                       total_length=T)
    else:
        yt, hn_t = tmod(xt, hx_t)
    if is_lstm:
        hn_t, cn_t = hn_t
    wy = rng.standard_normal(tuple(yt.shape))
    wh = rng.standard_normal(tuple(hn_t.shape))
    wc = rng.standard_normal(tuple(cn_t.shape)) if is_lstm else None
    loss = (yt * torch.tensor(wy)).sum() + (hn_t * torch.tensor(wh)).sum()
    if is_lstm:
        loss = loss + (cn_t * torch.tensor(wc)).sum()
    loss.backward()

    # ---- rnnfast
    if is_lstm:
        y, (h_n, c_n) = ours(x, (h0, c0), lengths=lengths)
        dx, (dh0, dc0), grads = ours.backward(wy, wh, wc)
    else:
        y, h_n = ours(x, h0, lengths=lengths)
        dx, dh0, grads = ours.backward(wy, wh)

    _close("y", y, yt.detach().numpy())
    _close("h_n", h_n, hn_t.detach().numpy())
    if is_lstm:
        _close("c_n", c_n, cn_t.detach().numpy())
        _close("dc0", dc0, c0t.grad.numpy())
    _close("dx", dx, xt.grad.numpy())
    _close("dh0", dh0, h0t.grad.numpy())
    tgrads = {n: p.grad.numpy() for n, p in tmod.named_parameters()}
    assert list(grads) == list(tgrads)
    for name in tgrads:
        _close(name, grads[name], tgrads[name])
    assert ours.grads is grads


@pytest.mark.parametrize("backend", BACKENDS)
def test_functional_with_torch_state_dict_and_eval(backend):
    """rnn_forward takes a torch state dict converted with np.asarray; eval mode."""
    torch.manual_seed(3)
    tmod = torch.nn.GRU(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64)
    tmod.eval()
    params = {k: v.detach().numpy() for k, v in tmod.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    with torch.no_grad():
        yt, ht = tmod(torch.tensor(x))
    out = F.rnn_forward("GRU", x, params, num_layers=2, hidden_size=4,
                        bidirectional=True, backend=backend)
    assert out.cache is None and out.c_n is None
    _close("y", out.y, yt.numpy())
    _close("h_n", out.h_n, ht.numpy())


def test_load_state_dict_from_tensors_requiring_grad_float32():
    """Tensors with requires_grad (np.asarray fails on them) load via duck typing."""
    torch.manual_seed(0)
    tmod = torch.nn.LSTM(3, 4, proj_size=2)            # float32 parameters
    sd = {n: p for n, p in tmod.named_parameters()}     # requires_grad=True
    ours = LSTM(3, 4, proj_size=2, dtype=np.float64, backend="reference")
    ours.load_state_dict(sd)
    for n, p in sd.items():
        got = getattr(ours, n)
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, p.detach().numpy().astype(np.float64))


def test_repr_matches_torch():
    for kind, kw in [("LSTM", dict(num_layers=2, bias=False, batch_first=True, dropout=0.5,
                                   bidirectional=True, proj_size=2)),
                     ("GRU", dict()), ("RNN", dict(num_layers=3))]:
        tmod = getattr(torch.nn, kind)(3, 4, **kw)
        ours = OURS[kind](3, 4, backend="reference", **kw)
        assert repr(ours) == repr(tmod)
