"""The README's Python examples run as written (the torch one only where torch is)."""
import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_example_runs(index, tmp_path, monkeypatch, capsys):
    code = BLOCKS[index]
    if "import torch" in code:
        pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(code, f"README.md[python block {index}]", "exec"), namespace)
    if "load_state_dict" in code:  # the printed difference must be float32 round-off
        printed = float(capsys.readouterr().out.split()[-1])
        assert printed < 1e-5
    if "p -= 0.1 * grads[name]" in code:  # the in-place SGD step really updated the layer
        lstm, grads = namespace["lstm"], namespace["grads"]
        assert set(grads) == {name for name, _ in lstm.named_parameters()}
