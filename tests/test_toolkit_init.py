"""Weight initialisation: orthogonality, Xavier bounds and variance, layer helpers."""
import math

import numpy as np
import pytest

import rnnfast
from rnnfast import init
from rnnfast.layers import Embedding, Linear


@pytest.mark.parametrize("shape", [(8, 8), (12, 5), (5, 12), (6, 2, 3)])
def test_orthogonal(shape):
    a = init.orthogonal_(np.empty(shape), gain=1.0, rng=0)
    m = a.reshape(shape[0], -1)
    if m.shape[0] >= m.shape[1]:
        err = np.max(np.abs(m.T @ m - np.eye(m.shape[1])))
    else:
        err = np.max(np.abs(m @ m.T - np.eye(m.shape[0])))
    assert err < 1e-13
    g = init.orthogonal_(np.empty((4, 4)), gain=2.0, rng=1)
    np.testing.assert_allclose(g.T @ g, 4 * np.eye(4), atol=1e-13)


def test_orthogonal_float32_and_reproducible():
    a = init.orthogonal_(np.empty((16, 16), np.float32), rng=5)
    b = init.orthogonal_(np.empty((16, 16), np.float32), rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and a.dtype == np.float32
    np.testing.assert_allclose(a.T @ a, np.eye(16), atol=1e-6)


def test_xavier_uniform_bounds_and_variance():
    a = init.xavier_uniform_(np.empty((300, 200)), rng=0)
    bound = math.sqrt(6 / 500)
    assert np.max(np.abs(a)) <= bound and np.max(np.abs(a)) > 0.99 * bound
    assert abs(a.var() / (2 / 500) - 1) < 0.02    # U(-b, b) has variance b^2 / 3 = 2 / 500
    g = init.xavier_uniform_(np.empty((30, 20)), gain=3.0, rng=1)
    assert np.max(np.abs(g)) <= 3 * math.sqrt(6 / 50)


def test_xavier_normal_variance():
    a = init.xavier_normal_(np.empty((400, 300)), rng=0)
    assert abs(a.var() / (2 / 700) - 1) < 0.02
    assert abs(a.mean()) < 0.003


def test_uniform_zeros_and_errors():
    a = init.uniform_(np.empty(1000), -0.5, 0.25, rng=0)
    assert a.min() >= -0.5 and a.max() < 0.25
    assert np.all(init.zeros_(a) == 0)
    with pytest.raises(TypeError, match="'array'"):
        init.zeros_([1.0, 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        init.orthogonal_(np.empty(3))
    ro = np.zeros((2, 2))
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        init.xavier_uniform_(ro)


@pytest.mark.parametrize("cell", ["RNN", "GRU", "LSTM"])
def test_init_recurrent(cell):
    H = 6
    layer = getattr(rnnfast, cell)(4, H, num_layers=2, bidirectional=True, seed=0,
                                   dtype=np.float64)
    layer.eval()
    layer(np.zeros((2, 1, 4)))           # packs and locks the weights: init must still work
    init.init_recurrent_(layer, forget_bias=1.0 if cell == "LSTM" else None, rng=0)
    for name, p in layer.named_parameters():
        if name.startswith("weight_hh"):
            for i in range(0, p.shape[0], H):
                block = p[i:i + H]
                np.testing.assert_allclose(block.T @ block, np.eye(H), atol=1e-12)
        elif name.startswith("weight_ih"):
            for i in range(0, p.shape[0], H):
                block = p[i:i + H]
                assert np.max(np.abs(block)) <= math.sqrt(6 / (block.shape[0] + block.shape[1]))
        elif name.startswith("bias_ih") and cell == "LSTM":
            assert np.all(p[H:2 * H] == 1.0) and np.all(p[:H] == 0) and np.all(p[2 * H:] == 0)
        else:
            assert np.all(p == 0)
    with pytest.raises(ValueError, match="weight_hh"):
        init.init_recurrent_(layer, weight_hh="identity")
    if cell != "LSTM":
        with pytest.raises(ValueError, match="forget_bias"):
            init.init_recurrent_(layer, forget_bias=1.0)


def test_pytorch_default():
    layer = rnnfast.GRU(3, 16, seed=0)
    init.pytorch_default_(layer, rng=1)
    for _, p in layer.named_parameters():
        assert np.max(np.abs(p)) <= 0.25
    lin = init.pytorch_default_(Linear(64, 3, seed=0), rng=2)
    assert np.max(np.abs(lin.weight)) <= 1 / 8 and np.max(np.abs(lin.bias)) <= 1 / 8
    emb = init.pytorch_default_(Embedding(50, 8, padding_idx=3, seed=0), rng=3)
    assert np.all(emb.weight[3] == 0) and 0.7 < emb.weight.std() < 1.3
    with pytest.raises(TypeError, match="layer"):
        init.pytorch_default_(np.zeros(3))
