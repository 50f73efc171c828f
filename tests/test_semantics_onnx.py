"""ONNX semantics: the reference forward against ONNX Runtime's CPU RNN / GRU / LSTM on
one-node models built with onnx.helper (float32 models; the reference runs in float64
on the same float32 values).  Skipped when onnx / onnxruntime are missing."""
import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from rnnfast import _reference, _validation as _v, functional as F  # noqa: E402
from test_semantics_onnx_models import onnx_run  # noqa: E402
from test_semantics_common import ALL_ACTS, make  # noqa: E402

TOL = 3e-5   # |ort - ref| <= TOL * max(1, max |ref|)
WORST = [0.0]
WORST_CPU = [0.0]
try:
    import rnnfast._cpu  # noqa: F401
    HAVE_CPU = True
except ImportError:
    HAVE_CPU = False
ONNX_MODE = {"rnn": "RNN_TANH", "gru": "GRU", "lstm": "LSTM"}


def compare(cell, *, H=4, bidir=False, lengths=None, layout=0, activations=None,
            alpha=None, beta=None, clip=None, input_forget=False, peephole=False,
            linear_before_reset=1, seed=0, T=5, N=3, scale=0.6, engine="ort"):
    mode = ONNX_MODE[cell]
    params, x, hx = make(mode, T=T, N=N, I=3, H=H, bidir=bidir, peephole=peephole,
                         seed=seed, scale=scale)
    h0, c0 = (hx if cell == "lstm" else (hx, None))
    al, be = (None, None)
    if activations is not None:
        al, be = F.onnx_activation_params(activations, alpha, beta)
    kw = dict(num_layers=1, hidden_size=H, bidirectional=bidir, lengths=lengths,
              backend="reference", activations=activations, activation_alpha=al,
              activation_beta=be, clip=clip, batch_first=layout == 1)
    if cell == "lstm":
        kw.update(input_forget=input_forget, peephole=peephole)
    if cell == "gru":
        kw["reset_after"] = bool(linear_before_reset)
    xin = x.transpose(1, 0, 2) if layout == 1 else x
    out = F.rnn_forward(mode, xin, params, hx=hx, **kw)
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    Y, Yh, Yc = onnx_run(cell, x.astype(np.float32), p32, H, bidirectional=bidir,
                         layout=layout, lengths=lengths, h0=h0.astype(np.float32),
                         c0=None if c0 is None else c0.astype(np.float32),
                         activations=activations, alpha=alpha, beta=beta, clip=clip,
                         input_forget=input_forget, peephole=peephole,
                         linear_before_reset=linear_before_reset, engine=engine)
    y = out.y.transpose(1, 0, 2) if layout == 1 else out.y
    pairs = [(y, Y), (out.h_n, Yh)] + ([(out.c_n, Yc)] if cell == "lstm" else [])
    for want, got in pairs:
        err = float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))
        WORST[0] = max(WORST[0], err)
        assert err <= TOL, f"{cell} vs onnxruntime: {err:.3e}"
    if HAVE_CPU:
        # the compiled float32 path against ONNX Runtime directly
        hx32 = (tuple(v.astype(np.float32) for v in hx) if cell == "lstm"
                else hx.astype(np.float32))
        o32 = F.rnn_forward(mode, xin.astype(np.float32), p32, hx=hx32,
                            **{**kw, "backend": "cpu"})
        y32 = o32.y.transpose(1, 0, 2) if layout == 1 else o32.y
        pairs = [(y32, Y), (o32.h_n, Yh)] + ([(o32.c_n, Yc)] if cell == "lstm" else [])
        for mine, got in pairs:
            err = float(np.max(np.abs(got - mine))) / max(1.0, float(np.max(np.abs(mine))))
            WORST_CPU[0] = max(WORST_CPU[0], err)
            assert err <= TOL, f"{cell} compiled float32 vs onnxruntime: {err:.3e}"


@pytest.mark.parametrize("act", ALL_ACTS, ids=lambda a: a[0])
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_activation(cell, act):
    name, al, be = act
    alpha = [al] if al is not None else None
    beta = [be] if be is not None else None
    if cell == "rnn":
        compare(cell, activations=[name], alpha=alpha, beta=beta)
    elif cell == "gru":
        compare(cell, activations=[name, "Tanh"], alpha=alpha, beta=beta)
        compare(cell, activations=["Sigmoid", name], alpha=alpha, beta=beta)
    else:
        compare(cell, activations=[name, "Tanh", "Tanh"], alpha=alpha, beta=beta)
        compare(cell, activations=["Sigmoid", name, name],
                alpha=None if al is None else [al, al],
                beta=None if be is None else [be, be])


@pytest.mark.parametrize("act", ["Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh",
                                 "HardSigmoid", "Elu"])
def test_default_alpha_beta(act):
    """Missing alpha / beta take ONNX Runtime's defaults (rnnfast._validation)."""
    compare("rnn", activations=[act], scale=1.0)
    compare("lstm", activations=["Sigmoid", act, "Tanh"], scale=1.0)


def test_packed_alpha_beta():
    """ONNX packs alpha / beta over the activations that take them."""
    compare("lstm", activations=["Sigmoid", "LeakyRelu", "Affine"], alpha=[0.3, 0.5],
            beta=[0.25])
    compare("gru", activations=["Softplus", "ScaledTanh"], alpha=[0.9], beta=[1.1])
    compare("gru", bidir=True, activations=["HardSigmoid", "Elu", "Softsign", "Affine"],
            alpha=[0.3, 0.7, 1.2], beta=[0.4, -0.1])
    assert F.onnx_activation_params(["Sigmoid", "LeakyRelu", "Affine"], [0.3, 0.5],
                                    [0.25]) == ([0.0, 0.3, 0.5], [0.0, 0.0, 0.25])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("clip", [0.2, 0.7, 3.0])
def test_clip(cell, clip):
    compare(cell, clip=clip, scale=1.0)
    if cell == "gru":
        compare(cell, clip=clip, linear_before_reset=0, scale=1.0)


@pytest.mark.parametrize("input_forget", [False, True])
@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_input_forget_peephole(input_forget, peephole):
    compare("lstm", input_forget=input_forget, peephole=peephole)
    compare("lstm", input_forget=input_forget, peephole=peephole, clip=0.5, bidir=True,
            lengths=[5, 2, 1])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidir", [False, True])
def test_lengths_directions(cell, bidir):
    acts = {"rnn": ["Softsign"], "gru": ["HardSigmoid", "Softsign"],
            "lstm": ["HardSigmoid", "Elu", "Softsign"]}[cell]
    if bidir:
        acts = acts + {"rnn": ["Tanh"], "gru": ["Sigmoid", "Tanh"],
                       "lstm": ["Sigmoid", "Tanh", "Tanh"]}[cell]
    compare(cell, bidir=bidir, lengths=[5, 3, 1], activations=acts, clip=1.0)


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("bidir", [False, True])
def test_layout_1(cell, bidir):
    """ONNX Runtime's CPU kernels refuse layout=1 ('batchwise'); onnx's own reference
    evaluator runs it (default activations, no sequence_lens), against rnnfast's
    batch_first=True.  Layout 0 is compared the same way as a control."""
    for layout in (0, 1):
        compare(cell, layout=layout, bidir=bidir, peephole=cell == "lstm",
                engine="onnx-reference")
    for lbr in (0, 1):
        if cell == "gru":
            compare(cell, layout=1, bidir=bidir, linear_before_reset=lbr,
                    engine="onnx-reference")


@pytest.mark.parametrize("linear_before_reset", [0, 1])
def test_gru_linear_before_reset(linear_before_reset):
    compare("gru", linear_before_reset=linear_before_reset)
    compare("gru", linear_before_reset=linear_before_reset, bidir=True, lengths=[4, 5, 2],
            clip=0.6, activations=["Sigmoid", "Softsign", "HardSigmoid", "Tanh"])


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_reverse_direction(cell):
    """ONNX direction='reverse' against the backend primitive with reverse=True."""
    H = 4
    mode = ONNX_MODE[cell]
    params, x, hx = make(mode, T=6, N=3, I=3, H=H, peephole=cell == "lstm")
    lengths = np.array([6, 2, 4])
    acts = {"rnn": ["Elu"], "gru": ["HardSigmoid", "Softplus"],
            "lstm": ["HardSigmoid", "Softsign", "Tanh"]}[cell]
    opts = _v.check_onnx_options("t", mode.lower(), False, acts, clip=0.8,
                                 input_forget=cell == "lstm", peephole=cell == "lstm")
    h0, c0 = (hx[0][0], hx[1][0]) if cell == "lstm" else (hx[0], None)
    y, h_n, c_n, _ = _reference.layer_forward(
        mode.lower(), x, h0, c0, params["weight_ih_l0"], params["weight_hh_l0"],
        params["bias_ih_l0"], params["bias_hh_l0"], lengths=lengths, reverse=True,
        acts=opts["acts"][0], clip=0.8, input_forget=cell == "lstm",
        w_peep=params.get("weight_peep_l0"))
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    Y, Yh, Yc = onnx_run(cell, x.astype(np.float32), p32, H, direction="reverse",
                         lengths=lengths, h0=(hx[0] if cell == "lstm" else hx).astype(np.float32),
                         c0=hx[1].astype(np.float32) if cell == "lstm" else None,
                         activations=acts, clip=0.8, input_forget=cell == "lstm",
                         peephole=cell == "lstm")
    for want, got in [(y, Y), (h_n, Yh[0])] + ([(c_n, Yc[0])] if cell == "lstm" else []):
        err = float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))
        WORST[0] = max(WORST[0], err)
        assert err <= TOL


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_zero_length_differs_documented(cell):
    """Known difference (docs/design.md): for a sequence of length 0 ONNX Runtime
    returns Y_h = 0 (and Y_c = 0), rnnfast returns h0 (and c0), as PyTorch's packed
    sequences do.  Y and the other sequences agree."""
    mode = ONNX_MODE[cell]
    params, x, hx = make(mode, T=4, N=2, I=3, H=4)
    h0, c0 = hx if cell == "lstm" else (hx, None)
    out = F.rnn_forward(mode, x, params, num_layers=1, hidden_size=4, hx=hx,
                        lengths=[4, 0], backend="reference")
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    Y, Yh, Yc = onnx_run(cell, x.astype(np.float32), p32, 4, lengths=[4, 0],
                         h0=h0.astype(np.float32),
                         c0=None if c0 is None else c0.astype(np.float32))
    assert np.max(np.abs(Y - out.y)) <= TOL
    assert np.max(np.abs(Yh[:, 0] - out.h_n[:, 0])) <= TOL
    assert np.all(Yh[:, 1] == 0) and np.array_equal(out.h_n[:, 1], h0[:, 1])
    if cell == "lstm":
        assert np.all(Yc[:, 1] == 0) and np.array_equal(out.c_n[:, 1], c0[:, 1])


def test_report_worst():
    print(f"\nsemantics vs onnxruntime, worst |ort - ref| / max(1, max|ref|): {WORST[0]:.2e}; "
          f"compiled float32 vs onnxruntime: {WORST_CPU[0]:.2e}")
