"""The compiled backend agrees with the pure-NumPy reference, forward and every gradient.

float64: max |cpu - ref| / max |ref| <= 1e-12 for every output and gradient (an absolute
difference below 1e-14 always passes).
float32: the compiled float32 result against the float64 reference run on the same
(float32-representable) inputs, relative to max |ref| per array:
    forward outputs (y, h_n, c_n)  <= F32_FWD_BOUND
    gradients                      <= F32_GRAD_BOUND
for the sizes tested here (T <= 40, weights scaled like PyTorch's default init).
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck

from rnnfast import _reference as ref

cpu = pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

F64_REL = 1e-12
F64_ABS_FLOOR = 1e-14
F32_FWD_BOUND = 2e-5
F32_GRAD_BOUND = 1e-4

GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

# (T, N, I, H): the degenerate case, odd sizes, sizes that leave vector tails and GEMM
# edge tiles everywhere, and realistic ones
SHAPES = [(1, 1, 1, 1), (3, 2, 5, 7), (7, 5, 17, 33), (13, 3, 9, 65), (25, 16, 64, 128)]

VARIANTS = [
    ("rnn_tanh", True, 0), ("rnn_relu", True, 0), ("lstm", True, 0), ("lstm", True, 3),
    ("gru", True, 0), ("gru", False, 0),
]


def make_problem(cell, T, N, I, H, proj=0, bias=True, lengths=None, seed=0,
                 dtype=np.float64):
    rng = np.random.default_rng(seed)
    g, P = GATES[cell], proj or H
    k = 1.0 / np.sqrt(H)
    u = lambda *shape: rng.uniform(-k, k, shape)  # noqa: E731  PyTorch's default init
    p = dict(
        x=rng.standard_normal((T, N, I)),
        h0=rng.standard_normal((N, P)) * 0.5,
        c0=rng.standard_normal((N, H)) * 0.5 if cell == "lstm" else None,
        w_ih=u(g * H, I), w_hh=u(g * H, P),
        b_ih=u(g * H) if bias else None, b_hh=u(g * H) if bias else None,
        w_hr=u(P, H) if proj else None,
    )
    p = {name: (None if a is None else a.astype(dtype)) for name, a in p.items()}
    if lengths == "mixed":
        lens = rng.integers(0, T + 1, N)
        lens[0] = T
        if N > 1:
            lens[-1] = 1
        p["lengths"] = lens.astype(np.int64)
    else:
        p["lengths"] = lengths
    return p


def upstream(cell, T, N, H, P, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((T, N, P)).astype(dtype),
            rng.standard_normal((N, P)).astype(dtype),
            rng.standard_normal((N, H)).astype(dtype) if cell == "lstm" else None)


def run(backend, cell, prob, reverse, reset_after, dy, dh_n, dc_n):
    y, h_n, c_n, cache = backend.layer_forward(
        cell, prob["x"], prob["h0"], prob["c0"], prob["w_ih"], prob["w_hh"], prob["b_ih"],
        prob["b_hh"], prob["w_hr"], prob["lengths"], reverse, reset_after, True)
    grads = backend.layer_backward(cache, dy, dh_n, dc_n)
    out = {"y": y, "h_n": h_n, "c_n": c_n}
    out.update({"d_" + k: v for k, v in grads.items()})
    return out


def rel_err(a, b):
    if a is None or b is None:
        assert a is None and b is None
        return 0.0
    assert a.shape == b.shape
    if a.size == 0:
        return 0.0
    diff = float(np.max(np.abs(a.astype(np.float64) - b)))
    scale = float(np.max(np.abs(b)))
    return diff / scale if scale > 0 else diff


def assert_f64_agree(got, want, context):
    for name, w in want.items():
        g = got[name]
        if w is None:
            assert g is None, f"{context}: {name} should be None"
            continue
        assert g.dtype == np.float64 and g.shape == w.shape, (context, name)
        diff = float(np.max(np.abs(g - w))) if w.size else 0.0
        if diff <= F64_ABS_FLOOR:
            continue
        err = rel_err(g, w)
        assert err <= F64_REL, f"{context}: {name} relative difference {err:.3e} > {F64_REL}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS,
                         ids=lambda v: str(v))
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, "mixed"], ids=["full", "lengths"])
def test_float64_agreement(shape, cell, reset_after, proj, reverse, lengths):
    T, N, I, H = shape
    if proj >= H:
        proj = max(0, H - 1) if H > 1 else 0
    prob = make_problem(cell, T, N, I, H, proj=proj, lengths=lengths, seed=hash(shape) % 1000)
    P = proj or H
    dy, dh_n, dc_n = upstream(cell, T, N, H, P)
    want = run(ref, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
    got = run(cpu, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
    assert_f64_agree(got, want, f"{cell} ra={reset_after} proj={proj} rev={reverse} {shape}")


@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("with_upstream_state", [True, False])
def test_float64_bias_and_state_options(cell, reset_after, proj, bias, with_upstream_state):
    T, N, I, H = 6, 4, 5, 8
    prob = make_problem(cell, T, N, I, H, proj=proj, bias=bias, lengths="mixed", seed=3)
    if not with_upstream_state:  # zero initial state, no dL/dh_n
        prob["h0"] = np.zeros_like(prob["h0"])
        if prob["c0"] is not None:
            prob["c0"] = np.zeros_like(prob["c0"])
    dy, dh_n, dc_n = upstream(cell, T, N, H, proj or H, seed=4)
    if not with_upstream_state:
        dh_n = dc_n = None
    for reverse in (False, True):
        want = run(ref, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
        got = run(cpu, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
        assert_f64_agree(got, want, f"{cell} bias={bias} state={with_upstream_state}")


@pytest.mark.parametrize("lens", [[1, 1, 1], [3, 1, 2], [0, 3, 0], [0, 0, 0], [3, 3, 3]])
@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
def test_float64_length_patterns(lens, cell, reset_after, proj):
    prob = make_problem(cell, 3, 3, 4, 6, proj=proj, seed=5)
    prob["lengths"] = np.array(lens, dtype=np.int64)
    dy, dh_n, dc_n = upstream(cell, 3, 3, 6, proj or 6, seed=6)
    for reverse in (False, True):
        want = run(ref, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
        got = run(cpu, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
        assert_f64_agree(got, want, f"{cell} lens={lens} rev={reverse}")
        # padded steps: outputs exactly zero, no gradient reaches the input
        for n, L in enumerate(lens):
            assert not np.any(got["y"][L:, n]), "padded output must be exactly 0"
            assert not np.any(got["d_x"][L:, n]), "padded dx must be exactly 0"


@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
def test_float32_against_float64_reference(cell, reset_after, proj):
    T, N, I, H = 40, 8, 24, 48
    prob32 = make_problem(cell, T, N, I, H, proj=proj, lengths="mixed", seed=7,
                          dtype=np.float32)
    prob64 = {k: (v.astype(np.float64) if v is not None and v.dtype == np.float32 else v)
              for k, v in prob32.items()}
    P = proj or H
    dy, dh_n, dc_n = upstream(cell, T, N, H, P, seed=8, dtype=np.float32)
    for reverse in (False, True):
        want = run(ref, cell, prob64, reverse, reset_after, dy.astype(np.float64),
                   dh_n.astype(np.float64), None if dc_n is None else dc_n.astype(np.float64))
        got = run(cpu, cell, prob32, reverse, reset_after, dy, dh_n, dc_n)
        for name, w in want.items():
            if w is None:
                assert got[name] is None
                continue
            assert got[name].dtype == np.float32, name
            bound = F32_FWD_BOUND if name in ("y", "h_n", "c_n") else F32_GRAD_BOUND
            err = rel_err(got[name], w)
            assert err <= bound, f"{cell} {name}: float32 error {err:.2e} > {bound}"


def test_inference_mode_matches_training_mode():
    for cell, reset_after, proj in VARIANTS:
        prob = make_problem(cell, 9, 4, 6, 10, proj=proj, lengths="mixed", seed=9)
        args = (cell, prob["x"], prob["h0"], prob["c0"], prob["w_ih"], prob["w_hh"],
                prob["b_ih"], prob["b_hh"], prob["w_hr"], prob["lengths"], True, reset_after)
        y1, h1, c1, cache1 = cpu.layer_forward(*args, False)
        y2, h2, c2, cache2 = cpu.layer_forward(*args, True)
        assert cache1 is None and cache2 is not None
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(h1, h2)
        if c1 is not None:
            np.testing.assert_array_equal(c1, c2)


@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("T,N,I,H", [(6, 5, 7, 19),       # I <= 128 from 4 rows
                                     (4, 33, 200, 24),    # I <= 256 from 32 rows
                                     (3, 9, 128, 130),    # a ragged last unit block
                                     (40, 120, 16, 8),    # 4800 rows (else the GEMM)
                                     (70, 60, 300, 32),   # the GEMM (fused on AVX-512)
                                     (70, 60, 520, 32),   # the GEMM, gx gate-blocked
                                     (46, 90, 530, 48)])  # 4140 rows, blocked or not
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, "mixed"], ids=["full", "lengths"])
def test_inference_projection_paths(cell, reset_after, proj, T, N, I, H, reverse, lengths):
    """Inference with a narrow input and at least four rows computes the input projection
    inside each time step (FN(forward)'s fuse_x); a wide input over many rows, with
    the GEMM before the time loop into gx stored gate-blocked (gx_blocked, where the
    SIMD panel width divides H: 32 divides it for every build; without lengths).
    Training projects with the gate tiles or the GEMM into gx's row layout. With lengths
    only the valid steps are projected, on every path. Every element is one chain over k
    from zero on every path, so inference is bitwise training's forward, with and
    without packed weights, in float64 and float32, and float64 agrees with the
    reference."""
    for dtype in (np.float64, np.float32):
        prob = make_problem(cell, T, N, I, H, proj=proj, lengths=lengths, seed=T + N,
                            dtype=dtype)
        args = (cell, prob["x"], prob["h0"], prob["c0"], prob["w_ih"], prob["w_hh"],
                prob["b_ih"], prob["b_hh"], prob["w_hr"], prob["lengths"], reverse,
                reset_after)
        pack = cpu.pack_weights(cell, prob["w_ih"], prob["w_hh"], prob["w_hr"], reset_after)
        trained = cpu.layer_forward(*args, True)[:3]
        for kw in ({}, {"packed": pack}):
            inferred = cpu.layer_forward(*args, False, **kw)[:3]
            for a, b in zip(inferred, trained):
                if b is not None:
                    np.testing.assert_array_equal(a, b)
        if dtype == np.float64:
            want = ref.layer_forward(*args, True)[:3]
            assert_f64_agree(dict(zip(("y", "h_n", "c_n"), inferred)),
                             dict(zip(("y", "h_n", "c_n"), want)), f"{cell} {T, N, I, H}")


def test_empty_batch():
    for cell, reset_after, proj in VARIANTS:
        prob = make_problem(cell, 4, 0, 3, 5, proj=proj, seed=10)
        dy, dh_n, dc_n = upstream(cell, 4, 0, 5, proj or 5)
        got = run(cpu, cell, prob, False, reset_after, dy, dh_n, dc_n)
        assert got["y"].shape == (4, 0, proj or 5)
        assert not np.any(got["d_weight_ih"]) and not np.any(got["d_weight_hh"])


def test_outputs_do_not_alias_the_cache():
    prob = make_problem("lstm", 5, 3, 4, 6, seed=11)
    y, h_n, c_n, cache = cpu.layer_forward("lstm", prob["x"], prob["h0"], prob["c0"],
                                           prob["w_ih"], prob["w_hh"], prob["b_ih"],
                                           prob["b_hh"], None, None, False, True, True)
    dy, dh_n, dc_n = upstream("lstm", 5, 3, 6, 6)
    before = cpu.layer_backward(cache, dy, dh_n, dc_n)
    y[...] = np.nan
    h_n[...] = np.nan
    c_n[...] = np.nan
    after = cpu.layer_backward(cache, dy, dh_n, dc_n)
    for k, v in before.items():
        if v is not None:
            np.testing.assert_array_equal(v, after[k])


def test_bitwise_identical_across_thread_counts():
    from rnnfast import _config
    saved = _config._num_threads
    try:
        for cell, reset_after, proj in VARIANTS:
            prob = make_problem(cell, 12, 6, 40, 96, proj=proj and 17, lengths="mixed", seed=12)
            dy, dh_n, dc_n = upstream(cell, 12, 6, 96, (proj and 17) or 96)
            results = []
            for n in (1, 2, 3, 5):
                _config.set_num_threads(n)
                results.append(run(cpu, cell, prob, True, reset_after, dy, dh_n, dc_n))
            for other in results[1:]:
                for k, v in results[0].items():
                    if v is not None:
                        assert np.array_equal(v, other[k]), f"{cell}: {k} differs with threads"
    finally:
        _config._num_threads = saved


@pytest.mark.parametrize("variant", VARIANTS)
def test_bitwise_identical_across_decompositions(variant):
    """Splitting the time loop by sequences (no barrier per step) or by hidden units
    gives exactly the single-thread results, with and without lengths."""
    from rnnfast import _config
    cell, reset_after, proj = variant
    saved = _config._num_threads
    try:
        for lengths in (None, "mixed"):
            prob = make_problem(cell, 9, 37, 21, 45, proj=proj and 11, lengths=lengths,
                                seed=13)
            dy, dh_n, dc_n = upstream(cell, 9, 37, 45, (proj and 11) or 45)
            _config.set_num_threads(1)
            want = run(cpu, cell, prob, True, reset_after, dy, dh_n, dc_n)
            for mode in ("units", "batch", "auto"):
                for n in (2, 3):
                    cpu._kernels.set_decomposition(mode)
                    _config.set_num_threads(n)
                    got = run(cpu, cell, prob, True, reset_after, dy, dh_n, dc_n)
                    for k, v in want.items():
                        assert (v is None and got[k] is None) or np.array_equal(v, got[k]), \
                            f"{cell}: {k} differs ({mode}, {n} threads, lengths={lengths})"
    finally:
        cpu._kernels.set_decomposition("auto")
        _config._num_threads = saved


def test_set_decomposition_rejects_unknown_modes():
    with pytest.raises(ValueError, match="units"):
        cpu._kernels.set_decomposition("rows")
    assert cpu._kernels.get_decomposition() == "auto"


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("variant", VARIANTS)
def test_direction_pair_bitwise_equal_to_one_after_the_other(variant, dtype, monkeypatch):
    """layer_forward_pair / layer_backward_pair (both directions at once, one thread
    each) give exactly the results of the two directions run one after the other."""
    from rnnfast import _config
    cell, reset_after, proj = variant
    T, N, I, H = 11, 5, 24, 40
    P = (proj and 13) or H
    probs = [make_problem(cell, T, N, I, H, proj=proj and 13, lengths="mixed", seed=s,
                          dtype=dtype) for s in (31, 32)]
    probs[1]["x"], probs[1]["lengths"] = probs[0]["x"], probs[0]["lengths"]
    ups = [upstream(cell, T, N, H, P, seed=s, dtype=dtype) for s in (41, 42)]
    kws = [dict(cell=cell, x=p["x"], h0=p["h0"], c0=p["c0"], w_ih=p["w_ih"],
                w_hh=p["w_hh"], b_ih=p["b_ih"], b_hh=p["b_hh"], w_hr=p["w_hr"],
                lengths=p["lengths"], reverse=bool(d), reset_after=reset_after,
                training=True) for d, p in enumerate(probs)]
    saved = _config._num_threads
    calls = []
    real_fwd, real_bwd = cpu._kernels.forward_pair, cpu._kernels.backward_pair
    monkeypatch.setattr(cpu._kernels, "forward_pair",
                        lambda *a: (calls.append("f"), real_fwd(*a))[1])
    monkeypatch.setattr(cpu._kernels, "backward_pair",
                        lambda *a: (calls.append("b"), real_bwd(*a))[1])
    try:
        _config.set_num_threads(1)
        want = []
        for kw, (dy, dh_n, dc_n) in zip(kws, ups):
            y, h_n, c_n, cache = cpu.layer_forward(**kw)
            want.append(((y, h_n, c_n), cpu.layer_backward(cache, dy, dh_n, dc_n)))
        _config.set_num_threads(2)
        pair = cpu.layer_forward_pair(kws[0], kws[1])
        grads = cpu.layer_backward_pair(*[(out[3],) + up for out, up in zip(pair, ups)])
    finally:
        _config._num_threads = saved
    if cpu._kernels.openmp_enabled() and cpu._kernels.openmp_max_threads() >= 2:
        assert calls == ["f", "b"]
    for d in range(2):
        for a, b in zip(want[d][0], pair[d][:3]):
            assert (a is None and b is None) or np.array_equal(a, b), f"direction {d}"
        for k, v in want[d][1].items():
            assert (v is None and grads[d][k] is None) or np.array_equal(v, grads[d][k]), \
                f"direction {d}: {k}"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    variant=st.sampled_from(VARIANTS),
    T=st.integers(1, 9), N=st.integers(0, 6), I=st.integers(1, 20), H=st.integers(1, 40),
    reverse=st.booleans(), bias=st.booleans(), use_lengths=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_hypothesis_shapes_and_options(variant, T, N, I, H, reverse, bias, use_lengths, seed):
    cell, reset_after, proj = variant
    proj = min(proj, H - 1) if proj else 0
    prob = make_problem(cell, T, N, I, H, proj=proj, bias=bias, seed=seed)
    if use_lengths:
        prob["lengths"] = np.random.default_rng(seed).integers(0, T + 1, N).astype(np.int64)
    dy, dh_n, dc_n = upstream(cell, T, N, H, proj or H, seed=seed + 1)
    want = run(ref, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
    got = run(cpu, cell, prob, reverse, reset_after, dy, dh_n, dc_n)
    assert_f64_agree(got, want, f"{variant} T={T} N={N} I={I} H={H}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (False, True), (True, False), (True, True)])
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (7, 13, 5), (100, 70, 300), (37, 515, 400)])
def test_gemm_matches_numpy(dtype, ta, tb, m, n, k):
    from rnnfast._cpu import _kernels
    rng = np.random.default_rng(m * n + k)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    want = (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)
    tol = (1e-4 if dtype == np.float32 else 1e-12) * max(1.0, np.abs(want).max())
    for accumulate in (False, True):
        c = c0.copy()
        _kernels.gemm(a, b, c, trans_a=ta, trans_b=tb, accumulate=accumulate, nthreads=2)
        expected = want + (c0 if accumulate else 0)
        assert np.max(np.abs(c - expected)) <= tol


@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
def test_prepacked_weights_give_identical_results(cell, reset_after, proj):
    prob = make_problem(cell, 7, 5, 9, 19, proj=proj, lengths="mixed", seed=13)
    pack = cpu.pack_weights(cell, prob["w_ih"], prob["w_hh"], prob["w_hr"], reset_after)
    args = (cell, prob["x"], prob["h0"], prob["c0"], prob["w_ih"], prob["w_hh"],
            prob["b_ih"], prob["b_hh"], prob["w_hr"], prob["lengths"], True, reset_after, False)
    plain = cpu.layer_forward(*args)
    packed = cpu.layer_forward(*args, packed=pack)
    for a, b in zip(plain[:3], packed[:3]):
        if a is not None:
            np.testing.assert_array_equal(a, b)
    other = cpu.pack_weights(cell, prob["w_ih"][:, :-1].copy(), prob["w_hh"], prob["w_hr"],
                             reset_after)
    with pytest.raises(ValueError, match="packed weights"):
        cpu.layer_forward(*args, packed=other)


@pytest.mark.parametrize("cell,reset_after,proj", VARIANTS, ids=lambda v: str(v))
@pytest.mark.parametrize("N", [4, 7, 29])
def test_batch_invariance_bitwise(cell, reset_after, proj, N):
    """A sequence's outputs, final state and input gradient are bitwise the same whether
    it runs alone or inside any batch (every output is summed in an order fixed by the
    shape of the weights, never by the batch size or the thread count)."""
    prob = make_problem(cell, 9, N, 24, 40, proj=proj, lengths="mixed", seed=N)
    P = proj or 40
    dy, dh_n, dc_n = upstream(cell, 9, N, 40, P, seed=N + 1)
    whole = run(cpu, cell, prob, True, reset_after, dy, dh_n, dc_n)
    for n in (0, N // 2, N - 1):
        alone = dict(prob)
        alone["x"] = prob["x"][:, n:n + 1].copy()
        alone["h0"] = prob["h0"][n:n + 1].copy()
        alone["c0"] = None if prob["c0"] is None else prob["c0"][n:n + 1].copy()
        alone["lengths"] = prob["lengths"][n:n + 1].copy()
        one = run(cpu, cell, alone, True, reset_after, dy[:, n:n + 1].copy(),
                  dh_n[n:n + 1].copy(), None if dc_n is None else dc_n[n:n + 1].copy())
        assert np.array_equal(one["y"][:, 0], whole["y"][:, n])
        assert np.array_equal(one["h_n"][0], whole["h_n"][n])
        assert np.array_equal(one["d_x"][:, 0], whole["d_x"][:, n])
        assert np.array_equal(one["d_h0"][0], whole["d_h0"][n])


@pytest.mark.parametrize("cell,reset_after", [("lstm", True), ("gru", True), ("gru", False),
                                              ("rnn_tanh", True)])
@pytest.mark.parametrize("N", [3, 4, 5, 7, 8, 9, 10, 11, 16, 17])
def test_row_tiles_with_leftover_rows(cell, reset_after, N):
    """Hidden and input sizes over one k-slice of the gate tiles (128 floats on AVX2, 64
    on AVX-512), so the per-step products go slice by slice, with batches that leave rows
    after the full row tiles. AVX2: LSTM 3-row tiles, 5 = 3+2, 8 = 3+3+2, 10 = 9+1,
    11 = 9+2; GRU 4-row tiles, 10 = 8+2, 11 = 8+3; LSTM batches of 4 and 7 take 4-row
    tiles of three gate vectors across each group of three unit blocks, then 3 rows.
    AVX-512 (6-row tiles): the 2-5 rows left over (3, 4, 5, 9 = 6+3, 10 = 6+4,
    11 = 6+5, 16 = 12+4, 17 = 12+5) run in one tile, in the gate products, the vanilla
    RNN's and the backward's wide products; 7 = 6+1 runs its last row against the group.
    Each sequence alone is bitwise its row of the batch, and float64 agrees with the
    reference."""
    prob = make_problem(cell, 4, N, 136, 160, seed=N)
    dy, dh_n, dc_n = upstream(cell, 4, N, 160, 160, seed=N + 1)
    whole = run(cpu, cell, prob, False, reset_after, dy, dh_n, dc_n)
    assert_f64_agree(whole, run(ref, cell, prob, False, reset_after, dy, dh_n, dc_n),
                     f"{cell} N={N}")
    for n in (0, N - 2, N - 1):
        alone = dict(prob, x=prob["x"][:, n:n + 1].copy(), h0=prob["h0"][n:n + 1].copy(),
                     c0=None if prob["c0"] is None else prob["c0"][n:n + 1].copy())
        one = run(cpu, cell, alone, False, reset_after, dy[:, n:n + 1].copy(),
                  dh_n[n:n + 1].copy(), None if dc_n is None else dc_n[n:n + 1].copy())
        assert np.array_equal(one["y"][:, 0], whole["y"][:, n])
        assert np.array_equal(one["h_n"][0], whole["h_n"][n])
        assert np.array_equal(one["d_x"][:, 0], whole["d_x"][:, n])


@pytest.mark.parametrize("cell,reset_after", [("lstm", True), ("gru", True), ("gru", False),
                                              ("rnn_tanh", True), ("rnn_relu", True)])
@pytest.mark.parametrize("T,N,I,H", [(13, 320, 400, 16),    # T*N = 4160, I > one KC block
                                     (13, 100, 1100, 64)])  # 1300 rows, G*H*I >= 65536
def test_batch_invariance_across_projection_paths(cell, reset_after, T, N, I, H):
    """Without lengths a large batch (4096 rows, or 1024 and a product that is not
    tiny) projects its inputs with the GEMM, a single sequence with the gate tiles:
    both sum each output in one sequential chain, so the results are bitwise equal."""
    prob = make_problem(cell, T, N, I, H, seed=3)
    dy, dh_n, dc_n = upstream(cell, T, N, H, H, seed=4)
    whole = run(cpu, cell, prob, False, reset_after, dy, dh_n, dc_n)
    n = 17
    alone = dict(prob, x=prob["x"][:, n:n + 1].copy(), h0=prob["h0"][n:n + 1].copy(),
                 c0=None if prob["c0"] is None else prob["c0"][n:n + 1].copy())
    one = run(cpu, cell, alone, False, reset_after, dy[:, n:n + 1].copy(),
              dh_n[n:n + 1].copy(), None if dc_n is None else dc_n[n:n + 1].copy())
    assert np.array_equal(one["y"][:, 0], whole["y"][:, n])
    assert np.array_equal(one["d_x"][:, 0], whole["d_x"][:, n])
