"""Every example in examples/ runs in quick mode, reaches its stated metric and writes a
valid PNG; the one-to-one example reproduces the lecture's (seed 003) figures."""
import importlib.util
import os
import re
import struct
import sys
import zlib

import numpy as np
import pytest

pytest.importorskip("matplotlib")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def load(name):
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(f"rnnfast_example_{name}",
                                                  os.path.join(EXAMPLES, name + ".py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def assert_png(path):
    """A real PNG: signature, IHDR first with a sane size, every chunk's CRC, IEND last."""
    assert os.path.isfile(path), path
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, kinds = 8, []
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        (crc,) = struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])
        assert zlib.crc32(kind + body) == crc, f"bad CRC in {kind!r} of {path}"
        kinds.append(kind)
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
            assert 100 <= w <= 4000 and 100 <= h <= 4000, (w, h)
        pos += 12 + n
    assert kinds[0] == b"IHDR" and kinds[-1] == b"IEND" and b"IDAT" in kinds


def run(name, capsys, tmp_path, *extra):
    mod = load(name)
    result = mod.main(["--quick", "--out", str(tmp_path), "--threads", "1", *extra])
    out = capsys.readouterr().out
    m = re.findall(r"^METRIC (.*)$", out, flags=re.M)
    assert m, out
    metrics = dict(kv.split("=") for kv in m[-1].split())
    assert_png(os.path.join(str(tmp_path), name + ".png"))
    return metrics, result, out


@pytest.fixture(autouse=True)
def _restore_threads():
    import rnnfast
    before = rnnfast.get_num_threads()
    yield
    rnnfast.set_num_threads(before)


# ----------------------------------------------------------------- one-to-one (seed 003)
def test_one_to_one_reproduces_seed_003(capsys, tmp_path):
    mod = load("one_to_one_mlp")
    got, w1_new, _ = mod.run()
    assert np.round(got["s1"], 4).tolist() == [4.3, 5.3]
    assert round(got["a1_1"], 4) == 0.9866
    assert round(got["s2_1"], 4) == 2.0862
    assert np.round(got["yhat"], 4).tolist() == [0.8896, 0.8004]
    assert round(got["E"], 4) == 0.5932
    assert round(got["dE_da1_1"], 4) == 0.1502
    assert round(got["dE_dw1_01"], 4) == 0.0020
    # the lecture multiplies rounded factors, (.8896 - .1) * .8896 * (1 - .8896) = .07755
    assert round((0.8896 - 0.1) * 0.8896 * (1 - 0.8896), 4) == 0.0775
    assert abs(got["dE_dw2_01"] - 0.0775) <= 1e-4
    np.testing.assert_array_equal(np.round(got["c1"], 4), mod.EXPECTED["c1"])
    np.testing.assert_array_equal(np.round(got["c2"], 4), mod.EXPECTED["c2"])
    # the lecture's updated w1 after one SGD step (lr 0.01)
    np.testing.assert_array_equal(np.round(w1_new, 4), [[0.4994, 0.4997], [0.0989, 0.1996],
                                                        [0.3029, 0.4017], [0.4978, 0.5989]])
    assert mod.main(["--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "yhat = [0.8896, 0.8004]  E = 0.5932" in out
    assert_png(os.path.join(str(tmp_path), "one_to_one_mlp.png"))


def test_one_to_one_gradients_match_finite_differences():
    mod = load("one_to_one_mlp")
    r = mod.forward_backward(mod.X[0], mod.Y[0])
    eps = 1e-6
    for name, w, key in (("w1", mod.W1, "c1"), ("w2", mod.W2, "c2")):
        for idx in np.ndindex(w.shape):
            wp, wm = w.copy(), w.copy()
            wp[idx] += eps
            wm[idx] -= eps
            args_p = (wp, mod.W2) if name == "w1" else (mod.W1, wp)
            args_m = (wm, mod.W2) if name == "w1" else (mod.W1, wm)
            fd = (mod.forward_backward(mod.X[0], mod.Y[0], *args_p)["E"]
                  - mod.forward_backward(mod.X[0], mod.Y[0], *args_m)["E"]) / (2 * eps)
            assert abs(fd - r[key][idx]) < 1e-8


# ------------------------------------------------------------------------ recurrent ones
def test_hello_char(capsys, tmp_path):
    metrics, result, _ = run("hello_char", capsys, tmp_path)
    assert float(metrics["accuracy"]) == 1.0
    assert metrics["generated"] == "hello"


def test_sentiment_order_matters(capsys, tmp_path):
    metrics, _, _ = run("many_to_one_sentiment", capsys, tmp_path)
    assert float(metrics["bow_accuracy"]) == 0.5      # exact, by construction
    assert float(metrics["rnn_accuracy"]) >= 0.9


def test_sentiment_corpus_pairs_share_their_bag_of_words():
    mod = load("many_to_one_sentiment")
    rng = np.random.default_rng(1)
    for _ in range(200):
        (a, ya), (b, yb) = mod.make_pair(rng)
        assert sorted(a) == sorted(b) and ya != yb
        k = a.index("no")
        assert a[k + 1] in mod.OPINIONS                      # "no" flips the opinion
        j = b.index("no")
        assert j + 1 >= len(b) or b[j + 1] not in mod.OPINIONS


def test_tagging(capsys, tmp_path):
    metrics, _, _ = run("many_to_many_tagging", capsys, tmp_path)
    assert float(metrics["token_accuracy"]) >= 0.9
    assert float(metrics["baseline_accuracy"]) <= 0.7


def test_seq2seq_reverse(capsys, tmp_path):
    metrics, _, _ = run("seq2seq_reverse", capsys, tmp_path)
    assert float(metrics["exact_match"]) >= 0.8


def test_one_to_many(capsys, tmp_path):
    metrics, _, _ = run("one_to_many", capsys, tmp_path)
    assert float(metrics["ratio"]) <= 0.25


def test_forecasting_beats_last_value(capsys, tmp_path):
    metrics, _, _ = run("forecasting", capsys, tmp_path)
    assert float(metrics["ratio"]) <= 0.5


def test_gradient_flow(capsys, tmp_path):
    metrics, result, _ = run("gradient_flow", capsys, tmp_path, "--steps", "20",
                             "--hidden", "16")
    assert float(metrics["rnn_decay"]) < 1.0
    assert float(metrics["exploding_ratio"]) > 1.0
    assert float(metrics["lstm_forget_bias3_decay"]) > float(metrics["lstm_decay"])
    assert max(result["clipped"]) <= 1.0 + 1e-6 < max(result["raw"])


def test_gradient_flow_norms_are_the_true_gradients():
    """dh0 of the chunked call equals a finite difference of L w.r.t. h_(T-d)."""
    mod = load("gradient_flow")
    rng = np.random.default_rng(0)
    T, N, I, H = 6, 2, 3, 4
    x = rng.standard_normal((T, N, I))
    v = rng.standard_normal((N, H))
    for cell in ("rnn", "gru"):
        layer = mod.make_layer(cell, I, H, 0)
        norms, _ = mod.state_gradient_norms(layer, cell, x, v)
        d = 3
        layer.eval()
        _, h = layer(x[:T - d])
        grad = np.zeros_like(h)
        eps = 1e-6
        for idx in np.ndindex(h.shape):
            hp, hm = h.copy(), h.copy()
            hp[idx] += eps
            hm[idx] -= eps
            lp = np.sum(v * layer(x[T - d:], hx=hp)[0][-1])
            lm = np.sum(v * layer(x[T - d:], hx=hm)[0][-1])
            grad[idx] = (lp - lm) / (2 * eps)
        want = np.mean(np.linalg.norm(grad[0], axis=1))
        assert abs(norms[d] - want) <= 1e-7 * max(1.0, want)
