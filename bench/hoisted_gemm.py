"""How fast are the hoisted products (input projection, dX, dW_ih) of the training shapes,
against the machine's large-sgemm rate? BENCHMARKS.md asks for >= 80%.

rnnfast runs every matrix product in its own packed GEMM (one OpenMP pool, no BLAS
pool). This times it at the products' real shapes, beside NumPy's BLAS on the same
product, and against the best 2048^3 sgemm of either (the machine rate); best of 5.

    python bench/hoisted_gemm.py            # needs threadpoolctl (pip install ".[bench]")
"""
import time, numpy as np
from rnnfast._cpu import _kernels
from threadpoolctl import threadpool_limits
rng = np.random.default_rng(0)
def best(f, reps=5):
    f(); ts = []
    for _ in range(reps):
        t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
    return min(ts)
nt = 2
with threadpool_limits(nt, user_api="blas"):
    A = rng.standard_normal((2048, 2048)).astype(np.float32); B = A.copy(); C = np.empty_like(A)
    rates = []
    for _ in range(3):
        t_np = best(lambda: np.matmul(A, B, out=C)); t_rf = best(lambda: _kernels.gemm(A, B, C, False, False, False, nt))
        rates.append((2 * 2048**3 / t_np / 1e9, 2 * 2048**3 / t_rf / 1e9))
    sg = max(max(r) for r in rates)
    print("large sgemm 2048^3: NumPy/OpenBLAS %.0f, rnnfast GEMM %.0f GFLOP/s -> machine rate %.0f" % (max(r[0] for r in rates), max(r[1] for r in rates), sg))
    # hoisted products of training shapes: (name, M, N, K, ta, tb)
    cases = []
    for sid, G, H, N, T in (("T2 LSTM", 4, 512, 64, 25), ("T5 GRU", 3, 1024, 32, 50), ("T6 RNN", 1, 1760, 16, 50), ("S1 LSTM", 4, 512, 64, 100)):
        TN, GH, I = T * N, G * H, H
        cases += [(sid, "input projection x.W_ih^T", TN, GH, I, False, True),
                  (sid, "dX = dG.W_ih", TN, I, GH, False, False),
                  (sid, "dW_ih = dG^T.x", GH, I, TN, True, False)]
    print(f"{'shape':8} {'product':28} {'M x N x K':>18} {'GFLOP/s':>8} {'% of sgemm':>10}   same product in NumPy")
    for sid, what, M, Nn, K, ta, tb in cases:
        a = rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32)
        b = rng.standard_normal((Nn, K) if tb else (K, Nn)).astype(np.float32)
        c = np.empty((M, Nn), np.float32)
        t = best(lambda: _kernels.gemm(a, b, c, ta, tb, False, nt))
        an = a.T if ta else a; bn = b.T if tb else b
        tn = best(lambda: np.matmul(an, bn, out=c))
        g = 2 * M * Nn * K / t / 1e9
        gn = 2 * M * Nn * K / tn / 1e9
        print(f"{sid:8} {what:28} {M:>5}x{Nn:>5}x{K:>5} {g:8.0f} {100*g/sg:9.0f}%   NumPy {gn:4.0f} ({100*gn/sg:3.0f}%)")
