"""Many-to-many (aligned): tag every token with its bracket nesting depth.

Sequences of letters and brackets, e.g. ``a ( b ( c ) a ) b``; the tag of each token is
the number of brackets open after reading it (0..3).  The same letter gets different
tags in different places, so a tagger that looks at one token at a time (the baseline:
the most frequent tag of each token type) is often wrong, while an LSTM that carries a
counter in its state tags every position.  Variable lengths, padded, with the padded
steps masked out of the loss (``softmax_cross_entropy(..., lengths=...)``).

Run: python examples/many_to_many_tagging.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Embedding, Linear
from rnnfast.losses import softmax_cross_entropy
from rnnfast.optim import Adam, clip_grad_norm

TOKENS = ["<pad>", "a", "b", "c", "(", ")"]
MAX_DEPTH = 3


def make_sequence(rng, max_len):
    n = int(rng.integers(6, max_len + 1))
    toks, tags, depth = [], [], 0
    for _ in range(n):
        r = rng.random()
        if r < 0.25 and depth < MAX_DEPTH:
            tok, depth = "(", depth + 1
        elif r < 0.5 and depth > 0:
            tok, depth = ")", depth - 1
        else:
            tok = str(rng.choice(["a", "b", "c"]))
        toks.append(TOKENS.index(tok))
        tags.append(depth)
    return toks, tags


def make_data(n, rng, max_len):
    seqs = [make_sequence(rng, max_len) for _ in range(n)]
    lengths = np.array([len(s[0]) for s in seqs])
    ids = np.zeros((n, lengths.max()), dtype=np.int64)
    tags = np.zeros_like(ids)
    for i, (t, g) in enumerate(seqs):
        ids[i, :len(t)] = t
        tags[i, :len(g)] = g
    return ids, tags, lengths


def masked_accuracy(pred, tags, lengths):
    mask = np.arange(tags.shape[1])[None, :] < lengths[:, None]
    return float(np.sum((pred == tags) & mask) / np.sum(mask))


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_train, max_len = (600, 24) if args.quick else (3000, 40)
    epochs = args.epochs or (6 if args.quick else 15)
    x_tr, y_tr, l_tr = make_data(n_train, rng, max_len)
    x_te, y_te, l_te = make_data(500, rng, max_len)

    # baseline: most frequent tag of each token type
    mask = np.arange(x_tr.shape[1])[None, :] < l_tr[:, None]
    table = np.zeros((len(TOKENS), MAX_DEPTH + 1))
    np.add.at(table, (x_tr[mask], y_tr[mask]), 1)
    base_acc = masked_accuracy(table.argmax(1)[x_te], y_te, l_te)

    mrng = np.random.default_rng(args.seed)
    embed = Embedding(len(TOKENS), 8, padding_idx=0, seed=mrng)
    lstm = rnnfast.LSTM(8, args.hidden, batch_first=True, seed=mrng)
    head = Linear(args.hidden, MAX_DEPTH + 1, seed=mrng)
    params, grads = _common.collect(embed=embed, lstm=lstm, head=head)
    opt = Adam(params(), lr=1e-2)
    losses, accs = [], []
    B = 32
    for epoch in range(epochs):
        order = rng.permutation(n_train)
        for s in range(0, n_train, B):
            idx = order[s:s + B]
            L = int(l_tr[idx].max())
            y, _ = lstm(embed(x_tr[idx, :L]), lengths=l_tr[idx])
            loss, dlogits = softmax_cross_entropy(head(y), y_tr[idx, :L], lengths=l_tr[idx])
            dx, _, _ = lstm.backward(head.backward(dlogits))
            embed.backward(dx)
            g = grads()
            clip_grad_norm(g, 5.0)
            opt.step(g)
            losses.append(loss)
        for layer in (embed, lstm, head):
            layer.eval()
        pred = head(lstm(embed(x_te), lengths=l_te)[0]).argmax(-1)
        for layer in (embed, lstm, head):
            layer.train()
        accs.append(masked_accuracy(pred, y_te, l_te))
    acc = accs[-1]
    show = int(np.argmax(y_te[:50].max(axis=1) * 100 + l_te[:50]))   # deep, then long
    seq = " ".join(TOKENS[t] for t in x_te[show, :l_te[show]])
    print(f"example: {seq}")
    print(f"  tags : {' '.join(str(t) for t in y_te[show, :l_te[show]])}")
    print(f"  LSTM : {' '.join(str(t) for t in pred[show, :l_te[show]])}")
    print(f"per-token majority baseline: {base_acc:.3f}; LSTM (hidden {args.hidden}, "
          f"{epochs} epochs): {acc:.3f} token accuracy on held-out sequences")
    print(f"METRIC token_accuracy={acc:.3f} baseline_accuracy={base_acc:.3f}")
    _plot(args.out, losses, accs, base_acc, -(-n_train // B), x_te[show, :l_te[show]],
          y_te[show, :l_te[show]], pred[show, :l_te[show]])
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"token_accuracy": acc, "baseline_accuracy": base_acc}


def _plot(out, losses, accs, base_acc, per_epoch, toks, tags, pred):
    plt = _common.pyplot()
    fig = plt.figure(figsize=(11, 6.5))
    a = fig.add_subplot(2, 2, 1)
    a.plot(np.arange(len(losses)) / per_epoch, losses, alpha=0.5)
    a.set_yscale("log")
    a.set_xlabel("epoch")
    a.set_ylabel("masked cross-entropy (nats)")
    a.set_title("training loss")
    a.grid(True, which="both", alpha=0.3)
    b = fig.add_subplot(2, 2, 2)
    b.plot(np.arange(1, len(accs) + 1), accs, "o-", label="LSTM")
    b.axhline(base_acc, color="tab:red", ls="--", label="per-token majority tag")
    b.set_ylim(0, 1.02)
    b.set_xlabel("epoch")
    b.set_ylabel("held-out token accuracy")
    b.grid(True, alpha=0.3)
    b.legend()
    c = fig.add_subplot(2, 1, 2)
    pos = np.arange(len(toks))
    c.step(pos, tags, where="mid", color="k", lw=2, label="true depth")
    c.plot(pos, pred, "o", color="tab:orange", label="LSTM tag")
    c.set_xticks(pos, [TOKENS[t] for t in toks])
    c.set_yticks(range(MAX_DEPTH + 1))
    c.set_ylabel("nesting depth")
    c.set_title("a held-out sequence")
    c.legend(loc="upper right")
    c.grid(True, alpha=0.3)
    fig.tight_layout()
    _common.save(fig, out, "many_to_many_tagging.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
