"""rnnfast's protobuf reader / writer against the onnx package's own serialization."""
import numpy as np
import pytest

import rnnfast
from rnnfast.interop import _proto

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, np.int8, np.uint8,
                                   np.int16, np.uint16, np.int32, np.int64, np.uint32,
                                   np.uint64, np.bool_])
@pytest.mark.parametrize("shape", [(), (0,), (3,), (2, 3, 4)])
def test_tensors_raw_and_typed_fields(dtype, shape):
    rng = np.random.default_rng(0)
    a = (rng.standard_normal(shape) * 50).astype(dtype)
    t = numpy_helper.from_array(a, "t")
    got = _proto.parse_tensor(t.SerializeToString()).to_numpy()
    assert got.dtype == a.dtype and got.shape == a.shape and np.array_equal(got, a)
    # the typed repeated fields (float_data, int32_data, ...) instead of raw_data
    typed = helper.make_tensor("t", t.data_type, shape, a.reshape(-1).tolist()
                               if dtype != np.float16 else a.reshape(-1), raw=False)
    got = _proto.parse_tensor(typed.SerializeToString()).to_numpy()
    assert got.dtype == a.dtype and np.array_equal(got, a)


def test_attributes_and_nodes():
    node = helper.make_node("LSTM", ["X", "W", "", "R"], ["Y"], name="n",
                            activations=["Sigmoid", "Tanh", "Tanh"], clip=2.5,
                            hidden_size=7, activation_alpha=[0.5, -1.0],
                            direction="reverse")
    g = helper.make_graph([node], "g", [], [])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    p = _proto.parse_model(m.SerializeToString())
    assert p.opset_import == {"": 21}
    n = p.graph.node[0]
    assert (n.op_type, n.name, n.input, n.output) == ("LSTM", "n", ["X", "W", "", "R"],
                                                      ["Y"])
    a = n.attrs()
    assert a["activations"].value == [b"Sigmoid", b"Tanh", b"Tanh"]
    assert a["clip"].value == 2.5 and a["hidden_size"].value == 7
    assert a["activation_alpha"].value == [0.5, -1.0]
    assert a["direction"].value == b"reverse"


@pytest.mark.parametrize("opset", [7, 14, 22])
def test_exported_models_pass_the_onnx_checker(opset):
    for layer in (rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, batch_first=True),
                  rnnfast.GRU(3, 4, reset_after=False, dtype=np.float64),
                  rnnfast.RNN(3, 4, nonlinearity="relu", bias=False)):
        data = rnnfast.to_onnx(layer, opset=opset, sequence_lens=True,
                               initial_states=True)
        model = onnx.load_from_string(data)
        onnx.checker.check_model(model, full_check=True)
        assert model.opset_import[0].version == opset
        # the writer's tensors read back identically through onnx
        for t in model.graph.initializer:
            ours = _proto.parse_tensor(t.SerializeToString()).to_numpy()
            assert np.array_equal(ours, numpy_helper.to_array(t))


def test_unknown_fields_are_skipped():
    m = helper.make_model(helper.make_graph([], "g", [], []),
                          opset_imports=[helper.make_opsetid("", 17)],
                          doc_string="doc", producer_name="p")
    m.metadata_props.add(key="k", value="v")
    p = _proto.parse_model(m.SerializeToString())
    assert p.producer_name == "p" and p.opset_import == {"": 17}

