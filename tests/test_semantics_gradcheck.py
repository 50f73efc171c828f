"""ONNX semantics: the reference's hand-written BPTT against central finite differences
(float64), for every activation, clip, input_forget, peepholes (with projection) and
both GRU variants."""
import numpy as np
import pytest

from rnnfast import functional as F
from test_semantics_common import ALL_ACTS, act_options, make

EPS = 1e-6
TOL = 1e-6   # |analytic - numeric| <= TOL * max(1, |analytic|)
WORST = [0.0]


def gradcheck(mode, *, H=3, bidir=False, proj=0, peephole=False, lengths=None, L=1,
              seed=0, n_probe=4, **options):
    params, x, hx = make(mode, T=4, N=2, I=3, H=H, L=L, bidir=bidir, proj=proj,
                         peephole=peephole, seed=seed)
    kw = dict(num_layers=L, hidden_size=H, bidirectional=bidir, lengths=lengths,
              backend="reference", peephole=peephole, **options)
    if mode == "LSTM":
        kw["proj_size"] = proj
    rng = np.random.default_rng(seed + 100)
    out = F.rnn_forward(mode, x, params, hx=hx, training=True, **kw)
    wy = rng.standard_normal(out.y.shape)
    wh = rng.standard_normal(out.h_n.shape)
    wc = None if out.c_n is None else rng.standard_normal(out.c_n.shape)

    def loss(p, x_, hx_):
        o = F.rnn_forward(mode, x_, p, hx=hx_, **kw)
        v = np.sum(o.y * wy) + np.sum(o.h_n * wh)
        return v + (np.sum(o.c_n * wc) if wc is not None else 0.0)

    g = F.rnn_backward(out.cache, wy, wh, wc)
    targets = [("x", x, g.dx)]
    if mode == "LSTM":
        targets += [("h0", hx[0], g.dh0), ("c0", hx[1], g.dc0)]
    else:
        targets += [("h0", hx, g.dh0)]
    targets += [(k, params[k], g.grads[k]) for k in params]
    for name, arr, grad in targets:
        flat = arr.reshape(-1)
        idx = rng.choice(flat.size, size=min(n_probe, flat.size), replace=False)
        if name.startswith("weight_peep"):
            idx = np.arange(flat.size)       # every peephole entry
        for i in idx:
            old = flat[i]
            flat[i] = old + EPS
            up = loss(params, x, hx)
            flat[i] = old - EPS
            down = loss(params, x, hx)
            flat[i] = old
            num = (up - down) / (2 * EPS)
            ana = grad.reshape(-1)[i]
            err = abs(num - ana) / max(1.0, abs(ana))
            WORST[0] = max(WORST[0], err)
            assert err <= TOL, f"{mode} {options}: d{name}[{i}] analytic {ana} numeric {num}"


@pytest.mark.parametrize("act", ALL_ACTS, ids=lambda a: a[0])
def test_activations(act):
    gradcheck("RNN_TANH", **act_options([act]))
    gradcheck("GRU", **act_options([act, ("Tanh", None, None)]))
    gradcheck("GRU", reset_after=False, **act_options([("Sigmoid", None, None), act]))
    gradcheck("LSTM", **act_options([act, act, act]))


@pytest.mark.parametrize("mode", ["RNN_TANH", "GRU", "LSTM"])
def test_clip(mode):
    # a clip small enough to be hit by many pre-activations
    gradcheck(mode, clip=0.4, lengths=[4, 2])
    if mode == "GRU":
        gradcheck(mode, clip=0.4, reset_after=False)


def test_clip_is_hit():
    """The clip above is active (the gradient test is not vacuous)."""
    params, x, hx = make("LSTM", T=4, N=2, I=3, H=3)
    a = F.rnn_forward("LSTM", x, params, num_layers=1, hidden_size=3, hx=hx,
                      backend="reference")
    b = F.rnn_forward("LSTM", x, params, num_layers=1, hidden_size=3, hx=hx,
                      backend="reference", clip=0.4)
    assert np.max(np.abs(a.y - b.y)) > 1e-3


@pytest.mark.parametrize("proj", [0, 2])
def test_lstm_peephole_input_forget(proj):
    gradcheck("LSTM", proj=proj, peephole=True)
    gradcheck("LSTM", proj=proj, input_forget=True)
    gradcheck("LSTM", proj=proj, peephole=True, input_forget=True, clip=0.6, bidir=True,
              lengths=[3, 4])


def test_stacked_bidirectional_combination():
    gradcheck("LSTM", L=2, bidir=True, peephole=True, clip=1.0, lengths=[4, 1],
              **act_options([("HardSigmoid", None, None), ("Softsign", None, None),
                             ("Elu", 0.7, None)]))


def test_report_worst():
    print(f"\nsemantics gradcheck, worst |analytic - numeric| / max(1, |analytic|): "
          f"{WORST[0]:.2e}")
