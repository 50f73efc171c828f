"""Sequential / Seq2Seq: training, TBPTT, early stopping, history, progress bar,
save/load (exact, atomic, corrupt files), divergence, input validation."""
import json
import os
import sys

import numpy as np
import pytest

import rnnfast
from rnnfast import optim
from rnnfast.layers import Dropout, Embedding, LastStep, Linear, Tanh
from rnnfast.models import Seq2Seq, Sequential, TrainingDiverged, load

from conftest import run_python


@pytest.fixture(autouse=True)
def one_thread():
    # tiny models: one thread avoids OpenMP barriers on a shared, busy machine
    prev = rnnfast._config._num_threads
    rnnfast.set_num_threads(1)
    yield
    rnnfast.set_num_threads(prev)


def _count_task(n=256, T=10, V=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, (n, T))
    lengths = rng.integers(2, T + 1, n)
    valid = np.arange(T)[None] < lengths[:, None]
    y = (((x == 1) & valid).sum(1) > ((x == 2) & valid).sum(1)).astype(np.int64)
    return x, y, lengths


def _classifier(dtype=np.float32, cell="LSTM", bidirectional=False):
    H = 16
    return Sequential([Embedding(5, 8, dtype=dtype, seed=0),
                       getattr(rnnfast, cell)(8, H, batch_first=True, dtype=dtype, seed=1,
                                              bidirectional=bidirectional),
                       LastStep(), Linear(H * (2 if bidirectional else 1), 2, dtype=dtype,
                                          seed=2)])


def _tagger(dtype=np.float64, num_layers=2, cell="GRU"):
    """Per-step regression: (N, T, 2) floats -> (N, T, 1)."""
    return Sequential([getattr(rnnfast, cell)(2, 6, num_layers=num_layers, batch_first=True,
                                              dtype=dtype, seed=3),
                       Linear(6, 1, dtype=dtype, seed=4)])


def _running_sum_task(n=16, T=12, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, T, 2)).astype(dtype)
    y = np.cumsum(x[..., :1] - x[..., 1:], axis=1) * 0.3
    return x, y.astype(dtype)


# ---------------------------------------------------------------------- training


@pytest.mark.parametrize("cell,bidirectional", [("LSTM", False), ("GRU", True), ("RNN", False)])
def test_fit_learns_classification(cell, bidirectional):
    x, y, lengths = _count_task(384)
    model = _classifier(cell=cell, bidirectional=bidirectional)
    model.compile("cross_entropy", optim.Adam(model.named_parameters(), lr=1e-2), clip_norm=5)
    hist = model.fit(x, y, lengths, epochs=5, batch_size=32, seed=0, progress=False)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    assert hist.history["accuracy"][-1] > 0.8


def test_fit_regression_with_lengths_and_shapes():
    x, y = _running_sum_task(64)
    lengths = np.random.default_rng(1).integers(1, 13, 64)
    model = _tagger()
    model.compile("mse", optim.Adam(model.named_parameters(), lr=1e-2))
    hist = model.fit(x, y, lengths, epochs=15, batch_size=16, seed=0, progress=False)
    assert hist.history["loss"][-1] < 0.3 * hist.history["loss"][0]
    assert "accuracy" not in hist.history
    pred = model.predict(x, lengths, batch_size=10)
    assert pred.shape == (64, 12, 1) and pred.dtype == np.float64
    res = model.evaluate(x, y, lengths, batch_size=7)
    assert set(res) == {"loss"}
    mask = (np.arange(12)[None] < lengths[:, None])[..., None]
    manual = ((pred - y) ** 2 * mask).sum() / mask.sum()
    assert abs(res["loss"] - manual) <= 1e-12 * manual


def test_padded_steps_do_not_matter():
    """Changing x and y at padded steps changes neither the loss nor the gradients."""
    x, y, lengths = _count_task(32, seed=3)
    model = _classifier(np.float64)
    model.compile("cross_entropy", optim.SGD(model.named_parameters(), lr=0.0))
    out = model.forward(x, lengths)
    loss, g, *_ = model._loss(out, y, lengths)
    model.backward(g)
    g1 = {k: v.copy() for k, v in model.grads.items()}
    x2 = x.copy()
    x2[np.arange(10)[None] >= lengths[:, None]] = 4
    out2 = model.forward(x2, lengths)
    loss2, g2, *_ = model._loss(out2, y, lengths)
    model.backward(g2)
    assert loss == loss2
    for k in g1:
        assert np.array_equal(g1[k], model.grads[k]), k


def test_bce_sequence_tagging():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 8, 2))
    y = (x[..., :1] > 0).astype(np.float64)
    model = Sequential([rnnfast.GRU(2, 8, batch_first=True, dtype=np.float64, seed=0),
                        Linear(8, 1, dtype=np.float64, seed=1)])
    model.compile("bce", optim.Adam(model.named_parameters(), lr=2e-2))
    hist = model.fit(x, y, epochs=10, batch_size=16, progress=False, seed=0)
    assert hist.history["accuracy"][-1] > 0.9


def test_custom_loss_callable():
    x, y = _running_sum_task(16)

    def loss(out, target):
        d = out - target
        return float(np.mean(d * d)), 2 * d / d.size

    model = _tagger()
    model.compile(loss, "sgd")
    hist = model.fit(x, y, epochs=3, batch_size=8, progress=False, shuffle=False)
    assert len(hist.history["loss"]) == 3 and hist.history["loss"][-1] < hist.history["loss"][0]


# -------------------------------------------------------------------------- TBPTT


def _sgd_model(lr=0.05):
    model = _tagger()
    model.compile("mse", optim.SGD(model.named_parameters(), lr=lr))
    return model


def test_tbptt_with_k_equal_T_is_full_bptt():
    x, y = _running_sum_task(8, T=12)
    lengths = np.array([12, 5, 12, 1, 9, 12, 3, 7])
    a, b = _sgd_model(), _sgd_model()
    a.fit(x, y, lengths, epochs=2, batch_size=4, shuffle=False, progress=False)
    b.fit(x, y, lengths, epochs=2, batch_size=4, shuffle=False, progress=False, tbptt=(12, 12))
    for k, p in a.named_parameters().items():
        assert np.array_equal(p, b.named_parameters()[k]), k
    c = _sgd_model()
    c.fit(x, y, lengths, epochs=2, batch_size=4, shuffle=False, progress=False, tbptt=12)
    for k, p in a.named_parameters().items():
        assert np.array_equal(p, c.named_parameters()[k]), k


def test_chunked_forward_with_carried_state_equals_full_forward():
    x, _ = _running_sum_task(4, T=12)
    for cell in ("GRU", "LSTM"):
        model = _tagger(cell=cell)
        full = model.forward(x)
        state, outs = None, []
        for s in range(0, 12, 5):
            out, state = model.forward(x[:, s:s + 5], initial_state=state, return_state=True)
            outs.append(out)
        np.testing.assert_allclose(np.concatenate(outs, axis=1), full, rtol=0, atol=1e-14)


def test_tbptt_k1_equals_k2_matches_manual_chunks():
    x, y = _running_sum_task(6, T=11)
    lengths = np.array([11, 4, 8, 11, 2, 6])
    auto, manual = _sgd_model(), _sgd_model()
    auto.fit(x, y, lengths, epochs=1, batch_size=6, shuffle=False, progress=False, tbptt=4)
    state = None
    for s in range(0, 11, 4):
        e = min(s + 4, 11)
        lens = np.clip(lengths - s, 0, e - s)
        out, new_state = manual.forward(x[:, s:e], lens, state, return_state=True)
        _, g, *_ = manual._loss(out, y[:, s:e], lens)
        manual.backward(g)
        manual.optimizer.step(manual.grads)
        state = [np.array(h) for h in new_state]
    for k, p in auto.named_parameters().items():
        np.testing.assert_allclose(p, manual.named_parameters()[k], rtol=0, atol=1e-15)


def test_tbptt_k2_greater_than_k1_gradients():
    """With lr = 0, each window's gradient is that of the loss on its last k1 steps,
    backpropagated through k2 steps from the exact state at the window start."""
    x, y = _running_sum_task(4, T=10)
    model = _sgd_model(lr=0.0)
    recorded = []
    step = model.optimizer.step
    model.optimizer.step = lambda grads: (recorded.append({k: v.copy() for k, v in grads.items()}),
                                          step(grads))
    model.fit(x, y, epochs=1, batch_size=4, shuffle=False, progress=False, tbptt=(3, 5))
    ref = _sgd_model(lr=0.0)
    expected = []
    for first in range(0, 10, 3):
        e = min(first + 3, 10)
        s = max(0, first + 3 - 5)
        state = None
        if s:
            _, state = ref.forward(x[:, :s], return_state=True)
            state = [np.array(h) for h in state]
        out = ref.forward(x[:, s:e], None, state)
        _, g, *_ = ref._loss(out[:, first - s:], y[:, first:e], None)
        g = np.concatenate([np.zeros_like(out[:, :first - s]), g], axis=1)
        ref.backward(g)
        expected.append({k: v.copy() for k, v in ref.grads.items()})
    assert len(recorded) == len(expected) == 4
    worst = 0.0
    for r, e in zip(recorded, expected):
        for k in e:
            worst = max(worst, np.max(np.abs(r[k] - e[k])) / np.max(np.abs(e[k])))
    print(f"TBPTT(3, 5) window gradients vs direct computation: max rel diff {worst:.1e}")
    assert worst < 1e-12


def test_tbptt_validation():
    x, y = _running_sum_task(4)
    model = _sgd_model()
    with pytest.raises(ValueError, match="k2 >= k1"):
        model.fit(x, y, tbptt=(4, 2), progress=False)
    with pytest.raises(TypeError, match="tbptt"):
        model.fit(x, y, tbptt="4", progress=False)
    clf = _classifier()
    clf.compile("cross_entropy", "adam")
    cx, cy, cl = _count_task(8)
    with pytest.raises(ValueError, match="tbptt"):
        clf.fit(cx, cy, cl, tbptt=3, progress=False)


# ------------------------------------------------------------- history & callbacks


def test_early_stopping_restores_best_weights():
    x, y, lengths = _count_task(128)
    model = _classifier()
    model.compile("cross_entropy", optim.Adam(model.named_parameters(), lr=1e-2))
    snapshots = []
    # validation labels are flipped: the better the training fit, the worse val_loss
    hist = model.fit(x, y, lengths, epochs=20, batch_size=32, progress=False, seed=0,
                     validation_data=(x, 1 - y, lengths),
                     early_stopping={"patience": 2, "monitor": "val_loss"},
                     callbacks=[lambda epoch, logs: snapshots.append(model.state_dict())])
    val = hist.history["val_loss"]
    best = int(np.argmin(val))
    assert hist.best_epoch == best
    assert hist.stopped_epoch == best + 2 == len(val) - 1 < 19
    for k, p in model.named_parameters().items():
        assert np.array_equal(p, snapshots[best][k]), k
    assert not np.array_equal(model.named_parameters()["3.weight"], snapshots[-1]["3.weight"])


def test_history_scheduler_and_callbacks():
    x, y = _running_sum_task(16)
    model = _tagger()
    opt = optim.SGD(model.named_parameters(), lr=0.1)
    model.compile("mse", opt, scheduler=optim.StepLR(opt, step_size=1, gamma=0.5))

    class Stopper:
        def __init__(self):
            self.seen = []

        def on_epoch_end(self, epoch, logs):
            self.seen.append((epoch, sorted(logs)))
            return epoch == 2

    cb = Stopper()
    hist = model.fit(x, y, epochs=10, batch_size=8, progress=False, callbacks=cb)
    assert hist.epoch == [0, 1, 2] and hist.history["lr"] == [0.1, 0.05, 0.025]
    assert cb.seen[0] == (0, ["loss", "lr", "seconds"])
    assert model.history is hist and "History(epochs=3" in repr(hist)
    with pytest.raises(TypeError, match="callback"):
        model.fit(x, y, progress=False, callbacks=[3])


def test_progress_bar_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    x, y = _running_sum_task(16)
    model = _tagger()
    model.compile("mse", "adam")
    model.fit(x, y, epochs=2, batch_size=8, progress=True)
    err = capsys.readouterr().err
    assert "epoch 1/2" in err and "epoch 2/2" in err and "seq" in err and "loss=" in err
    model.fit(x, y, epochs=1, batch_size=8, progress=False)
    assert "epoch" not in capsys.readouterr().err


def test_progress_without_tqdm_falls_back(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)   # `import tqdm` raises ImportError
    x, y = _running_sum_task(16)
    model = _tagger()
    model.compile("mse", "adam")
    hist = model.fit(x, y, epochs=2, batch_size=8, progress=True)
    assert len(hist.history["loss"]) == 2 and "epoch 1/2" not in capsys.readouterr().err


def test_import_rnnfast_imports_nothing_optional():
    r = run_python("import sys, rnnfast, rnnfast.models, rnnfast.layers, rnnfast.optim\n"
                   "bad = [m for m in ('tqdm', 'matplotlib', 'torch') if m in sys.modules]\n"
                   "assert not bad, bad\nprint('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


# -------------------------------------------------------------------- divergence


def test_nan_loss_raises_and_keeps_last_good_weights():
    x, y = _running_sum_task(32)
    model = _tagger()
    calls, seen = [0], []

    def loss(out, target):
        calls[0] += 1
        seen.append({k: v.copy() for k, v in model.named_parameters().items()})
        d = out - target
        value = float(np.mean(d * d)) if calls[0] != 3 else float("nan")
        return value, 2 * d / d.size

    model.compile(loss, optim.SGD(model.named_parameters(), lr=0.1))
    with pytest.raises(TrainingDiverged, match="nan.*epoch 1, batch 3") as info:
        model.fit(x, y, epochs=2, batch_size=8, progress=False, shuffle=False)
    assert info.value.epoch == 0 and info.value.batch == 2
    # the weights of batch 2's forward (the last finite loss), not the ones after its step
    for k, p in model.named_parameters().items():
        assert np.array_equal(p, seen[1][k]), k
    assert not np.array_equal(seen[1]["1.weight"], seen[2]["1.weight"])
    model.fit(x, y, epochs=1, batch_size=8, progress=False)   # usable afterwards


def test_real_divergence_keeps_finite_weights():
    x, y = _running_sum_task(32)
    model = Sequential([rnnfast.RNN(2, 8, nonlinearity="relu", batch_first=True,
                                    dtype=np.float64, seed=0), Linear(8, 1, dtype=np.float64,
                                                                      seed=1)])
    model.compile("mse", optim.SGD(model.named_parameters(), lr=1e3))
    with pytest.raises(TrainingDiverged):
        model.fit(x * 100, y * 1e3, epochs=50, batch_size=8, progress=False)
    assert all(np.all(np.isfinite(p)) for p in model.parameters())
    out = model.predict(x)
    assert np.all(np.isfinite(out))


# ------------------------------------------------------------------- save / load


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_exact(tmp_path, dtype):
    x, y, lengths = _count_task(64)
    model = Sequential([Embedding(5, 6, padding_idx=0, dtype=dtype, seed=0),
                        rnnfast.LSTM(6, 8, num_layers=2, bidirectional=True, proj_size=3,
                                     batch_first=False, dtype=dtype, seed=1),
                        Dropout(0.2, seed=0),
                        rnnfast.GRU(6, 5, batch_first=True, reset_after=False, dtype=dtype,
                                    seed=2),
                        LastStep(), Tanh(), Linear(5, 2, bias=False, dtype=dtype, seed=3)])
    model.compile("cross_entropy", "adam")
    model.fit(x, y, lengths, epochs=1, progress=False)
    path = tmp_path / "model.npz"
    model.save(str(path))
    again = load(path)
    assert repr(again) == repr(model)
    p1, p2 = model.predict(x, lengths), again.predict(x, lengths)
    assert p1.dtype == p2.dtype == dtype and np.array_equal(p1, p2)
    assert again[3].reset_after is False and again[1].proj_size == 3
    assert again[2].p == 0.2 and again[0].padding_idx == 0


def test_seq2seq_save_load(tmp_path):
    m = _seq2seq("LSTM")
    x = np.array([[3, 4, 5], [6, 3, 0]])
    m.save(tmp_path / "s2s.npz")
    again = load(tmp_path / "s2s.npz")
    a = m.generate(x, [3, 2], max_len=5)
    b = again.generate(x, [3, 2], max_len=5)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert again.bos == 1 and again.eos == 2


def test_save_is_atomic(tmp_path, monkeypatch):
    model = _tagger()
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    other = _tagger(num_layers=1)

    def failing_savez(f, **arrays):
        f.write(b"PK\x03\x04 partial garbage")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", failing_savez)
    with pytest.raises(OSError, match="disk full"):
        other.save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]     # no temporary file left behind
    monkeypatch.undo()

    def failing_replace(src, dst):
        raise PermissionError("no rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(PermissionError):
        other.save(path)
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["m.npz"]
    monkeypatch.undo()
    assert load(path)[0].num_layers == 2


def _write_npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_load_rejects_corrupt_and_foreign_files(tmp_path):
    good = tmp_path / "good.npz"
    _tagger().save(good)
    raw = good.read_bytes()
    cases = {}
    cases["random.npz"] = os.urandom(300)
    cases["truncated.npz"] = raw[: len(raw) // 2]
    cases["empty.npz"] = b""
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    np.save(tmp_path / "plain.npy", np.zeros(3))
    _write_npz(tmp_path / "noconfig.npz", w=np.zeros(3))
    _write_npz(tmp_path / "foreign.npz", __rnnfast_model__=np.array(json.dumps({"format": "x"})))
    _write_npz(tmp_path / "badjson.npz", __rnnfast_model__=np.array("{not json"))
    _write_npz(tmp_path / "objects.npz", __rnnfast_model__=np.array([{"a": 1}], dtype=object))
    rnnfast.LSTM(2, 3).save(tmp_path / "layer.npz")    # an rnnfast.nn file, not a model
    cfg = json.loads(str(np.load(good)["__rnnfast_model__"]))
    weights = dict(np.load(good))
    weights.pop("1.bias")
    _write_npz(tmp_path / "missing.npz", **weights)
    weights = dict(np.load(good))
    weights["1.weight"] = np.zeros((2, 2))
    _write_npz(tmp_path / "shape.npz", **weights)
    weights = dict(np.load(good))
    cfg2 = json.loads(json.dumps(cfg))
    cfg2["model"]["layers"][0]["class"] = "Evil"
    weights["__rnnfast_model__"] = np.array(json.dumps(cfg2))
    _write_npz(tmp_path / "unknown_class.npz", **weights)
    cfg3 = json.loads(json.dumps(cfg))
    cfg3["model"]["layers"][1]["config"]["in_features"] = -3
    weights["__rnnfast_model__"] = np.array(json.dumps(cfg3))
    _write_npz(tmp_path / "bad_config.npz", **weights)
    cfg4 = json.loads(json.dumps(cfg))
    cfg4["model"]["layers"][1]["config"]["in_features"] = 2**45
    weights["__rnnfast_model__"] = np.array(json.dumps(cfg4))
    _write_npz(tmp_path / "huge.npz", **weights)
    names = list(cases) + ["plain.npy", "noconfig.npz", "foreign.npz", "badjson.npz",
                           "objects.npz", "layer.npz", "missing.npz", "shape.npz",
                           "unknown_class.npz", "bad_config.npz", "huge.npz"]
    for name in names:
        with pytest.raises(ValueError, match="not a valid rnnfast model file"):
            load(tmp_path / name)
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "absent.npz")
    with pytest.raises(TypeError, match="path"):
        load(3.5)
    assert load(good) is not None


# ------------------------------------------------------------------- bad inputs


def test_bad_inputs_name_the_argument():
    x, y, lengths = _count_task(16)
    model = _classifier()
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(x, y, lengths, progress=False)
    model.compile("cross_entropy", "adam")
    fit = lambda *a, **k: model.fit(*a, progress=False, **k)   # noqa: E731
    with pytest.raises(ValueError, match="'x'.*token id 5.*\\[0, 5\\)"):
        fit(np.where(x == 0, 5, x), y, lengths)
    with pytest.raises(ValueError, match="'x'.*token id -2"):
        fit(x - 2, y, lengths)
    with pytest.raises(TypeError, match="'x'.*integer"):
        fit(x.astype(np.float64), y, lengths)
    with pytest.raises(ValueError, match="'y'.*shape \\(16,\\)"):
        fit(x, np.zeros((16, 2), np.int64), lengths)
    with pytest.raises(ValueError, match="'y'.*one row per sample"):
        fit(x, y[:5], lengths)
    with pytest.raises(TypeError, match="'y'.*integer class ids"):
        fit(x, y.astype(np.float32), lengths)
    with pytest.raises(ValueError, match="'y'.*class id 2"):
        fit(x, y + 1, lengths)
    with pytest.raises(ValueError, match="lengths.*between 0 and T=10"):
        fit(x, y, lengths + 5)
    with pytest.raises(ValueError, match="lengths.*shape \\(16,\\)"):
        fit(x, y, lengths[:3])
    with pytest.raises(TypeError, match="lengths.*integers"):
        fit(x, y, lengths.astype(float))
    with pytest.raises(ValueError, match="validation_data\\[1\\]"):
        fit(x, y, lengths, validation_data=(x, y[:3]))
    with pytest.raises(TypeError, match="validation_data"):
        fit(x, y, lengths, validation_data=x)
    with pytest.raises(TypeError, match="'epochs'"):
        fit(x, y, lengths, epochs=1.5)
    with pytest.raises(ValueError, match="'batch_size'"):
        fit(x, y, lengths, batch_size=0)
    with pytest.raises(ValueError, match="early_stopping"):
        fit(x, y, lengths, early_stopping={"patience": 2, "monitor": "val_loss"})
    reg = _tagger()
    reg.compile("mse", "adam")
    rx, ry = _running_sum_task(4)
    with pytest.raises(TypeError, match="'x'.*float32"):
        reg.fit(rx.astype(np.float32), ry, progress=False)
    with pytest.raises(ValueError, match="'y'.*shape \\(4, 12, 1\\)"):
        reg.fit(rx, ry[..., 0], progress=False)
    with pytest.raises(ValueError, match="'y'.*NaN"):
        reg.fit(rx, ry * np.nan, progress=False)
    with pytest.raises(TypeError, match="'y'.*numeric"):
        reg.fit(rx, ry.astype(str), progress=False)
    with pytest.raises(ValueError, match="'loss'"):
        reg.compile("hinge")
    with pytest.raises(ValueError, match="named_parameters"):
        reg.compile("mse", optim.Adam(_tagger().named_parameters()))
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        Sequential([Linear(2, 2), "relu"])


# ---------------------------------------------------------------------- Seq2Seq


def _reversal_data(n, V=7, L=4, seed=0):
    """Ids 0 pad, 1 bos, 2 eos, 3.. letters; target = reversed input + eos."""
    rng = np.random.default_rng(seed)
    lens = rng.integers(1, L + 1, n)
    x = np.zeros((n, L), np.int64)
    y = np.zeros((n, L + 1), np.int64)
    for i in range(n):
        s = rng.integers(3, V, lens[i])
        x[i, :lens[i]] = s
        y[i, :lens[i]] = s[::-1]
        y[i, lens[i]] = 2
    return x, y, lens, lens + 1


def _seq2seq(cell="GRU", H=32, V=7, enc_bidirectional=False):
    C = getattr(rnnfast, cell)
    enc = C(8, H, batch_first=True, seed=1, bidirectional=enc_bidirectional)
    dec = C(8, H, num_layers=2 if enc_bidirectional else 1, batch_first=True, seed=3)
    return Seq2Seq(Embedding(V, 8, seed=0), enc, Embedding(V, 8, seed=2), dec,
                   Linear(H, V, seed=4), bos=1, eos=2)


@pytest.mark.parametrize("cell", ["GRU", "LSTM"])
def test_seq2seq_learns_string_reversal(cell):
    x, y, lx, ly = _reversal_data(300)
    m = _seq2seq(cell)
    m.compile("cross_entropy", optim.Adam(m.named_parameters(), lr=2e-2), clip_norm=1.0)
    hist = m.fit(x, y, lx, ly, epochs=15, batch_size=32, seed=0, progress=False)
    assert hist.history["loss"][-1] < 0.15 * hist.history["loss"][0]
    tok, n = m.generate(x, lx, max_len=6)
    exact = np.mean([n[i] == lx[i] and np.array_equal(tok[i, :n[i]], y[i, :lx[i]])
                     for i in range(len(x))])
    print(f"{cell} seq2seq reversal: exact-match {exact:.3f}")
    assert exact > 0.9
    # after eos the rows are filled with eos
    for i in range(len(x)):
        assert np.all(tok[i, n[i]:] == 2)
    res = m.evaluate(x, y, lx, ly)
    assert res["accuracy"] > 0.95


def test_seq2seq_gradients_float64():
    rng = np.random.default_rng(0)
    C = rnnfast.LSTM
    m = Seq2Seq(Embedding(6, 3, dtype=np.float64, seed=0),
                C(3, 4, bidirectional=True, batch_first=False, dtype=np.float64, seed=1),
                Embedding(6, 3, dtype=np.float64, seed=2),
                C(3, 4, num_layers=2, batch_first=True, dtype=np.float64, seed=3),
                Linear(4, 6, dtype=np.float64, seed=4), bos=1, eos=2)
    x = rng.integers(0, 6, (3, 4))
    y_in = rng.integers(0, 6, (3, 5))
    r = rnnfast.gradcheck(m, (x, y_in, np.array([4, 2, 1]), np.array([5, 3, 2])))
    assert r.ok, r.summary()
    assert len(r.errors) == 2 + 8 + 8 + 2


def test_seq2seq_validation():
    with pytest.raises(ValueError, match="final state"):
        Seq2Seq(Embedding(5, 4), rnnfast.GRU(4, 8, bidirectional=True), Embedding(5, 4),
                rnnfast.GRU(4, 8), Linear(8, 5))
    with pytest.raises(ValueError, match="same cell type"):
        Seq2Seq(Embedding(5, 4), rnnfast.GRU(4, 8), Embedding(5, 4), rnnfast.LSTM(4, 8),
                Linear(8, 5))
    with pytest.raises(TypeError, match="encoder_embedding"):
        Seq2Seq(Linear(5, 4), rnnfast.GRU(4, 8), Embedding(5, 4), rnnfast.GRU(4, 8),
                Linear(8, 5))
    m = _seq2seq()
    x, y, lx, ly = _reversal_data(8)
    with pytest.raises(ValueError, match="'y'.*token id 11.*\\[0, 7\\)"):
        m.fit(x, y + 5, lx, ly, progress=False)
    with pytest.raises(ValueError, match="y_lengths"):
        m.fit(x, y, lx, ly + 10, progress=False)
    with pytest.raises(ValueError, match="'x'.*shape \\(N, T\\)"):
        m.fit(x[0], y, progress=False)
    with pytest.raises(ValueError, match="'bos'"):
        m.generate(x, lx, bos=9)
    m2 = _seq2seq()
    m2.bos = None
    with pytest.raises(ValueError, match="start token"):
        m2.fit(x, y, lx, ly, progress=False)


# ------------------------------------------------------------------ stateful etc.


def test_stateful_forward_carries_states():
    x, _ = _running_sum_task(3, T=12)
    ref = _tagger(cell="LSTM")
    full = ref.predict(x)
    model = _tagger(cell="LSTM")
    model.stateful = True
    model.eval()
    parts = [model.forward(x[:, s:s + 4]) for s in range(0, 12, 4)]
    np.testing.assert_allclose(np.concatenate(parts, axis=1), full, rtol=0, atol=1e-14)
    with pytest.raises(ValueError, match="reset_states"):
        model.forward(x[:2, :4])
    model.reset_states()
    np.testing.assert_allclose(model.forward(x[:, :4]), full[:, :4], rtol=0, atol=1e-14)
    # evaluate is stateless and leaves the carried states alone
    carried = [np.array(a) for st in model._states for a in st]
    model.compile("mse", "adam")
    model.evaluate(x, np.zeros((3, 12, 1)))
    assert all(np.array_equal(a, b) for a, b in zip(carried, [np.array(a) for st in
                                                               model._states for a in st]))


def test_stateful_fit_and_save(tmp_path):
    x, y = _running_sum_task(20, T=6)
    model = Sequential([rnnfast.GRU(2, 6, batch_first=True, dtype=np.float64, seed=3),
                        Linear(6, 1, dtype=np.float64, seed=4)], stateful=True)
    model.compile("mse", optim.Adam(model.named_parameters(), lr=1e-2))
    hist = model.fit(x, y, epochs=3, batch_size=8, shuffle=False, progress=False)  # 8, 8, 4
    assert len(hist.history["loss"]) == 3
    model.save(tmp_path / "s.npz")
    assert load(tmp_path / "s.npz").stateful is True


def test_summary_and_count_params():
    model = _classifier()
    n = 5 * 8 + 4 * 16 * (8 + 16) + 2 * 4 * 16 + 16 * 2 + 2
    assert model.count_params() == n
    text = model.summary()
    assert "LSTM" in text and f"total parameters: {n}" in text and "Embedding" in text


def test_nan_inputs_rejected_but_padding_may_hold_anything():
    x, y = _running_sum_task(4, T=6)
    model = _tagger()
    model.compile("mse", "adam")
    bad = x.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="'x'.*NaN"):
        model.fit(bad, y, progress=False)
    with pytest.raises(ValueError, match="'x'.*NaN"):
        model.predict(bad)
    lengths = np.array([6, 2, 6, 6])       # the NaN sits in sequence 1's padding
    model.fit(bad, y, lengths, progress=False)
    assert np.all(np.isfinite(model.predict(bad, lengths)[[0, 2, 3]]))


def test_absurd_layer_sizes_raise_value_error():
    with pytest.raises(ValueError, match="memory"):
        Linear(2**40, 2**20)
    with pytest.raises(ValueError, match="memory"):
        Embedding(2**50, 8)


def test_custom_loss_receives_lengths():
    x, y = _running_sum_task(8, T=6)
    lengths = np.array([6, 3, 1, 6, 2, 5, 4, 6])
    seen = []

    def loss(out, target, lengths=None):
        seen.append(None if lengths is None else lengths.copy())
        return _losses_mse(out, target, lengths=lengths)

    from rnnfast.losses import mse as _losses_mse
    model = _tagger()
    model.compile(loss, "adam")
    model.fit(x, y, lengths, epochs=1, batch_size=4, shuffle=False, progress=False)
    assert len(seen) == 2 and np.array_equal(seen[0], lengths[:4])
    with pytest.raises(ValueError, match="'loss'"):
        model.compile(["mse"])


def test_one_recurrent_call_per_batch():
    """No Python per time step: each recurrent layer runs once forward and once backward
    per batch, whatever T is."""
    x, y, lengths = _count_task(64, T=10)
    model = _classifier()
    model.compile("cross_entropy", "adam")
    lstm = model[1]
    calls = {"forward": 0, "backward": 0}
    fwd, bwd = lstm.forward, lstm.backward

    def count_forward(*a, **k):
        calls["forward"] += 1
        return fwd(*a, **k)

    def count_backward(*a, **k):
        calls["backward"] += 1
        return bwd(*a, **k)

    lstm.forward, lstm.backward = count_forward, count_backward
    model.fit(x, y, lengths, epochs=1, batch_size=16, progress=False)
    assert calls["backward"] == 4
    assert calls["forward"] == 4 + 1   # + one probe of the output shape (1 sample)


def test_float32_gradients_follow_float64():
    x, y, lengths = _count_task(16)
    grads = {}
    for dtype in (np.float32, np.float64):
        model = _classifier(dtype)
        model.compile("cross_entropy", "sgd")
        out = model.forward(x, lengths)
        assert out.dtype == dtype
        _, g, *_ = model._loss(out, y, lengths)
        assert g.dtype == dtype
        model.backward(g)
        grads[dtype] = model.grads
        assert all(a.dtype == dtype for a in model.grads.values())
    worst = max(np.max(np.abs(grads[np.float32][k] - grads[np.float64][k]))
                / np.max(np.abs(grads[np.float64][k])) for k in grads[np.float64])
    assert worst < 1e-4


def test_padding_row_stays_zero_through_training():
    x, y, lengths = _count_task(64)
    model = _classifier()
    emb = Embedding(5, 8, padding_idx=0, seed=0)
    model.layers[0] = emb
    model.compile("cross_entropy", optim.Adam(model.named_parameters(), lr=1e-2))
    model.fit(x, y, lengths, epochs=2, progress=False)
    assert np.all(emb.weight[0] == 0) and np.any(emb.weight[1] != 0)


def test_gradcheck_bare_recurrent_layer():
    gru = rnnfast.GRU(3, 4, num_layers=2, bidirectional=True, dtype=np.float64, seed=0)
    x = np.random.default_rng(0).standard_normal((5, 2, 3))   # the layer's (T, N, I)
    r = rnnfast.gradcheck(gru, (x, np.array([5, 3])))   # lengths (N,) = (2,)
    assert r.ok and len(r.errors) == 16 + 1


def test_more_bad_inputs():
    model = _classifier()
    model.compile("cross_entropy", "adam")
    x, y, lengths = _count_task(8)
    fit = lambda *a, **k: model.fit(*a, progress=False, **k)   # noqa: E731
    with pytest.raises(TypeError, match="'x'"):
        fit([[1, 2], [3]], y[:2])                      # ragged
    with pytest.raises(TypeError, match="'x'.*integer"):
        fit(np.array([["a", "b"]]), y[:1])
    with pytest.raises(TypeError, match="'x'.*integer"):
        fit(x.astype(bool), y)
    with pytest.raises(ValueError, match="'x'.*at least one sample"):
        fit(np.zeros((0, 10), np.int64), np.zeros(0, np.int64))
    with pytest.raises(TypeError, match="'x'"):
        model.predict(x.astype(np.complex64))
    reg = _tagger()
    reg.compile("mse", "adam")
    rx, ry = _running_sum_task(4)
    with pytest.raises(ValueError, match="x"):
        reg.fit(rx[..., :1], ry, progress=False)       # wrong feature size
    with pytest.raises(TypeError, match="'x'.*float"):
        reg.fit(rx.astype(np.int64), ry, progress=False)
    with pytest.raises(ValueError, match="'x'.*NaN"):
        reg.fit(rx * np.inf, ry, progress=False)


def test_pad_sequences():
    from rnnfast.models import pad_sequences
    x, lengths = pad_sequences([[3, 4, 5], [6], []])
    assert x.dtype.kind == "i" and np.array_equal(x, [[3, 4, 5], [6, 0, 0], [0, 0, 0]])
    assert np.array_equal(lengths, [3, 1, 0]) and lengths.dtype == np.int64
    f, fl = pad_sequences([np.ones((2, 3)), np.ones((4, 3))], maxlen=3, value=-1.0)
    assert f.shape == (2, 3, 3) and np.all(f[0, 2] == -1) and np.array_equal(fl, [2, 3])
    with pytest.raises(ValueError, match="trailing shape"):
        pad_sequences([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="empty"):
        pad_sequences([])


def test_custom_layer_trains_but_is_not_saved(tmp_path):
    from rnnfast.layers import Layer

    class Scale(Layer):
        _param_names = ("s",)

        def __init__(self):
            super().__init__()
            self.s = np.ones(1)

        def forward(self, x):
            self._cache = x if self.training else None
            return x * self.s

        def backward(self, dy):
            self.grads = {"s": np.array([np.sum(dy * self._cache)])}
            return dy * self.s

    x, y = _running_sum_task(8)
    model = Sequential([rnnfast.GRU(2, 4, batch_first=True, dtype=np.float64, seed=0),
                        Linear(4, 1, dtype=np.float64, seed=1), Scale()])
    assert rnnfast.gradcheck(model, x).ok
    model.compile("mse", optim.SGD(model.named_parameters(), lr=0.1))
    model.fit(x, y, epochs=2, progress=False)
    assert model[2].s[0] != 1.0
    with pytest.raises(TypeError, match="cannot save a layer of class Scale"):
        model.save(tmp_path / "m.npz")
    assert not os.listdir(tmp_path)


def test_one_to_many_with_output_lengths():
    """(N, F) -> RepeatVector(T) -> GRU(lengths) -> Linear: lengths count output steps."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 3))
    T = 6
    lengths = rng.integers(1, T + 1, 32)
    y = np.cumsum(np.repeat(x[:, None, :1], T, axis=1), axis=1) * 0.2
    model = Sequential([Linear(3, 8, dtype=np.float64, seed=0), Tanh(),
                        rnnfast.layers.RepeatVector(T),
                        rnnfast.GRU(8, 8, batch_first=True, dtype=np.float64, seed=1),
                        Linear(8, 1, dtype=np.float64, seed=2)])
    model.compile("mse", optim.Adam(model.named_parameters(), lr=1e-2))
    hist = model.fit(x, y, lengths, epochs=10, batch_size=8, progress=False)
    assert hist.history["loss"][-1] < 0.5 * hist.history["loss"][0]
    pred = model.predict(x, lengths)
    assert pred.shape == (32, T, 1)
    with pytest.raises(ValueError, match="lengths"):
        model.fit(x, y, lengths + T, progress=False)
    assert rnnfast.gradcheck(model, (x[:3], lengths[:3])).ok


def test_seq2seq_head_must_match_decoder_vocabulary():
    with pytest.raises(ValueError, match="head predicts 9 classes"):
        Seq2Seq(Embedding(5, 4), rnnfast.GRU(4, 8), Embedding(7, 4), rnnfast.GRU(4, 8),
                Linear(8, 9))


def test_load_random_corruptions_only_raise_value_error(tmp_path):
    model = _classifier()
    good = tmp_path / "g.npz"
    model.save(good)
    raw = good.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "ValueError": 0}
    for _ in range(300):
        b = bytearray(raw)
        for _ in range(int(rng.integers(1, 6))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        if rng.random() < 0.2:
            b = b[:int(rng.integers(len(b)))]
        path = tmp_path / "c.npz"
        path.write_bytes(bytes(b))
        try:
            loaded = load(path)
        except ValueError:
            outcomes["ValueError"] += 1
        else:   # a corruption that missed everything checked: still a working model
            outcomes["ok"] += 1
            assert loaded.predict(np.zeros((1, 3), np.int64)).shape == (1, 2)
    assert outcomes["ValueError"] > 250
