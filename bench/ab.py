"""A/B timing of two builds of rnnfast, in alternating fresh processes.

Kernel changes are judged by the ratio of a new build's time to the old one's on the
same shape, on the same machine, at the same moment: each round runs one process per
build, one after the other, and the ratio is taken per round (so a noisy phase of the
host hits both sides of a pair), then the median over the rounds.

    # a copy of the package as built before the change
    mkdir -p /tmp/old && cp -r rnnfast /tmp/old/
    # ... change, rebuild in place ...
    python bench/ab.py /tmp/old . --rounds 5 lstm 512 4 25            # L5
    python bench/ab.py /tmp/old . --rounds 5 gru 1024 32 50 --train   # T5
    python bench/ab.py /tmp/old . lstm 512 4 25 --input 8             # the time loop alone

Each argument before the shape is a folder holding an importable ``rnnfast`` (built in
place). Inference times ``layer(x)`` of an eval layer; ``--train`` times a training call
and its backward. The child prints the median over ``--samples`` of back-to-back calls
lasting at least 50 ms each.
"""
import argparse
import statistics
import subprocess
import sys


def time_layer(cell, H, N, T, I, bidirectional, train, samples):
    """Median seconds per call of one layer (run inside the child process)."""
    import numpy as np
    import rnnfast
    from rnnfast import _bench as B
    cls = {"lstm": rnnfast.LSTM, "gru": rnnfast.GRU, "rnn": rnnfast.RNN}[cell]
    layer = cls(I, H, bidirectional=bidirectional, dtype=np.float32)
    x = np.random.default_rng(0).standard_normal((T, N, I)).astype(np.float32)
    if train:
        layer.train()

        def call():
            y, _ = layer(x)
            layer.backward(np.ones_like(y))
    else:
        layer.eval()

        def call():
            layer(x)
    k = B.calls_per_sample(call, 0.05, warmup=3)   # the bench engine's sampling
    return statistics.median(B.timed(call, k) for _ in range(samples))


def _parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("builds", nargs=2, metavar="DIR", help="old build, new build")
    p.add_argument("cell", choices=["lstm", "gru", "rnn"])
    p.add_argument("H", type=int)
    p.add_argument("N", type=int)
    p.add_argument("T", type=int)
    p.add_argument("--input", type=int, default=None, help="input size (default H)")
    p.add_argument("--bi", action="store_true", help="bidirectional")
    p.add_argument("--train", action="store_true", help="training call + backward")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--samples", type=int, default=15)
    return p


def main(argv=None):
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:   # child: sys.path[0] is the build under test
        build, cell, H, N, T, I, bi, train, samples = argv[1:]
        sys.path.insert(0, build)
        print(time_layer(cell, int(H), int(N), int(T), int(I), bi == "1", train == "1",
                         int(samples)))
        return 0
    a = _parser().parse_args(argv)
    I = a.input or a.H
    times = {b: [] for b in a.builds}
    for _ in range(a.rounds):
        for b in a.builds:
            out = subprocess.run(
                [sys.executable, __file__, "--child", b, a.cell, str(a.H), str(a.N), str(a.T),
                 str(I), str(int(a.bi)), str(int(a.train)), str(a.samples)],
                capture_output=True, text=True, check=True)
            times[b].append(float(out.stdout.split()[-1]))
    old, new = (times[b] for b in a.builds)
    ratios = [n / o for n, o in zip(new, old)]
    print(f"{a.cell} H{a.H} N{a.N} T{a.T} I{I}{' bi' if a.bi else ''}"
          f"{' train' if a.train else ' infer'}: old {statistics.median(old) * 1e3:.3f} ms, "
          f"new {statistics.median(new) * 1e3:.3f} ms; new/old per round: median "
          f"{statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{a.rounds} rounds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
