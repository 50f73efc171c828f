"""ONNX semantics options on the layers and the functional API: configuration, repr,
parameters, state_dict / save / load round trips, validation messages, and a
Hypothesis test that random option combinations either raise ValueError / TypeError
or agree with the reference."""
import json
import math
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import rnnfast
from rnnfast import functional as F
from test_semantics_common import NUM_ACTS, make, rel_err, run

OPTS = dict(activations=["HardSigmoid", "Elu", "Softsign"], activation_alpha=[0.3, None, 1.0],
            clip=1.5, input_forget=True, peephole=True)


def test_lstm_layer_config_params_and_repr():
    m = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=0, **OPTS)
    assert m.activations == ["HardSigmoid", "Elu", "Softsign"]
    assert m.activation_alpha == [0.3, 1.0, 1.0] and m.activation_beta == [0.5, 0.0, 0.0]
    assert m.clip == 1.5 and m.input_forget and m.peephole
    names = [n for n, _ in m.named_parameters()]
    assert "weight_peep_l0" in names and "weight_peep_l1_reverse" in names
    assert names.index("weight_peep_l0") == names.index("weight_hr_l0") + 1
    assert m.weight_peep_l1.shape == (12,) and not np.any(m.weight_peep_l1)
    r = repr(m)
    for piece in ("activations=['HardSigmoid', 'Elu', 'Softsign']", "clip=1.5",
                  "input_forget=True", "peephole=True"):
        assert piece in r
    assert [len(g) for g in m.all_weights] == [6] * 4
    # without peepholes the other parameters are the same draws
    plain = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, proj_size=2, seed=0)
    for n, p in plain.named_parameters():
        np.testing.assert_array_equal(p, getattr(m, n))
    assert repr(plain) == "LSTM(3, 4, proj_size=2, num_layers=2, bidirectional=True)"


@pytest.mark.parametrize("cls,kw", [
    (rnnfast.LSTM, OPTS),
    (rnnfast.GRU, dict(activations=["Softsign", "ScaledTanh"], activation_beta=[None, 0.7],
                       clip=0.8, reset_after=False)),
    (rnnfast.RNN, dict(activations=["LeakyRelu", "Tanh"], activation_alpha=[0.2],
                       clip=3.0, bidirectional=True)),
])
@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_save_load_state_dict_round_trip(tmp_path, cls, kw, backend):
    m = cls(3, 4, dtype=np.float64, seed=1, backend=backend, **kw)
    if m.peephole:
        m.load_state_dict({**m.state_dict(), "weight_peep_l0": np.linspace(-1, 1, 12)})
    x = np.random.default_rng(0).standard_normal((6, 2, 3))
    y = m(x)[0]
    path = tmp_path / "m.npz"
    m.save(path)
    with zipfile.ZipFile(path) as zf:
        cfg = json.loads(str(np.load(zf.open("__rnnfast_config__.npy"))))
    assert cfg["format_version"] == 2 and cfg["activations"] == m.activations
    m2 = rnnfast.nn.load(path, backend=backend)
    assert type(m2) is cls and repr(m2) == repr(m)
    for k in ("activations", "activation_alpha", "activation_beta", "clip",
              "input_forget", "peephole"):
        assert getattr(m2, k) == getattr(m, k)
    np.testing.assert_array_equal(m2(x)[0], y)
    m3 = cls(3, 4, dtype=np.float64, seed=2, backend=backend, **kw)
    m3.load_state_dict(m.state_dict())
    np.testing.assert_array_equal(m3(x)[0], y)
    m.eval()
    np.testing.assert_array_equal(m(x)[0], y)     # eval (no packed weights here)


def test_default_layers_keep_format_1(tmp_path):
    m = rnnfast.GRU(2, 3)
    m.save(tmp_path / "g.npz")
    with zipfile.ZipFile(tmp_path / "g.npz") as zf:
        cfg = json.loads(str(np.load(zf.open("__rnnfast_config__.npy"))))
    assert cfg["format_version"] == 1 and "activations" not in cfg


def test_layer_backward_returns_peephole_gradient():
    m = rnnfast.LSTM(3, 4, dtype=np.float64, seed=0, peephole=True)
    m.weight_peep_l0 = np.full(12, 0.3)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))
    y, _ = m(x)
    _, _, grads = m.backward(np.ones_like(y))
    assert grads["weight_peep_l0"].shape == (12,) and np.any(grads["weight_peep_l0"])
    ref = rnnfast.LSTM(3, 4, dtype=np.float64, seed=0, peephole=True, backend="reference")
    ref.load_state_dict(m.state_dict())
    yr, _ = ref(x)
    _, _, gr = ref.backward(np.ones_like(yr))
    for k in grads:
        assert rel_err(grads[k], gr[k]) <= 1e-12


def test_layer_file_with_bad_options_is_rejected(tmp_path):
    m = rnnfast.LSTM(2, 3, clip=1.0)
    path = tmp_path / "m.npz"
    m.save(path)
    data = dict(np.load(path))
    cfg = json.loads(str(data["__rnnfast_config__"]))
    cfg["clip"] = -1.0
    data["__rnnfast_config__"] = np.array(json.dumps(cfg))
    np.savez(tmp_path / "bad.npz", **data)
    with pytest.raises(ValueError, match="clip"):
        rnnfast.nn.load(tmp_path / "bad.npz")


@pytest.mark.parametrize("kw,exc,words", [
    (dict(activations=["Sigmoid", "Tanhh", "Tanh"]), ValueError, ["activations[1]", "Tanhh"]),
    (dict(activations=["Sigmoid", "Tanh"]), ValueError, ["'activations'", "3", "got 2"]),
    (dict(activations="Tanh"), TypeError, ["'activations'"]),
    (dict(activations=["Sigmoid", 3, "Tanh"]), TypeError, ["activations[1]"]),
    (dict(activations=["Sigmoid", "Tanh", "Tanh"], activation_alpha=[1, 2, 3, 4]),
     ValueError, ["'activation_alpha'"]),
    (dict(activations=["Sigmoid", "Tanh", "Tanh"], activation_beta=["x"]), TypeError,
     ["activation_beta[0]"]),
    (dict(activations=["Sigmoid", "Tanh", "Tanh"], activation_alpha=[float("nan")]),
     ValueError, ["activation_alpha[0]"]),
    (dict(activation_alpha=[0.1]), ValueError, ["'activation_alpha'", "'activations'"]),
    (dict(clip=0.0), ValueError, ["'clip'"]),
    (dict(clip=-1), ValueError, ["'clip'"]),
    (dict(clip=float("nan")), ValueError, ["'clip'"]),
    (dict(clip="1"), TypeError, ["'clip'"]),
    (dict(clip=True), TypeError, ["'clip'"]),
    (dict(input_forget=1), TypeError, ["'input_forget'"]),
    (dict(peephole="yes"), TypeError, ["'peephole'"]),
])
def test_validation_messages_lstm(kw, exc, words):
    for call in (lambda: rnnfast.LSTM(2, 3, **kw),
                 lambda: F.rnn_forward("LSTM", np.zeros((2, 1, 2)),
                                       F.param_shapes("LSTM", 2, 3) and {},
                                       num_layers=1, hidden_size=3, **kw)):
        with pytest.raises(exc) as info:
            call()
        for w in words:
            assert w in str(info.value), (w, str(info.value))


@pytest.mark.parametrize("cls", [rnnfast.RNN, rnnfast.GRU])
@pytest.mark.parametrize("opt", ["peephole", "input_forget"])
def test_lstm_only_options(cls, opt):
    with pytest.raises(ValueError, match=f"'{opt}' is only supported for LSTM"):
        cls(2, 3, **{opt: True})
    mode = "GRU" if cls is rnnfast.GRU else "RNN_TANH"
    with pytest.raises(ValueError, match=f"'{opt}' is only supported for LSTM"):
        F.rnn_forward(mode, np.zeros((2, 1, 2)), {}, num_layers=1, hidden_size=3,
                      **{opt: True})
    with pytest.raises(ValueError, match="'peephole' is only supported for LSTM"):
        F.param_shapes(mode, 2, 3, peephole=True)


def test_bidirectional_activation_counts():
    x = np.zeros((2, 1, 2))
    params = {k: np.zeros(s) for k, s in
              F.param_shapes("GRU", 2, 3, bidirectional=True).items()}
    for acts in (["Sigmoid", "Tanh"], ["Sigmoid", "Tanh", "HardSigmoid", "Softsign"]):
        F.rnn_forward("GRU", x, params, num_layers=1, hidden_size=3, bidirectional=True,
                      activations=acts)
    with pytest.raises(ValueError, match="2 \\(both directions\\) or 4"):
        F.rnn_forward("GRU", x, params, num_layers=1, hidden_size=3, bidirectional=True,
                      activations=["Sigmoid", "Tanh", "Tanh"])


def test_peephole_params_are_required():
    x = np.zeros((2, 1, 2))
    params = {k: np.zeros(s) for k, s in F.param_shapes("LSTM", 2, 3).items()}
    with pytest.raises(ValueError, match="missing 'weight_peep_l0'.*peephole=True"):
        F.rnn_forward("LSTM", x, params, num_layers=1, hidden_size=3, peephole=True)
    with pytest.raises(ValueError, match="weight_peep_l0: expected shape \\(9,\\)"):
        F.rnn_forward("LSTM", x, {**params, "weight_peep_l0": np.zeros(3)}, num_layers=1,
                      hidden_size=3, peephole=True)


def test_infinite_clip_is_no_clip():
    params, x, hx = make("LSTM", H=3)
    a = F.rnn_forward("LSTM", x, params, num_layers=1, hidden_size=3, hx=hx)
    b = F.rnn_forward("LSTM", x, params, num_layers=1, hidden_size=3, hx=hx,
                      clip=math.inf)
    np.testing.assert_array_equal(a.y, b.y)


def test_default_activation_lists_use_the_fast_path():
    """Spelling out the defaults gives bitwise the default results (same kernels)."""
    for mode, acts in (("LSTM", ["sigmoid", "TANH", "Tanh"]), ("GRU", ["Sigmoid", "Tanh"]),
                       ("RNN_TANH", ["Relu"])):
        params, x, hx = make(mode, H=3)
        a = F.rnn_forward(mode, x, params, num_layers=1, hidden_size=3, hx=hx,
                          activations=acts)
        want_mode = "RNN_RELU" if mode == "RNN_TANH" else mode
        b = F.rnn_forward(want_mode, x, params, num_layers=1, hidden_size=3, hx=hx)
        np.testing.assert_array_equal(a.y, b.y)


ACT_NAMES = ["Relu", "Tanh", "Sigmoid", "Affine", "LeakyRelu", "ThresholdedRelu",
             "ScaledTanh", "HardSigmoid", "Elu", "Softsign", "Softplus", "sigmoid",
             "Bogus", 7]


BAD_OPTIONS = [
    dict(activations=["Nope"]), dict(activations="Tanh"), dict(activations=[7]),
    dict(activations=["Tanh"] * 5), dict(activation_alpha=["a"]),
    dict(activation_alpha=[float("inf")]), dict(clip=-1.0), dict(clip=0.0),
    dict(clip=float("nan")), dict(clip="1"), dict(input_forget=1), dict(peephole="x"),
    dict(input_forget=True, _non_lstm=True), dict(peephole=True, _non_lstm=True),
]


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data(), mode=st.sampled_from(["RNN_TANH", "RNN_RELU", "GRU", "LSTM"]),
       bidir=st.booleans(), use_acts=st.booleans(), both_dirs=st.booleans(),
       clip=st.one_of(st.none(), st.floats(0.05, 5), st.just(float("inf"))),
       input_forget=st.booleans(), peephole=st.booleans(),
       bad=st.one_of(st.none(), st.none(), st.none(), st.sampled_from(BAD_OPTIONS)),
       lengths=st.one_of(st.none(), st.lists(st.integers(0, 4), min_size=2, max_size=2)),
       reset_after=st.booleans())
def test_random_option_combinations(data, mode, bidir, use_acts, both_dirs, clip,
                                    input_forget, peephole, bad, lengths, reset_after):
    """Valid combinations agree with the reference; a quarter of the draws carry one
    invalid option, which must raise ValueError / TypeError in both backends."""
    K = NUM_ACTS[mode]
    opts = dict(clip=clip)
    if mode == "LSTM":
        opts.update(input_forget=input_forget, peephole=peephole)
    if use_acts:
        n = K * (2 if bidir and both_dirs else 1)
        opts["activations"] = data.draw(st.lists(st.sampled_from(ACT_NAMES[:11]),
                                                 min_size=n, max_size=n))
        opts["activation_alpha"] = data.draw(st.one_of(st.none(), st.lists(
            st.one_of(st.none(), st.floats(-2, 2)), max_size=n)))
        opts["activation_beta"] = data.draw(st.one_of(st.none(), st.lists(
            st.one_of(st.none(), st.floats(-2, 2)), max_size=n)))
    if bad is not None:
        bad = dict(bad)
        if bad.pop("_non_lstm", False) and mode == "LSTM":
            mode = "GRU"
        if "activation_alpha" in bad and "activations" not in opts:
            opts["activations"] = ["Tanh"] * K
        opts.update(bad)
        opts = {k: v for k, v in opts.items()
                if mode == "LSTM" or k not in ("input_forget", "peephole") or k in bad}
    extra = {"reset_after": reset_after} if mode == "GRU" else {}
    peep = mode == "LSTM" and opts.get("peephole") is True
    COUNTS["drawn"] += 1
    try:
        params, x, hx = make(mode, T=4, N=2, I=2, H=3, bidir=bidir, peephole=peep)
        want = run(mode, params, x, hx, "reference", H=3, bidir=bidir, lengths=lengths,
                   **opts, **extra)
    except (ValueError, TypeError):
        assert bad is not None, opts
        with pytest.raises((ValueError, TypeError)):
            params, x, hx = make(mode, T=4, N=2, I=2, H=3, bidir=bidir, peephole=peep)
            run(mode, params, x, hx, "cpu", H=3, bidir=bidir, lengths=lengths, **opts,
                **extra)
        return
    assert bad is None, opts
    COUNTS["valid"] += 1
    got = run(mode, params, x, hx, "cpu", H=3, bidir=bidir, lengths=lengths, **opts,
              **extra)
    for k, w in want.items():
        finite = np.isfinite(w)
        assert np.array_equal(finite, np.isfinite(got[k])), k
        if w[finite].size and np.max(np.abs(got[k][finite] - w[finite])) > 1e-14:
            assert rel_err(got[k][finite], w[finite]) <= 1e-12, k


COUNTS = {"drawn": 0, "valid": 0}


def test_random_combinations_were_mostly_exercised():
    """The Hypothesis test above ran with a fair share of valid combinations."""
    if COUNTS["drawn"] == 0:
        pytest.skip("run together with test_random_option_combinations")
    print(f"\nrandom option combinations: {COUNTS['valid']} valid of {COUNTS['drawn']}")
    assert COUNTS["valid"] >= 0.2 * COUNTS["drawn"]
