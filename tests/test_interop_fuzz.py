"""Hypothesis fuzzing of the importers: whatever bytes, weight lists or configurations
come in, the only exceptions out are ValueError and TypeError (no crash, no other
exception, no runaway allocation)."""
import os

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rnnfast  # noqa: E402
from rnnfast import interop  # noqa: E402
from rnnfast.interop import _proto  # noqa: E402

# RNNFAST_FUZZ_EXAMPLES raises the count for a long run (the default keeps CI quick)
FUZZ = settings(max_examples=int(os.environ.get("RNNFAST_FUZZ_EXAMPLES", "300")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _models():
    out = []
    for cls, kw in ((rnnfast.LSTM, dict(num_layers=2, bidirectional=True,
                                        batch_first=True)),
                    (rnnfast.GRU, dict(reset_after=False)),
                    (rnnfast.RNN, dict(nonlinearity="relu", bias=False))):
        layer = cls(2, 3, seed=0, **kw)
        out.append(rnnfast.to_onnx(layer, sequence_lens=True, initial_states=True))
    return out


MODELS = _models()


def _load_and_run(data):
    """from_onnx, then one call with small inputs (corrupted shapes surface there)."""
    try:
        model = rnnfast.from_onnx(data)
    except (ValueError, TypeError):
        return
    feeds = {}
    for name in model.input_names:
        if name == "sequence_lens":
            feeds[name] = np.array([2, 1], np.int32)
        elif name.startswith("initial_"):
            feeds[name] = np.zeros((4, 2, 3), np.float32)
        else:
            feeds[name] = np.ones((2, 2, 2), np.float32)
    try:
        model.run(None, feeds)
    except (ValueError, TypeError):
        pass


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data):
    _load_and_run(data)


@FUZZ
@given(st.sampled_from(range(len(MODELS))), st.floats(0, 1))
def test_truncated_models(which, frac):
    data = MODELS[which]
    _load_and_run(data[:int(len(data) * frac)])


@FUZZ
@given(st.sampled_from(range(len(MODELS))),
       st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                min_size=1, max_size=8))
def test_corrupted_models(which, edits):
    data = bytearray(MODELS[which])
    for where, value in edits:
        data[int(where * len(data))] = value
    _load_and_run(bytes(data))


@FUZZ
@given(st.binary(max_size=200))
def test_random_tensor_protos(data):
    try:
        _proto.parse_tensor(data).to_numpy()
    except ValueError:
        pass


def test_huge_claims_are_refused_before_allocation():
    # a tensor claiming 2**40 floats with 4 bytes of data
    t = (_proto._int_field(1, 1 << 20) + _proto._int_field(1, 1 << 20)
         + _proto._int_field(2, 1) + _proto._len_field(9, b"\0" * 4))
    with pytest.raises(ValueError, match="need"):
        _proto.parse_tensor(t).to_numpy()
    # a length-delimited field claiming more bytes than the message holds
    with pytest.raises(ValueError, match="claims"):
        rnnfast.from_onnx(_proto._key(7, 2) + _proto._enc_varint(1 << 40) + b"xx")
    with pytest.raises(ValueError, match="varint"):
        rnnfast.from_onnx(b"\x08" + b"\xff" * 20)


_arrays = st.one_of(
    st.none(), st.integers(-3, 3), st.text(max_size=3),
    st.builds(lambda shape, seed: np.random.default_rng(seed).standard_normal(shape)
              .astype(np.float32),
              st.lists(st.integers(0, 13), min_size=0, max_size=3).map(tuple),
              st.integers(0, 5)),
    st.builds(lambda n: np.zeros(n, dtype=np.int64), st.integers(0, 4)),
)

_keras_config = st.fixed_dictionaries(
    {"units": st.one_of(st.integers(-2, 6), st.floats(), st.none(), st.just(10 ** 12))},
    optional={
        "use_bias": st.one_of(st.booleans(), st.integers(0, 2)),
        "reset_after": st.booleans(),
        "go_backwards": st.booleans(),
        "return_sequences": st.booleans(),
        "return_state": st.one_of(st.booleans(), st.none()),
        "activation": st.one_of(st.sampled_from(["tanh", "relu", "gelu", "linear"]),
                                st.none(), st.integers()),
        "recurrent_activation": st.sampled_from(["sigmoid", "hard_sigmoid", "swish"]),
        "stateful": st.booleans(),
    })


@FUZZ
@given(st.lists(_arrays, max_size=4), _keras_config,
       st.sampled_from(["SimpleRNN", "LSTM", "GRU", "Bidirectional", "Dense", None]))
def test_keras_weights_and_configs(weights, config, class_name):
    try:
        w = interop.from_keras_weights(weights, config, class_name, wrap=True)
    except (ValueError, TypeError):
        return
    x = np.ones((2, 3, w.layer.input_size), dtype=w.layer.dtype)
    w(x, mask=np.array([[1, 1, 0], [1, 0, 0]], bool))


@FUZZ
@given(st.dictionaries(
    st.sampled_from(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0",
                     "weight_hr_l0", "weight_ih_l1", "weight_hh_l0_reverse", "junk"]),
    _arrays, max_size=6),
    st.sampled_from([None, "LSTM", "GRU", "RNN_TANH", "RNN_RELU", "bogus"]))
def test_torch_state_dicts(state_dict, mode):
    try:
        interop.from_torch_state_dict(state_dict, mode)
    except (ValueError, TypeError):
        pass


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["RNN", "LSTM", "GRU"]), st.integers(1, 3), st.integers(1, 4),
       st.booleans(), st.booleans(), st.sampled_from([np.float32, np.float64]))
def test_generated_layers_round_trip_through_every_format(kind, L, H, bi, bias, dtype):
    """Random configurations: to/from torch state dict and ONNX are bitwise."""
    cls = getattr(rnnfast, kind)
    layer = cls(2, H, num_layers=L, bidirectional=bi, bias=bias, dtype=dtype, seed=L)
    sd = interop.to_torch_state_dict(layer)
    again = interop.from_torch_state_dict(sd)
    for (n1, a), (n2, b) in zip(layer.named_parameters(), again.named_parameters()):
        assert n1 == n2 and a.dtype == b.dtype and np.array_equal(a, b)
    model = rnnfast.from_onnx(rnnfast.to_onnx(layer))
    x = np.random.default_rng(0).standard_normal((3, 2, 2)).astype(dtype)
    assert np.array_equal(model(x)[0], layer.eval()(x)[0])
