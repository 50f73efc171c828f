"""ONNX semantics: the compiled backend agrees with the reference, forward and every
gradient (float64 <= 1e-12 relative; float32 against the float64 reference within the
bounds of tests/test_agreement.py), for every activation, clip, input_forget, peepholes
and their combinations, with lengths, both directions, stacks and projections."""
import numpy as np
import pytest

from test_semantics_common import ALL_ACTS, MODES, NUM_ACTS, act_options, make, rel_err, run

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")

F64_REL, F64_ABS = 1e-12, 1e-14
F32_FWD, F32_GRAD = 2e-5, 1e-4
WORST = {"f64": 0.0, "f32_fwd": 0.0, "f32_grad": 0.0}


def check(mode, *, H=5, L=1, bidir=False, proj=0, lengths=None, peephole=False, T=5, N=3,
          seed=0, **options):
    params, x, hx = make(mode, T=T, N=N, H=H, L=L, bidir=bidir, proj=proj,
                         peephole=peephole, seed=seed)
    kw = dict(H=H, L=L, bidir=bidir, proj=proj, lengths=lengths, peephole=peephole, **options)
    want = run(mode, params, x, hx, "reference", **kw)
    got = run(mode, params, x, hx, "cpu", **kw)
    assert set(got) == set(want)
    for k, w in want.items():
        diff = float(np.max(np.abs(got[k] - w))) if w.size else 0.0
        err = 0.0 if diff <= F64_ABS else rel_err(got[k], w)
        WORST["f64"] = max(WORST["f64"], err)
        assert err <= F64_REL, f"{mode} {options}: {k} float64 relative difference {err:.3e}"
    # float32 compiled against the float64 reference
    p32 = {k: v.astype(np.float32) for k, v in params.items()}
    hx32 = tuple(a.astype(np.float32) for a in hx) if mode == "LSTM" else hx.astype(np.float32)
    got32 = run(mode, p32, x.astype(np.float32), hx32, "cpu", **kw)
    for k, w in want.items():
        assert got32[k].dtype == np.float32
        err = rel_err(got32[k], w)
        fwd = k in ("y", "h_n", "c_n")
        key = "f32_fwd" if fwd else "f32_grad"
        WORST[key] = max(WORST[key], err)
        assert err <= (F32_FWD if fwd else F32_GRAD), \
            f"{mode} {options}: {k} float32 relative difference {err:.3e}"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("act", ALL_ACTS, ids=lambda a: a[0])
def test_every_activation_in_every_slot(mode, act):
    """The activation in each slot, the defaults in the others."""
    defaults = {"RNN_TANH": [("Tanh", None, None)],
                "GRU": [("Sigmoid", None, None), ("Tanh", None, None)],
                "LSTM": [("Sigmoid", None, None), ("Tanh", None, None), ("Tanh", None, None)]}
    for slot in range(NUM_ACTS[mode]):
        acts = list(defaults[mode])
        acts[slot] = act
        check(mode, lengths=[5, 2, 0], **act_options(acts))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("clip", [0.3, 1.5])
def test_clip(mode, clip):
    check(mode, clip=clip)
    check(mode, clip=clip, bidir=True, lengths=[5, 1, 3])


@pytest.mark.parametrize("input_forget", [False, True])
@pytest.mark.parametrize("peephole", [False, True])
@pytest.mark.parametrize("proj", [0, 3])
def test_lstm_input_forget_peephole(input_forget, peephole, proj):
    if not input_forget and not peephole:
        check("LSTM", proj=proj, clip=0.9, lengths=[4, 5, 2])
        return
    check("LSTM", proj=proj, peephole=peephole, input_forget=input_forget)
    check("LSTM", proj=proj, peephole=peephole, input_forget=input_forget, bidir=True,
          L=2, lengths=[5, 0, 3])


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_reset_after(reset_after):
    check("GRU", reset_after=reset_after, clip=0.5,
          **act_options([("HardSigmoid", 0.25, 0.5), ("Softsign", None, None)]))
    check("GRU", reset_after=reset_after, bidir=True, L=2, lengths=[3, 5, 1],
          **act_options([("Sigmoid", None, None), ("Elu", 0.9, None),
                         ("HardSigmoid", None, None), ("ScaledTanh", 1.1, 0.8)]))


def test_per_direction_activations_and_stack():
    check("RNN_TANH", bidir=True, L=3, lengths=[5, 4, 0], clip=2.0,
          **act_options([("LeakyRelu", 0.1, None), ("Softsign", None, None)]))
    check("LSTM", bidir=True, L=2, proj=2, peephole=True, input_forget=True, clip=1.2,
          lengths=[2, 5, 4], **act_options(
              [("HardSigmoid", None, None), ("Elu", None, None), ("Softplus", None, None),
               ("Sigmoid", None, None), ("ScaledTanh", 1.0, 1.0), ("Softsign", None, None)]))


def test_rnn_relu_mode_with_activation_override():
    check("RNN_RELU", **act_options([("Affine", 0.5, 0.1)]))


def test_batch_rows_and_sizes():
    """Enough rows for several threads, and sizes with vector tails."""
    check("LSTM", T=7, N=11, H=9, peephole=True, clip=0.7, lengths=list(range(7)) + [7] * 4)
    check("GRU", T=4, N=13, H=1, reset_after=False, clip=0.2)


def test_general_path_bitwise_independent_of_threads():
    import rnnfast
    params, x, hx = make("LSTM", T=6, N=9, H=7, peephole=True)
    kw = dict(H=7, peephole=True, clip=0.8, lengths=[6, 5, 4, 3, 2, 1, 0, 6, 6],
              activations=["HardSigmoid", "Softsign", "Elu"])
    old = rnnfast.get_num_threads()
    try:
        rnnfast.set_num_threads(1)
        one = run("LSTM", params, x, hx, "cpu", **kw)
        rnnfast.set_num_threads(4)
        four = run("LSTM", params, x, hx, "cpu", **kw)
    finally:
        rnnfast.set_num_threads(old)
    for k in one:
        assert np.array_equal(one[k], four[k]), k


def test_general_path_zero_batch_and_padded_outputs():
    params, x, hx = make("GRU", T=4, N=3, H=3)
    got = run("GRU", params, x, hx, "cpu", H=3, lengths=[4, 0, 2], clip=0.5)
    assert np.all(got["y"][2:, 2] == 0) and np.all(got["y"][:, 1] == 0)
    assert np.all(got["dx"][2:, 2] == 0) and np.all(got["dx"][:, 1] == 0)
    e_params, e_x, e_hx = make("LSTM", T=3, N=0, H=3, peephole=True)
    res = run("LSTM", e_params, e_x, e_hx, "cpu", H=3, peephole=True, clip=1.0)
    assert res["y"].shape == (3, 0, 3) and not np.any(res["d_weight_peep_l0"])


def test_report_worst():
    """Print the largest differences seen by this module (run with -s to see them)."""
    print(f"\nsemantics agreement, worst relative differences: float64 {WORST['f64']:.2e}, "
          f"float32 forward {WORST['f32_fwd']:.2e}, float32 gradients {WORST['f32_grad']:.2e}")
