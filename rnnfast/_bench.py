"""Benchmark engine behind ``rnnfast bench`` and the ``bench/`` pytest-benchmark suite.

It implements the shapes, peers and report of BENCHMARKS.md and needs nothing from the
repository: a pip-installed rnnfast runs it (``rnnfast bench``). Peers are optional
(``pip install "rnnfast[bench]"`` plus ``pip install torch==2.13.0``); a missing one is
reported as ``n/a``, never estimated.

Pieces (all reused by ``bench/``):

``SHAPES``
    The canonical shapes (id -> :class:`Shape`).
:class:`Case`
    One shape's problem: weights (from an rnnfast layer with a fixed seed), input,
    lengths, ``dy``. Every runner loads the same weights.
``RUNNERS`` / :func:`get_runner`
    ``rnnfast``, ``torch`` (PyTorch CPU), ``ort`` (ONNX Runtime CPU, inference only),
    ``numpy`` (a hand-written NumPy loop, inference only). ``runner.prepare(case,
    threads)`` returns an object with ``run()`` (one timed call) and ``outputs()``
    (arrays for the agreement check: ``y``, ``h_n``, ``c_n``; training: ``dx`` and
    ``dW_hh_l0`` too).
:func:`check_agreement`
    A peer's outputs against rnnfast's: max |a - b| / max |rnnfast| per array.
:func:`run`
    The whole benchmark: agreement check (untimed), first call, warm-up, runners
    interleaved round by round, medians, ratios, GFLOP/s, fraction of the measured
    sgemm rate, peak extra memory of a training step. Returns a JSON-able dict.
:func:`format_report`
    The text tables ``rnnfast bench`` prints.

Timing method: each runner is prepared (weights loaded, ONNX session built: not
timed); its first call is timed alone (``first call``); then the agreement check runs
(untimed) and a peer that disagrees is reported ``WRONG`` and not timed; after
``warmup`` calls, each round times every runner once, in the order rnnfast, torch, ort,
numpy, with a short sleep between runners so that one library's spinning thread pool
does not steal cores from the next. One sample is a batch of ``k`` back-to-back calls
(``k`` chosen from the warm-up so that a batch lasts at least ``min_time``; ``k = 1``
for anything slower), divided by ``k``. Reported: the median over rounds.

Memory method (``peak_extra_mib``): a fresh Python process per (runner, shape) builds
the problem, warms its thread pool on a tiny problem of the same cell, then reads its
resident set size (VmRSS), resets the kernel's peak-RSS counter (``echo 5 >
/proc/self/clear_refs``), runs ONE training step (forward + full backward) and reads
the peak (VmHWM). Peak extra = VmHWM - VmRSS before: every byte the step touched at
its high point (activations, workspace, GEMM packing buffers, gradients, allocator
slack), whatever allocated it (NumPy, C malloc, PyTorch's allocator). Where
clear_refs is not available it falls back to ru_maxrss growth (a lower bound). For
rnnfast, the peak of NumPy-visible allocations (tracemalloc) is recorded as a
cross-check.
"""
import argparse
import contextlib
import datetime
import gc
import importlib
import importlib.util
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace

import numpy as np

__all__ = ["Shape", "SHAPES", "Case", "Runner", "RUNNERS", "PEERS", "get_runner",
           "check_agreement", "prepare_checked", "flops", "measure_sgemm", "environment",
           "ThreadSettings", "quiesce", "timed", "run", "format_report", "memory_probe",
           "main", "TOL"]

DTYPE = np.float32
TOL = 1e-3          # agreement: max |peer - rnnfast| / max |rnnfast|, per array
SEED = 0
_GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}
_CELL_LABEL = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN tanh", "rnn_relu": "RNN relu"}


# --------------------------------------------------------------------------- shapes
@dataclass(frozen=True)
class Shape:
    """One benchmark problem (time-major, float32). ``I`` defaults to ``H``."""

    id: str
    cell: str            # 'lstm' | 'gru' | 'rnn_tanh' | 'rnn_relu'
    H: int
    N: int
    T: int
    D: int = 1           # directions
    L: int = 1           # layers
    mode: str = "inference"   # 'inference' | 'training'
    lengths: bool = False     # lengths drawn uniformly in [T/2, T]
    I: int = 0           # input size; 0 means H
    regime: str = ""
    memory: bool = False      # measure the peak extra memory of a training step

    @property
    def input_size(self):
        return self.I or self.H

    @property
    def training(self):
        return self.mode == "training"

    @property
    def gates(self):
        return _GATES[self.cell]

    def label(self):
        s = f"{_CELL_LABEL[self.cell]} H{self.H} N{self.N} T{self.T}"
        if self.input_size != self.H:
            s += f" I{self.input_size}"
        if self.D == 2:
            s += " bi"
        if self.L > 1:
            s += f" {self.L}L"
        if self.lengths:
            s += " len"
        return s

    def to_dict(self):
        d = asdict(self)
        d["I"] = self.input_size
        return d


def _S(*args, **kw):
    s = Shape(*args, **kw)
    return s.id, s


SHAPES = dict([
    _S("L1", "lstm", 256, 1, 150, regime="batch-1 stream, weights fit per-core L2"),
    _S("L2", "lstm", 512, 1, 25, regime="batch-1, weights in L3"),
    _S("L5", "lstm", 512, 4, 25, regime="small batch"),
    _S("L6", "lstm", 1024, 8, 25, regime="small-batch server"),
    _S("L7", "lstm", 256, 1, 50, D=2, regime="bidirectional batch-1"),
    _S("S1", "lstm", 512, 64, 100, regime="large-batch throughput"),
    _S("G1", "gru", 512, 1, 1, regime="one step: per-call overhead"),
    _S("G2", "gru", 1024, 1, 300, regime="batch-1, long"),
    _S("G4", "gru", 1024, 4, 100, regime="small batch"),
    _S("V1", "rnn_tanh", 32, 1, 672, regime="tiny cell: pure overhead"),
    _S("V3", "rnn_tanh", 1760, 1, 50, regime="big vanilla, L3"),
    _S("T1", "lstm", 512, 16, 25, mode="training"),
    _S("T2", "lstm", 512, 64, 25, mode="training", memory=True),
    _S("T4", "lstm", 256, 32, 150, mode="training", regime="long sequence"),
    _S("T5", "gru", 1024, 32, 50, mode="training", memory=True),
    _S("T6", "rnn_tanh", 1760, 16, 50, mode="training"),
    _S("T7", "lstm", 256, 32, 50, D=2, mode="training", regime="bidirectional"),
    _S("T8", "gru", 800, 20, 100, D=2, mode="training",
       regime="bidirectional (DeepSpeech2-like)"),
    _S("M1", "lstm", 256, 32, 100, L=2, mode="training", lengths=True, memory=True,
       regime="stacked, with lengths drawn uniformly in [T/2, T]"),
])


def flops(shape, lengths=None):
    """FLOPs of one call: 2·G·N·T·H·(I_l + H) per layer and direction (I_l = D·H for
    layers after the first); with lengths, N·T is the number of valid steps; training
    counts 3× (forward, dX/dh products, dW products)."""
    steps = shape.N * shape.T if lengths is None else int(np.sum(lengths))
    total = 0
    for layer in range(shape.L):
        i_l = shape.input_size if layer == 0 else shape.D * shape.H
        total += shape.D * 2 * shape.gates * steps * shape.H * (i_l + shape.H)
    return total * (3 if shape.training else 1)


# ---------------------------------------------------------------------------- cases
class Case:
    """Weights, input, lengths and ``dy`` for one shape, from a fixed seed.

    The weights are those of ``rnnfast.<Cell>(..., seed=seed)`` (PyTorch's default
    initialisation); every runner loads them through ``state_dict``. Training uses the
    loss ``y.sum()``, so ``dy`` is all ones and there is no gradient on ``h_n``.
    """

    def __init__(self, shape, seed=SEED):
        self.shape = shape
        self.seed = seed
        rng = np.random.default_rng(seed)
        T, N, I = shape.T, shape.N, shape.input_size
        self.x = rng.standard_normal((T, N, I)).astype(DTYPE)
        self.lengths = None
        if shape.lengths:
            self.lengths = rng.integers(T // 2, T, endpoint=True, size=N).astype(np.int64)
        self.state_dict = make_rnnfast_layer(shape, seed).state_dict()
        self.dy = (np.ones((T, N, shape.D * shape.H), DTYPE) if shape.training else None)

    @property
    def flops(self):
        return flops(self.shape, self.lengths)


def make_rnnfast_layer(shape, seed=SEED):
    import rnnfast
    kw = dict(num_layers=shape.L, bidirectional=shape.D == 2, dtype=DTYPE, seed=seed)
    if shape.cell == "lstm":
        return rnnfast.LSTM(shape.input_size, shape.H, **kw)
    if shape.cell == "gru":
        return rnnfast.GRU(shape.input_size, shape.H, **kw)
    return rnnfast.RNN(shape.input_size, shape.H, nonlinearity=shape.cell[4:], **kw)


# -------------------------------------------------------------------------- runners
class NotApplicable(Exception):
    """The runner does not cover this shape (e.g. ONNX Runtime and training)."""


class Runner:
    """A library under test. Subclasses set ``name``/``label`` and implement
    ``_prepare``; ``requires`` lists the modules it needs."""

    name = ""
    label = ""
    requires = ()
    modes = ("inference", "training")

    def unavailable(self):
        """None if the runner can run here, else the reason (a missing package)."""
        for mod in self.requires:
            if importlib.util.find_spec(mod) is None:
                return f"{mod} not installed"
        return None

    def not_applicable(self, shape):
        """None if the runner covers ``shape``, else why not."""
        if shape.mode not in self.modes:
            return f"{self.label} is benchmarked for {'/'.join(self.modes)} only"
        return None

    def version(self):
        return None

    def prepare(self, case, threads):
        """Load the case's weights; returns an object with ``run()`` and ``outputs()``."""
        why = self.not_applicable(case.shape)
        if why:
            raise NotApplicable(why)
        return self._prepare(case, threads)

    def _prepare(self, case, threads):
        raise NotImplementedError


def _split_state(out, lstm):
    y, h = out
    c = None
    if lstm:
        h, c = h
    return y, h, c


class RnnfastRunner(Runner):
    name, label = "rnnfast", "rnnfast"

    def version(self):
        import rnnfast
        return rnnfast.__version__

    def _prepare(self, case, threads):
        import rnnfast
        rnnfast.set_num_threads(threads)
        return _RnnfastPrepared(case)


class _RnnfastPrepared:
    def __init__(self, case):
        self.case = case
        self.layer = make_rnnfast_layer(case.shape, case.seed)
        self.layer.load_state_dict(case.state_dict)
        self.layer.train(case.shape.training)
        self.lstm = case.shape.cell == "lstm"

    def run(self):
        c = self.case
        if c.shape.training:
            self.layer(c.x, lengths=c.lengths)
            self.layer.backward(c.dy)
        else:
            self.layer(c.x, lengths=c.lengths)

    def outputs(self):
        c = self.case
        y, h, cn = _split_state(self.layer(c.x, lengths=c.lengths), self.lstm)
        out = {"y": y, "h_n": h, "c_n": cn}
        if c.shape.training:
            dx, _, grads = self.layer.backward(c.dy)
            out["dx"] = dx
            out["dW_hh_l0"] = grads["weight_hh_l0"]
        return out


class TorchRunner(Runner):
    name, label = "torch", "PyTorch"
    requires = ("torch",)

    def version(self):
        import torch
        return torch.__version__

    def _prepare(self, case, threads):
        import torch
        torch.set_num_threads(threads)
        return _TorchPrepared(case)


class _TorchPrepared:
    def __init__(self, case):
        import torch
        self.torch = torch
        s = case.shape
        self.case, self.lstm = case, s.cell == "lstm"
        kw = dict(num_layers=s.L, bidirectional=s.D == 2)
        if s.cell == "lstm":
            m = torch.nn.LSTM(s.input_size, s.H, **kw)
        elif s.cell == "gru":
            m = torch.nn.GRU(s.input_size, s.H, **kw)
        else:
            m = torch.nn.RNN(s.input_size, s.H, nonlinearity=s.cell[4:], **kw)
        m.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                           for k, v in case.state_dict.items()})
        m.train(s.training)
        self.m = m
        self.params = list(m.parameters())
        self.x = torch.from_numpy(case.x.copy())
        self.lengths = (torch.from_numpy(case.lengths.copy())
                        if case.lengths is not None else None)
        if s.training:
            self.x.requires_grad_(True)

    def _forward(self):
        if self.lengths is None:
            return self.m(self.x)
        pack = self.torch.nn.utils.rnn
        packed = pack.pack_padded_sequence(self.x, self.lengths, enforce_sorted=False)
        out, h = self.m(packed)
        y, _ = pack.pad_packed_sequence(out, total_length=self.case.shape.T)
        return y, h

    def _train_step(self):
        for p in self.params:
            p.grad = None
        self.x.grad = None
        out = self._forward()
        out[0].sum().backward()
        return out

    def run(self):
        if self.case.shape.training:
            self._train_step()
        else:
            with self.torch.inference_mode():
                self._forward()

    def outputs(self):
        if self.case.shape.training:
            y, h, c = _split_state(self._train_step(), self.lstm)
        else:
            with self.torch.inference_mode():
                y, h, c = _split_state(self._forward(), self.lstm)
        out = {"y": y.detach().numpy(), "h_n": h.detach().numpy(),
               "c_n": c.detach().numpy() if c is not None else None}
        if self.case.shape.training:
            out["dx"] = self.x.grad.numpy()
            out["dW_hh_l0"] = self.m.weight_hh_l0.grad.numpy()
        return out


# ONNX gate order from PyTorch's: LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h
_ONNX_PERM = {"lstm": (0, 3, 1, 2), "gru": (1, 0, 2), "rnn_tanh": (0,), "rnn_relu": (0,)}
_ONNX_OP = {"lstm": "LSTM", "gru": "GRU", "rnn_tanh": "RNN", "rnn_relu": "RNN"}


def build_onnx_model(shape, state_dict, with_lengths=False):
    """One ONNX model, one RNN/LSTM/GRU node per layer, with the given PyTorch weights.

    Inputs ``x`` (T, N, I) float32 [and ``seq_lens`` (N,) int32]; outputs ``y``
    (T, N, D*H), ``h_n`` (L*D, N, H) [and ``c_n``], PyTorch's layouts. Gate blocks are
    reordered (LSTM i,f,g,o -> i,o,f,c; GRU r,z,n -> z,r,h, linear_before_reset=1),
    ``B = concat(b_ih, b_hh)``. After each node, its ``Y`` (T, D, N, H) goes through
    Transpose + Reshape to (T, N, D*H).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    G, H, D, L = shape.gates, shape.H, shape.D, shape.L
    perm, op = _ONNX_PERM[shape.cell], _ONNX_OP[shape.cell]

    def reorder(w):
        blocks = np.split(np.asarray(w, DTYPE), G, axis=0)
        return np.concatenate([blocks[k] for k in perm], axis=0)

    nodes = []
    inits = [numpy_helper.from_array(np.array([0, 0, -1], np.int64), "shape_TN_")]
    cur = "x"
    hs, cs = [], []
    for layer in range(L):
        W, R, B = [], [], []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            W.append(reorder(state_dict["weight_ih" + sfx]))
            R.append(reorder(state_dict["weight_hh" + sfx]))
            B.append(np.concatenate([reorder(state_dict["bias_ih" + sfx]),
                                     reorder(state_dict["bias_hh" + sfx])]))
        for nm, arr in ((f"W{layer}", W), (f"R{layer}", R), (f"B{layer}", B)):
            inits.append(numpy_helper.from_array(np.ascontiguousarray(np.stack(arr)), nm))
        inputs = [cur, f"W{layer}", f"R{layer}", f"B{layer}"]
        if with_lengths:
            inputs.append("seq_lens")
        outputs = [f"Y{layer}", f"Yh{layer}"] + ([f"Yc{layer}"] if shape.cell == "lstm" else [])
        attrs = {"hidden_size": H, "direction": "bidirectional" if D == 2 else "forward"}
        if shape.cell == "gru":
            attrs["linear_before_reset"] = 1
        if shape.cell == "rnn_relu":
            attrs["activations"] = ["Relu"] * D
        nodes.append(helper.make_node(op, inputs, outputs, name=f"{op}{layer}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y{layer}"], [f"Yt{layer}"],
                                      perm=[0, 2, 1, 3]))
        nxt = "y" if layer == L - 1 else f"X{layer + 1}"
        nodes.append(helper.make_node("Reshape", [f"Yt{layer}", "shape_TN_"], [nxt]))
        cur = nxt
        hs.append(f"Yh{layer}")
        cs.append(f"Yc{layer}")
    nodes.append(helper.make_node("Concat", hs, ["h_n"], axis=0))
    T, N = shape.T, shape.N
    graph_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT,
                                              [T, N, shape.input_size])]
    if with_lengths:
        graph_in.append(helper.make_tensor_value_info("seq_lens", TensorProto.INT32, [N]))
    graph_out = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [T, N, D * H]),
                 helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [L * D, N, H])]
    if shape.cell == "lstm":
        nodes.append(helper.make_node("Concat", cs, ["c_n"], axis=0))
        graph_out.append(helper.make_tensor_value_info("c_n", TensorProto.FLOAT,
                                                       [L * D, N, H]))
    graph = helper.make_graph(nodes, f"rnnfast_bench_{shape.id}", graph_in, graph_out,
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name="rnnfast._bench")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


class OrtRunner(Runner):
    name, label = "ort", "ONNX Runtime"
    requires = ("onnxruntime", "onnx")
    modes = ("inference",)

    def version(self):
        import onnxruntime
        return onnxruntime.__version__

    def _prepare(self, case, threads):
        return _OrtPrepared(case, threads)


def ort_session_options(threads):
    """intra_op = threads, one inter-op thread, thread-pool spinning disabled."""
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class _OrtPrepared:
    def __init__(self, case, threads):
        import onnxruntime as ort
        s = case.shape
        self.case, self.lstm = case, s.cell == "lstm"
        model = build_onnx_model(s, case.state_dict, case.lengths is not None)
        self.sess = ort.InferenceSession(model.SerializeToString(),
                                         sess_options=ort_session_options(threads),
                                         providers=["CPUExecutionProvider"])
        self.feed = {"x": case.x}
        if case.lengths is not None:
            self.feed["seq_lens"] = case.lengths.astype(np.int32)
        self.names = ["y", "h_n"] + (["c_n"] if self.lstm else [])

    def run(self):
        self.sess.run(self.names, self.feed)

    def outputs(self):
        res = self.sess.run(self.names, self.feed)
        return {"y": res[0], "h_n": res[1], "c_n": res[2] if self.lstm else None}


def _sigmoid(a):
    np.negative(a, out=a)
    np.exp(a, out=a)
    a += 1
    np.reciprocal(a, out=a)
    return a


def numpy_layer(cell, x, w_ih, w_hh, b_ih, b_hh, h0, c0=None, lengths=None, reverse=False):
    """What a user writes by hand: one layer, one direction, float32 NumPy.

    The input projection is one matrix product over all steps; each step does one
    ``h @ W_hh.T`` and NumPy activations. ``lengths``: padded steps leave the state
    alone and give zero outputs. Returns ``y, h_n, c_n``.
    """
    T, N, _ = x.shape
    H = w_hh.shape[1]
    gx = (x.reshape(T * N, -1) @ w_ih.T).reshape(T, N, -1)
    gx += b_ih
    if cell == "gru":
        gx[:, :, :2 * H] += b_hh[:2 * H]
        b_hn = b_hh[2 * H:]
    else:
        gx += b_hh
    w_hh_t = w_hh.T
    h = h0.copy()
    c = c0.copy() if c0 is not None else None
    y = np.empty((T, N, H), x.dtype)
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        g = h @ w_hh_t
        if cell == "lstm":
            g += gx[t]
            i = _sigmoid(g[:, :H])
            f = _sigmoid(g[:, H:2 * H])
            gg = np.tanh(g[:, 2 * H:3 * H])
            o = _sigmoid(g[:, 3 * H:])
            c_new = f * c + i * gg
            h_new = o * np.tanh(c_new)
        elif cell == "gru":
            rz = _sigmoid(g[:, :2 * H] + gx[t, :, :2 * H])
            n = np.tanh(gx[t, :, 2 * H:] + rz[:, :H] * (g[:, 2 * H:] + b_hn))
            h_new = n + rz[:, H:] * (h - n)
        else:
            g += gx[t]
            h_new = np.tanh(g) if cell == "rnn_tanh" else np.maximum(g, 0)
        if lengths is None:
            h = h_new
            if c is not None:
                c = c_new
            y[t] = h
        else:
            m = (t < lengths)[:, None]
            h = np.where(m, h_new, h)
            if c is not None:
                c = np.where(m, c_new, c)
            y[t] = np.where(m, h_new, 0)
    return y, h, c


def numpy_forward(shape, params, x, lengths=None):
    """Stacked, optionally bidirectional forward with :func:`numpy_layer`."""
    N, H = shape.N, shape.H
    hs, cs = [], []
    inp = x
    zeros = np.zeros((N, H), x.dtype)
    for layer in range(shape.L):
        ys = []
        for d in range(shape.D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            y, h, c = numpy_layer(shape.cell, inp, params["weight_ih" + sfx],
                                  params["weight_hh" + sfx], params["bias_ih" + sfx],
                                  params["bias_hh" + sfx], zeros,
                                  zeros if shape.cell == "lstm" else None, lengths, d == 1)
            ys.append(y)
            hs.append(h)
            cs.append(c)
        inp = ys[0] if shape.D == 1 else np.concatenate(ys, axis=2)
    return inp, np.stack(hs), (np.stack(cs) if shape.cell == "lstm" else None)


class NumpyLoopRunner(Runner):
    name, label = "numpy", "NumPy loop"
    modes = ("inference",)

    def version(self):
        return np.__version__

    def _prepare(self, case, threads):
        return _NumpyPrepared(case)


class _NumpyPrepared:
    def __init__(self, case):
        self.case = case
        self.params = {k: np.ascontiguousarray(v, DTYPE) for k, v in case.state_dict.items()}

    def run(self):
        c = self.case
        numpy_forward(c.shape, self.params, c.x, c.lengths)

    def outputs(self):
        c = self.case
        y, h, cn = numpy_forward(c.shape, self.params, c.x, c.lengths)
        return {"y": y, "h_n": h, "c_n": cn}


RUNNERS = {r.name: r for r in (RnnfastRunner(), TorchRunner(), OrtRunner(),
                               NumpyLoopRunner())}
PEERS = ("torch", "ort", "numpy")


def get_runner(name):
    """The runner called ``name`` (``rnnfast``, ``torch``, ``ort``, ``numpy``)."""
    try:
        return RUNNERS[name]
    except KeyError:
        raise ValueError(f"unknown runner {name!r}; choose from {', '.join(RUNNERS)}")


# ------------------------------------------------------------------------ agreement
def check_agreement(reference, outputs, tol=TOL):
    """Compare a peer's outputs with rnnfast's (``reference``), array by array.

    Returns ``(ok, errors)``: ``errors[key] = max |a - b| / max |b|`` for every key both
    give (not None); ``ok`` when all are <= ``tol`` and at least one array was compared.
    A shape mismatch or a non-finite value counts as an error of ``inf``.
    """
    errors = {}
    for key, ref in reference.items():
        got = outputs.get(key)
        if ref is None or got is None:
            continue
        ref = np.asarray(ref, np.float64)
        got = np.asarray(got, np.float64)
        if ref.shape != got.shape or not np.all(np.isfinite(got)):
            errors[key] = math.inf
            continue
        if ref.size == 0:
            errors[key] = 0.0
            continue
        scale = max(float(np.max(np.abs(ref))), 1e-30)
        errors[key] = float(np.max(np.abs(got - ref))) / scale
    ok = bool(errors) and all(e <= tol for e in errors.values())
    return ok, errors


# ---------------------------------------------------------------------- environment
def _version_of(module):
    if importlib.util.find_spec(module) is None:
        return None
    try:
        from importlib.metadata import version
        return version(module)
    except Exception:
        try:
            return importlib.import_module(module).__version__
        except Exception:
            return "unknown"


class ThreadSettings:
    """Equalise threads: rnnfast, PyTorch (if imported), NumPy's BLAS (threadpoolctl).

    ONNX Runtime gets its count per session (:func:`ort_session_options`).
    ``restore()`` puts the previous settings back; ``blas`` says what NumPy's BLAS got.
    """

    def __init__(self, threads):
        from . import _config
        self.threads = threads
        self._old_rnnfast = getattr(_config, "_num_threads", None)
        _config.set_num_threads(threads)
        self._old_torch = None
        if "torch" in sys.modules:
            torch = sys.modules["torch"]
            self._old_torch = torch.get_num_threads()
            torch.set_num_threads(threads)
        self._limiter = None
        self.blas = "not set (pip install threadpoolctl)"
        if importlib.util.find_spec("threadpoolctl") is not None:
            import threadpoolctl
            self._limiter = threadpoolctl.threadpool_limits(limits=threads, user_api="blas")
            self.blas = f"{threads} (threadpoolctl)"

    def restore(self):
        from . import _config
        _config.set_num_threads(self._old_rnnfast)
        if self._old_torch is not None:
            sys.modules["torch"].set_num_threads(self._old_torch)
        if self._limiter is not None:
            self._limiter.restore_original_limits()


def measure_sgemm(threads, n=2048, repeats=3):
    """Best-of-``repeats`` float32 C = A @ B, n x n x n: NumPy's BLAS and rnnfast's GEMM.

    Returns ``{"numpy": GFLOP/s, "rnnfast": GFLOP/s or None, "best": ..., "n": n}``.
    """
    rng = np.random.default_rng(1)
    a = rng.standard_normal((n, n)).astype(DTYPE)
    b = rng.standard_normal((n, n)).astype(DTYPE)
    c = np.empty((n, n), DTYPE)
    fl = 2.0 * n ** 3

    def best(fn):
        fn()
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return fl / min(ts) / 1e9

    res = {"n": n, "repeats": repeats}
    res["numpy"] = best(lambda: np.matmul(a, b, out=c))
    quiesce()  # let OpenBLAS's threads stop spinning
    try:
        from ._cpu import _kernels
        res["rnnfast"] = best(lambda: _kernels.gemm(a, b, c, trans_a=False, trans_b=False,
                                                    accumulate=False, nthreads=threads))
    except Exception as exc:  # depends on the build
        res["rnnfast"] = None
        res["rnnfast_error"] = f"{type(exc).__name__}: {exc}"
    res["best"] = max(v for v in (res["numpy"], res["rnnfast"]) if v)
    return res


def _cpu_ticks():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]), v[3] + v[4]   # total (without guest), idle + iowait


def others_cpu_use(window=0.5):
    """Fraction of the machine's CPU time used by other processes: /proc/stat over
    ``window`` seconds while this process sleeps. None where /proc/stat is missing."""
    try:
        t0, i0 = _cpu_ticks()
        c0 = time.process_time()
        time.sleep(window)
        t1, i1 = _cpu_ticks()
        own = (time.process_time() - c0) * os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    if t1 <= t0:
        return None
    return max(0.0, min(1.0, ((t1 - t0) - (i1 - i0) - own) / (t1 - t0)))


def environment(threads, load_window=0.5):
    """Header facts: CPU, threads, versions, date, rnnfast's configuration, and the
    share of the CPUs other processes use (over ``load_window`` s; 0 skips it)."""
    from . import _config
    cfg = _config.config()
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": cfg["cpu"],
        "cpu_simd": cfg["cpu_simd"],
        "cpus_available": _config._available_cpus(),
        "threads": threads,
        "platform": cfg["platform"],
        "python": cfg["python"],
        "versions": {"rnnfast": cfg["rnnfast"], "numpy": cfg["numpy"],
                     "torch": _version_of("torch"),
                     "onnxruntime": _version_of("onnxruntime"),
                     "onnx": _version_of("onnx"),
                     "threadpoolctl": _version_of("threadpoolctl")},
        "rnnfast_kernel": cfg["gemm"]["kernel"],
        "rnnfast_openmp": cfg["openmp"],
        "numpy_blas": cfg["numpy_blas"],
        "others_cpu_start": others_cpu_use(load_window) if load_window else None,
    }


# --------------------------------------------------------------------------- timing
def quiesce(max_s=0.5, step=0.01, busy=0.05):
    """Sleep until this process's threads stop using CPU (at most ``max_s`` seconds).

    Thread pools keep spinning after a call returns: OpenMP's (rnnfast, PyTorch) about
    10 ms, OpenBLAS's (the NumPy loop) about 100 ms; timing the next library meanwhile
    would charge it for cores those threads hold. Waits in ``step`` slices until one
    slice used less than ``busy`` of a core. Returns the seconds waited.
    """
    t0 = time.perf_counter()
    while True:
        c0 = time.process_time()
        time.sleep(step)
        if time.process_time() - c0 < busy * step or time.perf_counter() - t0 >= max_s:
            return time.perf_counter() - t0


def timed(fn, k=1):
    """Seconds per call of ``k`` back-to-back calls of ``fn`` (garbage collector off)."""
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(k):
            fn()
        return (time.perf_counter() - t0) / k
    finally:
        if gc_was:
            gc.enable()


def calls_per_sample(fn, min_time, warmup=1, limit=10000):
    """Back-to-back calls of ``fn`` that last at least ``min_time`` seconds together.

    After ``warmup`` calls, batches of 1, 2, 4, ... calls are timed until one lasts a
    tenth of ``min_time``; the fastest time per call among them sets the count. Single
    calls right after a pause are no measure: the thread pool is asleep and the weights
    may have left the caches (measured: an eval GRU H=512 step took 0.4-9 ms right after
    `quiesce`, 0.08-0.13 ms per call in a batch), and a count set from them made samples
    of 13 calls, 2.5 ms, whose first call dominated.
    """
    for _ in range(max(warmup, 1)):
        fn()
    k, best = 1, math.inf
    while True:
        t = timed(fn, k)
        best = min(best, t)   # the steady rate; a slow batch only makes samples longer
        if t * k >= min_time / 10 or k >= limit:
            break
        k *= 2
    return max(1, min(limit, math.ceil(min_time / max(best, 1e-7))))


SETTINGS = {  # rounds, warm-up calls, min batch time (s), sgemm repeats
    "full": dict(rounds=7, warmup=2, min_time=0.05, sgemm_repeats=5),
    "quick": dict(rounds=3, warmup=1, min_time=0.01, sgemm_repeats=3),
}


def prepare_checked(runner, case, threads, reference=None, tol=TOL, settle=True):
    """Prepare ``runner`` on ``case``, time its first call and run the agreement check.

    Returns ``(entry, prepared, outputs)``: ``entry`` has ``status`` (``'ok'``,
    ``'n/a'``, ``'-'`` (not applicable), ``'WRONG'`` or ``'error'``), ``reason``,
    ``setup_ms``, ``first_ms``, ``agreement``; ``prepared`` is None unless the status is
    ok. ``reference`` is rnnfast's outputs (None for rnnfast itself: no check).
    ``settle``: :func:`quiesce` before the first call.
    """
    entry = {"label": runner.label}
    why = runner.unavailable()
    if why:
        entry.update(status="n/a", reason=why)
        return entry, None, None
    why = runner.not_applicable(case.shape)
    if why:
        entry.update(status="-", reason=why)
        return entry, None, None
    try:
        t0 = time.perf_counter()
        prep = runner.prepare(case, threads)
        entry["setup_ms"] = (time.perf_counter() - t0) * 1e3
        if settle:
            quiesce()
        entry["first_ms"] = timed(prep.run) * 1e3
        outs = prep.outputs()
    except NotApplicable as exc:
        entry.update(status="-", reason=str(exc))
        return entry, None, None
    except Exception as exc:
        entry.update(status="error", reason=f"{type(exc).__name__}: {exc}")
        return entry, None, None
    if reference is not None:
        ok, errs = check_agreement(reference, outs, tol)
        entry["agreement"] = errs
        if not ok:
            bad = ", ".join(f"{k} {v:.1e}" for k, v in errs.items() if not v <= tol)
            bad = bad or "no array to compare"
            entry.update(status="WRONG", reason=f"disagrees with rnnfast: {bad} "
                                                f"(tolerance {tol:g} of max |rnnfast|)")
            return entry, None, outs
    entry["status"] = "ok"
    return entry, prep, outs


def core_roundtrip():
    """ns per round trip of a cache line between two threads of rnnfast's OpenMP team,
    or None. On a VM it tells whether the host put the two vCPUs on one die or on two
    (on the benchmark machine 50-120 ns against 330-600 ns, in phases of tens of
    seconds); data shared between the threads costs more in the second case."""
    try:
        from ._cpu import _kernels
        return _kernels.core_roundtrip_ns(20000, 0.5)
    except Exception:   # a build without the probe, or no OpenMP
        return None


def _bench_shape(case, runners, threads, rounds, warmup, min_time, settle, tol, log):
    shape = case.shape
    res = {"shape": shape.to_dict(), "label": shape.label(), "flops": case.flops,
           "lengths": case.lengths.tolist() if case.lengths is not None else None,
           "runners": {}}
    active = []   # (name, prepared)
    ref = None
    for r in runners:
        if r.name != "rnnfast" and ref is None and r.unavailable() is None \
                and r.not_applicable(shape) is None:
            res["runners"][r.name] = {"label": r.label, "status": "error",
                                      "reason": "rnnfast failed: nothing to check against"}
            continue
        entry, prep, outs = prepare_checked(r, case, threads,
                                            None if r.name == "rnnfast" else ref, tol, settle)
        res["runners"][r.name] = entry
        if entry["status"] in ("WRONG", "error"):
            log(f"  {shape.id}: {r.label}: {entry['status']}: {entry['reason']}")
        if entry["status"] != "ok":
            continue
        if r.name == "rnnfast":
            ref = outs
        del outs
        active.append((r.name, prep))
    # warm-up, then pick the batch size so that one sample lasts >= min_time
    ks = {}
    waited = 0.0
    for name, prep in active:
        if settle:
            waited += quiesce()
        ks[name] = calls_per_sample(prep.run, min_time, warmup)
    samples = {name: [] for name, _ in active}
    trips = []
    for _ in range(rounds):
        if threads >= 2:   # where the host put the two cores this round (see core_roundtrip)
            trips.append(core_roundtrip())
        for name, prep in active:
            if settle:
                waited += quiesce()
            samples[name].append(timed(prep.run, ks[name]) * 1e3)
    for name, _ in active:
        ts = samples[name]
        res["runners"][name].update(median_ms=statistics.median(ts), min_ms=min(ts),
                                    times_ms=ts, calls_per_sample=ks[name])
    res["quiesce_s"] = waited
    trips = [x for x in trips if x is not None]
    if trips:
        res["roundtrip_ns"] = trips
        res["roundtrip_ns_median"] = statistics.median(trips)
    # largest max/min ratio of one runner's samples: how noisy this row is
    res["spread"] = max((max(samples[n]) / max(min(samples[n]), 1e-12) for n, _ in active
                         if samples[n]), default=None)
    rn = res["runners"].get("rnnfast", {})
    if "median_ms" in rn:
        t = rn["median_ms"]
        res["us_per_step"] = t * 1e3 / shape.T
        res["gflops"] = case.flops / (t * 1e-3) / 1e9
        res["ratios"] = {name: t / e["median_ms"] for name, e in res["runners"].items()
                         if name != "rnnfast" and "median_ms" in e}
    peers = [e for n, e in res["runners"].items()
             if n != "rnnfast" and e.get("status") in ("ok", "WRONG")]
    if len(peers) >= 2 and all(e["status"] == "WRONG" for e in peers):
        res["warning"] = "every peer disagrees with rnnfast: rnnfast's output is the suspect"
    return res


# --------------------------------------------------------------------------- memory
def _proc_status_kib(key):
    with open("/proc/self/status") as f:
        m = re.search(rf"^{key}:\s+(\d+)\s+kB", f.read(), re.M)
    return int(m.group(1)) if m else None


def memory_probe(runner_name, shape, threads, seed=SEED):
    """Peak extra memory of one training step, in THIS process (see module docstring).

    Meant to run in a fresh process (``python -m rnnfast._bench --memory-probe``).
    """
    import resource
    runner = get_runner(runner_name)
    from . import _config
    _config.set_num_threads(threads)
    # warm the thread pool and lazy initialisation on a tiny problem of the same cell
    tiny = Case(replace(shape, H=8, N=2, T=3, I=0, lengths=False), seed)
    runner.prepare(tiny, threads).run()
    del tiny
    case = Case(shape, seed)
    prep = runner.prepare(case, threads)
    gc.collect()
    base_kib = _proc_status_kib("VmRSS")
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    method = "VmHWM after clear_refs"
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        if _proc_status_kib("VmHWM") > base_kib + 1024:
            raise OSError("VmHWM not reset")
    except OSError:
        method = "ru_maxrss growth (lower bound)"
    prep.run()
    if method.startswith("VmHWM"):
        peak_kib = _proc_status_kib("VmHWM")
    else:
        peak_kib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, maxrss_before)
        base_kib = max(base_kib, maxrss_before)
    out = {"runner": runner_name, "shape": shape.id, "method": method,
           "base_mib": base_kib / 1024, "peak_extra_mib": (peak_kib - base_kib) / 1024}
    if runner_name == "rnnfast":
        import tracemalloc
        gc.collect()
        tracemalloc.start()
        prep.run()
        out["tracemalloc_peak_mib"] = tracemalloc.get_traced_memory()[1] / 2 ** 20
        tracemalloc.stop()
    return out


def memory_subprocess(runner_name, shape, threads, seed=SEED, timeout=600):
    """:func:`memory_probe` in a fresh Python process; returns its dict (+ ``status``)."""
    cmd = [sys.executable, "-m", "rnnfast._bench", "--memory-probe", runner_name,
           json.dumps(asdict(shape)), str(threads), str(seed)]
    env = dict(os.environ)
    # the probe must import this same rnnfast (an in-place build or an installed one)
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = pkg_parent + os.pathsep + env.get("PYTHONPATH", "")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"status": "error", "reason": f"timed out after {timeout} s"}
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        return {"status": "error", "reason": f"exit {p.returncode}: {tail[0]}"}
    out = json.loads(p.stdout.strip().splitlines()[-1])
    out["status"] = "ok"
    return out


# ------------------------------------------------------------------------------ run
def weight_bytes(shape):
    """Bytes of weights one inference call must read at least, if the recurrent weights
    do not stay in the core's caches from one step to the next: per layer and
    direction, W_ih once (the input projection of all steps) and W_hh once per step.
    Returns ``(per_call, recurrent)``; ``recurrent`` is the size of all W_hh."""
    item = np.dtype(DTYPE).itemsize
    per_call = recurrent = 0
    for layer in range(shape.L):
        i_l = shape.input_size if layer == 0 else shape.D * shape.H
        g_h = shape.gates * shape.H
        per_call += shape.D * g_h * (i_l + shape.T * shape.H) * item
        recurrent += shape.D * g_h * shape.H * item
    return per_call, recurrent


def measure_read_bandwidth(nbytes, threads, repeats=5, target_s=0.02):
    """Best-of-``repeats`` read rate (GB/s) of a float32 buffer of ``nbytes`` bytes,
    read over and over by rnnfast's own vector loop with ``threads`` threads, each its
    contiguous part (as the kernels split the weights): the rate at which a kernel
    could stream weights of that size from wherever they sit (L2, L3 or memory).
    None without the compiled backend."""
    try:
        from ._cpu import _kernels
    except ImportError:
        return None
    buf = np.ones(max(1, nbytes // 4), np.float32)
    read = buf.nbytes
    _kernels.stream_read(buf, 1, threads)
    t0 = time.perf_counter()
    _kernels.stream_read(buf, 1, threads)
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(1, min(100000, int(target_s / one)))
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        _kernels.stream_read(buf, reps, threads)
        best = max(best, read * reps / (time.perf_counter() - t0) / 1e9)
    return best


@contextlib.contextmanager
def _rnnfast_threads(threads):
    """rnnfast's thread setting at ``threads`` inside the block, restored after."""
    from . import _config
    saved = _config._num_threads
    _config.set_num_threads(threads)
    try:
        yield
    finally:
        _config._num_threads = saved


#: input size of the recurrence-only companion layer (:func:`measure_recurrence`)
RECURRENCE_INPUT = 8


def measure_recurrence(shape, threads, rounds=5, min_time=0.05, seed=SEED):
    """Median seconds per call of ``shape``'s time loop alone, for a one-layer inference
    shape: an rnnfast layer of the same cell, H, N, T and directions with input size
    ``RECURRENCE_INPUT``, so that the input projection (8 columns of W_ih) is negligible
    and the call is the recurrence: W_hh read at every step, the step's products, cell
    update and the threads' synchronisation. Its recurrent weights have the size and the
    packed layout of the shape's own, and the time loop runs the same code. With the
    shape's call time it splits a batch-1 call into projection and recurrence, and gives
    the rate the recurrent weights were streamed at. None without the compiled backend,
    or for stacked or training shapes."""
    try:
        from ._cpu import _kernels  # noqa: F401
    except ImportError:
        return None
    if shape.L != 1 or shape.training:
        return None
    with _rnnfast_threads(threads):
        layer = make_rnnfast_layer(replace(shape, I=RECURRENCE_INPUT), seed).eval()
        x = np.random.default_rng(seed).standard_normal(
            (shape.T, shape.N, RECURRENCE_INPUT)).astype(DTYPE)
        fn = lambda: layer(x)  # noqa: E731
        k = calls_per_sample(fn, min_time, warmup=2)
        return statistics.median(timed(fn, k) for _ in range(rounds))


def measure_call_overhead(threads, rounds=7, calls=2000):
    """Median time (us) of one call of an eval-mode GRU with H = 8, N = 1, T = 1 (the
    kernel's own work is well under a microsecond): the per-call cost of the Python
    API, the G1 target's "single-step call from Python". Also the same through a
    :class:`rnnfast.Streamer`. None without the compiled backend."""
    import rnnfast
    try:
        from ._cpu import _kernels  # noqa: F401
    except ImportError:
        return None
    with _rnnfast_threads(threads):
        layer = rnnfast.nn.GRU(8, 8, seed=0).eval()
        x = np.ones((1, 1, 8), DTYPE)
        h = np.zeros((1, 1, 8), DTYPE)
        streamer = rnnfast.Streamer(layer, batch_size=1, max_chunk=1)
        out = np.empty((1, 1, 8), DTYPE)
        res = {}
        for name, fn in (("layer_us", lambda: layer(x, h)),
                         ("streamer_us", lambda: streamer.step(x, out=out))):
            for _ in range(3):
                fn()
            ts = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                for _ in range(calls):
                    fn()
                ts.append((time.perf_counter() - t0) / calls * 1e6)
            res[name] = statistics.median(ts)
            res[name.replace("_us", "_min_us")] = min(ts)
        return res


def run(shapes=None, threads=None, peers=PEERS, rounds=None, quick=False, memory=True,
        sgemm=True, bandwidth=True, seed=SEED, runners=None, warmup=None, min_time=None, settle=True,
        tol=TOL, sgemm_n=2048, load_window=0.5, log=None):
    """Run the benchmark and return the report (a JSON-able dict).

    Parameters
    ----------
    shapes : iterable of shape ids or :class:`Shape`, default every shape of ``SHAPES``
    threads : int, default ``rnnfast.get_num_threads()``
    peers : names of peers to run (``torch``, ``ort``, ``numpy``); ignored with ``runners``
    rounds, warmup, min_time : timing settings; defaults from ``quick``
    memory : measure the peak extra memory of the training step of shapes with
        ``Shape.memory`` (T2, T5, M1) for rnnfast and PyTorch, in fresh processes
    sgemm : measure the machine's sgemm rate (NumPy and rnnfast's GEMM, ``sgemm_n``³)
    bandwidth : for batch-1 inference shapes, measure the read bandwidth for a buffer
        the size of their recurrent weights and compare the rate rnnfast streamed its
        weights at (:func:`weight_bytes`, :func:`measure_read_bandwidth`)
    runners : explicit list of :class:`Runner` objects (rnnfast first), for tests
    settle : before each timed sample, wait until the previous library's thread pool
        stops spinning (:func:`quiesce`)
    tol : agreement tolerance (max |peer - rnnfast| / max |rnnfast|)
    load_window : seconds over which to measure other processes' CPU use, before and
        after the run (0: skip)
    log : callable taking a progress line, default print to stderr
    """
    from . import _config
    if log is None:
        def log(msg):
            print(msg, file=sys.stderr, flush=True)
    st = dict(SETTINGS["quick" if quick else "full"])
    for key, val in (("rounds", rounds), ("warmup", warmup), ("min_time", min_time)):
        if val is not None:
            st[key] = val
    if threads is None:
        threads = _config.get_num_threads()
    if shapes is None:
        shapes = list(SHAPES)
    shapes = [s if isinstance(s, Shape) else SHAPES[s] for s in shapes]
    if runners is None:
        runners = [get_runner("rnnfast")] + [get_runner(p) for p in peers]
    if not runners or runners[0].name != "rnnfast":
        raise ValueError("run: the first runner must be rnnfast (the reference)")
    env = environment(threads, load_window)   # loads rnnfast's kernels (and OpenMP) first
    # import PyTorch now so that its thread setting applies from the start
    if any(r.name == "torch" and r.unavailable() is None for r in runners):
        import torch  # noqa: F401
    thr = ThreadSettings(threads)
    t_start = time.perf_counter()
    try:
        env["numpy_blas_threads"] = thr.blas
        env["timing"] = dict(st, settle=bool(settle), tol=tol, order=[r.name for r in runners])
        env["runners"] = {r.name: {"label": r.label,
                                   "version": (r.version() if r.unavailable() is None
                                               else None),
                                   "unavailable": r.unavailable()} for r in runners}
        if sgemm:
            log(f"measuring sgemm ({sgemm_n}^3 float32) ...")
            env["sgemm"] = measure_sgemm(threads, sgemm_n, st["sgemm_repeats"])
            quiesce()
        if sgemm:
            env["call_overhead"] = measure_call_overhead(threads)
        results = []
        for shape in shapes:
            t0 = time.perf_counter()
            case = Case(shape, seed)
            res = _bench_shape(case, runners, threads, st["rounds"], st["warmup"],
                               st["min_time"], settle, tol, log)
            del case
            gc.collect()
            results.append(res)
            log(f"{shape.id:3s} {shape.label():28s} done in {time.perf_counter() - t0:5.1f} s")
        if sgemm:   # again at the end: a busy machine may have lowered the first one
            log(f"measuring sgemm again ({sgemm_n}^3 float32) ...")
            quiesce()
            again = measure_sgemm(threads, sgemm_n, st["sgemm_repeats"])
            sg = env["sgemm"]
            sg["at_start"] = {k: sg[k] for k in ("numpy", "rnnfast")}
            sg["at_end"] = {k: again[k] for k in ("numpy", "rnnfast")}
            for k in ("numpy", "rnnfast"):
                vals = [v for v in (sg[k], again[k]) if v]
                sg[k] = max(vals) if vals else None
            sg["best"] = max(v for v in (sg["numpy"], sg["rnnfast"]) if v)
            for res in results:
                if "gflops" in res:
                    res["frac_sgemm"] = res["gflops"] / sg["best"]
        if bandwidth:
            for shape, res in zip(shapes, results):
                rn = res["runners"].get("rnnfast", {})
                if shape.training or shape.N != 1 or "median_ms" not in rn:
                    continue
                per_call, recurrent = weight_bytes(shape)
                quiesce()
                bw = measure_read_bandwidth(recurrent, threads)
                streamed = per_call / (rn["median_ms"] * 1e-3) / 1e9
                quiesce()
                rec_s = measure_recurrence(shape, threads, min_time=st["min_time"],
                                           seed=seed)
                rec_gbs = recurrent * shape.T / rec_s / 1e9 if rec_s else None
                res["bandwidth"] = {"weights_mib": recurrent / 2 ** 20,
                                    "bytes_per_call": per_call,
                                    "streamed_gbs": streamed, "read_gbs": bw,
                                    "frac_read": streamed / bw if bw else None,
                                    "recurrence_ms": rec_s * 1e3 if rec_s else None,
                                    "recurrence_gbs": rec_gbs,
                                    "frac_read_recurrence": (rec_gbs / bw if bw and rec_gbs
                                                             else None)}
        if memory:
            for shape, res in zip(shapes, results):
                if not (shape.memory and shape.training):
                    continue
                res["memory"] = {}
                for r in runners:
                    if r.name not in ("rnnfast", "torch"):
                        continue
                    if r.unavailable():
                        res["memory"][r.name] = {"status": "n/a", "reason": r.unavailable()}
                        continue
                    log(f"{shape.id:3s} peak memory of one training step: {r.label} ...")
                    res["memory"][r.name] = memory_subprocess(r.name, shape, threads, seed)
    finally:
        thr.restore()
    env["wall_s"] = time.perf_counter() - t_start
    env["others_cpu_end"] = others_cpu_use(load_window) if load_window else None
    return {"header": env, "shapes": results}


# --------------------------------------------------------------------------- report
def _fmt_ms(v):
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 1:
        return f"{v:.2f}"
    return f"{v:.3f}"


def _cell(entry):
    if "median_ms" in entry:
        return _fmt_ms(entry["median_ms"])
    return {"n/a": "n/a", "-": "-", "WRONG": "WRONG", "error": "ERR"}.get(
        entry.get("status"), "?")


def _table(rows, align):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for j, r in enumerate(rows):
        parts = [c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(r, widths, align)]
        lines.append("  ".join(parts).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def format_report(report):
    """The text ``rnnfast bench`` prints: header, main table, first calls, memory."""
    h = report["header"]
    v = h["versions"]
    runners = h.get("runners", {})
    names = list(runners) or ["rnnfast", *PEERS]
    peers = [n for n in names if n != "rnnfast"]
    labels = {n: runners.get(n, {}).get("label", n) for n in names}
    nb = h.get("numpy_blas", {})
    t = h.get("timing", {})
    out = [f"rnnfast bench  {h['date']}  (shapes and peers: BENCHMARKS.md; float32, "
           f"time-major)",
           f"cpu      : {h['cpu']} [{' '.join(h['cpu_simd'])}], {h['cpus_available']} CPUs "
           f"available; threads = {h['threads']} for every library",
           f"versions : rnnfast {v['rnnfast']} (kernel {h['rnnfast_kernel']}, OpenMP "
           f"{'on' if h['rnnfast_openmp'] else 'off'}), numpy {v['numpy']} "
           f"({nb.get('name', '?')} {nb.get('version', '')}, kernel {nb.get('kernel', '?')}, "
           f"BLAS threads {h.get('numpy_blas_threads', '?')}),",
           f"           torch {v['torch'] or 'n/a'}, onnxruntime {v['onnxruntime'] or 'n/a'}"
           f", onnx {v['onnx'] or 'n/a'}, python {h['python']}"]
    sg = h.get("sgemm")
    if sg:
        rn = f"{sg['rnnfast']:.0f}" if sg.get("rnnfast") else "n/a"
        when = " at the start" + (f" and {sg['repeats']} at the end" if "at_end" in sg else "")
        out.append(f"sgemm    : {sg['n']}^3 float32, best of {sg['repeats']}{when}: NumPy "
                   f"{sg['numpy']:.0f} GFLOP/s, rnnfast gemm {rn} GFLOP/s; %sgemm is "
                   f"relative to the better, {sg['best']:.0f} GFLOP/s")
    co = h.get("call_overhead")
    if co:
        out.append(f"per call : {co['layer_us']:.1f} us median ({co['layer_min_us']:.1f} best)"
                   f" for layer(x, h) of an eval GRU H8 N1 T1 (the Python API's cost per "
                   f"call; kernel work < 1 us); Streamer.step {co['streamer_us']:.1f} us")
    if t:
        out.append(f"timing   : median of {t['rounds']} rounds after {t['warmup']} warm-up "
                   f"call(s); runners interleaved in each round ({', '.join(t['order'])}); "
                   f"a sample = back-to-back calls lasting >= {t['min_time'] * 1e3:.0f} ms;")
        out.append("           one process (one OpenMP runtime shared by rnnfast and PyTorch);"
                   + (" before each sample, wait until the last library's thread pool stops "
                      "spinning (process CPU idle)" if t.get("settle") else ""))
    out.append("peers    : PyTorch: torch.nn.RNN/LSTM/GRU, inference_mode; training = "
               "forward + y.sum().backward() (M1: pack_padded_sequence, enforce_sorted=False)")
    out.append("           ONNX Runtime: one node per layer, intra_op = threads, inter_op = 1,"
               " thread-pool spinning disabled (session.intra_op.allow_spinning=0)")
    out.append("           NumPy loop: input projection hoisted, one h @ W_hh.T per step, "
               "NumPy activations")
    out.append(f"checks   : untimed, before timing: each peer's y, h_n (c_n; training: dx, "
               f"dW_hh_l0) vs rnnfast's; max|diff| <= {t.get('tol', TOL):g} x max|rnnfast| "
               f"or WRONG (not timed)")
    loads = [x for x in (h.get("others_cpu_start"), h.get("others_cpu_end")) if x is not None]
    if loads:
        used = " and ".join(f"{100 * x:.0f}%" for x in loads)
        out.append(f"machine  : other processes used {used} of all CPUs (0.5 s samples "
                   f"before and after the run)"
                   + ("; they compete for the cores: expect noise, judge by ratios"
                      if max(loads) > 0.1 else ""))
    for n in names:
        why = runners.get(n, {}).get("unavailable")
        if why:
            out.append(f"n/a      : {labels[n]}: {why}")
    out.append("")
    head = (["id", "shape", "mode", "rnnfast ms"] + [f"{p} ms" for p in peers]
            + [f"/{p}" for p in peers] + ["us/step", "GFLOP/s", "%sgemm", "c2c ns"])
    rows = [head]
    noisy = False
    for res in report["shapes"]:
        s = res["shape"]
        r = res["runners"]
        flag = ""
        if (res.get("spread") or 0) > 1.5:
            flag, noisy = "*", True
        row = [s["id"] + flag, res["label"], "train" if s["mode"] == "training" else "infer",
               _cell(r.get("rnnfast", {}))]
        row += [_cell(r.get(p, {})) for p in peers]
        for p in peers:
            ratio = res.get("ratios", {}).get(p)
            if ratio is not None:
                row.append(f"{ratio:.2f}")
            else:
                row.append("-" if "median_ms" in r.get(p, {}) else _cell(r.get(p, {})))
        row.append(f"{res['us_per_step']:.1f}" if "us_per_step" in res else "-")
        row.append(f"{res['gflops']:.1f}" if "gflops" in res else "-")
        row.append(f"{100 * res['frac_sgemm']:.1f}%" if "frac_sgemm" in res else "-")
        row.append(f"{res['roundtrip_ns_median']:.0f}" if "roundtrip_ns_median" in res else "-")
        rows.append(row)
    out += _table(rows, "lll" + "r" * (len(head) - 3))
    out.append("")
    out.append("ms: median per call. /peer: rnnfast ms / peer ms (< 1: rnnfast faster). "
               "n/a: peer not installed. -: not benchmarked")
    out.append("(ORT and the NumPy loop: inference only). us/step: rnnfast per time step, all "
               "layers and directions. GFLOP/s: 2*G*N*T*H*(I+H)")
    out.append("per layer and direction (valid steps only with lengths; training x3) / "
               "rnnfast's time.")
    out.append("c2c ns: median over the rounds of a cache line's round trip between two "
               "threads of rnnfast's team (one probe per round).")
    out.append("        On a VM it shows where the host put the cores: here 50-120 ns on one "
               "die, 330-600 ns on two, where products that share data run slower.")
    if noisy:
        out.append("*: one library's samples on this row differ by more than 1.5x (noise); "
                   "rerun it, with more --rounds, for a firmer median.")
    if any(res.get("frac_sgemm", 0) > 1 for res in report["shapes"]):
        out.append("%sgemm above 100%: the sgemm rate was measured while the machine was "
                   "busy (best of a few runs); rerun for a cleaner rate.")
    for res in report["shapes"]:
        for n, e in res["runners"].items():
            if e.get("status") in ("WRONG", "error"):
                out.append(f"  {res['shape']['id']} {labels.get(n, n)}: {e['status']}: "
                           f"{e.get('reason', '')}")
        if res.get("warning"):
            out.append(f"  {res['shape']['id']}: WARNING: {res['warning']}")
    out.append("")
    out.append("first call (ms; each library's first call on the shape after loading the "
               "weights or building the session; not in the medians):")
    rows = [["id"] + [f"{n}" for n in names]]
    for res in report["shapes"]:
        r = res["runners"]
        rows.append([res["shape"]["id"]] + [
            _fmt_ms(r[n]["first_ms"]) if "median_ms" in r.get(n, {}) else _cell(r.get(n, {}))
            for n in names])
    out += _table(rows, "l" + "r" * len(names))
    bws = [res for res in report["shapes"] if res.get("bandwidth")]
    if bws:
        out.append("")
        out.append("batch-1 weight streaming: weights read per call = W_ih once + W_hh every "
                   "step (per layer and direction) / rnnfast's median time,")
        out.append("against the read rate of a buffer the size of W_hh (rnnfast's vector "
                   "read loop, same threads, best of 5): how close to the cache bandwidth.")
        out.append(f"recurrence: the time loop alone (the same layer with input size "
                   f"{RECURRENCE_INPUT}: no projection to speak of), W_hh every step / its "
                   f"median time; proj ms: the call's median minus that, the input projection.")
        rows = [["id", "W_hh MiB", "streamed GB/s", "read GB/s", "%read", "recurrence ms",
                 "proj ms", "recurrence GB/s", "%read"]]
        for res in bws:
            b = res["bandwidth"]
            rec_ms = b.get("recurrence_ms")
            call_ms = res["runners"]["rnnfast"]["median_ms"]
            rows.append([res["shape"]["id"], f"{b['weights_mib']:.2f}",
                         f"{b['streamed_gbs']:.1f}",
                         f"{b['read_gbs']:.1f}" if b.get("read_gbs") else "n/a",
                         f"{100 * b['frac_read']:.0f}%" if b.get("frac_read") else "-",
                         _fmt_ms(rec_ms) if rec_ms else "-",
                         _fmt_ms(max(call_ms - rec_ms, 0.0)) if rec_ms else "-",
                         f"{b['recurrence_gbs']:.1f}" if b.get("recurrence_gbs") else "-",
                         (f"{100 * b['frac_read_recurrence']:.0f}%"
                          if b.get("frac_read_recurrence") else "-")])
        out += _table(rows, "lrrrrrrrr")
        if any(max(res["bandwidth"].get("frac_read") or 0,
                   res["bandwidth"].get("frac_read_recurrence") or 0) > 1 for res in bws):
            out.append("%read above 100%: the weights stayed in a faster cache than the "
                       "probe's buffer (or the probe ran while the machine was busy).")
    mem = [res for res in report["shapes"] if res.get("memory")]
    if mem:
        out.append("")
        out.append("peak extra memory of one training step (MiB): fresh process per library "
                   "and shape, thread pool warmed on a tiny problem,")
        out.append("VmHWM - VmRSS around the step (peak counter reset with "
                   "/proc/self/clear_refs); includes outputs and gradients.")
        rows = [["id", "rnnfast", "torch", "rnnfast/torch", "rnnfast NumPy-visible"]]
        notes = []
        for res in mem:
            m = res["memory"]

            def val(n):
                e = m.get(n, {})
                if e.get("status") != "ok":
                    return "n/a" if e.get("status") == "n/a" else "ERR"
                return f"{e['peak_extra_mib']:.1f}"
            rr, tt = m.get("rnnfast", {}), m.get("torch", {})
            ratio = (f"{rr['peak_extra_mib'] / tt['peak_extra_mib']:.2f}"
                     if rr.get("status") == tt.get("status") == "ok"
                     and tt["peak_extra_mib"] > 0 else "-")
            tm = f"{rr['tracemalloc_peak_mib']:.1f}" if "tracemalloc_peak_mib" in rr else "-"
            rows.append([res["shape"]["id"], val("rnnfast"), val("torch"), ratio, tm])
            for n, e in m.items():
                if e.get("status") == "error":
                    notes.append(f"  {res['shape']['id']} {n}: memory probe failed: "
                                 f"{e['reason']}")
                elif e.get("method", "").startswith("ru_maxrss"):
                    notes.append(f"  {res['shape']['id']} {n}: {e['method']}")
        out += _table(rows, "lrrrr") + notes
    out.append("")
    out.append(f"total wall time {h.get('wall_s', 0):.0f} s")
    return "\n".join(out)


# ---------------------------------------------------------------------------- CLI
def add_arguments(parser):
    """The options of ``rnnfast bench`` (shared with ``python -m rnnfast._bench``)."""
    parser.add_argument("--shapes", help="comma-separated shape ids (default: all): "
                        + ",".join(SHAPES))
    parser.add_argument("--threads", type=int, help="threads for every library "
                        "(default: rnnfast.get_num_threads())")
    parser.add_argument("--quick", action="store_true",
                        help="3 rounds and shorter samples (a few minutes on 2 cores)")
    parser.add_argument("--rounds", type=int, help="timed rounds per shape "
                        "(default 7, --quick 3)")
    parser.add_argument("--json", metavar="PATH", help="also write everything as JSON")
    parser.add_argument("--peers", default=",".join(PEERS),
                        help="comma-separated peers (default: torch,ort,numpy; '' for none)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the peak-memory measurement (T2, T5, M1)")
    parser.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    return parser


def main_bench(args):
    """Run ``rnnfast bench`` with parsed arguments; returns the exit status."""
    shapes = None
    if args.shapes:
        shapes = [s.strip().upper() for s in args.shapes.split(",") if s.strip()]
        bad = [s for s in shapes if s not in SHAPES]
        if bad:
            print(f"rnnfast bench: unknown shape(s) {', '.join(bad)}; known: "
                  f"{', '.join(SHAPES)}", file=sys.stderr)
            return 2
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = [p for p in peers if p not in PEERS]
    if bad:
        print(f"rnnfast bench: unknown peer(s) {', '.join(bad)}; known: {', '.join(PEERS)}",
              file=sys.stderr)
        return 2
    if args.threads is not None and args.threads < 1:
        print("rnnfast bench: --threads must be >= 1", file=sys.stderr)
        return 2
    if args.rounds is not None and args.rounds < 1:
        print("rnnfast bench: --rounds must be >= 1", file=sys.stderr)
        return 2
    report = run(shapes=shapes, threads=args.threads, peers=peers, rounds=args.rounds,
                 quick=args.quick, memory=not args.no_memory, seed=args.seed)
    print(format_report(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=_json_default)
        print(f"\nJSON written to {args.json}")
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def main(argv=None):
    """``python -m rnnfast._bench``: the bench CLI, or the private memory probe."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--memory-probe"]:
        runner_name, shape_json, threads, seed = argv[1:5]
        shape = Shape(**json.loads(shape_json))
        print(json.dumps(memory_probe(runner_name, shape, int(threads), int(seed))))
        return 0
    parser = add_arguments(argparse.ArgumentParser(prog="rnnfast bench"))
    return main_bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
