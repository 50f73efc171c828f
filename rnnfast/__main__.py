"""`python -m rnnfast` / `rnnfast`: configuration, a self-check, benchmarks and the demo.

`rnnfast config` shows what was built (`show_config()`); `rnnfast check` (the default)
also proves the compiled path works: a small LSTM forward and backward compared with the
pure-NumPy reference; `rnnfast bench` runs the benchmark suite of BENCHMARKS.md against
the installed peers (PyTorch, ONNX Runtime, a NumPy loop) and prints the table
(`rnnfast bench --help`); `rnnfast demo` trains a character-level LSTM for a few minutes
and shows which cells track strings, indentation and line position (`rnnfast demo --help`).
"""
import argparse
import sys
import time


def _selfcheck():
    import numpy as np
    from . import LSTM
    rng = np.random.default_rng(0)
    T, N, I, H = 20, 4, 16, 32
    x = rng.standard_normal((T, N, I))
    results = {}
    for backend in ("cpu", "reference"):
        lstm = LSTM(I, H, num_layers=2, bidirectional=True, dtype=np.float64, seed=0,
                    backend=backend)
        t0 = time.perf_counter()
        y, (h_n, c_n) = lstm(x)
        dx, _, grads = lstm.backward(np.ones_like(y))
        results[backend] = (time.perf_counter() - t0, y, dx, grads)
    _, y_c, dx_c, g_c = results["cpu"]
    _, y_r, dx_r, g_r = results["reference"]

    def rel(a, b):
        return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))

    worst = max([rel(y_c, y_r), rel(dx_c, dx_r)] + [rel(g_c[k], g_r[k]) for k in g_r])
    print(f"\nself-check: 2-layer bidirectional LSTM (T={T}, N={N}, I={I}, H={H}), float64")
    print(f"  forward + backward: compiled {results['cpu'][0] * 1e3:.2f} ms, "
          f"reference {results['reference'][0] * 1e3:.2f} ms")
    print(f"  largest relative difference, compiled vs reference, over y, dx and every "
          f"parameter gradient: {worst:.2e}")
    ok = worst <= 1e-12
    print("  OK" if ok else "  MISMATCH")
    return 0 if ok else 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="rnnfast", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("config", help="print the build and run-time configuration")
    sub.add_parser("check", help="configuration plus a compiled-vs-reference self-check")
    from . import _bench
    _bench.add_arguments(sub.add_parser(
        "bench", help="benchmark against PyTorch, ONNX Runtime and a NumPy loop",
        description="Time rnnfast and the installed peers on the shapes of BENCHMARKS.md "
                    "(interleaved, same thread count, agreement checked first) and print "
                    "the table. Peers: pip install 'rnnfast[bench]' torch==2.13.0"))
    from . import demo
    demo.add_arguments(sub.add_parser(
        "demo", help="train a character-level LSTM and find interpretable cells",
        description=demo.build_parser().description))
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.main_args(args)
    if args.command == "bench":
        return _bench.main_bench(args)
    from . import show_config
    show_config()
    if args.command == "config":
        return 0
    return _selfcheck()


if __name__ == "__main__":
    sys.exit(main())
