"""rnnfast.Streamer: step / chunk inference over N streams.

Bitwise agreement (np.array_equal) with the full-sequence layer call and with separate
episodes, zero NumPy allocations per call (tracemalloc), weight changes picked up,
thread safety, and every argument validated.
"""
import threading
import tracemalloc

import numpy as np
import pytest

import rnnfast

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

CONFIGS = [
    ("rnn_tanh", rnnfast.RNN, {}),
    ("rnn_relu2", rnnfast.RNN, dict(nonlinearity="relu", num_layers=2)),
    ("lstm", rnnfast.LSTM, {}),
    ("lstm_proj3", rnnfast.LSTM, dict(proj_size=5, num_layers=3)),
    ("gru2", rnnfast.GRU, dict(num_layers=2)),
    ("gru_before", rnnfast.GRU, dict(reset_after=False)),
]
IDS = [c[0] for c in CONFIGS]
I, H = 6, 11


@pytest.fixture(autouse=True)
def _restore_threads():
    yield
    rnnfast.set_num_threads(None)


def make(cls, kw, dtype=np.float32, batch_first=False, seed=0, **extra):
    return cls(I, H, dtype=dtype, batch_first=batch_first, seed=seed, **kw, **extra).eval()


def stream_chunks(s, x, chunk, batch_first=False, reset=None):
    """Feed x through s in chunks of `chunk` steps (1 = 2-D single steps), with out=."""
    T = x.shape[1] if batch_first else x.shape[0]
    N = s.batch_size
    P = s.h.shape[2]
    out = np.empty((N, T, P) if batch_first else (T, N, P), s.dtype)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        if chunk == 1:
            o = np.empty((N, P), s.dtype)
            xs = x[:, t0] if batch_first else x[t0]
            r = None if reset is None else (reset[:, t0] if batch_first else reset[t0])
            s.step(np.ascontiguousarray(xs), reset=None if r is None else r.copy(), out=o)
            if batch_first:
                out[:, t0] = o
            else:
                out[t0] = o
        elif batch_first:
            o = np.empty((N, t1 - t0, P), s.dtype)
            r = None if reset is None else reset[:, t0:t1]
            s.step(x[:, t0:t1], reset=r, out=o)
            out[:, t0:t1] = o
        else:
            r = None if reset is None else reset[t0:t1]
            s.step(x[t0:t1], reset=r, out=out[t0:t1])
    return out


# ---------------------------------------------------------------------- agreement
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,cls,kw", CONFIGS, ids=IDS)
def test_bitwise_equal_to_full_call(name, cls, kw, dtype, threads):
    rnnfast.set_num_threads(threads)
    rng = np.random.default_rng(1)
    T, N = 23, 4
    layer = make(cls, kw, dtype)
    x = rng.standard_normal((T, N, I)).astype(dtype)
    y_full, hn = layer(x)
    for chunk in (1, 3, 7, T):
        s = rnnfast.Streamer(layer, N, max_chunk=chunk)
        y = stream_chunks(s, x, chunk)
        assert np.array_equal(y, y_full), (chunk, np.abs(y - y_full).max())
        if cls is rnnfast.LSTM:
            assert np.array_equal(s.h, hn[0]) and np.array_equal(s.c, hn[1])
        else:
            assert np.array_equal(s.h, hn)


@pytest.mark.parametrize("name,cls,kw", CONFIGS, ids=IDS)
def test_bitwise_hoisted_projection_and_long_chunks(name, cls, kw):
    """T*N >= 4096: the full call projects the inputs with the hoisted GEMM, the
    streamer (short chunks) with the gate tiles; chunks longer than max_chunk are split."""
    rnnfast.set_num_threads(2)
    rng = np.random.default_rng(2)
    T, N = 70, 64
    layer = make(cls, kw, np.float32, batch_first=True)
    x = rng.standard_normal((N, T, I)).astype(np.float32)
    y_full, _ = layer(x)
    s = rnnfast.Streamer(layer, N, max_chunk=4)
    for chunk in (1, 9, T):    # 9 and T exceed max_chunk
        s.reset_state()
        y = stream_chunks(s, x, chunk, batch_first=True)
        assert np.array_equal(y, y_full), chunk
    # and the other way round: the streamer's segments use the hoisted GEMM (a segment
    # of 65 steps * 64 streams), the separate episodes (N = 1) the gate tiles
    reset = np.zeros((T, N), bool)
    reset[5, ::3] = True
    tm = make(cls, kw, np.float32)
    xt = np.ascontiguousarray(x.transpose(1, 0, 2))
    s = rnnfast.Streamer(tm, N, max_chunk=T)
    y = s.step(xt, reset=reset)
    assert np.array_equal(y, episodes_reference(tm, xt, reset, np.zeros_like(s.h),
                                                None if s.c is None else np.zeros_like(s.c)))


def episodes_reference(layer, x, reset, h0, c0=None):
    """Each stream's episodes run separately (one layer call per episode, N = 1)."""
    T, N, _ = x.shape
    P = layer.proj_size or layer.hidden_size
    y = np.empty((T, N, P), layer.dtype)
    for n in range(N):
        starts = [0] + [t for t in range(1, T) if reset[t, n]] + [T]
        for a, b in zip(starts[:-1], starts[1:]):
            hx = h0[:, n:n + 1]
            if c0 is not None:
                hx = (hx, c0[:, n:n + 1])
            y[a:b, n:n + 1] = layer(x[a:b, n:n + 1], hx=hx)[0]
    return y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,cls,kw", CONFIGS, ids=IDS)
def test_resets_equal_separate_episodes(name, cls, kw, dtype):
    rng = np.random.default_rng(3)
    T, N = 29, 5
    layer = make(cls, kw, dtype)
    L, P = layer.num_layers, layer.proj_size or H
    x = rng.standard_normal((T, N, I)).astype(dtype)
    reset = rng.random((T, N)) < 0.15
    reset[0] = True                       # every episode starts from the initial state
    reset[1:, 2] = False                  # one stream never resets again
    h0 = rng.standard_normal((L, N, P)).astype(dtype)
    c0 = rng.standard_normal((L, N, H)).astype(dtype) if cls is rnnfast.LSTM else None
    expected = episodes_reference(layer, x, reset, h0, c0)
    init = (h0, c0) if c0 is not None else h0
    for chunk in (1, 3, 7, T):
        s = rnnfast.Streamer(layer, N, max_chunk=min(chunk, 6), initial_state=init)
        s.set_state(tuple(np.full_like(a, 7.0) for a in init) if c0 is not None
                    else np.full_like(h0, 7.0))           # overwritten by reset[0]
        y = stream_chunks(s, x, chunk, reset=reset)
        assert np.array_equal(y, expected), chunk
        # batch_first layout of x, reset and out
        lbf = make(cls, kw, dtype, batch_first=True)
        sb = rnnfast.Streamer(lbf, N, max_chunk=chunk, initial_state=init)
        yb = stream_chunks(sb, x.transpose(1, 0, 2).copy(), chunk, batch_first=True,
                           reset=reset.T.copy())
        assert np.array_equal(yb, expected.transpose(1, 0, 2)), chunk


def test_reference_backend_streams():
    rng = np.random.default_rng(4)
    layer = rnnfast.LSTM(I, H, num_layers=2, proj_size=4, dtype=np.float64, seed=0,
                         backend="reference").eval()
    x = rng.standard_normal((12, 3, I))
    y_full, _ = layer(x)
    s = rnnfast.Streamer(layer, 3, max_chunk=5)
    y = stream_chunks(s, x, 5)
    assert np.abs(y - y_full).max() <= 1e-12 * np.abs(y_full).max()


# ------------------------------------------------------------------- state API
def test_state_views_reset_and_set_state():
    rng = np.random.default_rng(5)
    layer = rnnfast.LSTM(I, H, num_layers=2, seed=0).eval()
    s = rnnfast.Streamer(layer, 3)
    h_view, c_view = s.state
    assert h_view is s.h and c_view is s.c and s.h.shape == (2, 3, H)
    assert not s.h.flags.writeable and not s.c.flags.writeable
    s.step(rng.standard_normal((3, I)).astype(np.float32))
    assert np.abs(h_view).max() > 0                    # the view follows the state
    before = s.h.copy(), s.c.copy()
    s.reset_state(np.array([False, True, False]))
    assert (s.h[:, 1] == 0).all() and (s.c[:, 1] == 0).all()
    assert np.array_equal(s.h[:, [0, 2]], before[0][:, [0, 2]])
    h = rng.standard_normal((2, 3, H)).astype(np.float32)
    c = rng.standard_normal((2, 3, H)).astype(np.float32)
    s.set_state((h, c))
    assert np.array_equal(s.h, h) and np.array_equal(s.c, c)
    # set_state then a step = the layer with hx
    x = rng.standard_normal((4, 3, I)).astype(np.float32)
    y_ref, (hn, cn) = layer(x, hx=(h, c))
    assert np.array_equal(s.step(x), y_ref) and np.array_equal(s.h, hn)
    s.set_initial_state((h[:, 0], c[:, 0]))            # (L, F): same for every stream
    s.reset_state()
    assert np.array_equal(s.h, np.broadcast_to(h[:, :1], h.shape))
    assert rnnfast.RNN(I, H).eval() and rnnfast.Streamer(rnnfast.GRU(I, H).eval(), 2).c is None


def test_step_without_out_allocates_and_returns_fresh_arrays():
    layer = rnnfast.GRU(I, H, seed=0).eval()
    s = rnnfast.Streamer(layer, 2, max_chunk=3)
    y1 = s.step(np.ones((2, I), np.float32))
    y2 = s.step(np.ones((5, 2, I), np.float32))
    assert y1.shape == (2, H) and y2.shape == (5, 2, H) and not np.shares_memory(y1, y2)


# ------------------------------------------------------------------ allocations
@pytest.mark.parametrize("name,cls,kw", [CONFIGS[3], CONFIGS[4]], ids=["lstm_proj3", "gru2"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_no_allocation_per_call(name, cls, kw, batch_first):
    """Thousands of warmed-up calls with out=: no array is allocated (tracemalloc traces
    NumPy's data buffers). The smallest array a call could allocate (a state row block,
    N*P*4 bytes) is 4 KiB; the peak of traced memory over all calls stays far below it,
    and nothing is left behind."""
    rng = np.random.default_rng(6)
    N, T = 32, 4
    layer = cls(I, 64, batch_first=batch_first, seed=0,
                **{**kw, **({"proj_size": 32} if "proj_size" in kw else {})}).eval()
    s = rnnfast.Streamer(layer, N, max_chunk=T)
    P = s.h.shape[2]
    assert N * P * 4 >= 4096
    x1 = rng.standard_normal((N, I)).astype(np.float32)
    xc = rng.standard_normal((N, T, I) if batch_first else (T, N, I)).astype(np.float32)
    r1 = rng.random(N) < 0.1
    rc = rng.random((N, T) if batch_first else (T, N)) < 0.1
    o1 = np.empty((N, P), np.float32)
    oc = np.empty((N, T, P) if batch_first else (T, N, P), np.float32)

    def calls(n):
        for i in range(n):
            s.step(x1, out=o1)
            s.step(x1, reset=r1, out=o1)
            s.step(xc, out=oc)
            s.step(xc, reset=rc, out=oc)

    calls(20)     # warm-up: packs, caches of NumPy and Python
    tracemalloc.start()
    try:
        calls(5)
        base, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        calls(1000)
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"{name} batch_first={batch_first}: 4000 calls, peak transient "
          f"{peak - base} B, net {current - base} B")
    assert peak - base < 2048, peak - base
    assert current - base < 512, current - base


# ------------------------------------------------------------- weight changes
def test_weight_changes_are_picked_up_never_stale():
    rng = np.random.default_rng(7)
    layer = rnnfast.GRU(I, H, num_layers=2, seed=0).eval()
    s = rnnfast.Streamer(layer, 2, max_chunk=4)
    x = rng.standard_normal((4, 2, I)).astype(np.float32)

    def check():
        s.reset_state()
        assert np.array_equal(s.step(x), layer(x)[0])

    check()
    with pytest.raises(ValueError, match="read-only"):    # packed: in-place edits refused
        layer.weight_hh_l1[0, 0] += 1
    layer.weight_hh_l1 = layer.weight_hh_l1 + 0.5         # new array: picked up
    check()
    layer.load_state_dict({k: v * 0.9 for k, v in layer.state_dict().items()})
    check()
    layer.train()
    layer.bias_ih_l0 += 0.25                              # in place, while unpacked
    with pytest.raises(RuntimeError, match="training mode"):
        s.step(x)
    layer.eval()
    check()
    layer.flatten_parameters()
    layer.weight_ih_l0[:] = 0.0
    check()
    layer.weight_ih_l0 = np.zeros((3 * H, I + 1), np.float32)   # wrong shape: clear error
    with pytest.raises(ValueError, match="weight_ih_l0"):
        s.step(x)


# --------------------------------------------------------------------- threads
def test_concurrent_streamers_sharing_a_layer():
    rng = np.random.default_rng(8)
    layer = rnnfast.LSTM(I, 24, num_layers=2, proj_size=7, seed=0).eval()
    K, T, N = 8, 40, 3
    xs = [rng.standard_normal((T, N, I)).astype(np.float32) for _ in range(K)]
    resets = [rng.random((T, N)) < 0.1 for _ in range(K)]

    def work(i):
        s = rnnfast.Streamer(layer, N, max_chunk=5)
        return stream_chunks(s, xs[i], 1 + i % 6, reset=resets[i])

    serial = [work(i) for i in range(K)]
    results, errors = [None] * K, []
    barrier = threading.Barrier(K)

    def run(i):
        try:
            barrier.wait()
            for _ in range(3):
                results[i] = work(i)
                assert np.array_equal(results[i], serial[i])
        except Exception as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(K)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_concurrent_first_calls_pack_once_and_agree():
    """Eight streamers on a fresh (never called, unpacked) layer start at once."""
    rng = np.random.default_rng(9)
    K, T, N = 8, 12, 2
    layer = rnnfast.GRU(I, 32, num_layers=2, seed=3).eval()
    twin = rnnfast.GRU(I, 32, num_layers=2, seed=3).eval()
    xs = [rng.standard_normal((T, N, I)).astype(np.float32) for _ in range(K)]
    streamers = [rnnfast.Streamer(layer, N, max_chunk=T) for _ in range(K)]
    results, errors = [None] * K, []
    barrier = threading.Barrier(K)

    def run(i):
        try:
            barrier.wait()
            results[i] = streamers[i].step(xs[i])
        except Exception as exc:   # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(K)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert all(s._packs is layer._packs for s in streamers)   # one pack, shared
    for i in range(K):
        assert np.array_equal(results[i], twin(xs[i])[0])


def test_backend_switch_is_picked_up():
    rng = np.random.default_rng(10)
    layer = rnnfast.RNN(I, H, dtype=np.float64, seed=0).eval()
    s = rnnfast.Streamer(layer, 2, max_chunk=6)
    x = rng.standard_normal((6, 2, I))
    y_cpu = s.step(x)
    layer.backend = "reference"
    s.reset_state()
    y_ref = s.step(x)
    assert np.array_equal(y_ref, layer(x)[0])
    assert np.abs(y_ref - y_cpu).max() <= 1e-12 * np.abs(y_cpu).max()
    # the reference backend locks nothing: in-place edits are read at the next call
    layer.weight_hh_l0 *= 0.5
    s.reset_state()
    assert np.array_equal(s.step(x), layer(x)[0])
    layer.weight_ih_l0 = np.asfortranarray(layer.weight_ih_l0 * 2)   # strided array
    s.reset_state()
    assert np.array_equal(s.step(x), layer(x)[0])
    layer.weight_ih_l0 += 1.0
    s.reset_state()
    assert np.array_equal(s.step(x), layer(x)[0])


def test_one_streamer_refuses_reentrant_calls():
    layer = rnnfast.RNN(I, H, seed=0).eval()
    s = rnnfast.Streamer(layer, 2)
    s._busy.acquire()          # as if another thread were inside step()
    try:
        with pytest.raises(RuntimeError, match="not shareable"):
            s.step(np.zeros((2, I), np.float32))
        with pytest.raises(RuntimeError, match="already running"):
            s.reset_state()
    finally:
        s._busy.release()
    s.step(np.zeros((2, I), np.float32))


# ------------------------------------------------------------------ validation
def test_constructor_validation():
    lstm = rnnfast.LSTM(I, H).eval()
    with pytest.raises(TypeError, match="layer must be"):
        rnnfast.Streamer(object(), 2)
    with pytest.raises(ValueError, match="bidirectional"):
        rnnfast.Streamer(rnnfast.GRU(I, H, bidirectional=True).eval(), 2)
    with pytest.raises(RuntimeError, match="training mode"):
        rnnfast.Streamer(rnnfast.GRU(I, H), 2)
    with pytest.raises(TypeError, match="'batch_size'"):
        rnnfast.Streamer(lstm, 2.0)
    with pytest.raises(ValueError, match="'batch_size'"):
        rnnfast.Streamer(lstm, 0)
    with pytest.raises(ValueError, match="'max_chunk'"):
        rnnfast.Streamer(lstm, 2, max_chunk=0)
    with pytest.raises(TypeError, match="tuple"):
        rnnfast.Streamer(lstm, 2, initial_state=np.zeros((1, 2, H), np.float32))
    with pytest.raises(ValueError, match=r"expected c of shape \(1, 2, 11\)"):
        rnnfast.Streamer(lstm, 2, initial_state=(np.zeros((1, 2, H), np.float32),
                                                 np.zeros((1, 3, H), np.float32)))
    with pytest.raises(TypeError, match="dtype float32"):
        rnnfast.Streamer(lstm, 2, initial_state=(np.zeros((1, 2, H)),) * 2)


def test_step_validation():
    gru = rnnfast.GRU(I, H, seed=0).eval()
    s = rnnfast.Streamer(gru, 3, max_chunk=4)
    x = np.zeros((3, I), np.float32)
    xc = np.zeros((5, 3, I), np.float32)
    bad = [
        ((x.tolist(),), {}, TypeError, "x must be a numpy.ndarray"),
        ((x.astype(np.float64),), {}, TypeError, "x has dtype float64"),
        ((x.astype(np.int32),), {}, TypeError, "x has dtype int32"),
        ((np.zeros((4, I), np.float32),), {}, ValueError, r"expected x of shape \(3, 6\)"),
        ((np.zeros((3, I + 1), np.float32),), {}, ValueError, "expected x of shape"),
        ((np.zeros((0, 3, I), np.float32),), {}, ValueError, "T >= 1"),
        ((np.zeros(I, np.float32),), {}, ValueError, "x must be 2-D"),
        ((x,), dict(reset=[True] * 3), TypeError, "reset must be None or a numpy"),
        ((x,), dict(reset=np.ones(3, int)), TypeError, "dtype bool"),
        ((x,), dict(reset=np.ones(4, bool)), ValueError, r"expected reset of shape \(3,\)"),
        ((xc,), dict(reset=np.ones(3, bool)), ValueError, r"expected reset of shape \(5, 3\)"),
        ((x,), dict(out=np.empty((3, H))), TypeError, "out must have the layer's dtype"),
        ((x,), dict(out=np.empty((3, H + 1), np.float32)), ValueError, "expected out"),
        ((x,), dict(out=np.empty((H, 3), np.float32).T), ValueError, "C-contiguous"),
        ((x,), dict(out=[0.0]), TypeError, "out must be None or a numpy.ndarray"),
        ((xc,), dict(out=np.empty((3, 5, H), np.float32)), ValueError,
         r"expected out of shape \(5, 3, 11\)"),
    ]
    ro = np.empty((3, H), np.float32)
    ro.flags.writeable = False
    bad.append(((x,), dict(out=ro), ValueError, "read-only"))
    for args, kw, exc, msg in bad:
        with pytest.raises(exc, match=msg):
            s.step(*args, **kw)
    # out overlapping the input: refused
    buf = np.zeros((5, 3, max(I, H)), np.float32)
    s2 = rnnfast.Streamer(rnnfast.GRU(H, H, seed=0).eval(), 3, max_chunk=5)
    with pytest.raises(ValueError, match="out shares memory with x"):
        s2.step(buf[..., :H], out=buf[..., :H])
    with pytest.raises(ValueError, match="out shares memory with the streamer"):
        s.step(x, out=s.h.base.reshape(-1)[:3 * H].reshape(3, H))   # behind the view
    # a failed call changed nothing
    assert np.array_equal(s.h, np.zeros_like(s.h))
    # NaN is allowed (propagates as in the layer)
    y = s.step(np.full((3, I), np.nan, np.float32))
    assert np.isnan(y).all()


def test_state_api_validation():
    s = rnnfast.Streamer(rnnfast.RNN(I, H, num_layers=2).eval(), 3)
    with pytest.raises(ValueError, match=r"expected state of shape \(2, 3, 11\)"):
        s.set_state(np.zeros((2, 11), np.float32))       # (L, F) only for the initial state
    with pytest.raises(TypeError, match="state has dtype float64"):
        s.set_state(np.zeros((2, 3, H)))
    with pytest.raises(TypeError, match="mask must be None"):
        s.reset_state([True, False, True])
    with pytest.raises(ValueError, match="expected mask"):
        s.reset_state(np.ones(2, bool))


def test_chunk_is_split_at_reset_steps_only(monkeypatch):
    """One kernel call per layer and segment between reset steps, not one per step."""
    from rnnfast import _cpu
    layer = rnnfast.LSTM(I, H, num_layers=2, seed=0).eval()
    s = rnnfast.Streamer(layer, 3, max_chunk=20)
    x = np.random.default_rng(11).standard_normal((20, 3, I)).astype(np.float32)
    reset = np.zeros((20, 3), bool)
    reset[0, 1] = reset[5, 0] = reset[5, 2] = reset[12, 1] = True
    calls = []
    real = _cpu.layer_forward_into

    def counting(*args):
        calls.append(args[1].shape[0])
        return real(*args)

    monkeypatch.setattr(_cpu, "layer_forward_into", counting)
    y = s.step(x, reset=reset)
    assert calls == [5, 5, 7, 7, 8, 8]          # segments [0,5) [5,12) [12,20), 2 layers
    assert np.array_equal(y, episodes_reference(layer, x, reset, np.zeros_like(s.h),
                                                np.zeros_like(s.c)))
    calls.clear()
    s2 = rnnfast.Streamer(layer, 3, max_chunk=6)   # and at max_chunk
    s2.step(x)
    assert calls == [6, 6, 6, 6, 6, 6, 2, 2]


def test_public_attributes_are_read_only():
    s = rnnfast.Streamer(rnnfast.GRU(I, H).eval(), 2, max_chunk=3)
    assert (s.batch_size, s.max_chunk, s.dtype) == (2, 3, np.float32)
    for name in ("h", "c", "state", "batch_size", "max_chunk", "dtype", "layer"):
        with pytest.raises(AttributeError):
            setattr(s, name, None)
    with pytest.raises(ValueError, match="read-only"):
        s.h[0, 0, 0] = 1.0


@pytest.mark.parametrize("batch_first", [False, True])
def test_strided_and_byte_swapped_inputs(batch_first):
    rng = np.random.default_rng(12)
    layer = make(rnnfast.GRU, dict(num_layers=2), np.float64, batch_first=batch_first)
    x = rng.standard_normal((9, 3, I) if not batch_first else (3, 9, I))
    y_full, _ = layer(x)
    wide = np.zeros(x.shape[:-1] + (2 * I,))
    wide[..., ::2] = x
    for xin in (wide[..., ::2], x.astype(x.dtype.newbyteorder()),
                np.asfortranarray(x)):
        s = rnnfast.Streamer(layer, 3, max_chunk=4)
        y = s.step(xin)
        assert np.array_equal(y, y_full)
        s.reset_state()
        ys = [s.step(xin[:, t] if batch_first else xin[t]) for t in range(9)]
        assert np.array_equal(np.stack(ys, axis=1 if batch_first else 0), y_full)


# ------------------------------------------------- ONNX options (the general kernels)
@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,opts", [
    (rnnfast.RNN, {"activations": ["LeakyRelu"], "activation_alpha": [0.1]}),
    (rnnfast.GRU, {"activations": ["HardSigmoid", "Softsign"], "clip": 0.7}),
    (rnnfast.GRU, {"activations": ["Sigmoid", "Tanh"]}),   # explicit defaults: packed path
    (rnnfast.LSTM, {"peephole": True, "input_forget": True, "clip": 1.5}),
    (rnnfast.LSTM, {"activations": ["Sigmoid", "ScaledTanh", "Elu"],
                    "activation_alpha": [None, 1.5, 0.5], "activation_beta": [None, 0.7, None],
                    "proj_size": 3}),
])
def test_stream_honours_onnx_options(cls, opts, dtype, backend):
    """A layer with the ONNX semantics options streams exactly like its full call."""
    opts = dict(opts)
    proj = opts.pop("proj_size", 0)
    kw = {"proj_size": proj} if proj else {}
    layer = cls(4, 6, num_layers=2, dtype=dtype, seed=3, **kw, **opts)
    rng = np.random.default_rng(5)
    if "peephole" in opts:
        sd = layer.state_dict()
        for k in sd:
            if k.startswith("weight_peep"):
                sd[k] = rng.standard_normal(sd[k].shape).astype(dtype)
        layer.load_state_dict(sd)
    layer.backend = backend
    layer.eval()
    x = rng.standard_normal((9, 3, 4)).astype(dtype)
    y_full = layer(x)[0]
    s = rnnfast.Streamer(layer, 3, max_chunk=4)
    ys = [s.step(x[t0:t0 + 2]) for t0 in range(0, 9, 2)]
    y = np.concatenate(ys)
    if backend == "cpu":
        assert np.array_equal(y, y_full)
    else:
        np.testing.assert_allclose(y, y_full, rtol=1e-12 if dtype == np.float64 else 1e-5,
                                   atol=1e-14 if dtype == np.float64 else 1e-6)
