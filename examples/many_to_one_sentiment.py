"""Many-to-one: sentiment where word order decides the label (seed 001).

"this phone is no good" is negative, "no , the phone is good" positive: the same bag of
words, opposite labels.  The corpus is generated on the fly so that this holds for
every sentence: each bag of words is emitted twice, once with "no" directly before the
opinion word (which flips it) and once with "no" somewhere else (which does not), with
opposite labels.  A bag-of-words classifier gives both members of a pair the same
score, so on this corpus it is right on exactly one of each pair: 50% accuracy, by
construction.  An LSTM reading the words in order (Embedding -> LSTM -> last state ->
Linear) must learn the rule.  Prints both accuracies on held-out pairs.

Run: python examples/many_to_one_sentiment.py [--quick] [--out DIR]
"""
import sys
import time

import numpy as np

import _common
import rnnfast
from rnnfast.layers import Embedding, Linear
from rnnfast.losses import softmax_cross_entropy
from rnnfast.optim import Adam, clip_grad_norm

SUBJECTS = [["this", "phone"], ["the", "phone"], ["the", "camera"], ["this", "screen"],
            ["the", "battery"], ["my", "laptop"], ["the", "service"]]
VERBS = ["is", "was", "looks", "seems"]
ADVERBS = ["really", "very", "quite", "so", "honestly"]
OPINIONS = {"good": 1, "great": 1, "fine": 1, "bad": 0, "awful": 0, "poor": 0}
FILLERS = ["today", "overall", "and", "i", "think", "it", "too"]
PAD = "<pad>"
WORDS = sorted({w for s in SUBJECTS for w in s} | set(VERBS) | set(ADVERBS)
               | set(OPINIONS) | set(FILLERS) | {"no", ","})
VOCAB = [PAD] + WORDS
STOI = {w: i for i, w in enumerate(VOCAB)}


def make_pair(rng):
    """Two sentences with the same bag of words and opposite labels."""
    opinion = str(rng.choice(list(OPINIONS)))
    body = list(SUBJECTS[rng.integers(len(SUBJECTS))]) + [str(rng.choice(VERBS))]
    if rng.random() < 0.5:
        body.append(str(rng.choice(ADVERBS)))
    body.append(opinion)
    extra = [str(w) for w in rng.choice(FILLERS, size=rng.integers(0, 3), replace=False)]
    body += extra
    k = body.index(opinion)
    negated = body[:k] + ["no"] + body[k:] + [","]          # "... is no good ,"
    # "no" anywhere except directly before the opinion word; the comma after it
    free = [i for i in range(len(body) + 1) if i != k]
    j = int(rng.choice(free))
    plain = body[:j] + ["no", ","] + body[j:]                # "no , the phone is good"
    pol = OPINIONS[opinion]
    return (negated, 1 - pol), (plain, pol)


def make_corpus(n_pairs, rng):
    sents, labels = [], []
    for _ in range(n_pairs):
        for s, y in make_pair(rng):
            sents.append(s)
            labels.append(y)
    return sents, np.array(labels)


def encode(sents):
    T = max(len(s) for s in sents)
    ids = np.zeros((len(sents), T), dtype=np.int64)
    for i, s in enumerate(sents):
        ids[i, :len(s)] = [STOI[w] for w in s]
    return ids, np.array([len(s) for s in sents])


def bag_of_words(sents):
    x = np.zeros((len(sents), len(VOCAB)))
    for i, s in enumerate(sents):
        for w in s:
            x[i, STOI[w]] += 1
    return x


def logistic_regression(x, y, steps=500, lr=0.5):
    """The bag-of-words baseline: full-batch gradient descent on the logistic loss."""
    w, b = np.zeros(x.shape[1]), 0.0
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w -= lr * x.T @ (p - y) / len(y)
        b -= lr * np.mean(p - y)
    return lambda z: (z @ w + b > 0).astype(int)


class Classifier:
    def __init__(self, hidden, seed):
        rng = np.random.default_rng(seed)
        self.embed = Embedding(len(VOCAB), 16, padding_idx=0, seed=rng)
        self.lstm = rnnfast.LSTM(16, hidden, batch_first=True, seed=rng)
        self.head = Linear(hidden, 2, seed=rng)
        self.params, self.grads = _common.collect(embed=self.embed, lstm=self.lstm,
                                                  head=self.head)

    def forward(self, ids, lengths):
        _, (h_n, _) = self.lstm(self.embed(ids), lengths=lengths)  # h at each last word
        self._shape = ids.shape + (self.lstm.hidden_size,)
        return self.head(h_n[0])

    def backward(self, dlogits):
        dh = self.head.backward(dlogits)[None]
        dx, _, _ = self.lstm.backward(np.zeros(self._shape, np.float32), dh_n=dh)
        self.embed.backward(dx)

    def predict(self, ids, lengths):
        for layer in (self.embed, self.lstm, self.head):
            layer.eval()
        out = self.forward(ids, lengths).argmax(-1)
        for layer in (self.embed, self.lstm, self.head):
            layer.train()
        return out


def main(argv=None):
    p = _common.parser(__doc__)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--epochs", type=int, default=None)
    args = p.parse_args(argv)
    _common.apply_threads(args)
    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    n_train, n_test = (600, 300) if args.quick else (2000, 500)
    epochs = args.epochs or (12 if args.quick else 20)
    tr_s, tr_y = make_corpus(n_train, rng)
    te_s, te_y = make_corpus(n_test, rng)
    print("examples:", " | ".join(f"{' '.join(s)} -> {'pos' if y else 'neg'}"
                                  for s, y in zip(tr_s[:4], tr_y[:4])))

    bow = logistic_regression(bag_of_words(tr_s), tr_y)
    bow_train = float(np.mean(bow(bag_of_words(tr_s)) == tr_y))
    bow_acc = float(np.mean(bow(bag_of_words(te_s)) == te_y))

    model = Classifier(args.hidden, args.seed)
    opt = Adam(model.params(), lr=1e-2)
    tr_ids, tr_len = encode(tr_s)
    te_ids, te_len = encode(te_s)
    losses, accs = [], []
    B = 64
    for epoch in range(epochs):
        order = rng.permutation(len(tr_y))
        for s in range(0, len(order), B):
            idx = order[s:s + B]
            L = int(tr_len[idx].max())
            loss, dlogits = softmax_cross_entropy(
                model.forward(tr_ids[idx, :L], tr_len[idx]), tr_y[idx])
            model.backward(dlogits)
            g = model.grads()
            clip_grad_norm(g, 5.0)
            opt.step(g)
            losses.append(loss)
        accs.append(float(np.mean(model.predict(te_ids, te_len) == te_y)))
    rnn_acc = accs[-1]
    print(f"bag-of-words logistic regression: train {bow_train:.3f}, test {bow_acc:.3f} "
          f"(each bag occurs once per label)")
    print(f"LSTM (hidden {args.hidden}, {epochs} epochs): test {rnn_acc:.3f}")
    print(f"METRIC rnn_accuracy={rnn_acc:.3f} bow_accuracy={bow_acc:.3f}")
    _plot(args.out, losses, accs, bow_acc, len(range(0, len(tr_y), B)))
    print(f"runtime {time.perf_counter() - t0:.1f} s")
    return {"rnn_accuracy": rnn_acc, "bow_accuracy": bow_acc}


def _plot(out, losses, accs, bow_acc, per_epoch):
    plt = _common.pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    a.plot(np.arange(len(losses)) / per_epoch, losses, alpha=0.4, label="batch")
    w = max(1, per_epoch // 2)
    sm = _common.smooth(losses, w)
    a.plot((np.arange(len(sm)) + w - 1) / per_epoch, sm, label="smoothed")
    a.set_xlabel("epoch")
    a.set_ylabel("cross-entropy (nats)")
    a.set_title("LSTM training loss")
    a.grid(True, alpha=0.3)
    a.legend()
    b.plot(np.arange(1, len(accs) + 1), accs, "o-", label="LSTM")
    b.axhline(bow_acc, color="tab:red", ls="--", label="bag of words")
    b.set_ylim(0, 1.02)
    b.set_xlabel("epoch")
    b.set_ylabel("held-out accuracy")
    b.set_title("word order decides the label")
    b.grid(True, alpha=0.3)
    b.legend()
    fig.tight_layout()
    _common.save(fig, out, "many_to_one_sentiment.png")


if __name__ == "__main__":
    main()
    sys.exit(0)
