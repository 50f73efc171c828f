"""Vanishing and exploding gradients, measured (seeds 002 and 004).

For a loss that reads only the last output, L = v . y_T, the lecture's chain rule says
dL/dh_{T-d} is a product of d step Jacobians dh_t/dh_{t-1}, so its norm shrinks or grows
geometrically with the distance d from the loss.  This script measures that norm with
the layers' own backward pass, exactly: for every d it runs the first T-d steps to get
the state h_{T-d}, runs the remaining d steps as a training-mode call starting from that
state with dy nonzero only at the last step, and reads ``dh0`` = dL/dh_{T-d} from
``backward``.  (Chunked calls are exact: the forward of a chunk started from the
carried state equals the forward of the whole sequence.)

Panels: (a) RNN, LSTM and GRU with their default (PyTorch) initialisation; (b) the same
with orthogonal recurrent weights; (c) a tanh RNN with W_hh = gain * orthogonal for gains
0.5, 1, 2 -- vanishing, near the edge, exploding (panel b adds an LSTM whose forget
gates start open, bias 3: the cell path c_t = f c_(t-1) + ... then carries the gradient
far); (d) gradient clipping: the global norm
of the parameter gradient of the gain-2 RNN against sequence length, before and after
clipping it to norm 1 (clipping bounds the update; it cannot restore vanished gradients).
Printed: per-step decay ratio (geometric mean of |dL/dh_{t-1}| / |dL/dh_t|) and the
ratio over the full distance for each configuration.

Run: python examples/gradient_flow.py [--quick] [--out DIR]
"""
import os
import sys
import time

import numpy as np

import _common
import rnnfast
import rnnfast.init
from rnnfast.optim import clip_grad_norm


def make_layer(cell, input_size, hidden, seed, init="default", gain=1.0, forget_bias=0.0):
    cls = {"rnn": rnnfast.RNN, "lstm": rnnfast.LSTM, "gru": rnnfast.GRU}[cell]
    layer = cls(input_size, hidden, dtype=np.float64, seed=seed)
    if init == "orthogonal":
        rng = np.random.default_rng(seed + 1000)
        w = layer.weight_hh_l0
        n_gates = w.shape[0] // hidden
        for g in range(n_gates):       # each gate's block is its own orthogonal matrix
            rnnfast.init.orthogonal_(w[g * hidden:(g + 1) * hidden], gain=gain, rng=rng)
        for name in ("bias_ih_l0", "bias_hh_l0"):
            getattr(layer, name)[...] = 0.0
    if forget_bias:                    # LSTM gate order i, f, g, o: rows H..2H are f
        layer.bias_ih_l0[hidden:2 * hidden] = forget_bias
    return layer


def _state(cell, out):
    return out[1]


def state_gradient_norms(layer, cell, x, v):
    """||dL/dh_{T-d}|| for d = 0..T-1 (mean over the batch), L = sum(v * y_T).

    Returns (norms_h, norms_c); norms_c is None except for the LSTM.
    """
    T, N, _ = x.shape
    H = layer.hidden_size
    norms_h = np.empty(T)
    norms_c = np.empty(T) if cell == "lstm" else None
    norms_h[0] = np.mean(np.linalg.norm(v, axis=1))      # d = 0: dL/dh_T = v
    if cell == "lstm":
        norms_c[0] = 0.0
    for d in range(1, T):
        layer.eval()
        hx = None
        if T - d > 0:
            hx = _state(cell, layer(x[:T - d]))
        layer.train()
        y, _ = layer(x[T - d:], hx=hx)
        dy = np.zeros_like(y)
        dy[-1] = v
        if cell == "lstm":
            _, (dh0, dc0), _ = layer.backward(dy)
            norms_c[d] = np.mean(np.linalg.norm(dc0[0], axis=1))
        else:
            _, dh0, _ = layer.backward(dy)
        norms_h[d] = np.mean(np.linalg.norm(dh0.reshape(N, H), axis=1))
    return norms_h, norms_c


def parameter_gradients(layer, x, v):
    layer.train()
    y, _ = layer(x)
    dy = np.zeros_like(y)
    dy[-1] = v
    return dict(layer.backward(dy)[-1])


def global_norm(grads):
    return float(np.sqrt(sum(np.sum(g * g) for g in grads.values())))


def decay_ratio(norms):
    """Geometric mean of the per-step ratio |dL/dh_{t-1}| / |dL/dh_t|."""
    n = len(norms) - 1
    return float((norms[-1] / norms[0]) ** (1.0 / n))


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--steps", type=int, default=None, help="sequence length T")
    p.add_argument("--hidden", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    T = args.steps or (30 if args.quick else 100)
    H = args.hidden or (32 if args.quick else 64)
    N, I = 8, 8
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((T, N, I))
    v = rng.standard_normal((N, H)) / np.sqrt(H)

    curves = {}
    print(f"gradient flow: ||dL/dh_(T-d)|| for d = 0..{T - 1}, batch {N}, hidden {H}")
    print(f"{'configuration':34s} {'per-step ratio':>15s} {'|g(T-1)|/|g(0)|':>16s}")
    for init in ("default", "orthogonal"):
        for cell in ("rnn", "lstm", "gru"):
            layer = make_layer(cell, I, H, args.seed, init)
            nh, nc = state_gradient_norms(layer, cell, x, v)
            curves[(init, cell)] = (nh, nc)
            print(f"{cell.upper() + ', ' + init + ' init':34s} {decay_ratio(nh):15.4f} "
                  f"{nh[-1] / nh[0]:16.3e}")
    layer = make_layer("lstm", I, H, args.seed, "orthogonal", forget_bias=3.0)
    nh, nc = state_gradient_norms(layer, "lstm", x, v)
    curves[("orthogonal", "lstm_fb")] = (nh, nc)
    print(f"{'LSTM, orthogonal, forget bias 3':34s} {decay_ratio(nh):15.4f} "
          f"{nh[-1] / nh[0]:16.3e}")
    gains = (0.5, 1.0, 2.0)
    x_small = 0.1 * x
    for gain in gains:
        layer = make_layer("rnn", I, H, args.seed, "orthogonal", gain)
        nh, _ = state_gradient_norms(layer, "rnn", x_small, v)
        curves[("gain", gain)] = (nh, None)
        print(f"{f'RNN, W_hh = {gain:g} x orthogonal':34s} {decay_ratio(nh):15.4f} "
              f"{nh[-1] / nh[0]:16.3e}")

    # clipping: parameter-gradient norm against sequence length, gain-2 RNN
    lengths = np.unique(np.linspace(2, T, 12).astype(int))
    raw, clipped = [], []
    layer = make_layer("rnn", I, H, args.seed, "orthogonal", 2.0)
    for L in lengths:
        grads = parameter_gradients(layer, x_small[:L], v)
        before = clip_grad_norm(grads, 1.0)        # in place; returns the norm before
        raw.append(before)
        clipped.append(global_norm(grads))
    print(f"clipping (gain-2 RNN, max_norm 1): parameter-gradient norm at T={lengths[-1]} "
          f"{raw[-1]:.3e} -> {clipped[-1]:.3f}; at T={lengths[0]} {raw[0]:.3e} -> "
          f"{clipped[0]:.3f}")
    rd = decay_ratio(curves[("default", "rnn")][0])
    ld = decay_ratio(curves[("default", "lstm")][0])
    ex = decay_ratio(curves[("gain", 2.0)][0])
    fb = decay_ratio(curves[("orthogonal", "lstm_fb")][0])
    print(f"METRIC rnn_decay={rd:.4f} lstm_decay={ld:.4f} lstm_forget_bias3_decay={fb:.4f} "
          f"exploding_ratio={ex:.4f}")
    _plot(args.out, curves, gains, lengths, raw, clipped, T)
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return dict(curves=curves, raw=raw, clipped=clipped, lengths=lengths)


def _plot(out, curves, gains, lengths, raw, clipped, T):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(out, exist_ok=True)
    d = np.arange(T)
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colours = {"rnn": "tab:red", "lstm": "tab:blue", "gru": "tab:green"}
    for ax, init in zip(axes[0], ("default", "orthogonal")):
        for cell in ("rnn", "lstm", "gru"):
            nh, nc = curves[(init, cell)]
            ax.semilogy(d, nh, color=colours[cell], label=f"{cell.upper()} ||dL/dh||")
            if nc is not None:
                ax.semilogy(d[1:], nc[1:], color=colours[cell], ls="--",
                            label="LSTM ||dL/dc||")
        if init == "orthogonal":
            nh, nc = curves[(init, "lstm_fb")]
            ax.semilogy(d, nh, color="tab:cyan", label="LSTM, forget bias 3 ||dL/dh||")
            ax.semilogy(d[1:], nc[1:], color="tab:cyan", ls="--",
                        label="LSTM, forget bias 3 ||dL/dc||")
        ax.set_title(f"({'a' if init == 'default' else 'b'}) {init} initialisation")
        ax.set_xlabel("distance d from the loss (steps)")
        ax.set_ylabel("mean gradient norm")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[1, 0]
    for gain, c in zip(gains, ("tab:purple", "tab:gray", "tab:orange")):
        ax.semilogy(d, curves[("gain", gain)][0], color=c, label=f"gain {gain:g}")
    ax.set_title("(c) tanh RNN, W_hh = gain x orthogonal")
    ax.set_xlabel("distance d from the loss (steps)")
    ax.set_ylabel("||dL/dh_(T-d)||")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    ax.semilogy(lengths, raw, "o-", color="tab:orange", label="raw")
    ax.semilogy(lengths, clipped, "s-", color="k", label="after clip_grad_norm(1.0)")
    ax.set_title("(d) gain-2 RNN: parameter-gradient norm")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("global gradient norm")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = os.path.join(out, "gradient_flow.png")
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
    sys.exit(0)
