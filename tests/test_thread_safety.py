"""Concurrent calls from Python threads give exactly the serial results.

Shareable: a layer in eval() mode (inference), and the functional API (stateless),
forward and backward. A layer in training mode keeps its last forward's cache for
backward, so training needs one layer object per thread.
"""
import threading

import numpy as np
import pytest

import rnnfast
from rnnfast import functional as F

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

N_THREADS = 8


def run_threads(fn, n):
    results, errors = [None] * n, []

    def worker(i):
        try:
            results[i] = fn(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


@pytest.mark.parametrize("cls", [rnnfast.LSTM, rnnfast.GRU, rnnfast.RNN])
def test_shared_eval_layer(cls):
    layer = cls(16, 24, num_layers=2, bidirectional=True, seed=0).eval()
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((12, 3, 16)).astype(np.float32) for _ in range(N_THREADS)]
    serial = [layer(x)[0] for x in xs]

    def call(i):
        out = None
        for _ in range(5):
            out = layer(xs[i])[0]
        return out

    for got, want in zip(run_threads(call, N_THREADS), serial):
        assert np.array_equal(got, want)


def test_functional_training_concurrently():
    shapes = F.param_shapes("LSTM", 10, 20, num_layers=2, bidirectional=True)
    rng = np.random.default_rng(2)
    params = {k: rng.uniform(-0.2, 0.2, s) for k, s in shapes.items()}
    xs = [rng.standard_normal((9, 4, 10)) for _ in range(N_THREADS)]
    kw = dict(num_layers=2, hidden_size=20, bidirectional=True, training=True)

    def step(i):
        out = F.rnn_forward("LSTM", xs[i], params, **kw)
        g = F.rnn_backward(out.cache, np.ones_like(out.y))
        return out.y, g.dx, g.grads

    serial = [step(i) for i in range(N_THREADS)]
    for got, want in zip(run_threads(step, N_THREADS), serial):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        for k in want[2]:
            assert np.array_equal(got[2][k], want[2][k])


def test_separate_training_layers_concurrently():
    rng = np.random.default_rng(3)
    xs = [rng.standard_normal((7, 2, 8)).astype(np.float32) for _ in range(N_THREADS)]

    def step(i):
        layer = rnnfast.GRU(8, 12, seed=i)
        y, _ = layer(xs[i])
        dx, _, grads = layer.backward(np.ones_like(y))
        return y, dx, grads

    serial = [step(i) for i in range(N_THREADS)]
    for got, want in zip(run_threads(step, N_THREADS), serial):
        assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
        for k in want[2]:
            assert np.array_equal(got[2][k], want[2][k])
