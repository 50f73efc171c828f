"""Small workload for valgrind memcheck (tools/valgrind.sh): every cell, both dtypes,
lengths, reverse/bidirectional, projection, eval-mode packed weights, forward and
backward, on small shapes so it finishes in minutes under valgrind."""
import numpy as np

import rnnfast


def run():
    rng = np.random.default_rng(0)
    rnnfast.set_num_threads(2)
    T, N, I, H = 5, 3, 4, 6
    lengths = np.array([5, 2, 4])
    calls = 0
    for dtype in (np.float32, np.float64):
        for cls, extra in ((rnnfast.RNN, {}), (rnnfast.RNN, {"nonlinearity": "relu"}),
                           (rnnfast.LSTM, {}), (rnnfast.LSTM, {"proj_size": 3}),
                           (rnnfast.GRU, {})):
            for bidir in (False, True):
                layer = cls(I, H, num_layers=2, bidirectional=bidir, dtype=dtype, seed=1,
                            **extra)
                x = rng.standard_normal((T, N, I)).astype(dtype)
                for lens in (None, lengths):
                    out = layer(x, lengths=lens)
                    y = out[0]
                    states = out[1]
                    dy = np.ones_like(y)
                    grads = layer.backward(dy)
                    assert np.isfinite(y).all()
                    assert all(np.isfinite(g).all() for g in grads[-1].values()
                               if g is not None)
                    calls += 1
                layer.eval()
                y2 = layer(x)[0]
                y3 = layer(x)[0]          # packed weights reused
                assert np.array_equal(y2, y3)
                calls += 2
    # the general kernels (ONNX options), forward and backward, and a streamer
    for dtype in (np.float32, np.float64):
        for cls, extra in ((rnnfast.RNN, {"activations": ["LeakyRelu"]}),
                           (rnnfast.LSTM, {"peephole": True, "input_forget": True,
                                           "clip": 1.0, "proj_size": 3}),
                           (rnnfast.GRU, {"activations": ["HardSigmoid", "Softsign"],
                                          "reset_after": False})):
            layer = cls(I, H, num_layers=2, bidirectional=True, dtype=dtype, seed=1,
                        **extra)
            x = rng.standard_normal((T, N, I)).astype(dtype)
            y = layer(x, lengths=lengths)[0]
            grads = layer.backward(np.ones_like(y))
            assert all(np.isfinite(g).all() for g in grads[-1].values() if g is not None)
            calls += 1
        s = rnnfast.Streamer(rnnfast.GRU(I, H, num_layers=2, dtype=dtype, seed=2).eval(),
                             N, max_chunk=3)
        reset = np.zeros((T, N), bool)
        reset[2, 1] = True
        s.step(rng.standard_normal((T, N, I)).astype(dtype), reset=reset)
        calls += 1
    print(f"memcheck driver: {calls} calls done")


if __name__ == "__main__":
    run()
