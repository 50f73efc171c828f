"""Inference-mode weight packing in the layers: packed once, never stale.

In eval mode the compiled backend packs the weights at the first call and reuses the
pack; the parameters are read-only while the pack is in use, and every documented way
of changing weights (train(), load_state_dict, assigning a new array,
flatten_parameters, reset_parameters) makes the next call use the new weights.
"""
import numpy as np
import pytest

import rnnfast

pytest.importorskip("rnnfast._cpu", reason="compiled backend not built")


def make(cls=rnnfast.LSTM, **kw):
    kw.setdefault("num_layers", 2)
    kw.setdefault("bidirectional", True)
    return cls(5, 7, dtype=np.float64, seed=1, **kw)


def reference_output(layer, x):
    ref = type(layer)(layer.input_size, layer.hidden_size, num_layers=layer.num_layers,
                      bidirectional=layer.bidirectional, dtype=np.float64,
                      backend="reference",
                      **({"proj_size": layer.proj_size} if isinstance(layer, rnnfast.LSTM) else {}),
                      **({"reset_after": layer.reset_after} if isinstance(layer, rnnfast.GRU) else {}))
    ref.load_state_dict(layer.state_dict())
    ref.eval()
    return ref(x)[0]


X = np.random.default_rng(0).standard_normal((6, 3, 5))


@pytest.mark.parametrize("cls,kw", [(rnnfast.LSTM, {}), (rnnfast.LSTM, {"proj_size": 3}),
                                    (rnnfast.GRU, {}), (rnnfast.GRU, {"reset_after": False}),
                                    (rnnfast.RNN, {})])
def test_repeated_eval_calls_agree_with_reference(cls, kw):
    layer = make(cls, **kw).eval()
    first = layer(X)[0]
    second = layer(X)[0]          # uses the cached pack
    np.testing.assert_array_equal(first, second)
    want = reference_output(layer, X)
    assert np.max(np.abs(second - want)) <= 1e-12 * np.max(np.abs(want))


def test_parameters_are_read_only_while_packed_and_writable_after_train():
    layer = make().eval()
    layer(X)
    layer(X)
    with pytest.raises(ValueError, match="read-only"):
        layer.weight_hh_l0[0, 0] = 1.0
    layer.train()
    layer.weight_hh_l0[0, 0] = 1.0     # allowed again
    layer.eval()
    y = layer(X)[0]
    np.testing.assert_allclose(y, reference_output(layer, X), rtol=0, atol=1e-12)


def test_every_way_of_changing_weights_is_seen_by_the_next_eval_call():
    layer = make().eval()
    layer(X)
    layer(X)
    other = make()
    other.reset_parameters()
    # 1. load_state_dict in eval mode
    layer.load_state_dict(other.state_dict())
    y = layer(X)[0]
    layer(X)
    np.testing.assert_allclose(y, reference_output(other, X), rtol=0, atol=1e-12)
    # 2. assigning a new array to a parameter attribute
    layer.weight_ih_l1 = layer.weight_ih_l1 * 0.5
    y2 = layer(X)[0]
    np.testing.assert_allclose(y2, reference_output(layer, X), rtol=0, atol=1e-12)
    assert not np.allclose(y, y2)
    # 3. flatten_parameters makes them writable; in-place change then repacks
    layer(X)
    layer.flatten_parameters()
    layer.bias_hh_l0_reverse += 1.0
    y3 = layer(X)[0]
    np.testing.assert_allclose(y3, reference_output(layer, X), rtol=0, atol=1e-12)
    # 4. reset_parameters
    layer(X)
    layer.reset_parameters()
    y4 = layer(X)[0]
    np.testing.assert_allclose(y4, reference_output(layer, X), rtol=0, atol=1e-12)


def test_training_locks_parameters_only_until_backward():
    layer = make().train()
    y, _ = layer(X)
    with pytest.raises(ValueError, match="read-only"):
        layer.weight_hh_l0 += 0.1      # the pending backward needs these weights
    layer.backward(np.ones_like(y))
    layer.weight_hh_l0 += 0.1          # plain in-place SGD-style update after backward
    assert layer.weight_hh_l0.flags.writeable


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls,kw", [(rnnfast.LSTM, {}), (rnnfast.GRU, {}),
                                    (rnnfast.RNN, {}), (rnnfast.RNN, {"nonlinearity": "relu"})])
def test_single_steps_equal_the_whole_sequence_bitwise(cls, kw, dtype, threads):
    """A packed single-step call (threads claim unit-block groups as they come) gives
    bitwise the outputs of the same steps inside one sequence call (fixed split by
    thread, time loop): every output is the same chain over k on either path."""
    old = rnnfast.get_num_threads()
    rnnfast.set_num_threads(threads)
    try:
        layer = cls(48, 300, dtype=dtype, seed=3, **kw).eval()
        x = np.random.default_rng(4).standard_normal((7, 5, 48)).astype(dtype)
        whole, _ = layer(x)
        layer(x[:1])                          # packs the weights
        h, steps = None, []
        for t in range(x.shape[0]):
            y, h = layer(x[t:t + 1], h)
            steps.append(y)
        np.testing.assert_array_equal(np.concatenate(steps), whole)
    finally:
        rnnfast.set_num_threads(old)
