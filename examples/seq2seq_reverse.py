"""Encoder-decoder (sequence to sequence): reverse strings of variable length.

Inputs are random strings over ``a..h`` of 3 to 8 letters (``--quick``: 2 to 5),
generated on the fly; the output is the reversed string followed by an end token,
so input and output lengths vary per example.  An LSTM encoder reads the input (with
``lengths``, so its final state is taken at each string's last letter); its final
``(h, c)`` is the initial state of an LSTM decoder that is trained with teacher
forcing (input: <bos> + target, output: target + <eos>, loss masked by the target
lengths).  The decoder's ``backward`` returns ``(dh0, dc0)``, which is exactly the
gradient the encoder's ``backward`` takes as ``dh_n, dc_n``.  Evaluation decodes
greedily, one step at a time, until <eos>.

Run: python examples/seq2seq_reverse.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Embedding, Linear
from rnnfast.losses import softmax_cross_entropy
from rnnfast.optim import Adam, clip_grad_norm

PAD, BOS, EOS = 0, 1, 2
LETTERS = "abcdefgh"
VOCAB = ["<pad>", "<bos>", "<eos>"] + list(LETTERS)


def make_batch(rng, n, lo, hi):
    lens = rng.integers(lo, hi + 1, size=n)
    src = np.zeros((n, hi), dtype=np.int64)
    dec_in = np.zeros((n, hi + 1), dtype=np.int64)
    dec_out = np.zeros((n, hi + 1), dtype=np.int64)
    for i, L in enumerate(lens):
        s = rng.integers(3, len(VOCAB), size=L)
        src[i, :L] = s
        rev = s[::-1]
        dec_in[i, 0] = BOS
        dec_in[i, 1:L + 1] = rev
        dec_out[i, :L] = rev
        dec_out[i, L] = EOS
    return src, lens, dec_in, dec_out, lens + 1


def text(ids):
    return "".join(VOCAB[i] for i in ids if i >= 3)


class Seq2Seq:
    def __init__(self, hidden, seed):
        rng = np.random.default_rng(seed)
        V = len(VOCAB)
        self.enc_embed = Embedding(V, 16, padding_idx=PAD, seed=rng)
        self.enc = rnnfast.LSTM(16, hidden, batch_first=True, seed=rng)
        self.dec_embed = Embedding(V, 16, padding_idx=PAD, seed=rng)
        self.dec = rnnfast.LSTM(16, hidden, batch_first=True, seed=rng)
        self.head = Linear(hidden, V, seed=rng)
        self.layers = dict(enc_embed=self.enc_embed, enc=self.enc, dec_embed=self.dec_embed,
                           dec=self.dec, head=self.head)
        self.params, self.grads = _common.collect(**self.layers)

    def set_training(self, on):
        for layer in self.layers.values():
            layer.train() if on else layer.eval()

    def forward(self, src, src_len, dec_in, dec_len):
        e = self.enc_embed(src)
        self._enc_shape = e.shape[:2] + (self.enc.hidden_size,)
        _, state = self.enc(e, lengths=src_len)
        y, _ = self.dec(self.dec_embed(dec_in), hx=state, lengths=dec_len)
        return self.head(y)

    def backward(self, dlogits):
        dx, (dh0, dc0), _ = self.dec.backward(self.head.backward(dlogits))
        self.dec_embed.backward(dx)
        dx, _, _ = self.enc.backward(np.zeros(self._enc_shape, np.float32), dh0, dc0)
        self.enc_embed.backward(dx)

    def generate(self, src, src_len, max_len):
        """Greedy decoding, all sequences at once, one step per call."""
        self.set_training(False)
        _, state = self.enc(self.enc_embed(src), lengths=src_len)
        tok = np.full((len(src), 1), BOS, dtype=np.int64)
        out = np.zeros((len(src), max_len), dtype=np.int64)
        for t in range(max_len):
            y, state = self.dec(self.dec_embed(tok), hx=state)
            tok = self.head(y)[:, -1].argmax(-1)[:, None]
            out[:, t] = tok[:, 0]
        self.set_training(True)
        result = []
        for row in out:
            stop = np.flatnonzero(row == EOS)
            result.append(row[:stop[0]] if len(stop) else row)
        return result


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    t0 = time.perf_counter()
    lo, hi = (2, 5) if args.quick else (3, 8)
    hidden = args.hidden or 64
    steps = args.steps or (400 if args.quick else 3000)
    rng = np.random.default_rng(args.seed)
    model = Seq2Seq(hidden, args.seed)
    opt = Adam(model.params(), lr=5e-3)
    losses, evals = [], []
    test = make_batch(np.random.default_rng(args.seed + 999), 500, lo, hi)

    def exact_match():
        src, sl, _, dec_out, dl = test
        pred = model.generate(src, sl, hi + 1)
        want = [dec_out[i, :dl[i] - 1] for i in range(len(src))]
        return float(np.mean([len(a) == len(b) and np.all(a == b)
                              for a, b in zip(pred, want)])), pred

    for step in range(1, steps + 1):
        src, sl, dec_in, dec_out, dl = make_batch(rng, 64, lo, hi)
        logits = model.forward(src, sl, dec_in, dl)
        loss, dlogits = softmax_cross_entropy(logits, dec_out, lengths=dl)
        model.backward(dlogits)
        g = model.grads()
        clip_grad_norm(g, 5.0)
        opt.step(g)
        losses.append(loss)
        if step % max(1, steps // 10) == 0:
            evals.append((step, exact_match()[0]))
    acc, pred = exact_match()
    src, sl = test[0], test[1]
    for i in range(5):
        print(f"  {text(src[i, :sl[i]]):>10s} -> {text(pred[i]):10s}"
              f"{'' if text(pred[i]) == text(src[i, :sl[i]])[::-1] else '  (wrong)'}")
    print(f"seq2seq LSTM (hidden {hidden}, {steps} steps, lengths {lo}-{hi}): exact-match "
          f"accuracy {acc:.3f} on 500 held-out strings")
    print(f"METRIC exact_match={acc:.3f}")
    _plot(args.out, losses, evals)
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"exact_match": acc}


def _plot(out, losses, evals):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(losses, alpha=0.3, label="batch")
    w = max(1, len(losses) // 50)
    sm = _common.smooth(losses, w)
    a.plot(np.arange(len(sm)) + w - 1, sm, label="smoothed")
    a.set_yscale("log")
    a.set_xlabel("step (64 strings)")
    a.set_ylabel("masked cross-entropy (nats)")
    a.set_title("teacher-forced training loss")
    a.grid(True, which="both", alpha=0.3)
    a.legend()
    s, v = zip(*evals) if evals else ((), ())
    b.plot(s, v, "o-")
    b.set_ylim(0, 1.02)
    b.set_xlabel("step")
    b.set_ylabel("exact-match accuracy (greedy)")
    b.set_title("reversal, held-out strings")
    b.grid(True, alpha=0.3)
    fig.tight_layout()
    _common.save(fig, out, "seq2seq_reverse.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
