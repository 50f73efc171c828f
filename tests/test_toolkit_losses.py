"""Losses: values against manual computations, gradients against central finite
differences (float64), numerical stability at extreme logits, masking, validation."""
import numpy as np
import pytest

from rnnfast.losses import (binary_cross_entropy_with_logits, log_softmax, mse, softmax,
                            softmax_cross_entropy)

RNG = np.random.default_rng(7)


def _fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    flat, gf = x.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        lp = f(x)
        flat[i] = old - eps
        lm = f(x)
        flat[i] = old
        gf[i] = (lp - lm) / (2 * eps)
    return g


def _rel(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def test_cross_entropy_with_lengths_matches_manual():
    B, T, C = 4, 6, 5
    logits = RNG.standard_normal((B, T, C)) * 3
    targets = RNG.integers(0, C, (B, T))
    lengths = np.array([6, 3, 1, 0])
    loss, grad = softmax_cross_entropy(logits, targets, lengths=lengths)
    total, count = 0.0, 0
    manual_grad = np.zeros_like(logits)
    for b in range(B):
        for t in range(lengths[b]):
            z = logits[b, t]
            p = np.exp(z) / np.exp(z).sum()
            total += -np.log(p[targets[b, t]])
            count += 1
            manual_grad[b, t] = p
            manual_grad[b, t, targets[b, t]] -= 1
    manual_grad /= count
    assert abs(loss - total / count) <= 1e-12 * abs(loss)
    assert _rel(grad, manual_grad) < 1e-12
    assert np.all(grad[3] == 0) and np.all(grad[1, 3:] == 0)
    fd = _fd_grad(lambda z: softmax_cross_entropy(z, targets, lengths=lengths)[0], logits.copy())
    err = _rel(grad, fd)
    print(f"cross-entropy grad vs finite differences: max rel err {err:.2e}")
    assert err < 1e-7


def test_cross_entropy_reductions_and_ignore_index():
    logits = RNG.standard_normal((5, 4))
    t = np.array([0, 3, -100, 2, 1])
    l_mean, g_mean = softmax_cross_entropy(logits, t, ignore_index=-100)
    l_sum, g_sum = softmax_cross_entropy(logits, t, ignore_index=-100, reduction="sum")
    per, g_none = softmax_cross_entropy(logits, t, ignore_index=-100, reduction="none")
    assert per.shape == (5,) and per[2] == 0
    assert np.isclose(l_sum, per.sum(), rtol=1e-14) and np.isclose(l_mean, l_sum / 4, rtol=1e-14)
    np.testing.assert_allclose(g_mean * 4, g_sum, rtol=1e-14)
    np.testing.assert_array_equal(g_sum, g_none)
    assert np.all(g_sum[2] == 0)
    ref = -log_softmax(logits)[np.arange(5), np.where(t < 0, 0, t)]
    np.testing.assert_allclose(per[[0, 1, 3, 4]], ref[[0, 1, 3, 4]], rtol=1e-14)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_stable_at_extreme_logits(dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [1e4, 1e4, 1e4]], dtype=dtype)
    t = np.array([1, 2, 0])
    loss, g = softmax_cross_entropy(logits, t)
    assert np.isfinite(loss) and np.all(np.isfinite(g)) and g.dtype == dtype
    # row 0: -log p[1] = 2e4; rows 1, 2: 0 and log 3
    assert np.isclose(loss, (2e4 + 0 + np.log(3)) / 3, rtol=1e-6)
    x = np.array([1e4, -1e4, 1e4, -1e4], dtype=dtype)
    y = np.array([1.0, 0.0, 0.0, 1.0], dtype=dtype)
    lb, gb = binary_cross_entropy_with_logits(x, y)
    assert np.isfinite(lb) and np.all(np.isfinite(gb))
    assert np.isclose(lb, 2e4 / 4, rtol=1e-6)
    np.testing.assert_allclose(gb, np.array([0, 0, 1, -1]) / 4, atol=1e-7)
    assert np.all(np.isfinite(softmax(logits))) and np.all(np.isfinite(log_softmax(logits)))


def test_bce_with_logits_values_and_gradient():
    x = RNG.standard_normal((3, 4, 2)) * 4
    y = RNG.random((3, 4, 2))
    loss, g = binary_cross_entropy_with_logits(x, y)
    p = 1 / (1 + np.exp(-x))
    manual = np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))
    assert abs(loss - manual) < 1e-12 * manual
    fd = _fd_grad(lambda z: binary_cross_entropy_with_logits(z, y)[0], x.copy())
    err = _rel(g, fd)
    print(f"BCE-with-logits grad vs finite differences: max rel err {err:.2e}")
    assert err < 1e-7
    lengths = np.array([4, 2, 0])
    lm, gm = binary_cross_entropy_with_logits(x, y, lengths=lengths)
    fdm = _fd_grad(lambda z: binary_cross_entropy_with_logits(z, y, lengths=lengths)[0], x.copy())
    assert _rel(gm, fdm) < 1e-7 and np.all(gm[2] == 0)


def test_mse_values_and_gradient():
    p = RNG.standard_normal((5, 3))
    t = RNG.standard_normal((5, 3))
    loss, g = mse(p, t)
    assert abs(loss - np.mean((p - t) ** 2)) < 1e-14
    fd = _fd_grad(lambda z: mse(z, t)[0], p.copy())
    err = _rel(g, fd)
    print(f"MSE grad vs finite differences: max rel err {err:.2e}")
    assert err < 1e-8
    seq_p, seq_t = RNG.standard_normal((3, 4, 2)), RNG.standard_normal((3, 4, 2))
    lengths = np.array([4, 1, 2])
    lm, gm = mse(seq_p, seq_t, lengths=lengths)
    mask = (np.arange(4)[None] < lengths[:, None])[..., None]
    assert abs(lm - ((seq_p - seq_t) ** 2 * mask).sum() / (mask.sum() * 2)) < 1e-14
    fdm = _fd_grad(lambda z: mse(z, seq_t, lengths=lengths)[0], seq_p.copy())
    assert _rel(gm, fdm) < 1e-8


def test_softmax_helpers():
    x = RNG.standard_normal((3, 4))
    np.testing.assert_allclose(softmax(x).sum(-1), 1, rtol=1e-15)
    np.testing.assert_allclose(np.exp(log_softmax(x, axis=0)), softmax(x, axis=0), rtol=1e-14)


def test_loss_input_errors():
    logits = np.zeros((2, 3, 4))
    with pytest.raises(ValueError, match="'targets'.*shape \\(2, 3\\)"):
        softmax_cross_entropy(logits, np.zeros((2, 4), np.int64))
    with pytest.raises(TypeError, match="'targets'.*integer"):
        softmax_cross_entropy(logits, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="'targets'.*class id 4"):
        softmax_cross_entropy(logits, np.full((2, 3), 4))
    with pytest.raises(ValueError, match="'targets'.*class id -1"):
        softmax_cross_entropy(logits, np.full((2, 3), -1))
    with pytest.raises(TypeError, match="'logits'"):
        softmax_cross_entropy(np.zeros((2, 3), np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="lengths"):
        softmax_cross_entropy(logits, np.zeros((2, 3), np.int64), lengths=[1, 4])
    with pytest.raises(ValueError, match="reduction"):
        mse(np.zeros(3), np.zeros(3), reduction="avg")
    with pytest.raises(ValueError, match="'target'.*shape"):
        mse(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="'targets'.*\\[0, 1\\]"):
        binary_cross_entropy_with_logits(np.zeros(3), np.array([0.0, 2.0, 1.0]))
