"""Whole networks: the compiled backend agrees with the reference through the public API.

Every cell x layers 1-3 x bidirectional x batch_first x unbatched x lengths x proj_size
x bias x initial state, forward (y, h_n, c_n) and every gradient (dx, dh0, dc0 and
every parameter), float64 to 1e-12 relative (absolute floor 1e-14), including dropout
between layers with the same masks.
"""
import itertools

import numpy as np
import pytest

import rnnfast

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

REL, ABS_FLOOR = 1e-12, 1e-14


def close(got, want, what):
    assert got.shape == want.shape, what
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    if diff <= ABS_FLOOR:
        return
    rel = diff / float(np.max(np.abs(want)))
    assert rel <= REL, f"{what}: relative difference {rel:.2e}"


def build(kind, backend, **kw):
    cls = {"rnn_tanh": rnnfast.RNN, "rnn_relu": rnnfast.RNN, "lstm": rnnfast.LSTM,
           "gru": rnnfast.GRU, "gru_before": rnnfast.GRU}[kind]
    if kind == "rnn_relu":
        kw["nonlinearity"] = "relu"
    if kind == "gru_before":
        kw["reset_after"] = False
    return cls(dtype=np.float64, seed=7, backend=backend, **kw)


def run_pair(kind, I, H, T, N, *, num_layers=1, bidirectional=False, batch_first=False,
             unbatched=False, lengths=None, proj_size=0, bias=True, with_state=False,
             dropout=0.0, seed=0):
    kw = dict(input_size=I, hidden_size=H, num_layers=num_layers,
              bidirectional=bidirectional, batch_first=batch_first, bias=bias,
              dropout=dropout)
    if proj_size:
        kw["proj_size"] = proj_size
    rng = np.random.default_rng(seed)
    D, P = (2 if bidirectional else 1), (proj_size or H)
    if unbatched:
        x = rng.standard_normal((T, I))
        state_shape, cell_shape = (num_layers * D, P), (num_layers * D, H)
    else:
        x = rng.standard_normal((N, T, I) if batch_first else (T, N, I))
        state_shape, cell_shape = (num_layers * D, N, P), (num_layers * D, N, H)
    hx = None
    if with_state:
        hx = rng.standard_normal(state_shape)
        if kind == "lstm":
            hx = (hx, rng.standard_normal(cell_shape))
    results = []
    for backend in ("cpu", "reference"):
        layer = build(kind, backend, **kw)
        y, state = layer(x, hx, lengths)
        g = np.random.default_rng(seed + 1)
        dy = g.standard_normal(y.shape)
        if kind == "lstm":
            h_n, c_n = state
            dx, (dh0, dc0), grads = layer.backward(dy, g.standard_normal(h_n.shape),
                                                   g.standard_normal(c_n.shape))
            out = {"y": y, "h_n": h_n, "c_n": c_n, "dx": dx, "dh0": dh0, "dc0": dc0}
        else:
            dx, dh0, grads = layer.backward(dy, g.standard_normal(state.shape))
            out = {"y": y, "h_n": state, "dx": dx, "dh0": dh0}
        out.update({"d_" + k: v for k, v in grads.items()})
        results.append(out)
    got, want = results
    assert got.keys() == want.keys()
    for name in want:
        close(got[name], want[name], f"{kind} {name}")
    return got


KINDS = ["rnn_tanh", "rnn_relu", "lstm", "gru", "gru_before"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("num_layers,bidirectional", [(1, False), (2, True), (3, False), (3, True)])
@pytest.mark.parametrize("use_lengths", [False, True])
def test_stacks(kind, num_layers, bidirectional, use_lengths):
    lengths = np.array([6, 1, 4, 6, 3]) if use_lengths else None
    run_pair(kind, 5, 9, 6, 5, num_layers=num_layers, bidirectional=bidirectional,
             lengths=lengths, with_state=True, seed=num_layers)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("batch_first,unbatched", [(True, False), (False, True), (True, True)])
def test_layouts(kind, batch_first, unbatched):
    run_pair(kind, 4, 7, 5, 3, num_layers=2, bidirectional=True, batch_first=batch_first,
             unbatched=unbatched, with_state=unbatched)


@pytest.mark.parametrize("num_layers,bidirectional,lengths",
                         [(1, False, None), (2, True, [5, 2, 5]), (3, True, [1, 1, 4])])
@pytest.mark.parametrize("proj_size", [1, 3])
def test_lstm_projection(num_layers, bidirectional, lengths, proj_size):
    run_pair("lstm", 6, 8, 5, 3, num_layers=num_layers, bidirectional=bidirectional,
             lengths=None if lengths is None else np.array(lengths), proj_size=proj_size,
             with_state=True)


@pytest.mark.parametrize("kind", KINDS)
def test_no_bias_and_no_state(kind):
    run_pair(kind, 3, 6, 4, 2, num_layers=2, bidirectional=True, bias=False)


@pytest.mark.parametrize("kind", KINDS)
def test_degenerate_sizes(kind):
    run_pair(kind, 1, 1, 1, 1)
    run_pair(kind, 1, 1, 1, 1, num_layers=2, bidirectional=True, lengths=np.array([1]))


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_realistic_size(kind):
    run_pair(kind, 64, 96, 20, 12, num_layers=2, bidirectional=True,
             lengths=np.random.default_rng(3).integers(10, 21, 12))


@pytest.mark.parametrize("kind", KINDS)
def test_dropout_between_layers_same_masks(kind):
    # the seed fixes parameters and masks, identically for both backends
    run_pair(kind, 4, 6, 5, 3, num_layers=3, bidirectional=True, dropout=0.4)


def test_every_option_combination_small():
    """A full cross product on tiny sizes: anything the parametrised tests miss."""
    for kind, layers, bidi, bf, lens in itertools.product(
            KINDS, (1, 2), (False, True), (False, True), (None, "mixed")):
        lengths = None if lens is None else np.array([3, 1, 2])
        run_pair(kind, 2, 3, 3, 3, num_layers=layers, bidirectional=bidi, batch_first=bf,
                 lengths=lengths, with_state=True, seed=layers)
