"""10,000 forward/backward calls leave resident memory flat (no leak in the kernels, the
workspace pool or the training caches)."""
import sys

import numpy as np
import pytest

import rnnfast

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_resident_memory_flat_over_10000_calls():
    rng = np.random.default_rng(0)
    layers = [rnnfast.LSTM(6, 9, num_layers=2, bidirectional=True, proj_size=4, seed=0),
              rnnfast.GRU(6, 9, seed=1, reset_after=False), rnnfast.RNN(6, 9, seed=2)]
    x = rng.standard_normal((5, 3, 6)).astype(np.float32)
    lengths = np.array([5, 2, 4])

    def burst(n):
        for i in range(n):
            layer = layers[i % 3]
            y, _ = layer(x, lengths=lengths)
            layer.backward(np.ones_like(y))

    burst(1000)                      # warm-up: pools, caches, allocator arenas
    before = rss_bytes()
    burst(10_000)
    grown = rss_bytes() - before
    assert grown < 4 * 2**20, f"resident memory grew by {grown / 2**20:.1f} MiB"
