"""Test helper (no tests here): one-node ONNX RNN / GRU / LSTM models from rnnfast parameters.

Parameters use rnnfast's (PyTorch's) gate orders and names; ONNX wants LSTM gates
(i, o, f, c), GRU gates (z, r, h) and peepholes (i, o, f).
"""
import numpy as np

_ORDER = {"lstm": [0, 3, 1, 2], "gru": [1, 0, 2], "rnn": [0]}
_OP = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}


def _reorder(w, cell, H):
    blocks = [w[k * H:(k + 1) * H] for k in range(len(_ORDER[cell]))]
    return np.concatenate([blocks[k] for k in _ORDER[cell]], axis=0)


def onnx_run(cell, x, params, H, *, bidirectional=False, direction=None, layout=0,
             lengths=None, h0=None, c0=None, activations=None, alpha=None, beta=None,
             clip=None, input_forget=False, peephole=False, linear_before_reset=1,
             engine="ort"):
    """Run ONNX Runtime (engine='ort') or onnx's reference evaluator
    (engine='onnx-reference', which supports layout=1 but ignores sequence_lens,
    activations, clip and input_forget) on a one-layer model; x is time-major (T, N, I).

    Returns (Y (T, N, D*H) time-major, Y_h (D, N, H), Y_c or None).
    ``alpha`` / ``beta`` are passed to ONNX as they are (ONNX's own packing).
    """
    import onnx
    from onnx import TensorProto, helper
    if engine == "ort":
        import onnxruntime as ort

    cell = "rnn" if cell.startswith("rnn") else cell
    D = 2 if bidirectional else 1
    sfxs = [f"_l0", "_l0_reverse"][:D]
    W = np.stack([_reorder(params["weight_ih" + s], cell, H) for s in sfxs])
    R = np.stack([_reorder(params["weight_hh" + s], cell, H) for s in sfxs])
    B = np.stack([np.concatenate([_reorder(params["bias_ih" + s], cell, H),
                                  _reorder(params["bias_hh" + s], cell, H)]) for s in sfxs])
    T, N, I = x.shape
    dt = x.dtype
    tp = TensorProto.FLOAT if dt == np.float32 else TensorProto.DOUBLE
    feeds = {"X": x if layout == 0 else np.ascontiguousarray(x.transpose(1, 0, 2)),
             "W": W, "R": R, "B": B}
    inputs = ["X", "W", "R", "B", "", "", ""]
    if lengths is not None:
        feeds["seq"] = np.asarray(lengths, dtype=np.int32)
        inputs[4] = "seq"
    if h0 is not None:
        feeds["h0"] = h0 if layout == 0 else np.ascontiguousarray(h0.transpose(1, 0, 2))
        inputs[5] = "h0"
    if cell == "lstm":
        if c0 is not None:
            feeds["c0"] = c0 if layout == 0 else np.ascontiguousarray(c0.transpose(1, 0, 2))
            inputs[6] = "c0"
        if peephole:
            Pp = np.stack([params["weight_peep" + s] for s in sfxs])
            Pp = np.concatenate([Pp[:, 0:H], Pp[:, 2 * H:3 * H], Pp[:, H:2 * H]], axis=1)
            feeds["P"] = Pp
            inputs.append("P")
    else:
        inputs = inputs[:6]
    while inputs and inputs[-1] == "":
        inputs.pop()
    feeds = {k: np.ascontiguousarray(v, dtype=np.int32 if k == "seq" else dt)
             for k, v in feeds.items()}
    attrs = {"hidden_size": H, "layout": layout,
             "direction": direction or ("bidirectional" if bidirectional else "forward")}
    if activations is not None:
        attrs["activations"] = list(activations)
    if alpha is not None:
        attrs["activation_alpha"] = list(alpha)
    if beta is not None:
        attrs["activation_beta"] = list(beta)
    if clip is not None:
        attrs["clip"] = float(clip)
    if cell == "lstm" and input_forget:
        attrs["input_forget"] = 1
    if cell == "gru":
        attrs["linear_before_reset"] = int(linear_before_reset)
    outs = ["Y", "Y_h"] + (["Y_c"] if cell == "lstm" else [])
    node = helper.make_node(_OP[cell], inputs, outs, **attrs)
    ins = [helper.make_tensor_value_info(k, TensorProto.INT32 if k == "seq" else tp,
                                         list(v.shape)) for k, v in feeds.items()]
    onames = [helper.make_tensor_value_info(o, tp, None) for o in outs]
    graph = helper.make_graph([node], "g", ins, onames)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    model.ir_version = 8
    if engine == "ort":
        sess = ort.InferenceSession(model.SerializeToString(),
                                    providers=["CPUExecutionProvider"])
        res = sess.run(outs, feeds)
    else:
        from onnx.reference import ReferenceEvaluator
        res = ReferenceEvaluator(model).run(outs, feeds)
    Y = res[0]
    if layout == 0:                       # (T, D, N, H)
        Y = Y.transpose(0, 2, 1, 3)
    else:                                 # (N, T, D, H)
        Y = Y.transpose(1, 0, 2, 3)
    Y = Y.reshape(T, N, D * H)
    Yh = res[1] if layout == 0 else res[1].transpose(1, 0, 2)
    Yc = None
    if cell == "lstm":
        Yc = res[2] if layout == 0 else res[2].transpose(1, 0, 2)
    return Y, Yh, Yc
