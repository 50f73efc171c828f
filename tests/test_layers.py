"""rnnfast.nn layers and rnnfast.functional stacks: shapes, state, persistence,
truncated BPTT, dropout, and a finite-difference check of the whole stack."""

import itertools
import json
import os
import zipfile

import numpy as np
import pytest

from rnnfast import functional as F
from rnnfast import nn
from rnnfast.nn import GRU, LSTM, RNN


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

# (label, constructor, extra kwargs)
CELLS = {
    "rnn_tanh": (RNN, {}),
    "rnn_relu": (RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, {}),
    "gru": (GRU, {}),
    "gru_reset_before": (GRU, {"reset_after": False}),
}


def make(cell, *args, **kw):
    cls, extra = CELLS[cell]
    return cls(*args, **{**extra, **kw})


def _forward(layer, x, hx=None, lengths=None):
    """Uniform (y, h_n, c_n) for every class."""
    if isinstance(layer, LSTM):
        y, (h, c) = layer(x, hx, lengths=lengths)
        return y, h, c
    y, h = layer(x, hx, lengths=lengths)
    return y, h, None


def _backward(layer, dy, dh=None, dc=None, **kw):
    if isinstance(layer, LSTM):
        dx, (dh0, dc0), g = layer.backward(dy, dh, dc, **kw)
        return dx, dh0, dc0, g
    dx, dh0, g = layer.backward(dy, dh, **kw)
    return dx, dh0, None, g


# ---------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_shapes_everywhere(cell, backend):
    """Every cell x layers 1-3 x bidirectional x batch_first x unbatched x proj x
    lengths: forward shapes/dtypes, padded steps zero, backward returns every
    named gradient with its parameter's shape."""
    I, H, T, N = 3, 4, 5, 2
    projs = [0, 2] if cell == "lstm" else [0]
    for L, bidir, bf, unb, proj, use_len in itertools.product(
            [1, 2, 3], [False, True], [False, True], [False, True], projs, [False, True]):
        if unb and bf:
            continue  # batch_first does not apply to unbatched input
        kw = {"proj_size": proj} if proj else {}
        layer = make(cell, I, H, L, batch_first=bf, bidirectional=bidir,
                     backend=backend, seed=0, **kw)
        D, P = (2 if bidir else 1), (proj or H)
        if unb:
            x = np.ones((T, I), np.float32)
            lengths = 3 if use_len else None
        else:
            x = np.ones((N, T, I) if bf else (T, N, I), np.float32)
            lengths = [T, 2] if use_len else None
        y, h, c = _forward(layer, x, lengths=lengths)
        exp_y = (T, D * P) if unb else ((N, T, D * P) if bf else (T, N, D * P))
        exp_h = (L * D, P) if unb else (L * D, N, P)
        assert y.shape == exp_y and y.dtype == np.float32
        assert h.shape == exp_h and h.dtype == np.float32
        if cell == "lstm":
            assert c.shape == ((L * D, H) if unb else (L * D, N, H))
        if use_len:
            padded = y[3:] if unb else (y[1, 2:] if bf else y[2:, 1])
            assert np.all(padded == 0)
        dx, dh0, dc0, grads = _backward(layer, np.ones_like(y), np.ones_like(h),
                                        None if c is None else np.ones_like(c))
        assert dx.shape == x.shape and dh0.shape == h.shape
        if cell == "lstm":
            assert dc0.shape == c.shape
        else:
            assert dc0 is None
        names = [n for n, _ in layer.named_parameters()]
        assert list(grads) == names
        for n, p in layer.named_parameters():
            assert grads[n].shape == p.shape and grads[n].dtype == np.float32
        assert layer.grads is grads


def test_parameter_names_init_and_seed():
    lstm = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=5,
                backend="reference")
    names = [n for n, _ in lstm.named_parameters()]
    assert names[:5] == ["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                         "weight_hr_l0"]
    assert names[5] == "weight_ih_l0_reverse" and names[-1] == "weight_hr_l1_reverse"
    assert lstm.weight_ih_l1.shape == (16, 4) and lstm.weight_hr_l1_reverse.shape == (2, 4)
    assert len(list(lstm.parameters())) == 20
    k = 1 / np.sqrt(4)
    for p in lstm.parameters():
        assert p.dtype == np.float32 and np.all(np.abs(p) <= k)
    again = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=5,
                 backend="reference")
    as64 = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=5,
                dtype=np.float64, backend="reference")
    for (n, a), (_, b), (_, c) in zip(lstm.named_parameters(), again.named_parameters(),
                                      as64.named_parameters()):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c.astype(np.float32))
    other = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=6)
    assert not np.array_equal(lstm.weight_ih_l0, other.weight_ih_l0)
    # a Generator is used (and advanced) as is
    g = np.random.default_rng(5)
    from_gen = LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=g)
    np.testing.assert_array_equal(from_gen.weight_ih_l0, lstm.weight_ih_l0)
    assert len(lstm.all_weights) == 4 and len(lstm.all_weights[0]) == 5
    no_bias = GRU(3, 4, bias=False)
    assert [n for n, _ in no_bias.named_parameters()] == ["weight_ih_l0", "weight_hh_l0"]


def test_train_eval_flags_and_backend_attribute():
    rnn = RNN(2, 3, backend="reference")
    assert rnn.training is True
    assert rnn.eval() is rnn and rnn.training is False
    assert rnn.train() is rnn and rnn.training is True
    rnn.backend = "cpu"
    assert rnn.backend == "cpu"
    with pytest.raises(ValueError, match="'backend'"):
        rnn.backend = "gpu"
    assert rnn.mode == "RNN_TANH" and RNN(2, 3, nonlinearity="relu").mode == "RNN_RELU"
    assert LSTM(2, 3).mode == "LSTM" and GRU(2, 3).mode == "GRU"
    assert repr(GRU(2, 3, reset_after=False)) == "GRU(2, 3, reset_after=False)"
    assert repr(RNN(2, 3, nonlinearity="relu")) == "RNN(2, 3, nonlinearity='relu')"


@pytest.mark.parametrize("backend", BACKENDS)
def test_inputs_not_modified_and_layouts_accepted(backend):
    """Non-contiguous, read-only, subclass and N=0 inputs; inputs never modified;
    arrays changed between forward and backward do not affect the gradients."""
    rng = np.random.default_rng(0)
    lstm = LSTM(3, 4, 2, bidirectional=True, dtype=np.float64, backend=backend, seed=1)
    base = rng.standard_normal((6, 2, 2, 3))
    x_nc = base[:, :, 0, :]                       # non-contiguous view
    x_c = np.ascontiguousarray(x_nc)
    y_ref, _, _ = _forward(lstm, x_c)
    ro = x_c.copy()
    ro.setflags(write=False)

    class Sub(np.ndarray):
        pass

    for x in (x_nc, ro, x_c.view(Sub), x_c.astype(">f8")):
        snapshot = np.array(x)
        y, _, _ = _forward(lstm, x)
        assert type(y) is np.ndarray
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(x, snapshot)

    # mutating x after forward does not change backward; the weights cannot be
    # mutated in place while a backward is pending (read-only until it is released)
    x = x_c.copy()
    y, h, c = _forward(lstm, x)
    dy = rng.standard_normal(y.shape)
    g_ref = _backward(lstm, dy, retain_cache=True)
    x[...] = 0
    with pytest.raises(ValueError, match="read-only"):
        lstm.weight_hh_l0[...] = 7
    g2 = _backward(lstm, dy)
    np.testing.assert_array_equal(g_ref[0], g2[0])
    for k in g_ref[3]:
        np.testing.assert_array_equal(g_ref[3][k], g2[3][k])
    assert lstm.weight_hh_l0.flags.writeable     # released with the cache
    lstm.weight_hh_l0[0, 0] += 0.0

    # outputs are fresh, writeable arrays
    y[...] = 1
    h[...] = 1

    # empty batch N = 0
    y0, h0, c0 = _forward(lstm, np.zeros((4, 0, 3)), lengths=np.zeros(0, np.int64))
    assert y0.shape == (4, 0, 8) and h0.shape == (4, 0, 4) and c0.shape == (4, 0, 4)
    dx0, dh00, dc00, g0 = _backward(lstm, np.zeros_like(y0))
    assert dx0.shape == (4, 0, 3)
    assert all(np.all(v == 0) for v in g0.values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_propagates(backend):
    gru = GRU(2, 3, dtype=np.float64, backend=backend, seed=0)
    x = np.zeros((3, 2, 2))
    x[1, 0, 0] = np.nan
    y, h = gru(x)
    assert np.all(np.isnan(y[1:, 0])) and not np.any(np.isnan(y[:, 1]))
    assert not np.any(np.isnan(y[0]))


def test_unbatched_matches_batch_of_one():
    lstm = LSTM(3, 5, 2, bidirectional=True, proj_size=2, dtype=np.float64,
                backend="reference", seed=0)
    x = np.random.default_rng(0).standard_normal((4, 3))
    y1, h1, c1 = _forward(lstm, x)
    y3, h3, c3 = _forward(lstm, x[:, None, :])
    np.testing.assert_array_equal(y1, y3[:, 0])
    np.testing.assert_array_equal(h1, h3[:, 0])
    np.testing.assert_array_equal(c1, c3[:, 0])


@pytest.mark.parametrize("backend", BACKENDS)
def test_batch_first_matches_time_major(backend):
    rng = np.random.default_rng(2)
    a = GRU(3, 4, 2, bidirectional=True, dtype=np.float64, backend=backend, seed=0)
    b = GRU(3, 4, 2, bidirectional=True, batch_first=True, dtype=np.float64,
            backend=backend, seed=0)
    x = rng.standard_normal((5, 2, 3))
    lengths = [5, 3]
    ya, ha = a(x, lengths=lengths)
    yb, hb = b(x.transpose(1, 0, 2), lengths=lengths)
    np.testing.assert_allclose(yb.transpose(1, 0, 2), ya, rtol=0, atol=1e-14)
    np.testing.assert_allclose(hb, ha, rtol=0, atol=1e-14)
    dy = rng.standard_normal(ya.shape)
    dxa = a.backward(dy)[0]
    dxb = b.backward(np.ascontiguousarray(dy.transpose(1, 0, 2)))[0]
    np.testing.assert_allclose(dxb.transpose(1, 0, 2), dxa, rtol=0, atol=1e-14)


# ------------------------------------------------------------- backward bookkeeping


def test_backward_requires_training_forward():
    gru = GRU(2, 3, backend="reference")
    with pytest.raises(RuntimeError, match="no forward has run yet"):
        gru.backward(None)
    gru.eval()
    gru(np.zeros((2, 1, 2), np.float32))
    with pytest.raises(RuntimeError, match="eval mode"):
        gru.backward(None)
    gru.train()
    y, _ = gru(np.ones((2, 1, 2), np.float32))
    first = gru.backward(np.ones_like(y), retain_cache=True)
    second = gru.backward(np.ones_like(y))
    np.testing.assert_array_equal(first[0], second[0])
    with pytest.raises(RuntimeError, match="retain_cache=True"):
        gru.backward(np.ones_like(y))


def test_lstm_backward_accepts_state_tuple():
    lstm = LSTM(2, 3, dtype=np.float64, backend="reference", seed=0)
    y, (h, c) = lstm(np.ones((3, 2, 2)))
    a = lstm.backward(None, (np.ones_like(h), np.ones_like(c)), retain_cache=True)
    b = lstm.backward(None, np.ones_like(h), np.ones_like(c))
    np.testing.assert_array_equal(a[0], b[0])
    assert np.any(a[0] != 0)


# ------------------------------------------------------------------- state dicts


def test_state_dict_round_trip():
    rng = np.random.default_rng(0)
    a = LSTM(3, 5, 2, bidirectional=True, proj_size=2, seed=1, backend="reference")
    b = LSTM(3, 5, 2, bidirectional=True, proj_size=2, seed=2, backend="reference")
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    ref_arr = b.weight_ih_l0                       # references stay valid (in-place load)
    res = b.load_state_dict(sd)
    assert res.missing_keys == [] and res.unexpected_keys == []
    assert b.weight_ih_l0 is ref_arr
    x = rng.standard_normal((4, 2, 3)).astype(np.float32)
    np.testing.assert_array_equal(_forward(a, x)[0], _forward(b, x)[0])
    # state_dict is a snapshot
    sd["weight_ih_l0"][...] = 0
    assert np.any(a.weight_ih_l0 != 0)
    # a float64 layer loads a float32 state dict (cast), lists and ints too
    c = LSTM(3, 5, 2, bidirectional=True, proj_size=2, dtype=np.float64)
    c.load_state_dict({k: v.tolist() for k, v in a.state_dict().items()})
    assert c.weight_hr_l1.dtype == np.float64
    np.testing.assert_array_equal(c.weight_hr_l1, a.weight_hr_l1.astype(np.float64))


def test_load_state_dict_errors_name_every_key_and_load_nothing():
    a = GRU(3, 4, 2, backend="reference", seed=0)
    before = a.state_dict()
    sd = a.state_dict()
    del sd["bias_hh_l1"]
    sd["weight_ih_l0"] = np.zeros((12, 2))
    sd["extra"] = np.zeros(3)
    sd["weight_hh_l1"] = np.zeros((12, 5))
    with pytest.raises(ValueError) as ei:
        a.load_state_dict(sd)
    msg = str(ei.value)
    for part in ("'bias_hh_l1'", "'extra'", "weight_ih_l0: expected shape (12, 3), got (12, 2)",
                 "weight_hh_l1: expected shape (12, 4), got (12, 5)"):
        assert part in msg
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    # non-strict: skip missing / unexpected, report them; shapes still enforced
    sd2 = a.state_dict()
    del sd2["bias_hh_l1"]
    sd2["extra"] = 1
    res = a.load_state_dict(sd2, strict=False)
    assert res.missing_keys == ["bias_hh_l1"] and res.unexpected_keys == ["extra"]
    with pytest.raises(TypeError, match="weight_ih_l0: expected a real float array"):
        a.load_state_dict({**a.state_dict(), "weight_ih_l0": np.zeros((12, 3), complex)})
    with pytest.raises(TypeError, match="mapping"):
        a.load_state_dict([1, 2])


# ------------------------------------------------------------------ save / load


@pytest.mark.parametrize("layer", [
    RNN(3, 4, 2, nonlinearity="relu", bias=False, batch_first=True, seed=0),
    LSTM(3, 5, 2, bidirectional=True, proj_size=2, dropout=0.25, dtype=np.float64, seed=0),
    GRU(3, 4, 3, reset_after=False, seed=0),
], ids=["rnn", "lstm", "gru"])
def test_save_load_round_trip(tmp_path, layer):
    path = tmp_path / "model.npz"
    layer.save(path)
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]     # no temporary left over
    for loader in (type(layer).load, nn.load):
        back = loader(path, backend="reference")
        assert type(back) is type(layer) and repr(back) == repr(layer)
        assert back.dtype == layer.dtype and back.training
        for (n, a), (m, b) in zip(layer.named_parameters(), back.named_parameters()):
            assert n == m and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
        for attr in ("input_size", "hidden_size", "num_layers", "bias", "batch_first",
                     "dropout", "bidirectional", "proj_size", "reset_after", "mode"):
            assert getattr(back, attr) == getattr(layer, attr)
    with np.load(path, allow_pickle=False) as f:          # a plain npz, no pickles
        cfg = json.loads(str(f["__rnnfast_config__"]))
        assert cfg["class"] == type(layer).__name__
    other = GRU if not isinstance(layer, GRU) else LSTM
    with pytest.raises(ValueError, match="use .*load"):
        other.load(path)
    # overwrite an existing file
    layer.save(str(path))
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]


def test_save_failure_leaves_existing_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    gru = GRU(2, 3, seed=0)
    gru.save(path)
    original = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="disk full"):
        GRU(2, 3, seed=1).save(path)
    assert path.read_bytes() == original
    assert os.listdir(tmp_path) == ["m.npz"]


def _write_npz(path, arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _good_arrays(layer):
    arrays = dict(layer.state_dict())
    arrays["__rnnfast_config__"] = np.array(json.dumps(layer._config()))
    return arrays


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    gru = GRU(2, 3, seed=0)
    good = tmp_path / "good.npz"
    gru.save(good)
    data = good.read_bytes()

    cases = {}
    cases["random.npz"] = os.urandom(300)
    cases["truncated.npz"] = data[: len(data) // 2]
    cases["empty.npz"] = b""
    for name, blob in cases.items():
        (tmp_path / name).write_bytes(blob)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    _write_npz(tmp_path / "foreign.npz", {"a": np.zeros(3)})
    bad_json = _good_arrays(gru)
    bad_json["__rnnfast_config__"] = np.array("{not json")
    _write_npz(tmp_path / "badjson.npz", bad_json)
    not_str = _good_arrays(gru)
    not_str["__rnnfast_config__"] = np.zeros(2)
    _write_npz(tmp_path / "notstr.npz", not_str)
    wrong_shape = _good_arrays(gru)
    wrong_shape["weight_hh_l0"] = np.zeros((9, 4), np.float32)
    _write_npz(tmp_path / "wrongshape.npz", wrong_shape)
    wrong_dtype = _good_arrays(gru)
    wrong_dtype["weight_hh_l0"] = np.zeros((9, 3), np.int64)
    _write_npz(tmp_path / "wrongdtype.npz", wrong_dtype)
    obj = _good_arrays(gru)
    obj["weight_hh_l0"] = np.empty((9, 3), object)
    with open(tmp_path / "object.npz", "wb") as f:
        np.savez(f, **obj)
    missing = _good_arrays(gru)
    del missing["bias_ih_l0"]
    _write_npz(tmp_path / "missing.npz", missing)
    huge_cfg = _good_arrays(gru)
    cfg = gru._config()
    cfg["hidden_size"] = 10**12
    huge_cfg["__rnnfast_config__"] = np.array(json.dumps(cfg))
    _write_npz(tmp_path / "huge.npz", huge_cfg)
    newer = _good_arrays(gru)
    cfg = gru._config()
    cfg["format_version"] = 99
    newer["__rnnfast_config__"] = np.array(json.dumps(cfg))
    _write_npz(tmp_path / "newer.npz", newer)
    # flip bytes inside a stored array (CRC mismatch)
    crc = bytearray(data)
    with zipfile.ZipFile(good) as zf:
        info = zf.getinfo("weight_ih_l0.npy")
    pos = info.header_offset + 30 + len(info.filename) + 140
    crc[pos] ^= 0xFF
    (tmp_path / "crc.npz").write_bytes(bytes(crc))

    expected = {
        "random.npz": "not an .npz", "truncated.npz": "", "empty.npz": "not an .npz",
        "plain.npy": "not an .npz", "foreign.npz": "__rnnfast_config__",
        "badjson.npz": "not valid JSON", "notstr.npz": "not a JSON string",
        "wrongshape.npz": "weight_hh_l0: expected shape (9, 3), got (9, 4)",
        "wrongdtype.npz": "weight_hh_l0: expected dtype float32",
        "object.npz": "weight_hh_l0", "missing.npz": "missing 'bias_ih_l0'",
        "huge.npz": "invalid configuration", "newer.npz": "newer rnnfast",
        "crc.npz": "corrupt",
    }
    for name, fragment in expected.items():
        with pytest.raises(ValueError, match="not a valid rnnfast layer file") as ei:
            nn.load(tmp_path / name)
        assert fragment in str(ei.value), (name, str(ei.value))
    with pytest.raises(FileNotFoundError):
        nn.load(tmp_path / "does-not-exist.npz")


# ------------------------------------------------------------- truncated BPTT


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cell", list(CELLS))
def test_truncated_bptt_chunks_equal_full_forward(cell, backend):
    """Carrying h_n (and c_n) across chunks as hx reproduces one long forward."""
    kw = {"proj_size": 2} if cell == "lstm" else {}
    layer = make(cell, 3, 4, 2, dtype=np.float64, backend=backend, seed=0, **kw)
    layer.eval()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((11, 2, 3))
    y_full, h_full, c_full = _forward(layer, x)
    ys, hx = [], None
    for a, b in [(0, 1), (1, 5), (5, 8), (8, 11)]:
        y, h, c = _forward(layer, x[a:b], hx)
        ys.append(y)
        hx = (h, c) if cell == "lstm" else h
    np.testing.assert_allclose(np.concatenate(ys), y_full, rtol=0, atol=1e-14)
    np.testing.assert_allclose(h, h_full, rtol=0, atol=1e-14)
    if cell == "lstm":
        np.testing.assert_allclose(c, c_full, rtol=0, atol=1e-14)
    # training-mode chunks: backward of a chunk returns the gradient at its boundary
    layer.train()
    y, h, c = _forward(layer, x[5:], hx=None)
    dx, dh0, dc0, grads = _backward(layer, np.ones_like(y))
    assert dh0.shape == h.shape and np.any(dh0 != 0)


# --------------------------------------------------------------------- dropout


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_reproducible_from_seed(backend):
    x = np.random.default_rng(0).standard_normal((6, 3, 4))
    outs = []
    for seed in (7, 7, 8):
        lstm = LSTM(4, 5, 3, dropout=0.5, bidirectional=True, dtype=np.float64,
                    backend=backend, seed=seed)
        lstm.load_state_dict(LSTM(4, 5, 3, bidirectional=True, seed=0).state_dict())
        outs.append([_forward(lstm, x)[0] for _ in range(2)])
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(outs[0][1], outs[1][1])
    assert not np.array_equal(outs[0][0], outs[0][1])    # fresh masks per call
    assert not np.array_equal(outs[0][0], outs[2][0])    # other seed, other masks
    # eval: no dropout, equals a dropout-free layer with the same weights
    lstm.eval()
    nodrop = LSTM(4, 5, 3, bidirectional=True, dtype=np.float64, backend=backend)
    nodrop.load_state_dict(lstm.state_dict())
    np.testing.assert_array_equal(_forward(lstm, x)[0], _forward(nodrop, x)[0])


@pytest.mark.parametrize("bf", [False, True])
def test_dropout_masks_follow_documented_draw(bf):
    """rng masks are rng.random((T, N, D*P)) >= p per layer; explicit dropout_masks in
    the layout of x give the same result."""
    rng = np.random.default_rng(0)
    shapes = F.param_shapes("GRU", 3, 4, num_layers=3, bidirectional=True)
    params = {k: rng.standard_normal(s) for k, s in shapes.items()}
    x = rng.standard_normal((5, 2, 3))
    xin = x.transpose(1, 0, 2) if bf else x
    kw = dict(num_layers=3, hidden_size=4, bidirectional=True, batch_first=bf,
              dropout=0.3, training=True, backend="reference")
    a = F.rnn_forward("GRU", xin, params, rng=np.random.default_rng(42), **kw)
    g = np.random.default_rng(42)
    masks = [g.random((5, 2, 8)) >= 0.3 for _ in range(2)]
    if bf:
        masks = [m.transpose(1, 0, 2) for m in masks]
    b = F.rnn_forward("GRU", xin, params, dropout_masks=masks, **kw)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.h_n, b.h_n)
    # p = 1: layers after the first see zeros, nothing is NaN
    c = F.rnn_forward("GRU", xin, params, rng=1, **{**kw, "dropout": 1.0})
    assert np.all(np.isfinite(c.y))
    zeros = [np.zeros_like(m) for m in masks]
    d = F.rnn_forward("GRU", xin, params, dropout_masks=zeros, **kw)
    np.testing.assert_array_equal(c.y, d.y)


# ------------------------------------------------------ finite differences (float64)


def _fd_check(mode, kwargs, masks_for, lengths, seed=0, eps=1e-6):
    rng = np.random.default_rng(seed)
    I, H, T, N = 2, 3, 4, 3
    L = kwargs["num_layers"]
    D = 2 if kwargs.get("bidirectional") else 1
    proj = kwargs.get("proj_size", 0)
    P = proj or H
    shapes = F.param_shapes(mode, I, H, num_layers=L, bidirectional=D == 2,
                            proj_size=proj, bias=kwargs.get("bias", True))
    params = {k: rng.uniform(-0.8, 0.8, s) for k, s in shapes.items()}
    x = rng.standard_normal((T, N, I))
    h0 = rng.standard_normal((L * D, N, P))
    c0 = rng.standard_normal((L * D, N, H))
    is_lstm = mode == "LSTM"
    masks = masks_for(rng, T, N, D * P, L)
    wy = rng.standard_normal((T, N, D * P))
    wh = rng.standard_normal((L * D, N, P))
    wc = rng.standard_normal((L * D, N, H))
    common = dict(hidden_size=H, lengths=lengths, backend="reference", **kwargs)
    if masks is not None:
        common.update(training=True, dropout_masks=masks)

    def loss(x, params, h0, c0):
        out = F.rnn_forward(mode, x, params, hx=(h0, c0) if is_lstm else h0, **common)
        val = np.sum(out.y * wy) + np.sum(out.h_n * wh)
        if is_lstm:
            val += np.sum(out.c_n * wc)
        return val

    out = F.rnn_forward(mode, x, params, hx=(h0, c0) if is_lstm else h0,
                        **{**common, "training": True})
    g = F.rnn_backward(out.cache, wy, wh, wc if is_lstm else None)

    def numeric(arr, setter):
        grad = np.zeros_like(arr)
        for idx in np.ndindex(arr.shape):
            old = arr[idx]
            arr[idx] = old + eps
            lp = setter()
            arr[idx] = old - eps
            lm = setter()
            arr[idx] = old
            grad[idx] = (lp - lm) / (2 * eps)
        return grad

    def check(name, analytic, num):
        scale = max(np.max(np.abs(num)), 1e-3)
        err = np.max(np.abs(analytic - num))
        assert err <= 1e-6 * scale + 1e-8, f"{name}: {err:.3g} (scale {scale:.3g})"

    f = lambda: loss(x, params, h0, c0)  # noqa: E731
    check("x", g.dx, numeric(x, f))
    check("h0", g.dh0, numeric(h0, f))
    if is_lstm:
        check("c0", g.dc0, numeric(c0, f))
    else:
        assert g.dc0 is None
    assert list(g.grads) == list(shapes)
    for name in shapes:
        check(name, g.grads[name], numeric(params[name], f))
    if lengths is not None:
        lens = np.asarray(lengths)
        for n in range(N):
            assert np.all(g.dx[lens[n]:, n] == 0)


def _masks(rng, T, N, F_, L):
    return [(rng.random((T, N, F_)) >= 0.4).astype(np.float64) for _ in range(L - 1)]


def test_finite_differences_lstm_stack():
    """2-layer bidirectional LSTM with projection, lengths and fixed dropout masks."""
    _fd_check("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2, dropout=0.4),
              _masks, lengths=[4, 2, 0])


@pytest.mark.parametrize("mode,kwargs", [
    ("GRU", dict(num_layers=2, bidirectional=True, reset_after=False, dropout=0.4)),
    ("RNN_TANH", dict(num_layers=2, bidirectional=True, bias=False, dropout=0.4)),
])
def test_finite_differences_other_stacks(mode, kwargs):
    _fd_check(mode, kwargs, _masks, lengths=[3, 4, 1])
