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


def test_leased_results_are_reused_only_once_dropped():
    """Large outputs and gradients are leased from the workspace: a later call reuses
    their memory once the caller has dropped them, never while a view of them lives."""
    from rnnfast import _cpu
    ws = _cpu.workspace
    rng = np.random.default_rng(0)
    # dx is 40*16*512*4 bytes = 1.25 MiB, above the lease threshold
    layer = rnnfast.GRU(512, 64, bidirectional=True, seed=0)
    x = rng.standard_normal((40, 16, 512)).astype(np.float32)
    assert x.nbytes >= ws.LEASE_MIN_BYTES

    def step(scale):
        y, _ = layer(x)
        dx, _, _ = layer.backward(np.full_like(y, scale))
        return dx

    dx = step(1.0)
    assert dx.nbytes >= ws.LEASE_MIN_BYTES
    assert type(dx.base).__name__ == "_Lease" and dx.flags.writeable
    view = dx[3]                      # a view keeps the whole buffer leased
    kept = view.copy()
    addr, size = dx.__array_interface__["data"][0], dx.size
    del dx
    layer.grads = None
    for scale in (2.0, -3.0, 5.0):    # later steps must not write over the view
        other = step(scale)
        assert other.__array_interface__["data"][0] != addr
        del other
    np.testing.assert_array_equal(view, kept)
    # once the last view is gone the buffer is back in the pool for a later call
    ws.clear()
    del view
    back = ws.take((size,), np.float32)
    assert back.__array_interface__["data"][0] == addr
    ws.give(back)


def test_workspace_lease_small_arrays_are_plain():
    from rnnfast import _cpu
    a = _cpu.workspace.lease((3, 4), np.float64)
    assert a.base is None and a.shape == (3, 4) and a.dtype == np.float64
    b = _cpu.workspace.lease((1 << 18, 2), np.float32)   # 2 MiB
    assert type(b.base).__name__ == "_Lease" and b.shape == (1 << 18, 2)
    b[:] = 1.5
    assert float(b.sum()) == 1.5 * b.size
