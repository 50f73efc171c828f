"""Hypothesis: random cells, shapes, dtypes, chunkings, reset masks and broken arguments.

Every call either raises ValueError / TypeError (and then leaves the state untouched)
or gives bitwise the outputs of the layer run separately on each episode.
"""
import os

import numpy as np
import pytest

import rnnfast

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

CELLS = [("RNN", {}), ("RNN", {"nonlinearity": "relu"}), ("LSTM", {}),
         ("LSTM", {"proj_size": 2}), ("GRU", {}), ("GRU", {"reset_after": False})]
MUTATIONS = ["x_dtype", "x_shape", "x_list", "reset_dtype", "reset_shape", "reset_list",
             "out_dtype", "out_shape", "out_strided", "out_readonly", "x_4d"]


def episodes(layer, x, reset):
    """Time-major x (T, N, I), reset (T, N): each stream's episodes run separately."""
    T, N, _ = x.shape
    P = layer.proj_size or layer.hidden_size
    y = np.empty((T, N, P), layer.dtype)
    for n in range(N):
        starts = [0] + [t for t in range(1, T) if reset[t, n]] + [T]
        for a, b in zip(starts[:-1], starts[1:]):
            y[a:b, n:n + 1] = layer(np.ascontiguousarray(x[a:b, n:n + 1]))[0]
    return y


def broken(kind, x, r, o):
    """One argument made invalid."""
    if kind == "x_dtype":
        x = x.astype(np.float64 if x.dtype == np.float32 else np.float32)
    elif kind == "x_shape":
        x = np.concatenate([x, x[..., :1]], axis=-1)
    elif kind == "x_list":
        x = x.tolist()
    elif kind == "x_4d":
        x = x[None]
    elif kind == "reset_dtype":
        r = np.zeros(x.shape[:-1], np.int8)
    elif kind == "reset_shape":
        r = np.zeros(x.shape[:-1] + (1,), bool)
    elif kind == "reset_list":
        r = np.zeros(x.shape[:-1], bool).tolist()
    elif kind == "out_dtype":
        o = o.astype(np.float64 if o.dtype == np.float32 else np.float32)
    elif kind == "out_shape":
        o = np.empty(o.shape[:-1] + (o.shape[-1] + 1,), o.dtype)
    elif kind == "out_strided":
        o = np.empty(o.shape[:-1] + (2 * o.shape[-1],), o.dtype)[..., ::2]
    elif kind == "out_readonly":
        o = np.empty_like(o)
        o.flags.writeable = False
    return x, r, o


EXAMPLES = int(os.environ.get("RNNFAST_STREAM_EXAMPLES", "200"))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_random_streams(data):
    draw = data.draw
    name, kw = draw(st.sampled_from(CELLS))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    L = draw(st.integers(1, 3))
    I, H = draw(st.integers(1, 5)), draw(st.integers(3, 9))
    N, T = draw(st.integers(1, 4)), draw(st.integers(1, 14))
    bf = draw(st.booleans())
    max_chunk = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**16))
    layer = getattr(rnnfast, name)(I, H, num_layers=L, batch_first=bf, dtype=dtype,
                                   seed=seed, **kw).eval()
    ref_layer = getattr(rnnfast, name)(I, H, num_layers=L, dtype=dtype, seed=seed,
                                       **kw).eval()
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    reset = rng.random((T, N)) < draw(st.sampled_from([0.0, 0.2, 0.6]))
    reset[0] = True
    expected = episodes(ref_layer, x, reset)
    s = rnnfast.Streamer(layer, N, max_chunk=max_chunk)
    P = s.h.shape[2]
    got = np.empty_like(expected)
    t = 0
    while t < T:
        n = draw(st.integers(1, T - t))
        single = n == 1 and draw(st.booleans())
        xs, rs = x[t:t + n], reset[t:t + n]
        if single:
            xs, rs = xs[0], rs[0]
        elif bf:
            xs, rs = xs.transpose(1, 0, 2), rs.T
        xs, rs = np.ascontiguousarray(xs), np.ascontiguousarray(rs)
        use_reset = rs if (rs.any() or draw(st.booleans())) else None
        o = np.empty((N, P) if single else ((N, n, P) if bf else (n, N, P)), dtype)
        if draw(st.integers(0, 4)) == 0:
            kind = draw(st.sampled_from(MUTATIONS))
            bx, br, bo = broken(kind, xs, rs, o)
            before = s.h.copy(), None if s.c is None else s.c.copy()
            with pytest.raises((ValueError, TypeError)):
                s.step(bx, reset=br, out=bo)
            assert np.array_equal(s.h, before[0])
            assert s.c is None or np.array_equal(s.c, before[1])
        if draw(st.booleans()):
            res = s.step(xs, reset=use_reset, out=o)
            assert res is o
        else:
            res = s.step(xs, reset=use_reset)
        if single:
            got[t] = res
        else:
            got[t:t + n] = res.transpose(1, 0, 2) if bf else res
        t += n
    assert np.array_equal(got, expected)
