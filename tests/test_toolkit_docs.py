"""The Python examples of docs/toolkit.md run as written (the README's: test_readme.py)."""
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
BLOCKS = [(name, i, code)
          for name in ("toolkit.md",)
          for i, code in enumerate(re.findall(r"```python\n(.*?)```",
                                              (DOCS / name).read_text(encoding="utf-8"), re.S))]


def test_docs_have_examples():
    assert len(BLOCKS) >= 1


@pytest.mark.parametrize("name,index,code", BLOCKS, ids=[f"{n}[{i}]" for n, i, _ in BLOCKS])
def test_doc_example_runs(name, index, code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{name}[python block {index}]", "exec"), {})
