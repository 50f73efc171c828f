"""`rnnfast demo`: a character-level language model that shows what its cells learned.

Trains Embedding -> LSTM (or GRU / RNN) -> Linear on characters with softmax
cross-entropy, Adam and gradient-norm clipping, by truncated backpropagation through
time with the state carried across chunks, for a fixed wall-clock budget.  The default
text is the source of the running interpreter's standard library (a deterministic
selection of ``.py`` files, nothing downloaded, nothing copied into the repository);
``--text FILE`` trains on any UTF-8 file.

While it trains it prints samples (temperature sampling).  At the end it writes to
``--out``:

- ``loss.png``: training and held-out loss in bits per character;
- ``cells.html``: a held-out passage coloured by the activation of the cells that best
  track "inside a string literal", indentation depth and position in the line;
- ``report.json``: the figures (loss, samples, the best cell and its correlation for
  each signal).

The signals are computed by :func:`text_signals`, a small scanner over the text
(string literals with escapes and triple quotes, ``#`` comments, line starts), and
every cell (``c`` and ``h`` of an LSTM, ``h`` of a GRU/RNN) is correlated with every
signal (:func:`find_cells`).
"""
import argparse
import html
import json
import math
import os
import sys
import sysconfig
import time

import numpy as np

__all__ = ["load_text", "stdlib_text", "text_signals", "find_cells", "render_html",
           "CharModel", "main"]

SIGNALS = ("in_string", "indent", "column")
SIGNAL_TITLES = {"in_string": "inside a string literal",
                 "indent": "indentation depth of the line",
                 "column": "position in the line"}


# ---------------------------------------------------------------------------- corpus
def stdlib_text(max_chars=2_000_000, max_file_chars=100_000):
    """The default corpus: top-level ``.py`` files of the standard library.

    The candidates are the files in ``sysconfig.get_paths()['stdlib']`` that are valid
    UTF-8, not private (no leading underscore: that skips generated tables such as
    ``_sysconfigdata*``) and at most ``max_file_chars`` long, in sorted name order.  If
    together they exceed ``max_chars``, every k-th is taken (k as small as keeps the
    total near ``max_chars``), so the selection spans the alphabet; the held-out
    passage of the demo is then the last files.  Deterministic for one interpreter.

    Returns
    -------
    text : str
    starts : list of int
        Offset of each file's first character in ``text`` (files are joined by a
        blank line).
    names : list of str
    """
    root = sysconfig.get_paths().get("stdlib")
    if not root or not os.path.isdir(root):
        raise ValueError(f"the standard library directory {root!r} of this interpreter "
                         f"was not found; pass --text FILE")
    candidates = []
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py") or name.startswith("_"):
            continue
        path = os.path.join(root, name)
        try:
            if os.path.getsize(path) > 4 * max_file_chars:
                continue
            with open(path, "rb") as f:
                src = f.read().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        src = src.replace("\r\n", "\n")
        if src.strip() and len(src) <= max_file_chars:
            candidates.append((name, src if src.endswith("\n") else src + "\n"))
    if not candidates:
        raise ValueError(f"no readable .py files in {root!r}; pass --text FILE")
    total_all = sum(len(src) + 1 for _, src in candidates)
    stride = max(1, -(-total_all // max_chars))
    parts, starts, names, total = [], [], [], 0
    for name, src in candidates[::stride]:
        starts.append(total)
        names.append(name)
        parts.append(src)
        total += len(src) + 1
        if total >= max_chars:
            break
    return "\n".join(parts), starts, names


def load_text(path):
    """Read a UTF-8 text file for training; ValueError naming the problem otherwise."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"text: expected a file path, got {type(path).__name__}")
    if not os.path.exists(path):
        raise ValueError(f"--text {path}: no such file")
    if not os.path.isfile(path):
        raise ValueError(f"--text {path}: not a regular file")
    with open(path, "rb") as f:
        raw = f.read()
    if not raw.strip():
        raise ValueError(f"--text {path}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"--text {path}: not UTF-8 text (byte {e.start}: "
                         f"{raw[e.start:e.start + 1]!r})") from None
    text = text.replace("\r\n", "\n")
    if len(text) < 100:
        raise ValueError(f"--text {path}: too short to train on ({len(text)} characters, "
                         f"need at least 100)")
    return text


# --------------------------------------------------------------------------- signals
def text_signals(text):
    """Per-character ground-truth signals of a Python-like text.

    Returns a dict of float arrays of ``len(text)``:

    - ``in_string``: 1 for the characters of a string literal (its quotes included),
      0 elsewhere.  The scanner knows single and triple quotes, backslash escapes and
      ``#`` comments (a quote inside a comment opens nothing); a single-quoted string
      ends at a newline, as Python's would be an error there.
    - ``indent``: the indentation width of the character's line (leading spaces, a tab
      counting to the next multiple of 8), the same for every character of the line.
    - ``column``: the character's position in its line (0 at the first character).
    """
    n = len(text)
    in_string = np.zeros(n)
    column = np.zeros(n)
    indent = np.zeros(n)
    quote = None          # the delimiter of the open string: ', ", ''' or """
    comment = False
    i = 0
    while i < n:
        ch = text[i]
        if quote is not None:
            in_string[i] = 1.0
            if ch == "\\" and i + 1 < n and text[i + 1] != "\n":
                in_string[i + 1] = 1.0
                i += 2
                continue
            if ch == "\n" and len(quote) == 1:
                quote = None                # unterminated single-line string
                in_string[i] = 0.0
            elif text.startswith(quote, i):
                in_string[i:i + len(quote)] = 1.0
                i += len(quote)
                quote = None
                continue
        elif comment:
            if ch == "\n":
                comment = False
        elif ch == "#":
            comment = True
        elif ch in "'\"":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            in_string[i:i + len(quote)] = 1.0
            i += len(quote)
            continue
        i += 1
    # column and indentation, line by line
    pos = 0
    for line in text.split("\n"):
        m = len(line)
        end = min(pos + m + 1, n)                     # the newline ends the line
        column[pos:end] = np.arange(end - pos)
        width = 0
        for c in line:
            if c == " ":
                width += 1
            elif c == "\t":
                width = (width // 8 + 1) * 8
            else:
                break
        indent[pos:end] = width
        pos += m + 1
    return {"in_string": in_string, "indent": indent, "column": column}


def find_cells(activations, signals, names=None):
    """Correlate every cell with every signal.

    Parameters
    ----------
    activations : ndarray of shape (T, K)
        One column per cell.
    signals : dict name -> ndarray of shape (T,)
    names : list of str, optional
        Names of the K cells (default ``"cell k"``).

    Returns
    -------
    dict signal -> dict(cell=index, name=..., r=Pearson correlation with sign,
    abs_r=|r|); a constant cell or signal has correlation 0.
    """
    a = np.asarray(activations, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"activations: expected shape (T, K), got {a.shape}")
    az = a - a.mean(axis=0)
    an = np.sqrt((az * az).sum(axis=0))
    out = {}
    for key, s in signals.items():
        s = np.asarray(s, dtype=np.float64)
        if s.shape != (a.shape[0],):
            raise ValueError(f"signals[{key!r}]: expected shape ({a.shape[0]},), got {s.shape}")
        sz = s - s.mean()
        sn = math.sqrt(float(sz @ sz))
        with np.errstate(invalid="ignore", divide="ignore"):
            r = (sz @ az) / (an * sn)
        r = np.where(np.isfinite(r), r, 0.0)
        k = int(np.argmax(np.abs(r)))
        out[key] = {"cell": k, "name": names[k] if names else f"cell {k}",
                    "r": float(r[k]), "abs_r": float(abs(r[k])), "all_r": r}
    return out


# ------------------------------------------------------------------------------ HTML
def _colour(v):
    """v in [-1, 1] -> background colour: blue for negative, red for positive."""
    v = max(-1.0, min(1.0, float(v)))
    if v >= 0:
        g = int(255 - 200 * v)
        return f"rgb(255,{g},{g})"
    g = int(255 + 200 * v)
    return f"rgb({g},{g},255)"


def render_html(text, panels, title="rnnfast demo: what the cells track"):
    """An HTML page with one copy of ``text`` per panel, each character's background
    coloured by a cell's activation.

    ``panels``: list of dicts with ``heading`` (str), ``values`` (array of
    ``len(text)``, scaled to [-1, 1] for colouring by the caller or here by the
    largest magnitude) and optionally ``note``.
    """
    out = ["<!DOCTYPE html>", "<html><head><meta charset='utf-8'>",
           f"<title>{html.escape(title)}</title>",
           "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
           "pre{font-family:monospace;font-size:13px;line-height:1.35;"
           "border:1px solid #ccc;padding:.6em;white-space:pre-wrap}"
           "pre span{white-space:pre}</style></head><body>",
           f"<h1>{html.escape(title)}</h1>",
           "<p>Background: red where the cell is positive, blue where negative, white "
           "near zero (scaled by the cell's largest magnitude over the passage).</p>"]
    for p in panels:
        vals = np.asarray(p["values"], dtype=np.float64)
        if vals.shape != (len(text),):
            raise ValueError(f"panel {p.get('heading')!r}: expected {len(text)} values, "
                             f"got shape {vals.shape}")
        scale = float(np.max(np.abs(vals))) or 1.0
        out.append(f"<h2>{html.escape(p['heading'])}</h2>")
        if p.get("note"):
            out.append(f"<p>{html.escape(p['note'])}</p>")
        spans = []
        for ch, v in zip(text, vals / scale):
            if ch == "\n":
                spans.append("\n")
                continue
            spans.append(f"<span style='background:{_colour(v)}'>{html.escape(ch)}</span>")
        out.append("<pre>" + "".join(spans) + "</pre>")
    out.append("</body></html>")
    return "\n".join(out)


# ----------------------------------------------------------------------------- model
class CharModel:
    """Embedding -> recurrent layer -> Linear over a character vocabulary, time-major."""

    def __init__(self, vocab_size, hidden_size, cell="lstm", embed_dim=None, seed=0,
                 dtype=np.float32):
        import rnnfast
        from rnnfast.layers import Embedding, Linear
        self.cell = cell
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        rng = np.random.default_rng(seed)
        embed_dim = embed_dim or min(64, max(16, vocab_size // 2))
        self.embed = Embedding(vocab_size, embed_dim, dtype=dtype, seed=rng)
        cls = {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "rnn": rnnfast.RNN}[cell]
        self.rnn = cls(embed_dim, hidden_size, dtype=dtype, seed=rng)
        self.head = Linear(hidden_size, vocab_size, dtype=dtype, seed=rng)
        self.parts = {"embed": self.embed, "rnn": self.rnn, "head": self.head}

    def named_parameters(self):
        return {f"{p}.{k}": v for p, layer in self.parts.items()
                for k, v in dict(layer.named_parameters()).items()}

    def grads(self):
        return {f"{p}.{k}": v for p, layer in self.parts.items()
                for k, v in layer.grads.items()}

    def train(self):
        for layer in self.parts.values():
            layer.train()

    def eval(self):
        for layer in self.parts.values():
            layer.eval()

    def zero_state(self, batch):
        h = np.zeros((1, batch, self.hidden_size), dtype=self.rnn.dtype)
        return (h, h.copy()) if self.cell == "lstm" else h

    def forward(self, ids, state):
        """ids (T, B) ints -> logits (T, B, V), new state, embeddings, outputs."""
        e = self.embed(ids)
        y, state = self.rnn(e, hx=state)
        return self.head(y), state, e, y

    def backward(self, dlogits):
        dy = self.head.backward(dlogits)
        dx = self.rnn.backward(dy)[0]
        self.embed.backward(dx)

    def lstm_cells(self, e, y, state0):
        """The cell states c_t of an LSTM run, recomputed from its inputs e (T, B, E),
        outputs y = h_t (T, B, H) and initial state: the layer returns only c_T, and
        c_t = f_t c_(t-1) + i_t g_t with the gates computed from x_t and h_(t-1).
        The recomputed c is checked against h_t = o_t tanh(c_t)."""
        r = self.rnn
        H = self.hidden_size
        e = e.astype(np.float64)
        h_prev = np.concatenate([state0[0][0][None].astype(np.float64),
                                 y[:-1].astype(np.float64)], axis=0)
        gates = (e @ r.weight_ih_l0.T.astype(np.float64) + r.bias_ih_l0
                 + h_prev @ r.weight_hh_l0.T.astype(np.float64) + r.bias_hh_l0)
        sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
        i, f = sig(gates[..., :H]), sig(gates[..., H:2 * H])
        g, o = np.tanh(gates[..., 2 * H:3 * H]), sig(gates[..., 3 * H:])
        c = np.empty_like(g)
        prev = state0[1][0].astype(np.float64)
        for t in range(g.shape[0]):
            prev = f[t] * prev + i[t] * g[t]
            c[t] = prev
        err = float(np.max(np.abs(o * np.tanh(c) - y)))
        if err > 1e-3:
            raise RuntimeError(f"recomputed LSTM cell states disagree with the layer's "
                               f"outputs (max |h - o tanh(c)| = {err:.2e})")
        return c


def sample(model, itos, stoi, prime, length, temperature, rng):
    """Temperature sampling: ``prime`` then ``length`` generated characters."""
    model.eval()
    state = model.zero_state(1)
    ids = [stoi[ch] for ch in prime if ch in stoi] or [0]
    from rnnfast.losses import softmax
    logits, state, _, _ = model.forward(np.asarray(ids, dtype=np.int64)[:, None], state)
    out = []
    for _ in range(length):
        p = softmax(logits[-1, 0].astype(np.float64) / max(temperature, 1e-3))
        k = int(rng.choice(len(p), p=p / p.sum()))
        out.append(itos[k])
        logits, state, _, _ = model.forward(np.asarray([[k]], dtype=np.int64), state)
    model.train()
    return "".join(itos[i] for i in ids) + "".join(out)


def evaluate_bpc(model, data, seq_len=200, batch=16):
    """Mean bits per character of ``data`` (int ids) in eval mode, state carried."""
    from rnnfast.losses import softmax_cross_entropy
    model.eval()
    n = (len(data) - 1) // batch
    if n < 2:
        model.train()
        return float("nan")
    x = data[:n * batch].reshape(batch, n).T
    t = data[1:n * batch + 1].reshape(batch, n).T
    state = model.zero_state(batch)
    total, count = 0.0, 0
    for s in range(0, n, seq_len):
        logits, state, _, _ = model.forward(x[s:s + seq_len], state)
        loss, _ = softmax_cross_entropy(logits, t[s:s + seq_len], reduction="sum")
        total += float(loss)
        count += t[s:s + seq_len].size
    model.train()
    return total / count / math.log(2)


# ------------------------------------------------------------------------------ main
def build_parser():
    p = argparse.ArgumentParser(
        prog="rnnfast demo",
        description="Train a character-level LSTM on the standard library's source (or "
                    "--text FILE) for a few minutes, print samples, and find the cells "
                    "that track strings, indentation and position in the line.")
    add_arguments(p)
    return p


def add_arguments(p):
    p.add_argument("--text", metavar="FILE", help="train on this UTF-8 file instead of "
                   "the standard library's source")
    p.add_argument("--minutes", type=float, default=3.0,
                   help="training time budget in minutes (default 3)")
    p.add_argument("--cell", choices=("lstm", "gru", "rnn"), default="lstm")
    p.add_argument("--hidden", type=int, default=192, help="hidden units (default 192)")
    p.add_argument("--out", default="rnnfast_demo", metavar="DIR",
                   help="output directory (default ./rnnfast_demo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--seq-len", type=int, default=64, help="TBPTT chunk length")
    p.add_argument("--batch", type=int, default=32, help="parallel text streams")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=None,
                   help="threads for rnnfast's kernels and NumPy's BLAS (default: "
                        "rnnfast's setting; 1 is often fastest on a busy machine)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bar")


def _check_args(a):
    if not (isinstance(a.minutes, float) and math.isfinite(a.minutes) and a.minutes > 0):
        raise ValueError(f"--minutes must be a positive number, got {a.minutes}")
    for name in ("hidden", "seq_len", "batch"):
        v = getattr(a, name)
        if v < 1 or v > 4096:
            raise ValueError(f"--{name.replace('_', '-')} must be in [1, 4096], got {v}")
    if a.threads is not None and not 1 <= a.threads <= 1024:
        raise ValueError(f"--threads must be in [1, 1024], got {a.threads}")
    if not (math.isfinite(a.lr) and a.lr > 0):
        raise ValueError(f"--lr must be a positive number, got {a.lr}")


def main(argv=None):
    """Entry point of ``rnnfast demo``; returns the exit status."""
    return main_args(build_parser().parse_args(argv))


def main_args(args):
    """Run the demo on parsed arguments (used by ``python -m rnnfast demo``)."""
    try:
        return run(args)
    except (ValueError, OSError) as e:      # bad input, or an unwritable --out
        print(f"rnnfast demo: error: {e}", file=sys.stderr)
        return 2


def run(args):
    _check_args(args)
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise ValueError(f"--out {args.out}: exists and is not a directory")
    if args.threads is None:
        return _run(args)
    import rnnfast
    before = rnnfast.get_num_threads()
    rnnfast.set_num_threads(args.threads)
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:      # BLAS keeps its own thread count
            return _run(args)
        with threadpool_limits(limits=args.threads, user_api="blas"):
            return _run(args)
    finally:
        rnnfast.set_num_threads(before)


def _run(args):
    t_start = time.perf_counter()
    if args.text:
        text = load_text(args.text)
        source = args.text
        split = int(len(text) * 0.9)
        split = text.rfind("\n", 0, split) + 1 or split   # passage starts a line
    else:
        text, starts, names = stdlib_text()
        source = (f"{len(names)} .py files of the standard library in "
                  f"{sysconfig.get_paths()['stdlib']}")
        # hold out the last files (>= 5% of the text), starting at a file boundary
        target = int(len(text) * 0.95)
        split = max([s for s in starts if s <= target] or [starts[-1]])
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    itos = chars
    data = np.fromiter((stoi[c] for c in text), dtype=np.int64, count=len(text))
    train_ids, held_ids = data[:split], data[split:]
    held_text = text[split:]
    print(f"corpus: {source}: {len(text):,} characters, vocabulary {len(chars)}; "
          f"training on {len(train_ids):,}, held out {len(held_ids):,}")

    from rnnfast.losses import softmax_cross_entropy
    from rnnfast.optim import Adam, clip_grad_norm
    model = CharModel(len(chars), args.hidden, args.cell, seed=args.seed)
    params = model.named_parameters()
    opt = Adam(params, lr=args.lr)
    rng = np.random.default_rng(args.seed)

    B, K = args.batch, args.seq_len
    n = (len(train_ids) - 1) // B
    if n < K + 1:
        B = max(1, (len(train_ids) - 1) // (K + 1))
        n = (len(train_ids) - 1) // B
        if n < 2:
            raise ValueError("the text is too short for one training chunk")
        K = min(K, n - 1)
    xs = train_ids[:n * B].reshape(B, n).T          # (n, B): B contiguous streams
    ts = train_ids[1:n * B + 1].reshape(B, n).T
    budget = args.minutes * 60.0
    held_eval = held_ids[:30_000]     # the same slice for every held-out figure
    print(f"model: Embedding({len(chars)}, {model.embed.embedding_dim}) -> "
          f"{args.cell.upper()}(hidden {args.hidden}) -> Linear({len(chars)}); "
          f"TBPTT chunks of {K} x {B} streams; budget {budget:.0f} s")

    bar = None
    try:
        from tqdm import tqdm
    except ImportError:                      # optional: train without a bar
        tqdm = None
    if not args.no_progress and tqdm is not None:
        bar = tqdm(total=round(budget), unit="s", desc="training", leave=False,
                   bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s{postfix}")
    write = bar.write if bar is not None else print
    history = {"step": [], "time": [], "train_bpc": [], "held_step": [], "held_bpc": []}
    samples = []
    state = model.zero_state(B)
    pos, step, ema = 0, 0, None
    next_sample = budget / 4
    t0 = time.perf_counter()
    last = t0
    primer = "def " if not args.text else text[:1]
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget:
            break
        if pos + K > n:
            pos = 0
            state = model.zero_state(B)
        logits, state, _, _ = model.forward(xs[pos:pos + K], state)
        loss, dlogits = softmax_cross_entropy(logits, ts[pos:pos + K])
        model.backward(dlogits)
        grads = model.grads()
        clip_grad_norm(grads, 5.0)
        opt.step(grads)
        # carry the state's values only: backprop stops at the chunk boundary
        state = tuple(s.copy() for s in state) if isinstance(state, tuple) else state.copy()
        pos += K
        step += 1
        bpc = float(loss) / math.log(2)
        if not math.isfinite(bpc):
            raise RuntimeError("training diverged (non-finite loss)")
        ema = bpc if ema is None else 0.95 * ema + 0.05 * bpc
        now = time.perf_counter()
        history["step"].append(step)
        history["time"].append(now - t0)
        history["train_bpc"].append(bpc)
        if bar is not None:
            bar.update(min(now, t0 + budget) - last)
            bar.set_postfix_str(f"loss {ema:.3f} bpc, {step * B * K / (now - t0):,.0f} char/s")
        last = now
        if now - t0 >= next_sample:
            next_sample += budget / 4
            hb = evaluate_bpc(model, held_eval)
            history["held_step"].append(step)
            history["held_bpc"].append(hb)
            s = sample(model, itos, stoi, primer, 240, 0.7, rng)
            samples.append({"step": step, "seconds": round(now - t0, 1), "text": s})
            write(f"\n--- step {step}, {now - t0:.0f} s, train {ema:.3f} bpc, held-out "
                  f"{hb:.3f} bpc; sample (temperature 0.7):\n{s}\n---")
    if bar is not None:
        bar.close()
    train_time = time.perf_counter() - t0
    held_bpc = evaluate_bpc(model, held_eval)
    history["held_step"].append(step)
    history["held_bpc"].append(held_bpc)
    final_sample = sample(model, itos, stoi, primer, 400, 0.7, rng)
    print(f"trained {step} steps ({step * B * K:,} characters) in {train_time:.1f} s; "
          f"final training loss {ema if ema is not None else float('nan'):.3f} bpc, "
          f"held-out {held_bpc:.3f} bpc")
    print(f"sample (temperature 0.7):\n{final_sample}\n")

    # -- cells: activations over a held-out passage, correlated with the signals
    passage = held_text[:20_000]
    pids = held_ids[:len(passage)]
    model.eval()
    st0 = model.zero_state(1)
    _, _, e, y = model.forward(pids[:, None], st0)
    model.train()
    h = y[:, 0, :].astype(np.float64)
    if args.cell == "lstm":
        c = model.lstm_cells(e, y, st0)[:, 0, :]
        acts = np.concatenate([c, h], axis=1)
        names = [f"c[{k}]" for k in range(args.hidden)] + [f"h[{k}]" for k in range(args.hidden)]
    else:
        acts = h
        names = [f"h[{k}]" for k in range(args.hidden)]
    sig = text_signals(passage)
    best = find_cells(acts, sig, names)
    print("cells that best track each signal over the held-out passage "
          f"({len(passage):,} characters):")
    for key in SIGNALS:
        b = best[key]
        print(f"  {SIGNAL_TITLES[key]:32s} {b['name']:8s} correlation {b['r']:+.3f}")

    os.makedirs(args.out, exist_ok=True)
    show = passage[:2500]
    panels = []
    for key in SIGNALS:
        b = best[key]
        panels.append({"heading": f"{b['name']}: best cell for {SIGNAL_TITLES[key]} "
                                  f"(correlation {b['r']:+.3f})",
                       "values": acts[:len(show), b["cell"]],
                       "note": "Correlation measured over the first "
                               f"{len(passage):,} held-out characters; shown: the first "
                               f"{len(show):,}."})
    html_path = os.path.join(args.out, "cells.html")
    _write_atomic(html_path, render_html(show, panels))
    png_path = os.path.join(args.out, "loss.png")
    _plot_loss(png_path, history, B * K)
    report = {
        "corpus": source, "characters": len(text), "vocabulary": len(chars),
        "cell": args.cell, "hidden": args.hidden, "seed": args.seed,
        "steps": step, "characters_trained": step * B * K,
        "train_seconds": round(train_time, 1),
        "final_train_bpc": None if ema is None else round(ema, 4),
        "held_out_bpc": round(held_bpc, 4),
        "samples": samples, "final_sample": final_sample,
        "cells": {k: {"cell": best[k]["name"], "correlation": round(best[k]["r"], 4)}
                  for k in SIGNALS},
        "files": {"loss_png": png_path, "html": html_path},
    }
    rep_path = os.path.join(args.out, "report.json")
    _write_atomic(rep_path, json.dumps(report, indent=2, ensure_ascii=False))
    print(f"wrote {png_path}, {html_path}, {rep_path} "
          f"(total {time.perf_counter() - t_start:.0f} s)")
    return 0


def _write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _plot_loss(path, history, chars_per_step):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = np.asarray(history["step"])
    tr = np.asarray(history["train_bpc"])
    if len(tr):
        ax.plot(steps, tr, color="tab:blue", alpha=0.25, lw=0.8, label="training chunk")
        w = max(1, len(tr) // 30)
        if len(tr) >= w:
            smooth = np.convolve(tr, np.ones(w) / w, mode="valid")
            ax.plot(steps[w - 1:], smooth, color="tab:blue", lw=2,
                    label=f"training (mean of {w})")
    if history["held_bpc"]:
        ax.plot(history["held_step"], history["held_bpc"], "o-", color="tab:red",
                label="held-out (first 30,000 characters)")
    ax.set_xlabel(f"step ({chars_per_step:,} characters each)")
    ax.set_ylabel("loss (bits per character)")
    ax.set_title("rnnfast demo: character-level model")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
