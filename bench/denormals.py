"""Do denormal (subnormal) numbers slow rnnfast's kernels? A benchmark.

x86 cores take a slow microcode path for arithmetic on subnormal floats. Recurrent nets
meet them when states decay toward zero (small inputs, saturated gates, long sequences).
rnnfast's kernels set FTZ/DAZ (flush-to-zero, denormals-are-zero) on entry and restore
the caller's mode on exit, so subnormal inputs and states cost nothing extra.

For each case this times the same call on ordinary inputs and on inputs scaled into the
subnormal range (x, h0, c0 and, in training, dy ~ 1e-39 in float32 / 1e-310 in float64,
so every gate pre-activation, c_t and h_t is subnormal), interleaved round by round,
and prints the median ratio subnormal / normal. A NumPy loop over the same LSTM, which
runs without FTZ/DAZ, is the control: it shows what subnormals cost on this machine.

    python bench/denormals.py [--rounds 9] [--threads 2]
"""
import argparse
import statistics
import time

import numpy as np

import rnnfast

TINY = {np.float32: 1e-39, np.float64: 1e-310}


def _numpy_lstm(layer, x, h0, c0):
    """One-layer LSTM forward as a NumPy loop (no FTZ/DAZ): the control."""
    p = layer.state_dict()
    w_ih, w_hh = p["weight_ih_l0"], p["weight_hh_l0"]
    b = p["bias_ih_l0"] + p["bias_hh_l0"]
    H = w_hh.shape[1]
    gx = x @ w_ih.T + b
    h, c = h0[0], c0[0]
    w_hh_t = np.ascontiguousarray(w_hh.T)
    for t in range(x.shape[0]):
        g = gx[t] + h @ w_hh_t
        i = 1 / (1 + np.exp(-g[:, :H]))
        f = 1 / (1 + np.exp(-g[:, H:2 * H]))
        o = 1 / (1 + np.exp(-g[:, 3 * H:]))
        c = f * c + i * np.tanh(g[:, 2 * H:3 * H])
        h = o * np.tanh(c)
    return h


def _cases(dtype, T, N, H):
    rng = np.random.default_rng(0)
    layer = rnnfast.LSTM(H, H, dtype=dtype, seed=0)
    base = {
        "x": rng.standard_normal((T, N, H)).astype(dtype),
        "h0": rng.standard_normal((1, N, H)).astype(dtype),
        "c0": rng.standard_normal((1, N, H)).astype(dtype),
        "dy": rng.standard_normal((T, N, H)).astype(dtype),
    }
    normal = {k: v * dtype(0.5) for k, v in base.items()}
    tiny = {k: (v * TINY[dtype]).astype(dtype) for k, v in base.items()}
    assert all(np.abs(v).max() < np.finfo(dtype).tiny for v in tiny.values())

    def infer(d):
        layer.eval()
        return lambda: layer(d["x"], (d["h0"], d["c0"]))

    def train(d):
        layer.train()

        def run():
            layer(d["x"], (d["h0"], d["c0"]))
            layer.backward(d["dy"])
        return run

    def control(d):
        return lambda: _numpy_lstm(layer, d["x"], d["h0"], d["c0"])

    return [("rnnfast inference", infer), ("rnnfast training", train),
            ("NumPy loop (control)", control)], normal, tiny


def _time(fn, min_s=0.05):
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s:
            return dt / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--T", type=int, default=50)
    ap.add_argument("--N", type=int, default=8)
    ap.add_argument("--H", type=int, default=256)
    args = ap.parse_args(argv)
    if args.threads:
        rnnfast.set_num_threads(args.threads)
    print(f"rnnfast {rnnfast.__version__}, {rnnfast.get_num_threads()} threads, LSTM "
          f"T={args.T} N={args.N} I=H={args.H}, {args.rounds} interleaved rounds, medians")
    print(f"{'case':<22} {'dtype':<8} {'normal ms':>10} {'subnormal ms':>13} {'ratio':>7}")
    rows = []
    for dtype in (np.float32, np.float64):
        cases, normal, tiny = _cases(dtype, args.T, args.N, args.H)
        for name, make in cases:
            fa, fb = make(normal), make(tiny)
            ta, tb = [], []
            for _ in range(args.rounds):
                ta.append(_time(fa))
                tb.append(_time(fb))
            a, b = statistics.median(ta), statistics.median(tb)
            rows.append((name, np.dtype(dtype).name, a, b))
            print(f"{name:<22} {np.dtype(dtype).name:<8} {a * 1e3:10.3f} {b * 1e3:13.3f} "
                  f"{b / a:7.2f}")
    return rows


if __name__ == "__main__":
    main()
