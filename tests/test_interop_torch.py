"""PyTorch import / export: rnnfast.from_torch, from_torch_state_dict, to_torch,
to_torch_state_dict checked against torch on random weights and inputs."""
import itertools
import warnings

import numpy as np
import pytest

import rnnfast
from rnnfast import interop

torch = pytest.importorskip("torch")

CONFIGS = [
    # (class, kwargs)
    ("RNN", dict(nonlinearity="tanh")),
    ("RNN", dict(nonlinearity="relu", num_layers=2, bidirectional=True)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(proj_size=3, num_layers=2, bidirectional=True)),
    ("LSTM", dict(bias=False, num_layers=3, dropout=0.25)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(batch_first=True, bias=False)),
]

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def _torch_module(name, kw, dtype, seed=0):
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = getattr(torch.nn, name)(4, 6, **kw)
    m = m.double() if dtype == np.float64 else m.float()
    with torch.no_grad():   # spread the weights so the nonlinearities are exercised
        for p in m.parameters():
            p.mul_(2.0)
    return m.eval()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", CONFIGS)
def test_from_torch_matches_torch(name, kw, dtype):
    m = _torch_module(name, kw, dtype)
    layer = rnnfast.from_torch(m)
    assert layer.dtype == dtype and layer.batch_first == kw.get("batch_first", False)
    for k, v in m.state_dict().items():
        assert np.array_equal(getattr(layer, k), v.numpy()), k   # bitwise
    layer.eval()
    rng = np.random.default_rng(1)
    T, N = 7, 3
    shape = (N, T, 4) if layer.batch_first else (T, N, 4)
    x = rng.standard_normal(shape).astype(dtype)
    D = 2 if m.bidirectional else 1
    P = kw.get("proj_size") or 6
    h0 = rng.standard_normal((m.num_layers * D, N, P)).astype(dtype)
    if name == "LSTM":
        c0 = rng.standard_normal((m.num_layers * D, N, 6)).astype(dtype)
        hx_t, hx_r = (torch.from_numpy(h0), torch.from_numpy(c0)), (h0, c0)
    else:
        hx_t, hx_r = torch.from_numpy(h0), h0
    with torch.no_grad():
        yt, st = m(torch.from_numpy(x), hx_t)
    yr, sr = layer(x, hx_r)
    assert _rel(yr, yt.numpy()) < TOL[dtype]
    st = st if isinstance(st, tuple) else (st,)
    sr = sr if isinstance(sr, tuple) else (sr,)
    for a, b in zip(sr, st):
        assert _rel(a, b.numpy()) < TOL[dtype]


@pytest.mark.parametrize("name,kw", CONFIGS)
def test_lengths_match_packed_sequence(name, kw):
    m = _torch_module(name, kw, np.float64, seed=3)
    layer = rnnfast.from_torch(m).eval()
    rng = np.random.default_rng(2)
    T, N = 6, 4
    lengths = np.array([6, 2, 5, 1])
    x = rng.standard_normal((N, T, 4) if m.batch_first else (T, N, 4))
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.from_numpy(x), torch.from_numpy(lengths), batch_first=m.batch_first,
        enforce_sorted=False)
    with torch.no_grad():
        out, st = m(packed)
    yt, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=m.batch_first,
                                                   total_length=T)
    yr, sr = layer(x, None, lengths)
    assert _rel(yr, yt.numpy()) < 1e-12
    st = st if isinstance(st, tuple) else (st,)
    sr = sr if isinstance(sr, tuple) else (sr,)
    for a, b in zip(sr, st):
        assert _rel(a, b.numpy()) < 1e-12


@pytest.mark.parametrize("name,kw", CONFIGS)
def test_state_dict_inference_and_round_trip(name, kw):
    m = _torch_module(name, kw, np.float32)
    sd = m.state_dict()
    layer = interop.from_torch_state_dict(
        sd, nonlinearity=kw.get("nonlinearity"), batch_first=kw.get("batch_first", False),
        dropout=kw.get("dropout", 0.0))
    assert (layer.num_layers, layer.bidirectional, layer.bias, layer.proj_size,
            layer.input_size, layer.hidden_size) == (
        m.num_layers, m.bidirectional, m.bias, getattr(m, "proj_size", 0), 4, 6)
    assert layer.mode == m.mode
    out = interop.to_torch_state_dict(layer)
    assert list(out) == list(sd)
    for k in sd:
        assert out[k].dtype == np.float32
        assert np.array_equal(out[k], sd[k].numpy())
        assert out[k] is not getattr(layer, k)
    m2 = interop.to_torch(layer)
    assert type(m2) is type(m)
    for (k, a), (k2, b) in zip(m.state_dict().items(), m2.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    for attr in ("num_layers", "bidirectional", "batch_first", "bias", "dropout",
                 "hidden_size", "input_size"):
        assert getattr(m2, attr) == getattr(m, attr)


def test_state_dict_prefix_and_mode_check():
    m = _torch_module("GRU", dict(num_layers=2), np.float64)
    sd = {"enc.rnn." + k: v for k, v in m.state_dict().items()}
    sd["enc.linear.weight"] = torch.zeros(2, 2)
    layer = interop.from_torch_state_dict(sd, "GRU", prefix="enc.rnn.")
    assert isinstance(layer, rnnfast.GRU) and layer.num_layers == 2
    with pytest.raises(ValueError, match="mode 'LSTM' does not match"):
        interop.from_torch_state_dict(sd, "LSTM", prefix="enc.rnn.")
    with pytest.raises(ValueError, match=r"unexpected key 'enc\.rnn\.weight_ih_l0'"):
        interop.from_torch_state_dict(sd, prefix="enc.")
    with pytest.raises(ValueError, match="lacks 'weight_ih_l0'"):
        interop.from_torch_state_dict({})
    with pytest.raises(TypeError, match="state_dict must be a mapping"):
        interop.from_torch_state_dict([1, 2])


def test_refusals():
    with pytest.raises(TypeError, match="torch.nn.RNN, LSTM or GRU"):
        rnnfast.from_torch(torch.nn.LSTMCell(3, 4))
    gru = rnnfast.GRU(3, 4, reset_after=False)
    with pytest.raises(ValueError, match="reset_after=False"):
        interop.to_torch_state_dict(gru)
    half = torch.nn.GRU(3, 4).half()
    with pytest.raises(ValueError, match="pass dtype="):
        rnnfast.from_torch(half)
    layer = rnnfast.from_torch(half, dtype=np.float32)
    assert layer.dtype == np.float32
    assert np.array_equal(layer.weight_ih_l0, half.weight_ih_l0.detach().float().numpy())


def test_training_mode_and_dtype_follow():
    layer = rnnfast.LSTM(3, 5, num_layers=2, dtype=np.float64, seed=1).eval()
    m = interop.to_torch(layer)
    assert m.training is False and m.weight_ih_l0.dtype == torch.float64
    x = np.random.default_rng(0).standard_normal((4, 2, 3))
    with torch.no_grad():
        yt = m(torch.from_numpy(x))[0].numpy()
    assert _rel(layer(x)[0], yt) < 1e-12


def test_all_configs_products_small():
    """Every (mode, bidirectional, num_layers, bias) combination round-trips."""
    for name, bi, L, bias in itertools.product(["RNN", "LSTM", "GRU"], [False, True],
                                               [1, 2], [False, True]):
        m = _torch_module(name, dict(bidirectional=bi, num_layers=L, bias=bias),
                          np.float64)
        layer = interop.from_torch_state_dict(m.state_dict())
        assert layer.mode == m.mode
        back = interop.to_torch_state_dict(layer)
        assert all(np.array_equal(back[k], v.numpy()) for k, v in m.state_dict().items())


def test_from_torch_follows_training_mode():
    m = torch.nn.GRU(3, 4)
    assert rnnfast.from_torch(m).training is True
    assert rnnfast.from_torch(m.eval()).training is False
