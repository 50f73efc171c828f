"""`import rnnfast` is cheap and imports nothing optional."""
from conftest import run_python

OPTIONAL = ("torch", "onnx", "onnxruntime", "threadpoolctl", "scipy", "tqdm",
            "matplotlib", "cupy", "hypothesis", "pytest")


def test_import_pulls_in_nothing_optional():
    code = ("import sys, rnnfast\n"
            f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {OPTIONAL!r})\n"
            "print(','.join(bad))")
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"import rnnfast imported: {out.stdout.strip()}"
