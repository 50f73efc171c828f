"""The layers' inference fast path (rnnfast.nn._RNNBase._forward_fast): after one
validated eval-mode call, plainly valid inputs go straight to the kernels. It must give
bitwise the general path's results, be taken only when nothing changed, and leave every
error to the general path."""
import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F

pytest.importorskip("rnnfast._cpu._kernels", reason="compiled backend not built")

CASES = [
    ("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
    ("LSTM", {"proj_size": 5}), ("GRU", {}), ("GRU", {"reset_after": False}),
]


def general(layer, x, hx=None):
    """The same forward through the functional API (no packs, full validation)."""
    params = dict(layer.named_parameters())
    mode = layer.mode
    kw = dict(num_layers=layer.num_layers, hidden_size=layer.hidden_size,
              bias=layer.bias, proj_size=layer.proj_size, batch_first=layer.batch_first)
    if mode == "GRU":
        kw["reset_after"] = layer.reset_after
    return F.rnn_forward(mode, x, params, hx=hx, **kw)


@pytest.fixture
def count_general(monkeypatch):
    calls = []
    real = F._forward

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(F, "_forward", counting)
    return calls


def make(cls, kw, L, dtype, I=7, H=9):
    return getattr(rnnfast.nn, cls)(I, H, num_layers=L, dtype=dtype, seed=3, **kw).eval()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("L", [1, 2])
@pytest.mark.parametrize("cls,kw", CASES)
def test_bitwise_equal_to_the_general_path(cls, kw, L, dtype, count_general):
    layer = make(cls, kw, L, dtype)
    rng = np.random.default_rng(0)
    P = layer.proj_size or layer.hidden_size
    for T, N, unbatched, with_state in [(5, 3, False, False), (4, 2, False, True),
                                        (6, 1, True, True), (1, 1, False, False),
                                        (3, 4, True, False)]:
        x = rng.standard_normal((T, 7) if unbatched else (T, N, 7)).astype(dtype)
        hx = None
        if with_state:
            shape = (L,) + (() if unbatched else (N,))
            h0 = rng.standard_normal(shape + (P,)).astype(dtype)
            hx = h0
            if cls == "LSTM":
                hx = (h0, rng.standard_normal(shape + (layer.hidden_size,)).astype(dtype))
        layer(x, hx)                     # validates (the first call of a layer)
        layer(x, hx)                     # packs the weights (the second)
        del count_general[:]
        got = layer(x, hx)
        assert count_general == [], "the second call did not take the fast path"
        want = general(layer, x, hx)
        y, state = got
        np.testing.assert_array_equal(y, want.y)
        if cls == "LSTM":
            np.testing.assert_array_equal(state[0], want.h_n)
            np.testing.assert_array_equal(state[1], want.c_n)
        else:
            np.testing.assert_array_equal(state, want.h_n)
        assert y.flags.writeable and y.flags.owndata or y.base is not None


def test_changes_are_seen(count_general):
    layer = make("RNN", {}, 2, np.float64)
    x = np.random.default_rng(1).standard_normal((4, 2, 7))
    layer(x)
    layer(x)
    del count_general[:]
    layer(x)
    assert count_general == []
    # a new weight array: the general path again, with the new weights
    layer.weight_hh_l1 = layer.weight_hh_l1 * 2.0
    del count_general[:]
    y, _ = layer(x)
    assert count_general == [1]
    np.testing.assert_array_equal(y, general(layer, x).y)
    # the nonlinearity
    layer.nonlinearity = "relu"
    y, _ = layer(x)
    np.testing.assert_array_equal(y, general(layer, x).y)
    assert np.all(y >= 0)
    # batch_first flipped by assignment: x is now read as (N, T, I)
    layer.batch_first = True
    y, _ = layer(x)
    np.testing.assert_array_equal(y, general(layer, x).y)
    assert y.shape == (4, 2, 9)
    # training mode set by assignment
    layer.batch_first = False
    layer(x)
    layer.training = True
    layer(x)
    assert layer._cache is not None
    # in-place edits of packed weights are refused, as before
    layer.eval()
    layer(x)
    layer(x)
    with pytest.raises(ValueError):
        layer.weight_ih_l0[0, 0] = 1.0


@pytest.mark.parametrize("bad,err,match", [
    (np.zeros((4, 2, 7), np.float32), TypeError, "x"),          # wrong dtype
    (np.zeros((4, 2, 6)), ValueError, "x"),                     # wrong feature size
    (np.zeros((0, 2, 7)), ValueError, "T=0"),                   # no time steps
    ([[[0.0] * 7]], TypeError, "numpy.ndarray"),                # a list
    (np.zeros((4, 2, 7))[None], ValueError, "x"),               # 4-D
    (np.zeros((2, 7)).astype(">f8"), None, None),               # big-endian: general, fine
])
def test_errors_come_from_the_general_path(bad, err, match):
    layer = make("GRU", {}, 1, np.float64)
    layer(np.zeros((4, 2, 7)))
    layer(np.zeros((4, 2, 7)))
    if err is None:
        y, _ = layer(bad)
        np.testing.assert_array_equal(y, layer(np.zeros((2, 7)))[0])
        return
    with pytest.raises(err, match=match):
        layer(bad)


def test_bad_states_and_lengths_take_the_general_path():
    layer = make("LSTM", {}, 1, np.float64)
    x = np.random.default_rng(2).standard_normal((4, 2, 7))
    layer(x)
    with pytest.raises(ValueError, match="h0"):
        layer(x, (np.zeros((1, 3, 9)), np.zeros((1, 2, 9))))
    with pytest.raises(TypeError, match="hx"):
        layer(x, np.zeros((1, 2, 9)))
    with pytest.raises(TypeError):
        layer(x, (np.zeros((1, 2, 9), np.float32), np.zeros((1, 2, 9))))
    # a non-contiguous x is fine (general path, same numbers)
    xt = np.asfortranarray(x)
    np.testing.assert_array_equal(layer(xt)[0], layer(x)[0])
    # lengths: the general path
    y, _ = layer(x, lengths=np.array([4, 2]))
    assert np.all(y[2:, 1] == 0)
