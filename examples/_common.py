"""Helpers shared by the example scripts (not part of rnnfast).

Importing this module makes ``import rnnfast`` work when a script runs from a source
checkout (``python examples/x.py``) without installing the package.
"""
import os
import sys

try:
    import rnnfast  # noqa: F401
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
