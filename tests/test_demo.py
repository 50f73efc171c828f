"""`rnnfast demo`: a tiny run writes the PNG, the HTML and the report; bad input is a
clear error; the signal scanner, the cell search and the LSTM cell recomputation are
right on cases worked by hand."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tqdm")

from rnnfast import demo  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SMALL_PY = '''def greet(name, times=2):
    """Say hello."""
    for i in range(times):
        if i % 2:
            print("hello, " + name)  # a 'comment'
        else:
            print('hi ' + name)
    return {"name": name, 'n': times}


class Box:
    def __init__(self, items):
        self.items = list(items)

    def total(self):
        s = "sum: "
        return s + str(sum(self.items))
'''


@pytest.fixture(autouse=True)
def _restore_threads():
    import rnnfast
    before = rnnfast.get_num_threads()
    yield
    rnnfast.set_num_threads(before)


def test_tiny_demo_run_writes_outputs(tmp_path, capsys):
    text = tmp_path / "small.py"
    text.write_text(SMALL_PY * 20, encoding="utf-8")
    out = tmp_path / "out"
    rc = demo.main(["--text", str(text), "--minutes", "0.05", "--hidden", "32",
                    "--out", str(out), "--threads", "1", "--no-progress", "--seq-len", "32",
                    "--batch", "8"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "sample (temperature 0.7)" in printed
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["steps"] >= 1 and np.isfinite(rep["held_out_bpc"])
    assert set(rep["cells"]) == {"in_string", "indent", "column"}
    for v in rep["cells"].values():
        assert -1.0 <= v["correlation"] <= 1.0
        assert v["cell"].startswith(("c[", "h["))
    png = (out / "loss.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000
    page = (out / "cells.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.count("<pre>") == 3
    assert "background:rgb(" in page and "</html>" in page


def _env_for_installed_package():
    """The subprocess imports the rnnfast these tests import (the installed package in
    CI), not the source tree's, which has no compiled core there."""
    from conftest import _PACKAGE_ROOT
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"]
                                         if env.get("PYTHONPATH") else "")
    return env


def test_gru_cell_and_module_entry_point(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text(SMALL_PY * 10, encoding="utf-8")
    out = tmp_path / "o"
    r = subprocess.run([sys.executable, "-m", "rnnfast", "demo", "--text", str(text),
                        "--minutes", "0.03", "--hidden", "16", "--cell", "gru", "--out",
                        str(out), "--threads", "1", "--batch", "4", "--seq-len", "16"],
                       cwd=tmp_path, env=_env_for_installed_package(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert rep["cell"] == "gru"
    assert all(v["cell"].startswith("h[") for v in rep["cells"].values())


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    (b"", "empty"),
    (b"\xff\xfe\x00bad bytes \xc3\x28" * 20, "not UTF-8"),
    (b"short", "too short"),
])
def test_bad_text_is_a_clear_error(tmp_path, capsys, content, message):
    path = tmp_path / "input.txt"
    if content is not None:
        path.write_bytes(content)
    rc = demo.main(["--text", str(path), "--minutes", "0.01", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "rnnfast demo: error:" in err and message in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args,message", [
    (["--minutes", "0"], "--minutes"), (["--minutes", "nan"], "--minutes"),
    (["--hidden", "0"], "--hidden"), (["--threads", "0"], "--threads"),
    (["--lr", "-1"], "--lr"),
])
def test_bad_options_are_clear_errors(capsys, args, message):
    assert demo.main(args) == 2
    assert message in capsys.readouterr().err


def test_out_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("x")
    assert demo.main(["--out", str(f), "--minutes", "0.01"]) == 2
    assert "not a directory" in capsys.readouterr().err


def test_text_signals_by_hand():
    text = 'x = "a#b"  # it\'s\n    y = \'\'\'q\n"z\'\'\'\nw'
    s = demo.text_signals(text)
    got = "".join("S" if v else "." for v in s["in_string"])
    # line 1 (18 chars): "a#b" is a string, the quote in the comment opens nothing;
    # line 2 (13): the triple-quoted string opens and runs over the newline;
    # line 3 (6): it closes at the second '\'\'\''; line 4: w
    want = ("....SSSSS" + "." * 9) + ("." * 8 + "S" * 5) + ("S" * 5 + ".") + "."
    assert got == want
    assert s["indent"].tolist() == [0] * 18 + [4] * 13 + [0] * 7
    assert s["column"][:3].tolist() == [0, 1, 2] and s["column"][18] == 0
    assert s["column"][-1] == 0 and s["column"][-2] == 5


def test_text_signals_escapes_and_unterminated():
    s = demo.text_signals('"a\\"b" c\n\'open\nd')
    got = "".join("S" if v else "." for v in s["in_string"])
    assert got == "SSSSSS...SSSSS.."


def test_find_cells_picks_the_matching_cell():
    rng = np.random.default_rng(0)
    T = 500
    sig = {"a": rng.standard_normal(T), "b": np.arange(T, dtype=float)}
    acts = rng.standard_normal((T, 5))
    acts[:, 3] = -2 * sig["a"] + 0.01 * rng.standard_normal(T)
    acts[:, 1] = sig["b"] ** 0.5
    acts[:, 4] = 1.0                          # constant: correlation 0, not NaN
    best = demo.find_cells(acts, sig, [f"u{k}" for k in range(5)])
    assert best["a"]["cell"] == 3 and best["a"]["r"] < -0.99
    assert best["b"]["name"] == "u1" and best["b"]["r"] > 0.9
    r = best["a"]["all_r"]
    np.testing.assert_allclose(r[:4], [np.corrcoef(acts[:, k], sig["a"])[0, 1]
                                       for k in range(4)], rtol=1e-12)
    assert r[4] == 0.0
    with pytest.raises(ValueError, match="signals"):
        demo.find_cells(acts, {"x": np.zeros(3)})


def test_lstm_cells_recomputed_match_the_layer():
    model = demo.CharModel(12, 8, "lstm", seed=0, dtype=np.float64)
    ids = np.random.default_rng(0).integers(0, 12, (30, 1))
    model.eval()
    st = model.zero_state(1)
    _, (h_n, c_n), e, y = model.forward(ids, st)
    c = model.lstm_cells(e, y, st)
    np.testing.assert_allclose(c[-1], c_n[0], rtol=1e-12, atol=1e-14)
    # and a chunk started from a carried state
    _, (h2, c2), e2, y2 = model.forward(ids[:7], (h_n, c_n))
    np.testing.assert_allclose(model.lstm_cells(e2, y2, (h_n, c_n))[-1], c2[0],
                               rtol=1e-12, atol=1e-14)


def test_render_html_escapes_and_validates():
    page = demo.render_html("<a&b>\n", [{"heading": "h<1>", "values": [1, -1, 0, 0.5, 0, 0]}])
    assert "&lt;" in page and "&amp;" in page and "h&lt;1&gt;" in page
    assert "rgb(255,55,55)" in page and "rgb(55,55,255)" in page
    with pytest.raises(ValueError, match="expected 6 values"):
        demo.render_html("<a&b>\n", [{"heading": "x", "values": [1, 2]}])


def test_stdlib_corpus_is_deterministic_utf8_python():
    text, starts, names = demo.stdlib_text(max_chars=200_000)
    again = demo.stdlib_text(max_chars=200_000)
    assert again[0] == text and again[2] == names
    assert 100_000 <= len(text) < 400_000 and names == sorted(names)
    assert all(n.endswith(".py") for n in names) and starts[0] == 0
    assert "def " in text


def test_readme_demo_block_prints_what_it_says(capsys):
    import re
    doc = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "find_cells" in b]
    assert blocks
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md[demo python block {i}]", "exec"), {})
    assert "string cell 1.0" in capsys.readouterr().out
