"""ONNX import / export: rnnfast.from_onnx and rnnfast.to_onnx against ONNX Runtime
(float32; its CPU RNN kernels have no float64), ONNX's reference evaluator (float64),
PyTorch's exporter, and the RNN / GRU / LSTM operator test cases shipped with onnx."""
import glob
import io
import itertools
import os
import warnings

import numpy as np
import pytest

import rnnfast
from rnnfast.interop import _common, _proto

SEM = _common.sem_supported()


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def _layer(mode, dtype=np.float32, seed=0, **kw):
    cls = {"RNN_TANH": rnnfast.RNN, "RNN_RELU": rnnfast.RNN, "LSTM": rnnfast.LSTM,
           "GRU": rnnfast.GRU}[mode]
    if mode == "RNN_RELU":
        kw["nonlinearity"] = "relu"
    layer = cls(3, 5, dtype=dtype, seed=seed, **kw)
    for _, p in layer.named_parameters():   # larger weights exercise the nonlinearities
        p *= 2.0
    return layer.eval()


# ---------------------------------------------------------------------------
# export, checked in ONNX Runtime

EXPORT_CASES = list(itertools.product(
    ["RNN_TANH", "RNN_RELU", "LSTM", "GRU", "GRU_before"],   # GRU_before: reset_after=False
    [1, 2],            # num_layers
    [False, True],     # bidirectional
    [False, True],     # batch_first
))


@pytest.mark.parametrize("mode,L,bi,bf", EXPORT_CASES)
def test_to_onnx_runs_in_onnxruntime(mode, L, bi, bf):
    ort = pytest.importorskip("onnxruntime")
    kw = dict(num_layers=L, bidirectional=bi, batch_first=bf, bias=(L == 1 or bi))
    if mode == "GRU_before":
        mode, kw["reset_after"] = "GRU", False
    layer = _layer(mode, **kw)
    data = rnnfast.to_onnx(layer, sequence_lens=True, initial_states=True)
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    T, N, D = 7, 4, 2 if bi else 1
    x = rng.standard_normal((N, T, 3) if bf else (T, N, 3)).astype(np.float32)
    lengths = np.array([7, 3, 5, 1], dtype=np.int32)
    h0 = rng.standard_normal((L * D, N, 5)).astype(np.float32)
    feeds = {"X": x, "sequence_lens": lengths, "initial_h": h0}
    hx = h0
    if mode == "LSTM":
        c0 = rng.standard_normal((L * D, N, 5)).astype(np.float32)
        feeds["initial_c"], hx = c0, (h0, c0)
    got = sess.run(None, feeds)
    y, st = layer(x, hx, lengths.astype(np.int64))
    want = [y] + (list(st) if isinstance(st, tuple) else [st])
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        # ORT's fast sigmoid / tanh: float32 rounding plus its approximation
        assert _rel(a, b) < 2e-5
    # our own reader runs the exported graph with exactly the layer's arithmetic
    back = rnnfast.from_onnx(data)(**feeds)
    for a, b in zip(back, want):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_is_bitwise(mode, dtype):
    for kw in (dict(num_layers=2, bidirectional=True), dict(bias=False),
               dict(reset_after=False) if mode == "GRU" else dict(batch_first=True)):
        layer = _layer(mode, dtype=dtype, **kw)
        model = rnnfast.from_onnx(rnnfast.to_onnx(layer))
        assert len(model.layers) == layer.num_layers
        D = 2 if layer.bidirectional else 1
        for lyr, sub in enumerate(model.layers):
            assert sub.dtype == dtype and sub.bidirectional == layer.bidirectional
            if mode == "GRU":
                assert sub.reset_after == layer.reset_after
            for d in range(D):
                for k in ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh")
                                                       if layer.bias else ()):
                    a = getattr(layer, _common.param_name(k, lyr, d))
                    b = getattr(sub, _common.param_name(k, 0, d))
                    assert a.dtype == b.dtype and np.array_equal(a, b)
        x = np.random.default_rng(0).standard_normal(
            (2, 6, 3) if layer.batch_first else (6, 2, 3)).astype(dtype)
        y = model(x)[0]
        assert np.array_equal(y, layer(x)[0])


def test_to_onnx_float64_against_onnx_reference():
    onnx_ref = pytest.importorskip("onnx.reference")
    for mode, bi in itertools.product(["RNN_TANH", "LSTM", "GRU"], [False, True]):
        layer = _layer(mode, dtype=np.float64, num_layers=2, bidirectional=bi)
        data = rnnfast.to_onnx(layer)
        x = np.random.default_rng(3).standard_normal((6, 2, 3))
        got = onnx_ref.ReferenceEvaluator(data).run(None, {"X": x})
        y, st = layer(x)
        want = [y] + (list(st) if isinstance(st, tuple) else [st])
        for a, b in zip(got, want):
            assert _rel(a, b) < 1e-12


def test_to_onnx_writes_atomically(tmp_path):
    layer = _layer("GRU")
    path = tmp_path / "gru.onnx"
    data = rnnfast.to_onnx(layer, path)
    assert path.read_bytes() == data
    assert os.listdir(tmp_path) == ["gru.onnx"]
    model = rnnfast.from_onnx(str(path))
    assert model.input_names == ["X"] and model.output_names == ["Y", "Y_h"]


def test_to_onnx_refusals():
    with pytest.raises(ValueError, match="no projection"):
        rnnfast.to_onnx(rnnfast.LSTM(3, 5, proj_size=2))
    with pytest.raises(ValueError, match="opset must be between 7 and 22"):
        rnnfast.to_onnx(rnnfast.GRU(3, 5), opset=23)
    with pytest.raises(TypeError, match="rnnfast RNN, LSTM or GRU"):
        rnnfast.to_onnx("layer")


@pytest.mark.parametrize("opset", [7, 9, 13, 17, 22])
def test_to_onnx_opsets(opset):
    ort = pytest.importorskip("onnxruntime")
    layer = _layer("LSTM", num_layers=2, bidirectional=True)
    data = rnnfast.to_onnx(layer, opset=opset)
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    assert _rel(got[0], layer(x)[0]) < 2e-5


# ---------------------------------------------------------------------------
# import of single-node models, checked in ONNX Runtime / the reference evaluator

def _node_model(op, D, H, I, dtype, attrs, with_b=True, with_seq=False, with_h0=False,
                with_c0=False, layout=0, seed=0, opset=17):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper
    G = {"RNN": 1, "GRU": 3, "LSTM": 4}[op]
    rng = np.random.default_rng(seed)
    et = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inits = [numpy_helper.from_array(rng.uniform(-1, 1, (D, G * H, I)).astype(dtype), "W"),
             numpy_helper.from_array(rng.uniform(-1, 1, (D, G * H, H)).astype(dtype), "R")]
    names = ["X", "W", "R"]
    if with_b:
        inits.append(numpy_helper.from_array(
            rng.uniform(-1, 1, (D, 2 * G * H)).astype(dtype), "B"))
    names.append("B" if with_b else "")
    inputs = [helper.make_tensor_value_info("X", et, None)]
    names.append("sequence_lens" if with_seq else "")
    if with_seq:
        inputs.append(helper.make_tensor_value_info("sequence_lens", TensorProto.INT32,
                                                    None))
    names.append("initial_h" if with_h0 else "")
    if with_h0:
        inputs.append(helper.make_tensor_value_info("initial_h", et, None))
    if op == "LSTM":
        names.append("initial_c" if with_c0 else "")
        if with_c0:
            inputs.append(helper.make_tensor_value_info("initial_c", et, None))
    while names and names[-1] == "":
        names.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    if layout:
        attrs = dict(attrs, layout=layout)
    node = helper.make_node(op, names, outs, hidden_size=H, **attrs)
    graph = helper.make_graph([node], "g", inputs,
                              [helper.make_tensor_value_info(o, et, None) for o in outs],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


SINGLE_NODE = [c for c in itertools.product(
    ["RNN", "GRU", "LSTM"], ["forward", "reverse", "bidirectional"],
    [dict(), dict(linear_before_reset=1)], [False, True]) if c[0] == "GRU" or not c[2]]


@pytest.mark.parametrize("op,direction,extra,with_b", SINGLE_NODE)
def test_from_onnx_single_node_vs_onnxruntime(op, direction, extra, with_b):
    ort = pytest.importorskip("onnxruntime")
    D = 2 if direction == "bidirectional" else 1
    H, I, T, N = 4, 3, 6, 3
    model = _node_model(op, D, H, I, np.float32, dict(direction=direction, **extra),
                        with_b=with_b, with_seq=True, with_h0=True, with_c0=True)
    rng = np.random.default_rng(5)
    feeds = {"X": rng.standard_normal((T, N, I)).astype(np.float32),
             "sequence_lens": np.array([6, 2, 4], np.int32),
             "initial_h": rng.standard_normal((D, N, H)).astype(np.float32)}
    if op == "LSTM":
        feeds["initial_c"] = rng.standard_normal((D, N, H)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    got = rnnfast.from_onnx(model)(**feeds)     # a ModelProto object, read without onnx
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert _rel(a, b) < 2e-5


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_from_onnx_float64_and_layout1_vs_reference(op, direction):
    onnx_ref = pytest.importorskip("onnx.reference")
    D = 2 if direction == "bidirectional" else 1
    H, I, T, N = 4, 3, 5, 2
    rng = np.random.default_rng(8)
    for layout in (0, 1):
        model = _node_model(op, D, H, I, np.float64, dict(direction=direction),
                            with_h0=True, with_c0=True, layout=layout)
        x = rng.standard_normal((T, N, I) if layout == 0 else (N, T, I))
        h0 = rng.standard_normal((D, N, H) if layout == 0 else (N, D, H))
        feeds = {"X": x, "initial_h": h0}
        if op == "LSTM":
            feeds["initial_c"] = rng.standard_normal(h0.shape)
        want = onnx_ref.ReferenceEvaluator(model).run(None, feeds)
        got = rnnfast.from_onnx(model.SerializeToString())(**feeds)
        for a, b in zip(got, want):
            assert a.shape == b.shape
            assert _rel(a, b) < 1e-12


@pytest.mark.parametrize("op", ["RNN", "GRU", "LSTM"])
def test_layout1_with_lengths_matches_layout0(op):
    """layout=1 (which ORT's CPU LSTM refuses) equals layout 0 transposed."""
    D, H, I, T, N = 2, 4, 3, 5, 3
    rng = np.random.default_rng(9)
    m0 = rnnfast.from_onnx(_node_model(op, D, H, I, np.float64,
                                       dict(direction="bidirectional"), with_seq=True,
                                       with_h0=True))
    m1 = rnnfast.from_onnx(_node_model(op, D, H, I, np.float64,
                                       dict(direction="bidirectional"), with_seq=True,
                                       with_h0=True, layout=1))
    x = rng.standard_normal((T, N, I))
    h0 = rng.standard_normal((D, N, H))
    seq = np.array([5, 0, 3], np.int32)
    y0 = m0(X=x, sequence_lens=seq, initial_h=h0)
    y1 = m1(X=x.transpose(1, 0, 2).copy(), sequence_lens=seq,
            initial_h=h0.transpose(1, 0, 2).copy())
    assert np.array_equal(y1[0], y0[0].transpose(2, 0, 1, 3))
    assert np.array_equal(y1[1], y0[1].transpose(1, 0, 2))
    assert np.all(y0[0][3:, :, 2] == 0) and np.all(y0[0][:, :, 1] == 0)


# ---------------------------------------------------------------------------
# graphs from PyTorch's exporter

@pytest.mark.parametrize("name,kw", [
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(num_layers=3)),
    ("GRU", dict(num_layers=2, bidirectional=True)),
    ("GRU", dict(batch_first=True)),
    ("RNN", dict(num_layers=2, nonlinearity="relu", bidirectional=True)),
])
@pytest.mark.parametrize("opset", [9, 14, 17])
@pytest.mark.parametrize("with_state", [False, True])
def test_torch_exported_graphs(name, kw, opset, with_state):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    torch.manual_seed(0)
    m = getattr(torch.nn, name)(3, 5, **kw).eval()
    D = 2 if m.bidirectional else 1
    x = torch.randn(2, 4, 3)
    args = (x,)
    names = ["x"]
    dyn = {"x": {0: "a", 1: "b"}}
    if with_state:
        h0 = torch.randn(m.num_layers * D, 2 if m.batch_first else 4, 5)
        if name == "LSTM":
            args = (x, (h0, torch.randn_like(h0)))
            names += ["h0", "c0"]
            dyn.update(h0={1: "n"}, c0={1: "n"})
        else:
            args = (x, h0)
            names.append("h0")
            dyn.update(h0={1: "n"})
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, args, f, dynamo=False, opset_version=opset,
                          input_names=names, dynamic_axes=dyn)
    model = rnnfast.from_onnx(f.getvalue())
    assert len(model.layers) == m.num_layers
    rng = np.random.default_rng(2)
    for T, N in ((6, 3), (1, 1)):
        xs = rng.standard_normal((N, T, 3) if m.batch_first else (T, N, 3)).astype(
            np.float32)
        targs = [torch.from_numpy(xs)]
        feeds = [xs]
        if with_state:
            h = rng.standard_normal((m.num_layers * D, N, 5)).astype(np.float32)
            feeds.append(h)
            if name == "LSTM":
                c = rng.standard_normal(h.shape).astype(np.float32)
                feeds.append(c)
                targs.append((torch.from_numpy(h), torch.from_numpy(c)))
            else:
                targs.append(torch.from_numpy(h))
        with torch.no_grad():
            yt, st = m(*targs)
        want = [yt] + (list(st) if isinstance(st, tuple) else [st])
        got = model(*feeds)
        assert len(got) == len(want)
        for a, b in zip(got, want):
            assert a.shape == tuple(b.shape)
            assert _rel(a, b.numpy()) < 2e-6


# ---------------------------------------------------------------------------
# ONNX's own operator test cases (onnx/backend/test/data/node/test_{lstm,gru,rnn,...})

def _node_case_dirs(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    base = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    prefixes = ("test_lstm_", "test_gru_", "test_rnn_", "test_simple_rnn_")
    dirs = sorted(d for p in prefixes for d in glob.glob(os.path.join(base, p + "*")))
    if dirs:
        return dirs
    # this onnx install ships the generators but not the data: write the data with
    # them, in the layout of the shipped directories
    from onnx import numpy_helper
    import onnx.backend.test.case.node as node_cases
    import onnx.backend.test.case.node.gru  # noqa: F401  (importing runs the cases)
    import onnx.backend.test.case.node.lstm  # noqa: F401
    import onnx.backend.test.case.node.rnn  # noqa: F401
    out = tmp_path_factory.mktemp("onnx_node_cases")
    dirs = []
    for case in node_cases._NodeTestCases:
        if not case.name.startswith(prefixes):
            continue
        d = out / case.name
        if d.exists():
            continue
        d.mkdir()
        (d / "model.onnx").write_bytes(case.model.SerializeToString())
        for i, (inputs, outputs) in enumerate(case.data_sets):
            ds = d / f"test_data_set_{i}"
            ds.mkdir()
            for j, arr in enumerate(inputs):
                (ds / f"input_{j}.pb").write_bytes(numpy_helper.from_array(
                    arr, case.model.graph.input[j].name).SerializeToString())
            for j, arr in enumerate(outputs):
                (ds / f"output_{j}.pb").write_bytes(numpy_helper.from_array(
                    arr, case.model.graph.output[j].name).SerializeToString())
        dirs.append(str(d))
    return sorted(dirs)


@pytest.fixture(scope="module")
def node_case_dirs(tmp_path_factory):
    return _node_case_dirs(tmp_path_factory)


def _read_pb(path):
    with open(path, "rb") as f:
        data = f.read()
    return _proto.parse_tensor(data).to_numpy()


def test_onnx_operator_test_cases(node_case_dirs):
    assert len(node_case_dirs) >= 15
    ran, skipped, worst = [], [], 0.0
    for d in node_case_dirs:
        name = os.path.basename(d)
        with open(os.path.join(d, "model.onnx"), "rb") as f:
            data = f.read()
        model = rnnfast.from_onnx(data)
        for ds in sorted(glob.glob(os.path.join(d, "test_data_set_*"))):
            ins = [_read_pb(p) for p in sorted(glob.glob(os.path.join(ds, "input_*.pb")))]
            outs = [_read_pb(p) for p in
                    sorted(glob.glob(os.path.join(ds, "output_*.pb")))]
            try:
                got = model(*ins)
            except ValueError as exc:
                # peepholes need the ONNX-semantics options; nothing else may fail
                assert not SEM and "peephole" in str(exc), (name, exc)
                skipped.append(name)
                break
            assert len(got) >= len(outs)
            for a, b in zip(got, outs):
                assert a.shape == b.shape and a.dtype == b.dtype, name
                err = _rel(a, b)
                worst = max(worst, err)
                assert err < (1e-12 if a.dtype == np.float64 else 2e-6), (name, err)
        else:
            ran.append(name)
    print(f"ONNX operator cases: {len(ran)} ran, worst relative difference {worst:.2e}; "
          f"skipped {skipped}")
    assert len(ran) >= len(node_case_dirs) - (0 if SEM else 1)


# ---------------------------------------------------------------------------
# refusals and the runner's input checks

def _glue_model(op_type, **attrs):
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    node = helper.make_node(op_type, ["X"], ["Y"], **attrs)
    g = helper.make_graph([node], "g",
                          [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def test_refuses_unknown_ops_and_attributes():
    with pytest.raises(ValueError, match="operator 'Relu'"):
        rnnfast.from_onnx(_glue_model("Relu"))
    m = _node_model("GRU", 1, 4, 3, np.float32, dict(direction="forward"))
    m.graph.node[0].attribute.append(
        __import__("onnx").helper.make_attribute("some_flag", 1))
    with pytest.raises(ValueError, match="attribute 'some_flag'"):
        rnnfast.from_onnx(m)
    m = _node_model("LSTM", 1, 4, 3, np.float32, dict(direction="sideways"))
    with pytest.raises(ValueError, match="direction='sideways'"):
        rnnfast.from_onnx(m)
    m = _node_model("RNN", 1, 4, 3, np.float32, dict(activations=["Gelu"]))
    with pytest.raises(ValueError, match="activations contains 'Gelu'"):
        rnnfast.from_onnx(m)
    m = _node_model("RNN", 1, 4, 3, np.float32, dict(), opset=5)
    with pytest.raises(ValueError, match="opset 5"):
        rnnfast.from_onnx(m)


def test_refuses_external_data():
    onnx = pytest.importorskip("onnx")
    m = _node_model("GRU", 1, 4, 3, np.float32, dict())
    w = m.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = onnx.TensorProto.EXTERNAL
    e = w.external_data.add()
    e.key, e.value = "location", "weights.bin"
    with pytest.raises(ValueError, match="external file"):
        rnnfast.from_onnx(m.SerializeToString())


def test_float_data_initializers_and_relu_rnn():
    """Initializers stored in float_data / double_data (not raw_data) read the same."""
    onnx = pytest.importorskip("onnx")
    for dtype in (np.float32, np.float64):
        m = _node_model("RNN", 2, 4, 3, dtype, dict(direction="bidirectional",
                                                    activations=["Relu", "Relu"]))
        raw = rnnfast.from_onnx(m)
        for t in m.graph.initializer:
            arr = onnx.numpy_helper.to_array(t)
            t.ClearField("raw_data")
            if dtype == np.float32:
                t.float_data.extend(arr.reshape(-1).tolist())
            else:
                t.double_data.extend(arr.reshape(-1).tolist())
        fd = rnnfast.from_onnx(m)
        assert fd.layers[0].mode == "RNN_RELU"
        for (n1, a), (n2, b) in zip(raw.layers[0].named_parameters(),
                                    fd.layers[0].named_parameters()):
            assert n1 == n2 and np.array_equal(a, b)


def test_runner_input_checks():
    model = rnnfast.from_onnx(rnnfast.to_onnx(_layer("LSTM"), sequence_lens=True))
    x = np.zeros((4, 2, 3), np.float32)
    with pytest.raises(ValueError, match="missing inputs"):
        model(x)
    with pytest.raises(ValueError, match="sequence_lens values must lie in"):
        model(x, np.array([5, 1], np.int32))
    with pytest.raises(TypeError, match="dtype float64"):
        model(x.astype(np.float64), np.array([4, 1], np.int32))
    with pytest.raises(ValueError, match="unknown inputs"):
        model.run(None, {"X": x, "sequence_lens": np.array([4, 1], np.int32), "Z": x})
    with pytest.raises(TypeError, match="must be a path, bytes or an onnx.ModelProto"):
        rnnfast.from_onnx(3.5)


def test_import_rnnfast_imports_no_framework():
    from conftest import run_python
    r = run_python("import sys, rnnfast, rnnfast.interop\n"
                   "print(sorted(m for m in ('torch', 'onnx', 'keras', 'onnxruntime',"
                   " 'tensorflow') if m in sys.modules))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ---------------------------------------------------------------------------
# ONNX semantics options (activations, clip, input_forget, peepholes)

needs_sem = pytest.mark.skipif(not SEM, reason="needs the layers' ONNX-semantics options")

SEM_NODES = [
    ("RNN", dict(activations=["Affine"], activation_alpha=[0.7], activation_beta=[0.1])),
    ("RNN", dict(direction="bidirectional", activations=["LeakyRelu", "Softsign"],
                 activation_alpha=[0.3])),
    ("RNN", dict(activations=["ScaledTanh"], activation_alpha=[1.3],
                 activation_beta=[0.8], clip=1.5)),
    ("GRU", dict(activations=["HardSigmoid", "Softsign"], activation_alpha=[0.3],
                 activation_beta=[0.4])),
    ("GRU", dict(direction="reverse", clip=0.7, linear_before_reset=1)),
    ("GRU", dict(direction="bidirectional", activations=["Sigmoid", "Elu", "Sigmoid",
                                                         "Tanh"], activation_alpha=[0.5])),
    ("LSTM", dict(input_forget=1)),
    ("LSTM", dict(direction="bidirectional", clip=0.9, input_forget=1)),
    ("LSTM", dict(activations=["HardSigmoid", "Softplus", "Relu"])),
    ("LSTM", dict(direction="reverse", activations=["Sigmoid", "ThresholdedRelu", "Tanh"],
                  activation_alpha=[0.2])),
]


@needs_sem
@pytest.mark.parametrize("op,attrs,peephole",
                         [(op, a, p) for op, a in SEM_NODES
                          for p in ([False, True] if op == "LSTM" else [False])])
def test_semantics_nodes_vs_onnxruntime(op, attrs, peephole):
    ort = pytest.importorskip("onnxruntime")
    from onnx import numpy_helper
    D = 2 if attrs.get("direction") == "bidirectional" else 1
    H, I, T, N = 4, 3, 6, 3
    model = _node_model(op, D, H, I, np.float32, attrs, with_seq=True, with_h0=True,
                        with_c0=True)
    rng = np.random.default_rng(11)
    if peephole:
        node = model.graph.node[0]
        while len(node.input) < 7:
            node.input.append("")
        node.input.append("P")
        model.graph.initializer.append(numpy_helper.from_array(
            rng.uniform(-1, 1, (D, 3 * H)).astype(np.float32), "P"))
    feeds = {"X": rng.standard_normal((T, N, I)).astype(np.float32),
             "sequence_lens": np.array([6, 2, 4], np.int32),
             "initial_h": rng.standard_normal((D, N, H)).astype(np.float32)}
    if op == "LSTM":
        feeds["initial_c"] = rng.standard_normal((D, N, H)).astype(np.float32)
    want = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feeds)
    ours = rnnfast.from_onnx(model)
    got = ours(**feeds)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        assert _rel(a, b) < 2e-5
    # export the imported layer again: ONNX Runtime agrees with it as well
    layer = ours.layers[0]
    if attrs.get("direction") != "reverse":
        data = rnnfast.to_onnx(layer, sequence_lens=True, initial_states=True)
        feeds2 = dict(feeds, X=feeds["X"])
        again = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
            None, feeds2)
        y, st = layer(feeds["X"], (feeds["initial_h"], feeds["initial_c"])
                      if op == "LSTM" else feeds["initial_h"],
                      feeds["sequence_lens"].astype(np.int64))
        for a, b in zip(again, [y] + (list(st) if isinstance(st, tuple) else [st])):
            assert _rel(a, b) < 2e-5


@needs_sem
def test_semantics_round_trip_bitwise():
    for dtype in (np.float32, np.float64):
        layer = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=dtype, seed=2,
                             activations=["HardSigmoid", "Elu", "Softsign"],
                             activation_alpha=[0.25, 0.5, None],
                             activation_beta=[0.375, None, None], clip=3.0,
                             input_forget=True, peephole=True)
        rng = np.random.default_rng(0)
        for name, p in layer.named_parameters():
            p[...] = rng.uniform(-1, 1, p.shape)
        layer.eval()
        model = rnnfast.from_onnx(rnnfast.to_onnx(layer))
        for lyr, sub in enumerate(model.layers):
            assert sub.peephole and sub.input_forget and sub.clip == 3.0
            assert [a.lower() for a in sub.activations[:3]] == ["hardsigmoid", "elu",
                                                               "softsign"]
            for d in range(2):
                a = getattr(layer, _common.param_name("weight_peep", lyr, d))
                b = getattr(sub, _common.param_name("weight_peep", 0, d))
                assert np.array_equal(a, b)
        x = rng.standard_normal((5, 2, 3)).astype(dtype)
        assert np.array_equal(model(x)[0], layer(x)[0])


def test_malformed_glue_nodes_raise_value_error():
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def run(node, inits=(), x=np.zeros((2, 3), np.float32)):
        g = helper.make_graph(
            [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, None)],
            [helper.make_tensor_value_info(node.output[0], TensorProto.FLOAT, None)],
            initializer=[numpy_helper.from_array(a, n) for n, a in inits])
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        return rnnfast.from_onnx(m)(x)

    big = np.array([1 << 30, 1 << 30, 1 << 20], np.int64)
    cases = [
        (helper.make_node("Reshape", ["X"], ["Y"]), ()),
        (helper.make_node("Reshape", ["X", "s"], ["Y"]), [("s", np.array([5, -1]))]),
        (helper.make_node("Gather", ["X", "i"], ["Y"]), [("i", np.array([7]))]),
        (helper.make_node("Transpose", ["X"], ["Y"], perm=[0, 0]), ()),
        (helper.make_node("Squeeze", ["X", "a"], ["Y"]), [("a", np.array([0]))]),
        (helper.make_node("ConstantOfShape", ["s"], ["Y"]), [("s", big)]),
        (helper.make_node("Expand", ["X", "s"], ["Y"]), [("s", big)]),
        (helper.make_node("Slice", ["X", "a", "a", "a", "z"], ["Y"]),
         [("a", np.array([0])), ("z", np.array([0]))]),
        (helper.make_node("Cast", ["X"], ["Y"], to=8), ()),
    ]
    for node, inits in cases:
        if node.op_type == "ConstantOfShape":
            g = helper.make_graph([node], "g", [],
                                  [helper.make_tensor_value_info("Y", 1, None)],
                                  initializer=[numpy_helper.from_array(big, "s")])
            m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
            with pytest.raises(ValueError, match="more memory"):
                rnnfast.from_onnx(m)()
            continue
        with pytest.raises(ValueError):
            run(node, inits)


def test_onnx_round_trip_without_onnx_installed():
    """With onnx, onnxruntime, torch and keras made unimportable, export and import
    still work (the protobuf code is rnnfast's own)."""
    from conftest import run_python
    code = (
        "import sys\n"
        "for m in ('onnx', 'onnxruntime', 'torch', 'keras', 'google.protobuf'):\n"
        "    sys.modules[m] = None\n"
        "import numpy as np, rnnfast\n"
        "lstm = rnnfast.LSTM(3, 4, num_layers=2, bidirectional=True, seed=0).eval()\n"
        "model = rnnfast.from_onnx(rnnfast.to_onnx(lstm, sequence_lens=True))\n"
        "x = np.ones((5, 2, 3), np.float32)\n"
        "lens = np.array([5, 2], np.int32)\n"
        "y = model(x, lens)[0]\n"
        "print(np.array_equal(y, lstm(x, None, lens.astype(np.int64))[0]))\n")
    r = run_python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
