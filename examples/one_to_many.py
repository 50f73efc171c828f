"""One-to-many: generate a whole sequence from one vector.

Each input is one vector (amplitude a, frequency w, and the phase p as sin p, cos p);
the target is the curve y_t = a sin(w t + p) for t = 0..T-1.  The vector is repeated
at every step (Keras' RepeatVector) and fed to a GRU whose per-step output goes
through a Linear layer to one number, trained with mean squared error.  The baseline
is the best answer that ignores the input: the mean training curve.

Run: python examples/one_to_many.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Linear
from rnnfast.losses import mse
from rnnfast.optim import Adam, clip_grad_norm

T = 30


def make_data(rng, n):
    a = rng.uniform(0.5, 1.5, n)
    w = rng.uniform(0.2, 0.6, n)
    p = rng.uniform(0, 2 * np.pi, n)
    vec = np.stack([a, w, np.sin(p), np.cos(p)], axis=1).astype(np.float32)
    t = np.arange(T)
    curves = (a[:, None] * np.sin(w[:, None] * t + p[:, None])).astype(np.float32)
    return vec, curves


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    hidden = args.hidden or (32 if args.quick else 64)
    t0 = time.perf_counter()
    steps = args.steps or (300 if args.quick else 2000)
    rng = np.random.default_rng(args.seed)
    x_tr, y_tr = make_data(rng, 4000)
    x_te, y_te = make_data(rng, 500)
    mrng = np.random.default_rng(args.seed)
    gru = rnnfast.GRU(4, hidden, batch_first=True, seed=mrng)
    head = Linear(hidden, 1, seed=mrng)
    params, grads = _common.collect(gru=gru, head=head)
    opt = Adam(params(), lr=3e-3)

    def predict(x):
        return head(gru(np.repeat(x[:, None, :], T, axis=1))[0])[..., 0]

    losses, evals = [], []
    for step in range(1, steps + 1):
        idx = rng.integers(0, len(x_tr), 64)
        loss, dpred = mse(predict(x_tr[idx]), y_tr[idx])
        gru.backward(head.backward(dpred[..., None]))
        g = grads()
        clip_grad_norm(g, 1.0)
        opt.step(g)
        losses.append(loss)
        if step % max(1, steps // 10) == 0:
            gru.eval()
            head.eval()
            evals.append((step, float(np.mean((predict(x_te) - y_te) ** 2))))
            gru.train()
            head.train()
    gru.eval()
    head.eval()
    pred = predict(x_te)
    test_mse = float(np.mean((pred - y_te) ** 2))
    base_mse = float(np.mean((y_tr.mean(axis=0) - y_te) ** 2))
    print(f"one-to-many GRU (hidden {hidden}, {steps} steps): test MSE {test_mse:.4f}; "
          f"input-blind baseline (mean curve) {base_mse:.4f}")
    print(f"METRIC test_mse={test_mse:.4f} baseline_mse={base_mse:.4f} "
          f"ratio={test_mse / base_mse:.4f}")
    _plot(args.out, losses, evals, base_mse, x_te, y_te, pred)
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"test_mse": test_mse, "baseline_mse": base_mse}


def _plot(out, losses, evals, base_mse, x, y, pred):
    plt = _common.pyplot()
    fig = plt.figure(figsize=(11, 6.5))
    a = fig.add_subplot(2, 1, 1)
    a.semilogy(losses, alpha=0.35, label="training batch")
    s, v = zip(*evals)
    a.semilogy(s, v, "o-", label="held-out")
    a.axhline(base_mse, color="tab:red", ls="--", label="mean-curve baseline")
    a.set_xlabel("Adam step")
    a.set_ylabel("MSE")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    for k in range(3):
        b = fig.add_subplot(2, 3, 4 + k)
        b.plot(y[k], "k-", lw=2, label="target")
        b.plot(pred[k], "o--", color="tab:orange", ms=3, label="generated")
        b.set_title(f"a={x[k, 0]:.2f}, w={x[k, 1]:.2f}", fontsize=9)
        b.set_xlabel("t")
        b.grid(True, alpha=0.3)
        if k == 0:
            b.legend(fontsize=8)
    fig.tight_layout()
    _common.save(fig, out, "one_to_many.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
