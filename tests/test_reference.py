"""Tests of the NumPy reference backend (the oracle), rnnfast/_reference.py.

* hand-written BPTT against central finite differences (float64), every cell and
  option, every gradient;
* the lengths / direction / padding contract of docs/design.md;
* dtype, empty batch, ownership of arrays, saturation and NaN behaviour;
* forward and gradients against PyTorch (skipped when torch is not installed).
"""

import ast
import importlib.util
import pathlib
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

_PATH = pathlib.Path(__file__).resolve().parents[1] / "rnnfast" / "_reference.py"

try:
    from rnnfast import _reference as ref
except Exception:  # rnnfast/__init__.py may import parts that are not built yet
    _spec = importlib.util.spec_from_file_location("_rnnfast_reference_oracle", _PATH)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)


GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
# (cell, reset_after): the GRU is tested in both variants
CELLS = [("rnn_tanh", True), ("rnn_relu", True), ("lstm", True),
         ("gru", True), ("gru", False)]
CELL_IDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_reset_before"]
# the same plus an LSTM with projection: (cell, reset_after, proj_size)
CELLS_PROJ = [c + (0,) for c in CELLS] + [("lstm", True, 2)]
CELLS_PROJ_IDS = CELL_IDS + ["lstm_proj"]
GRAD_KEYS = ("x", "h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh",
             "weight_hr")
# name of the forward argument that each gradient belongs to
ARG_OF = {"x": "x", "h0": "h0", "c0": "c0", "weight_ih": "w_ih", "weight_hh": "w_hh",
          "bias_ih": "b_ih", "bias_hh": "b_hh", "weight_hr": "w_hr"}


# --------------------------------------------------------------------------- helpers

def make_problem(cell, T, N, I, H, *, proj=0, bias=True, seed=0, dtype=np.float64,
                 scale=0.6):
    """Random arguments of layer_forward plus random loss weights Gy, Gh, Gc."""
    rng = np.random.default_rng(seed)
    G = GATES[cell]
    P = proj if proj else H

    def rnd(*shape, s=scale):
        return (s * rng.standard_normal(shape)).astype(dtype)

    args = {
        "x": rnd(T, N, I, s=1.0),
        "h0": rnd(N, P, s=0.5),
        "c0": rnd(N, H, s=0.5) if cell == "lstm" else None,
        "w_ih": rnd(G * H, I),
        "w_hh": rnd(G * H, P),
        "b_ih": rnd(G * H) if bias else None,
        "b_hh": rnd(G * H) if bias else None,
        "w_hr": rnd(P, H) if proj else None,
    }
    loss_w = {
        "Gy": rnd(T, N, P, s=1.0),
        "Gh": rnd(N, P, s=1.0),
        "Gc": rnd(N, H, s=1.0) if cell == "lstm" else None,
    }
    return args, loss_w


def forward(cell, args, **kw):
    return ref.layer_forward(cell, args["x"], args["h0"], args["c0"], args["w_ih"],
                             args["w_hh"], args["b_ih"], args["b_hh"],
                             w_hr=args["w_hr"], **kw)


def loss(cell, args, loss_w, **kw):
    y, h_n, c_n, _ = forward(cell, args, **kw)
    L = np.sum(y * loss_w["Gy"]) + np.sum(h_n * loss_w["Gh"])
    if c_n is not None:
        L += np.sum(c_n * loss_w["Gc"])
    return L


def analytic_grads(cell, args, loss_w, **kw):
    _, _, _, cache = forward(cell, args, training=True, **kw)
    return ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])


def fd_grad(f, arr, eps):
    """Central differences of the scalar f() w.r.t. every element of arr (in place)."""
    flat = arr.reshape(-1)  # a view: arr is contiguous
    out = np.empty(flat.shape, dtype=np.float64)
    for k in range(flat.size):
        v = flat[k]
        flat[k] = v + eps
        lp = f()
        flat[k] = v - eps
        lm = f()
        flat[k] = v
        out[k] = (lp - lm) / (2 * eps)
    return out.reshape(arr.shape)


def relu_margin(cell, args, **kw):
    """Smallest |pre-activation| over every computed relu step (inf if none)."""
    _, _, _, cache = forward(cell, args, training=True, **kw)
    m = [np.min(np.abs(s["a"])) for s in cache["steps"] if s["a"].size]
    return min(m) if m else np.inf


def lengths_cases(T, N):
    """None, all T, all 1, all 0 and a mixed vector (with 0, 1 and T when N allows)."""
    cases = {"none": None,
             "full": np.full(N, T, dtype=np.int64),
             "ones": np.ones(N, dtype=np.int64),
             "zeros": np.zeros(N, dtype=np.int64)}
    mixed = np.array([(T, 0, 1, max(T - 1, 0), T // 2 + 1)[k % 5] for k in range(N)],
                     dtype=np.int64)
    cases["mixed"] = np.minimum(mixed, T)
    return cases


def max_rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# (T, N, I, H): includes the all-ones shape and odd sizes
SHAPES = [(1, 1, 1, 1), (3, 2, 3, 2), (4, 5, 1, 3), (2, 3, 2, 5)]


# ------------------------------------------------------------- finite differences

def _check_fd(cell, reset_after, shape, lengths_key, reverse, bias, proj=0):
    T, N, I, H = shape
    lengths = lengths_cases(T, N)[lengths_key]
    kw = dict(lengths=lengths, reverse=reverse, reset_after=reset_after)
    seed = 0
    while True:
        args, loss_w = make_problem(cell, T, N, I, H, proj=proj, bias=bias,
                                    seed=zlib.crc32(repr((cell, reset_after, shape,
                                                          lengths_key, reverse, bias,
                                                          proj, seed)).encode()))
        # keep relu pre-activations away from the kink so that FD is valid
        if cell != "rnn_relu" or relu_margin(cell, args, **kw) > 1e-3:
            break
        seed += 1
    grads = analytic_grads(cell, args, loss_w, **kw)
    eps = 1e-6
    for key in GRAD_KEYS:
        arr = args[ARG_OF[key]]
        if arr is None:
            assert grads[key] is None, key
            continue
        assert grads[key].shape == arr.shape and grads[key].dtype == arr.dtype, key
        fd = fd_grad(lambda: loss(cell, args, loss_w, **kw), arr, eps)
        err = np.max(np.abs(fd - grads[key])) if fd.size else 0.0
        tol = 1e-6 * max(1.0, float(np.max(np.abs(fd))) if fd.size else 0.0)
        assert err <= tol, (key, err, tol)
    return grads


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths_key", ["none", "ones", "mixed"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_bptt_matches_finite_differences(cell, reset_after, shape, lengths_key,
                                         reverse, bias):
    _check_fd(cell, reset_after, shape, lengths_key, reverse, bias)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (3, 2, 3, 2)],
                         ids=["1x1x1x1", "3x2x3x2"])
@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_bptt_all_lengths_zero(cell, reset_after, shape, reverse):
    grads = _check_fd(cell, reset_after, shape, "zeros", reverse, True)
    # nothing is computed: dx and the weight gradients are exactly zero,
    # h0/c0 receive dh_n/dc_n unchanged (checked against FD above)
    for key in ("x", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert not np.any(grads[key])


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths_key", ["none", "mixed", "ones"])
@pytest.mark.parametrize("shape,proj", [((1, 1, 1, 2), 1), ((3, 3, 2, 4), 3),
                                        ((4, 2, 3, 3), 2)],
                         ids=["1x1x1x2p1", "3x3x2x4p3", "4x2x3x3p2"])
def test_bptt_lstm_projection_matches_finite_differences(shape, proj, lengths_key,
                                                         reverse, bias):
    grads = _check_fd("lstm", True, shape, lengths_key, reverse, bias, proj=proj)
    assert grads["weight_hr"].shape == (proj, shape[3])


# --------------------------------------------------------- lengths / padding contract

@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_padding_contract(cell, reset_after, reverse):
    T, N, I, H = 5, 6, 3, 4
    args, loss_w = make_problem(cell, T, N, I, H, seed=3)
    lengths = np.array([5, 0, 1, 3, 4, 2], dtype=np.int64)
    kw = dict(lengths=lengths, reverse=reverse, reset_after=reset_after)
    y, h_n, c_n, cache = forward(cell, args, training=True, **kw)
    dy = loss_w["Gy"]  # nonzero everywhere, padded steps included
    g = ref.layer_backward(cache, dy, loss_w["Gh"], loss_w["Gc"])
    for n, L in enumerate(lengths):
        # padded outputs are exactly zero, dx is exactly zero there
        assert np.all(y[L:, n] == 0.0)
        assert np.all(g["x"][L:, n] == 0.0)
        if L == 0:
            np.testing.assert_array_equal(h_n[n], args["h0"][n])
            if cell == "lstm":
                np.testing.assert_array_equal(c_n[n], args["c0"][n])
            np.testing.assert_array_equal(g["h0"][n], loss_w["Gh"][n])
            continue
        # h_n is the output of each sequence's last processed step
        last = 0 if reverse else L - 1
        np.testing.assert_array_equal(h_n[n], y[last, n])
        if cell != "rnn_relu":  # a relu step may be entirely dead
            assert np.all(g["x"][:L, n] != 0.0)
        # each sequence equals the same sequence run alone, truncated to its length
        sub = dict(args, x=np.ascontiguousarray(args["x"][:L, n:n + 1]),
                   h0=args["h0"][n:n + 1],
                   c0=None if args["c0"] is None else args["c0"][n:n + 1])
        y1, h1, c1, _ = forward(cell, sub, reverse=reverse, reset_after=reset_after)
        np.testing.assert_allclose(y[:L, n], y1[:, 0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(h_n[n], h1[0], rtol=1e-13, atol=1e-15)
        if cell == "lstm":
            np.testing.assert_allclose(c_n[n], c1[0], rtol=1e-13, atol=1e-15)

    # dy at padded steps is ignored
    dy_masked = dy.copy()
    for n, L in enumerate(lengths):
        dy_masked[L:, n] = 0.0
    g2 = ref.layer_backward(cache, dy_masked, loss_w["Gh"], loss_w["Gc"])
    for key in GRAD_KEYS:
        if g[key] is not None:
            np.testing.assert_array_equal(g[key], g2[key])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_padded_inputs_are_never_read(cell, reset_after, reverse):
    T, N, I, H = 4, 3, 2, 3
    args, loss_w = make_problem(cell, T, N, I, H, seed=5)
    lengths = np.array([2, 4, 0], dtype=np.int64)
    kw = dict(lengths=lengths, reverse=reverse, reset_after=reset_after)
    out = forward(cell, args, training=True, **kw)
    g = ref.layer_backward(out[3], loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    poisoned = dict(args, x=args["x"].copy())
    for n, L in enumerate(lengths):
        poisoned["x"][L:, n] = np.nan
    dy = loss_w["Gy"].copy()
    for n, L in enumerate(lengths):
        dy[L:, n] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out_p = forward(cell, poisoned, training=True, **kw)
        g_p = ref.layer_backward(out_p[3], dy, loss_w["Gh"], loss_w["Gc"])
    for a, b in zip(out[:3], out_p[:3]):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    for key in GRAD_KEYS:
        if g[key] is not None:
            np.testing.assert_array_equal(g[key], g_p[key])


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell,reset_after,proj", CELLS_PROJ, ids=CELLS_PROJ_IDS)
def test_full_lengths_equal_none_bitwise(cell, reset_after, reverse, proj):
    T, N, I, H = 4, 3, 3, 4
    args, loss_w = make_problem(cell, T, N, I, H, proj=proj, seed=7)
    res = []
    for lengths in (None, np.full(N, T, dtype=np.int64)):
        y, h_n, c_n, cache = forward(cell, args, lengths=lengths, reverse=reverse,
                                     reset_after=reset_after, training=True)
        g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
        res.append((y, h_n, c_n, g))
    (y0, h0, c0, g0), (y1, h1, c1, g1) = res
    np.testing.assert_array_equal(y0, y1)
    np.testing.assert_array_equal(h0, h1)
    if cell == "lstm":
        np.testing.assert_array_equal(c0, c1)
    for key in GRAD_KEYS:
        if g0[key] is None:
            assert g1[key] is None
        else:
            np.testing.assert_array_equal(g0[key], g1[key])


@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_reverse_is_forward_on_flipped_sequences(cell, reset_after):
    T, N, I, H = 5, 4, 2, 3
    args, loss_w = make_problem(cell, T, N, I, H, seed=11)
    lengths = np.array([5, 3, 1, 0], dtype=np.int64)
    y, h_n, c_n, cache = forward(cell, args, lengths=lengths, reverse=True,
                                 reset_after=reset_after, training=True)
    g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    # flip each sequence within its own length
    flip = lambda a: np.stack([np.concatenate([a[:L, n][::-1], a[L:, n]])  # noqa: E731
                               for n, L in enumerate(lengths)], axis=1)
    fargs = dict(args, x=np.ascontiguousarray(flip(args["x"])))
    yf, hf, cf, cache_f = forward(cell, fargs, lengths=lengths, reverse=False,
                                  reset_after=reset_after, training=True)
    gf = ref.layer_backward(cache_f, np.ascontiguousarray(flip(loss_w["Gy"])),
                            loss_w["Gh"], loss_w["Gc"])
    np.testing.assert_array_equal(y, flip(yf))
    np.testing.assert_array_equal(h_n, hf)
    if cell == "lstm":
        np.testing.assert_array_equal(c_n, cf)
    np.testing.assert_array_equal(g["x"], flip(gf["x"]))
    for key in ("h0", "c0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if g[key] is not None:
            np.testing.assert_array_equal(g[key], gf[key])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_lengths_property(data):
    """Any lengths: each sequence behaves as if run alone, padding is zero."""
    cell, reset_after = data.draw(st.sampled_from(CELLS))
    T = data.draw(st.integers(1, 5))
    N = data.draw(st.integers(0, 4))
    I = data.draw(st.integers(1, 3))
    H = data.draw(st.integers(1, 3))
    reverse = data.draw(st.booleans())
    lengths = np.array(data.draw(st.lists(st.integers(0, T), min_size=N, max_size=N)),
                       dtype=np.int64)
    args, _ = make_problem(cell, T, N, I, H, seed=data.draw(st.integers(0, 999)))
    y, h_n, c_n, _ = forward(cell, args, lengths=lengths, reverse=reverse,
                             reset_after=reset_after)
    assert y.shape == (T, N, H)
    for n, L in enumerate(lengths):
        assert np.all(y[L:, n] == 0.0)
        c0 = None if args["c0"] is None else args["c0"][n:n + 1]
        if L == 0:
            np.testing.assert_array_equal(h_n[n], args["h0"][n])
            continue
        sub = dict(args, x=np.ascontiguousarray(args["x"][:L, n:n + 1]),
                   h0=args["h0"][n:n + 1], c0=c0)
        y1, h1, c1, _ = forward(cell, sub, reverse=reverse, reset_after=reset_after)
        np.testing.assert_allclose(y[:L, n], y1[:, 0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(h_n[n], h1[0], rtol=1e-13, atol=1e-15)
        if c_n is not None:
            np.testing.assert_allclose(c_n[n], c1[0], rtol=1e-13, atol=1e-15)


# ------------------------------------------------------------- dtypes, edge cases

@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_float32_computes_in_float32(cell, reset_after):
    T, N, I, H = 4, 3, 3, 5
    lengths = np.array([4, 2, 0], dtype=np.int64)
    a64, w64 = make_problem(cell, T, N, I, H, seed=13)
    cast = lambda d: {k: None if v is None else v.astype(np.float32)  # noqa: E731
                      for k, v in d.items()}
    a32, w32 = cast(a64), cast(w64)
    results = []
    for a, w in ((a32, w32), (a64, w64)):
        y, h_n, c_n, cache = forward(cell, a, lengths=lengths, reset_after=reset_after,
                                     training=True)
        g = ref.layer_backward(cache, w["Gy"], w["Gh"], w["Gc"])
        results.append((y, h_n, c_n, g))
    (y32, h32, c32, g32), (y64, h64, c64, g64) = results
    for a in (y32, h32, c32) + tuple(g32.values()):
        assert a is None or a.dtype == np.float32
    for a in (y64, h64, c64) + tuple(g64.values()):
        assert a is None or a.dtype == np.float64
    assert max_rel_err(y32, y64) < 1e-5
    assert max_rel_err(h32, h64) < 1e-5
    for key in GRAD_KEYS:
        if g64[key] is not None:
            assert max_rel_err(g32[key], g64[key]) < 1e-4, key


@pytest.mark.parametrize("cell,reset_after,proj", CELLS_PROJ, ids=CELLS_PROJ_IDS)
def test_empty_batch(cell, reset_after, proj):
    T, N, I, H = 3, 0, 2, 4
    args, loss_w = make_problem(cell, T, N, I, H, proj=proj)
    P = proj or H
    for lengths in (None, np.zeros(0, dtype=np.int64)):
        y, h_n, c_n, cache = forward(cell, args, lengths=lengths, reverse=True,
                                     reset_after=reset_after, training=True)
        assert y.shape == (T, 0, P) and h_n.shape == (0, P)
        assert (c_n is None) == (cell != "lstm")
        g = ref.layer_backward(cache, loss_w["Gy"])
        assert g["x"].shape == (T, 0, I) and g["h0"].shape == (0, P)
        for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"):
            if g[key] is not None:
                assert g[key].shape == args[ARG_OF[key]].shape
                assert not np.any(g[key])


@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_cache_only_when_training_and_none_grads(cell, reset_after):
    args, loss_w = make_problem(cell, 2, 2, 2, 3, bias=False)
    assert forward(cell, args, reset_after=reset_after)[3] is None
    _, _, c_n, cache = forward(cell, args, reset_after=reset_after, training=True)
    assert (c_n is None) == (cell != "lstm")
    g = ref.layer_backward(cache, loss_w["Gy"])  # dh_n, dc_n default to zero
    assert set(g) == set(GRAD_KEYS)
    assert g["bias_ih"] is None and g["bias_hh"] is None and g["weight_hr"] is None
    assert (g["c0"] is None) == (cell != "lstm")
    with pytest.raises(ValueError):
        ref.layer_backward(None, loss_w["Gy"])


def test_unknown_cell_rejected():
    args, _ = make_problem("rnn_tanh", 2, 1, 1, 1)
    with pytest.raises(ValueError):
        forward("elman", args)


@pytest.mark.parametrize("cell,reset_after,proj", CELLS_PROJ, ids=CELLS_PROJ_IDS)
def test_ownership_fresh_arrays(cell, reset_after, proj):
    T, N, I, H = 3, 2, 2, 3
    args, loss_w = make_problem(cell, T, N, I, H, proj=proj, seed=17)
    kw = dict(lengths=np.array([3, 2], dtype=np.int64), reset_after=reset_after)
    y, h_n, c_n, cache = forward(cell, args, training=True, **kw)
    g_ref = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    outs = [a for a in (y, h_n, c_n) if a is not None]
    ins = [a for a in args.values() if a is not None]
    for k, a in enumerate(outs):
        for b in outs[k + 1:] + ins:
            assert not np.shares_memory(a, b)
    # scribbling on everything returned or given must not change backward
    for a in outs + ins:
        a[...] = 123.0
    g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    for key in GRAD_KEYS:
        if g_ref[key] is not None:
            np.testing.assert_array_equal(g[key], g_ref[key])
    # grads are fresh too: scribbling on them leaves a second backward unchanged
    for v in g.values():
        if v is not None:
            v[...] = -1.0
    g2 = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    for key in GRAD_KEYS:
        if g_ref[key] is not None:
            np.testing.assert_array_equal(g2[key], g_ref[key])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_saturation_without_warnings_or_nan(cell, reset_after, dtype):
    T, N, I, H = 3, 4, 2, 3
    args, loss_w = make_problem(cell, T, N, I, H, seed=19, dtype=dtype)
    args["x"] = args["x"] * dtype(1e4)  # |pre-activations| up to ~1e4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y, h_n, c_n, cache = forward(cell, args, reset_after=reset_after,
                                     training=True)
        g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    assert cell == "rnn_relu" or np.all(np.abs(y) <= 1)
    for a in (y, h_n, c_n) + tuple(g.values()):
        assert a is None or (a.dtype == dtype and np.all(np.isfinite(a)))


@pytest.mark.parametrize("cell,reset_after", CELLS, ids=CELL_IDS)
def test_nan_propagates(cell, reset_after):
    T, N, I, H = 4, 2, 2, 3
    args, _ = make_problem(cell, T, N, I, H, seed=23)
    args["x"][1, 0, 0] = np.nan
    y, h_n, _, _ = forward(cell, args, reset_after=reset_after)
    assert not np.any(np.isnan(y[0]))
    assert np.all(np.isnan(y[1:, 0])) and np.all(np.isnan(h_n[0]))
    assert not np.any(np.isnan(y[:, 1])) and not np.any(np.isnan(h_n[1]))


def test_relu_derivative_at_zero_is_zero():
    T, N, I, H = 2, 2, 2, 2
    args, loss_w = make_problem("rnn_relu", T, N, I, H)
    args["w_ih"][...] = 0.0
    args["w_hh"][...] = 0.0
    args["b_ih"][...] = 0.0
    args["b_hh"][...] = 0.0  # every pre-activation is exactly 0
    y, h_n, _, cache = forward("rnn_relu", args, training=True)
    assert not np.any(y)
    g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"])
    for key in ("x", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        assert not np.any(g[key]), key


def test_oracle_imports_only_numpy():
    tree = ast.parse(_PATH.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import in the oracle"
            names.add(node.module.split(".")[0])
    assert names <= {"numpy"}, names


# ------------------------------------------------------------------ against PyTorch

def _torch_run(torch, cell, args, loss_w, lengths, direction, bias, proj):
    """Run a bidirectional single-layer torch module whose `direction` half holds
    our weights; return outputs and gradients of that half only, as numpy."""
    T, N, I = args["x"].shape
    H = args["w_hh"].shape[0] // GATES[cell]
    P = proj or H
    f64 = torch.float64
    if cell in ("rnn_tanh", "rnn_relu"):
        mod = torch.nn.RNN(I, H, nonlinearity=cell[4:], bias=bias, bidirectional=True,
                           dtype=f64)
    elif cell == "lstm":
        mod = torch.nn.LSTM(I, H, bias=bias, proj_size=proj, bidirectional=True,
                            dtype=f64)
    else:
        mod = torch.nn.GRU(I, H, bias=bias, bidirectional=True, dtype=f64)
    sfx = "_l0_reverse" if direction else "_l0"
    names = {"w_ih": "weight_ih", "w_hh": "weight_hh", "b_ih": "bias_ih",
             "b_hh": "bias_hh", "w_hr": "weight_hr"}
    with torch.no_grad():
        for ours, theirs in names.items():
            if args[ours] is not None:
                getattr(mod, theirs + sfx).copy_(torch.from_numpy(args[ours]))
    rng = np.random.default_rng(99)
    h0_full = rng.standard_normal((2, N, P))
    h0_full[direction] = args["h0"]
    x = torch.tensor(args["x"], requires_grad=True)
    h0 = torch.tensor(h0_full, requires_grad=True)
    if cell == "lstm":
        c0_full = rng.standard_normal((2, N, H))
        c0_full[direction] = args["c0"]
        c0 = torch.tensor(c0_full, requires_grad=True)
        hx = (h0, c0)
    else:
        hx = h0
    if lengths is None:
        y, hn = mod(x, hx)
    else:
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            x, torch.from_numpy(lengths), enforce_sorted=False)
        yp, hn = mod(packed, hx)
        y, _ = torch.nn.utils.rnn.pad_packed_sequence(yp, total_length=T)
    h_n, c_n = hn if cell == "lstm" else (hn, None)
    y_d = y[:, :, direction * P:(direction + 1) * P]
    L = (y_d * torch.from_numpy(loss_w["Gy"])).sum() \
        + (h_n[direction] * torch.from_numpy(loss_w["Gh"])).sum()
    if cell == "lstm":
        L = L + (c_n[direction] * torch.from_numpy(loss_w["Gc"])).sum()
    L.backward()
    out = {"y": y_d.detach().numpy(), "h_n": h_n[direction].detach().numpy(),
           "c_n": None if c_n is None else c_n[direction].detach().numpy()}
    grads = {"x": x.grad.numpy(), "h0": h0.grad[direction].numpy(),
             "c0": c0.grad[direction].numpy() if cell == "lstm" else None}
    for ours, theirs in names.items():
        p = getattr(mod, theirs + sfx, None)
        grads[theirs] = None if args[ours] is None else p.grad.numpy()
    return out, grads


TORCH_CASES = [("rnn_tanh", 0), ("rnn_relu", 0), ("lstm", 0), ("lstm", 2), ("gru", 0)]


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("lengths_kind", ["none", "varied"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("cell,proj", TORCH_CASES,
                         ids=["rnn_tanh", "rnn_relu", "lstm", "lstm_proj", "gru"])
def test_against_torch(cell, proj, reverse, lengths_kind, bias):
    torch = pytest.importorskip("torch")
    T, N, I, H = 5, 4, 3, 4
    args, loss_w = make_problem(cell, T, N, I, H, proj=proj, bias=bias, seed=29)
    # torch's packed sequences need lengths >= 1; unsorted to exercise the permutation
    lengths = None if lengths_kind == "none" else np.array([2, 5, 1, 4], np.int64)
    y, h_n, c_n, cache = forward(cell, args, lengths=lengths, reverse=reverse,
                                 training=True)
    g = ref.layer_backward(cache, loss_w["Gy"], loss_w["Gh"], loss_w["Gc"])
    out_t, g_t = _torch_run(torch, cell, args, loss_w, lengths, int(reverse), bias,
                            proj)
    tol = 1e-10
    assert max_rel_err(y, out_t["y"]) <= tol
    assert max_rel_err(h_n, out_t["h_n"]) <= tol
    if cell == "lstm":
        assert max_rel_err(c_n, out_t["c_n"]) <= tol
    if lengths is not None:
        for n, L in enumerate(lengths):
            assert np.all(out_t["y"][L:, n] == 0.0) and np.all(y[L:, n] == 0.0)
    for key in GRAD_KEYS:
        if g_t[key] is None:
            assert g[key] is None, key
        else:
            assert max_rel_err(g[key], g_t[key]) <= tol, (key,
                                                          max_rel_err(g[key], g_t[key]))
