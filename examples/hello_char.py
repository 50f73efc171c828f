"""Seed 001/004's "hello" model: predict the next character of "hello".

Vocabulary h, e, l, o as one-hot vectors (as in the lecture); a tanh RNN with three
hidden units (the lecture's "3 neurons"), a Linear layer to four scores and softmax.
The targets of "hell" are "ello": the two l's need different answers (l -> l, then
l -> o), which only the hidden state can tell apart -- the "ambiguous targets" a
feed-forward network cannot learn.  Trained with softmax cross-entropy and Adam;
prints the predicted distribution at every step and greedy generation from "h".

Run: python examples/hello_char.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Linear
from rnnfast.losses import softmax, softmax_cross_entropy
from rnnfast.optim import Adam

VOCAB = "helo"


def one_hot(ids):
    x = np.zeros((len(ids), 1, len(VOCAB)), dtype=np.float64)
    x[np.arange(len(ids)), 0, ids] = 1.0
    return x


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=3)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    t0 = time.perf_counter()
    steps = args.steps or (300 if args.quick else 600)
    ids = np.array([VOCAB.index(c) for c in "hello"])
    x, target = one_hot(ids[:-1]), ids[1:, None]          # (4, 1, 4), (4, 1)
    rnn = rnnfast.RNN(4, args.hidden, dtype=np.float64, seed=args.seed)
    head = Linear(args.hidden, 4, dtype=np.float64, seed=args.seed + 1)
    params, grads = _common.collect(rnn=rnn, head=head)
    opt = Adam(params(), lr=0.05)
    losses = []
    for _ in range(steps):
        y, _ = rnn(x)
        loss, dlogits = softmax_cross_entropy(head(y), target)
        rnn.backward(head.backward(dlogits))
        opt.step(grads())
        losses.append(loss)

    rnn.eval()
    head.eval()
    probs = softmax(head(rnn(x)[0]))[:, 0]                # (4, 4)
    acc = float(np.mean(probs.argmax(-1) == target[:, 0]))
    print(f"'hello' next-character RNN, hidden {args.hidden}, {steps} Adam steps, "
          f"final loss {losses[-1]:.4f}")
    print("input  target  " + "  ".join(f"p({c})" for c in VOCAB))
    for t in range(4):
        print(f"  {'hell'[t]}      {'ello'[t]}     " +
              "  ".join(f"{v:.3f}" for v in probs[t]))
    # greedy generation from "h"
    out, state, k = "h", None, VOCAB.index("h")
    for _ in range(4):
        y, state = rnn(one_hot([k]), hx=state)
        k = int(np.argmax(head(y)[0, 0]))
        out += VOCAB[k]
    print(f"greedy generation from 'h': {out!r}")
    print(f"METRIC accuracy={acc:.3f} generated={out}")
    _plot(args.out, losses, probs)
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"accuracy": acc, "generated": out, "loss": losses[-1]}


def _plot(out, losses, probs):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.semilogy(losses)
    a.set_xlabel("Adam step")
    a.set_ylabel("cross-entropy (nats)")
    a.set_title("training loss")
    a.grid(True, which="both", alpha=0.3)
    im = b.imshow(probs.T, cmap="Greens", vmin=0, vmax=1)
    b.set_xticks(range(4), [f"{i}\n->{t}" for i, t in zip("hell", "ello")])
    b.set_yticks(range(4), list(VOCAB))
    b.set_xlabel("input -> target")
    b.set_ylabel("predicted next character")
    for (i, j), v in np.ndenumerate(probs.T):
        b.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=9)
    b.set_title("softmax output per step")
    fig.colorbar(im, ax=b, shrink=0.8)
    fig.tight_layout()
    _common.save(fig, out, "hello_char.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
