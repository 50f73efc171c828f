"""Largest differences between the compiled backend and the reference, per cell.

    python bench/agreement_report.py

For every cell (RNN tanh/relu, LSTM, LSTM with projection, GRU, GRU reset-before) and a
spread of configurations (1-3 layers, both directions, variable lengths, batch-first,
sizes from 1 to 128), it runs the same network on the compiled backend and on the
pure-NumPy reference and prints the largest relative difference max|a-b| / max|b|:
forward = y, h_n, c_n; backward = dx, dh0, dc0 and every parameter gradient.
float64 compares float64 with float64; float32 compares the compiled float32 run with
the float64 reference on the same (float32-representable) data.
"""
import itertools

import numpy as np

import rnnfast

CELLS = {
    "RNN tanh": (rnnfast.RNN, {}),
    "RNN relu": (rnnfast.RNN, {"nonlinearity": "relu"}),
    "LSTM": (rnnfast.LSTM, {}),
    "LSTM proj": (rnnfast.LSTM, {"proj_size": 5}),
    "GRU": (rnnfast.GRU, {}),
    "GRU reset-before": (rnnfast.GRU, {"reset_after": False}),
}

CONFIGS = [  # (T, N, I, H, layers, bidirectional, lengths?, batch_first)
    (1, 1, 1, 8, 1, False, False, False),
    (7, 3, 5, 9, 2, True, True, False),
    (13, 5, 17, 33, 3, True, True, True),
    (40, 8, 64, 128, 2, True, True, False),
    (100, 4, 32, 64, 1, False, False, False),
]


def rel(a, b):
    d = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
    s = float(np.max(np.abs(b))) if b.size else 0.0
    return d / s if s > 0 else d


def run(cls, kw, cfg, dtype, backend, data):
    T, N, I, H, layers, bidi, _, bf = cfg
    layer = cls(I, H, num_layers=layers, bidirectional=bidi, batch_first=bf, dtype=dtype,
                seed=0, backend=backend, **kw)
    layer.load_state_dict(data["params"])
    x = data["x"].astype(dtype)
    y, state = layer(x, lengths=data["lengths"])
    dy = data["dy"].astype(dtype)
    if isinstance(state, tuple):
        dx, (dh0, dc0), grads = layer.backward(dy)
        fwd, bwd = [y, *state], [dx, dh0, dc0, *grads.values()]
    else:
        dx, dh0, grads = layer.backward(dy)
        fwd, bwd = [y, state], [dx, dh0, *grads.values()]
    return fwd, bwd


def main():
    rng = np.random.default_rng(0)
    table = {}
    for (name, (cls, kw)), cfg in itertools.product(CELLS.items(), CONFIGS):
        T, N, I, H, layers, bidi, use_len, bf = cfg
        proto = cls(I, H, num_layers=layers, bidirectional=bidi, batch_first=bf,
                    dtype=np.float64, seed=1, **kw)
        params = {k: v.astype(np.float32).astype(np.float64)
                  for k, v in proto.state_dict().items()}
        x = rng.standard_normal((N, T, I) if bf else (T, N, I)).astype(np.float32)
        lengths = rng.integers(1, T + 1, N) if use_len else None
        y_shape = proto(x.astype(np.float64), lengths=lengths)[0].shape
        data = {"params": params, "x": x.astype(np.float64), "lengths": lengths,
                "dy": rng.standard_normal(y_shape).astype(np.float32).astype(np.float64)}
        ref_f, ref_b = run(cls, kw, cfg, np.float64, "reference", data)
        row = table.setdefault(name, [0.0, 0.0, 0.0, 0.0])
        for col, dtype in ((0, np.float64), (2, np.float32)):
            f, b = run(cls, kw, cfg, dtype, "cpu", data)
            row[col] = max(row[col], max(rel(a, r) for a, r in zip(f, ref_f)))
            row[col + 1] = max(row[col + 1], max(rel(a, r) for a, r in zip(b, ref_b)))
    print(f"rnnfast {rnnfast.__version__}, kernel {rnnfast._config.config()['gemm']['kernel']}:"
          " largest relative difference, compiled vs reference")
    print(f"{'cell':18s} {'f64 forward':>12s} {'f64 backward':>13s} {'f32 forward':>12s} "
          f"{'f32 backward':>13s}")
    for name, (f64f, f64b, f32f, f32b) in table.items():
        print(f"{name:18s} {f64f:12.2e} {f64b:13.2e} {f32f:12.2e} {f32b:13.2e}")


if __name__ == "__main__":
    main()
