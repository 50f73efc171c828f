"""Helpers shared by the example scripts (not part of rnnfast).

Importing this module makes ``import rnnfast`` work when a script runs from a source
checkout (``python examples/x.py``) without installing the package.
"""
import os
import sys

try:
    import rnnfast as _rnnfast  # noqa: F401
except ImportError:  # running from a checkout: the repository root holds the package
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported only when a figure is drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save(fig, out, name, dpi=90):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, name)
    fig.savefig(path, dpi=dpi)
    import matplotlib.pyplot as plt
    plt.close(fig)
    print(f"wrote {path}")
    return path


def parser(doc):
    """argparse parser with the options every example shares."""
    import argparse
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="small, fast settings (used by the tests)")
    p.add_argument("--out", default="examples_out", help="directory for the PNG")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for rnnfast's kernels (default: rnnfast's setting)")
    return p


def apply_threads(args):
    if args.threads is not None:
        import rnnfast
        rnnfast.set_num_threads(args.threads)


def collect(**layers):
    """(params, grads getter) over named layers: names 'layer.param'."""
    def params():
        return {f"{n}.{k}": v for n, layer in layers.items()
                for k, v in dict(layer.named_parameters()).items()}

    def grads():
        return {f"{n}.{k}": v for n, layer in layers.items()
                for k, v in layer.grads.items()}
    return params, grads


def smooth(values, window):
    import numpy as np
    values = np.asarray(values, dtype=float)
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")
