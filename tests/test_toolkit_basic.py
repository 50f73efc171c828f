"""Smoke tests of the whole training-toolkit surface (deeper checks in the other
test_toolkit_*.py files)."""
import numpy as np
import pytest

import rnnfast
from rnnfast.layers import Embedding, LastStep, Linear
from rnnfast.models import Seq2Seq, Sequential


def _count_task(n=256, T=10, V=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, V, (n, T))
    lengths = rng.integers(2, T + 1, n)
    valid = np.arange(T)[None] < lengths[:, None]
    y = (((x == 1) & valid).sum(1) > ((x == 2) & valid).sum(1)).astype(np.int64)
    return x, y, lengths


def _classifier(dtype=np.float32, V=5):
    return Sequential([Embedding(V, 8, dtype=dtype, seed=0),
                       rnnfast.LSTM(8, 16, batch_first=True, dtype=dtype, seed=1),
                       LastStep(), Linear(16, 2, dtype=dtype, seed=2)])


def test_top_level_exports():
    for name in ("Embedding", "Linear", "Sequential", "Seq2Seq", "gradcheck", "layers",
                 "losses", "optim", "init", "models", "TrainingDiverged"):
        assert hasattr(rnnfast, name), name


def test_fit_reduces_loss_and_shapes(tmp_path):
    x, y, lengths = _count_task()
    model = _classifier()
    model.compile("cross_entropy", rnnfast.optim.Adam(model.named_parameters(), lr=1e-2))
    hist = model.fit(x, y, lengths, epochs=4, batch_size=32, seed=0, progress=False,
                     validation_data=(x[:64], y[:64], lengths[:64]))
    loss = hist.history["loss"]
    assert loss[-1] < 0.6 * loss[0]
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy", "lr"}
    assert len(loss) == 4
    res = model.evaluate(x, y, lengths)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] > 0.7
    pred = model.predict(x, lengths, batch_size=100)
    assert pred.shape == (len(x), 2) and pred.dtype == np.float32


def test_save_load_round_trip_bitwise(tmp_path):
    x, y, lengths = _count_task(64)
    model = _classifier()
    model.compile("cross_entropy", rnnfast.optim.SGD(model.named_parameters(), lr=0.1))
    model.fit(x, y, lengths, epochs=1, progress=False)
    path = tmp_path / "m.npz"
    model.save(path)
    again = rnnfast.models.load(path)
    assert np.array_equal(model.predict(x, lengths), again.predict(x, lengths))
    for (k, a), (k2, b) in zip(model.named_parameters().items(),
                               again.named_parameters().items()):
        assert k == k2 and a.dtype == b.dtype and np.array_equal(a, b)


def test_gradcheck_sequential_float64():
    rng = np.random.default_rng(0)
    model = Sequential([Embedding(6, 4, dtype=np.float64, seed=0),
                        rnnfast.LSTM(4, 5, num_layers=2, bidirectional=True, batch_first=True,
                                     dtype=np.float64, seed=1),
                        Linear(10, 3, dtype=np.float64, seed=2)])
    x = rng.integers(0, 6, (3, 5))
    report = rnnfast.gradcheck(model, (x, np.array([5, 3, 1])))
    assert report.ok, report.summary()
    assert report.max_abs_error < 1e-7


def test_seq2seq_smoke():
    rng = np.random.default_rng(0)
    V = 7
    x = rng.integers(3, V, (8, 4))
    y = np.concatenate([x[:, ::-1], np.full((8, 1), 2)], axis=1)
    m = Seq2Seq(Embedding(V, 8, seed=0), rnnfast.GRU(8, 16, batch_first=True, seed=1),
                Embedding(V, 8, seed=2), rnnfast.GRU(8, 16, batch_first=True, seed=3),
                Linear(16, V, seed=4), bos=1, eos=2)
    m.compile("cross_entropy", rnnfast.optim.Adam(m.named_parameters(), lr=1e-2))
    hist = m.fit(x, y, np.full(8, 4), np.full(8, 5), epochs=3, batch_size=4, progress=False)
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    tok, n = m.generate(x, np.full(8, 4), max_len=6)
    assert tok.shape == (8, 6) and tok.dtype == np.int64 and n.shape == (8,)
    assert np.all((n >= 0) & (n <= 6))


def test_bad_token_ids_name_the_argument():
    model = _classifier()
    model.compile("cross_entropy", rnnfast.optim.Adam(model.named_parameters()))
    x, y, lengths = _count_task(8)
    with pytest.raises(ValueError, match="'x'.*token id 5"):
        model.fit(x + 1, y, lengths, progress=False)
    with pytest.raises(ValueError, match="'x'.*token id -1"):
        model.fit(x - 1, y, lengths, progress=False)
    with pytest.raises(TypeError, match="'x'.*integer"):
        model.fit(x.astype(np.float32), y, lengths, progress=False)
    with pytest.raises(ValueError, match="'y'"):
        model.fit(x, y[:, None], lengths, progress=False)
