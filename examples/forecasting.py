"""Time-series forecasting: one step ahead on a noisy sum of sines.

The series is three sines (periods 25, 7.3 and 63 steps) plus Gaussian noise (sd 0.1).
A GRU reads windows of the past and, at every step, predicts the next value
(many-to-many, mean squared error on every step of the window).  Evaluated on the
last part of the series, never seen in training, against the naive forecast "the next
value equals the last one".  The noise sets a floor: no forecast can beat its variance
(0.01) on average.

Run: python examples/forecasting.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Linear
from rnnfast.losses import mse
from rnnfast.optim import Adam, clip_grad_norm

NOISE = 0.1


def series(n, rng):
    t = np.arange(n)
    clean = (np.sin(2 * np.pi * t / 25) + 0.5 * np.sin(2 * np.pi * t / 7.3 + 1.0)
             + 0.3 * np.sin(2 * np.pi * t / 63))
    return (clean + NOISE * rng.standard_normal(n)).astype(np.float32), clean


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    t0 = time.perf_counter()
    hidden = args.hidden or (32 if args.quick else 64)
    steps = args.steps or (200 if args.quick else 1500)
    rng = np.random.default_rng(args.seed)
    n = 6000
    s, clean = series(n, rng)
    split = 5000
    train = s[:split]
    W = 60
    gru = rnnfast.GRU(1, hidden, batch_first=True, seed=args.seed)
    head = Linear(hidden, 1, seed=args.seed + 1)
    params, grads = _common.collect(gru=gru, head=head)
    opt = Adam(params(), lr=3e-3)
    losses = []
    for step in range(steps):
        starts = rng.integers(0, split - W - 1, 32)
        win = np.stack([train[i:i + W + 1] for i in starts])
        x, y = win[:, :-1, None], win[:, 1:, None]
        out, _ = gru(x)
        loss, dpred = mse(head(out), y)
        gru.backward(head.backward(dpred))
        g = grads()
        clip_grad_norm(g, 1.0)
        opt.step(g)
        losses.append(loss)
    # one-step-ahead over the test part: the whole test series in one call, the state
    # warmed up on the end of the training part
    gru.eval()
    head.eval()
    ctx = s[split - 200:]
    pred = head(gru(ctx[None, :-1, None])[0])[0, :, 0][199:]   # predicts s[split:]
    truth = s[split:]
    model_mse = float(np.mean((pred - truth) ** 2))
    naive = s[split - 1:-1]
    naive_mse = float(np.mean((naive - truth) ** 2))
    print(f"GRU (hidden {hidden}, {steps} steps) one-step-ahead MSE on {len(truth)} held-out "
          f"steps: {model_mse:.4f}; last-value baseline {naive_mse:.4f}; noise floor "
          f"{NOISE ** 2:.4f}")
    print(f"METRIC model_mse={model_mse:.4f} naive_mse={naive_mse:.4f} "
          f"ratio={model_mse / naive_mse:.4f}")
    _plot(args.out, losses, truth, pred, naive, clean[split:], model_mse, naive_mse)
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"model_mse": model_mse, "naive_mse": naive_mse}


def _plot(out, losses, truth, pred, naive, clean, model_mse, naive_mse):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(11, 6.5))
    a.semilogy(losses, alpha=0.35, label="training batch")
    w = max(1, len(losses) // 40)
    sm = _common.smooth(losses, w)
    a.semilogy(np.arange(len(sm)) + w - 1, sm, label="smoothed")
    a.axhline(NOISE ** 2, color="k", ls=":", label="noise variance")
    a.set_xlabel("Adam step")
    a.set_ylabel("MSE")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    k = 150
    t = np.arange(k)
    b.plot(t, truth[:k], "k.", ms=4, label="observed")
    b.plot(t, clean[:k], color="0.6", lw=1, label="noise-free signal")
    b.plot(t, pred[:k], color="tab:orange", lw=1.5, label=f"GRU (MSE {model_mse:.4f})")
    b.plot(t, naive[:k], color="tab:blue", lw=1, ls="--",
           label=f"last value (MSE {naive_mse:.4f})")
    b.set_xlabel("held-out step")
    b.set_title("one-step-ahead forecasts, first 150 held-out steps")
    b.grid(True, alpha=0.3)
    b.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    _common.save(fig, out, "forecasting.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
