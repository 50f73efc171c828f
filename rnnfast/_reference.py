r"""Reference backend ("the oracle"): one recurrent layer, one direction, in NumPy.

This module is the executable specification of rnnfast's numerics.  It is written
for clarity, not speed: a Python loop over time steps, one line per equation, and a
hand-written backpropagation through time (BPTT).  It imports nothing from rnnfast
(no compiled code, no sibling modules) so that it can serve as an independent
oracle for the ``cpu`` backend.  Every computation is carried out in the dtype of
the inputs (float32 or float64).

Notation
--------
``x_t`` is the input at time ``t`` (``I`` features), ``h_{t-1}`` the previous hidden
state (``P`` features; ``P = H`` except for an LSTM with projection), ``c_{t-1}`` the
previous cell state of an LSTM (``H`` features).  Weights are stored as in PyTorch:
``W_ih`` is ``(G*H, I)``, ``W_hh`` is ``(G*H, P)`` with the ``G`` gate blocks stacked
along the first axis, biases ``b_ih``, ``b_hh`` are ``(G*H,)``.  ``σ`` is the logistic
sigmoid ``1 / (1 + exp(-a))``.

Cells (PyTorch semantics, exactly)
----------------------------------
``rnn_tanh`` / ``rnn_relu`` (G = 1)::

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    h_t = tanh(a_t)            or   h_t = max(a_t, 0)     (relu'(0) = 0)

``lstm`` (G = 4, gate order i, f, g, o)::

    [a_i a_f a_g a_o] = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i = σ(a_i)   f = σ(a_f)   g = tanh(a_g)   o = σ(a_o)
    c_t = f * c_{t-1} + i * g
    m_t = o * tanh(c_t)
    h_t = m_t                  or   h_t = W_hr m_t        (projection, W_hr: (P, H))

``gru`` (G = 3, gate order r, z, n), ``reset_after=True`` (PyTorch,
ONNX ``linear_before_reset=1``)::

    r = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
    z = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
    n = tanh(W_in x_t + b_in + r * (W_hn h_{t-1} + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}

``gru`` with ``reset_after=False`` (Keras ``reset_after=False``, ONNX
``linear_before_reset=0``) differs only in the candidate::

    n = tanh(W_in x_t + b_in + W_hn (r * h_{t-1}) + b_hn)

Sequences, lengths and direction
--------------------------------
``y[t] = h_t``.  With per-sequence ``lengths``, sequence ``n`` only has the steps
``t < lengths[n]``.  The forward direction processes ``t = 0 .. len-1``, the reverse
direction ``t = len-1 .. 0`` (each sequence starts from its *own* last valid step).
Padded steps are never computed: ``y[t, n]`` is exactly 0 there, and ``h_n[n]`` /
``c_n[n]`` are the state after the last processed step (``h0[n]`` / ``c0[n]`` when
``lengths[n] == 0``).  In backward the gradient ``dy`` at padded steps is ignored and
``dx`` is exactly 0 there.

Backward (BPTT)
---------------
Steps are revisited in the opposite order of the forward pass.  With ``dh`` the
gradient flowing into ``h_t`` (from ``dy[t]`` and from step ``t+1``) and ``dc`` the one
flowing into ``c_t``, and writing ``da`` for the gradient of a pre-activation
``a``:

* rnn: ``da = dh * (1 - h_t**2)`` (tanh) or ``da = dh * [a_t > 0]`` (relu).
* lstm: ``dm = dh`` (or ``dh W_hr``, with ``dW_hr += dh^T m_t``);
  ``do = dm * tanh(c_t)``; ``dc += dm * o * (1 - tanh(c_t)**2)``;
  ``di = dc * g``; ``df = dc * c_{t-1}``; ``dg = dc * i``; ``dc_{t-1} = dc * f``;
  ``da_{i,f,o} = d(i,f,o) * s * (1 - s)``; ``da_g = dg * (1 - g**2)``.
* gru: ``dn = dh * (1 - z)``; ``dz = dh * (h_{t-1} - n)``; ``da_n = dn * (1 - n**2)``;
  ``da_z = dz * z * (1 - z)``; reset_after=True: ``dr = da_n * (W_hn h + b_hn)``,
  the recurrent part of the n gate receives ``da_n * r``; reset_after=False:
  ``d(r*h) = da_n W_hn``, ``dr = d(r*h) * h_{t-1}``, and ``h_{t-1}`` also receives
  ``d(r*h) * r``; ``da_r = dr * r * (1 - r)``; ``h_{t-1}`` receives ``dh * z`` directly.

Then, for the gate pre-activation gradients ``dA_i`` (input side) and ``dA_h``
(recurrent side; equal except for the GRU n gate)::

    dW_ih += dA_i^T x_t     db_ih += sum_n dA_i     dx_t      = dA_i W_ih
    dW_hh += dA_h^T h_{t-1} db_hh += sum_n dA_h     dh_{t-1} += dA_h W_hh

ONNX options (docs/design.md, "ONNX semantics")
------------------------------------------------
``acts`` replaces the nonlinearities: a tuple of ``(name, alpha, beta)`` triples,
1 for rnn (``f``), 2 for gru (``f`` for r and z, ``g`` for n), 3 for lstm (``f`` for
i, f, o; ``g`` for the candidate; ``h`` for the output).  ``clip`` clamps every gate
pre-activation to ``[-clip, clip]`` after all its terms (biases, recurrent product,
GRU ``r *`` term, peephole) and before the activation; its gradient is 1 inside
``[-clip, clip]`` (bounds included) and 0 outside.  LSTM ``input_forget``: ``f = 1 - i``
(the forget-gate rows of the weights are then unused: their gradient is 0).  LSTM
``w_peep`` (3H,) in gate order (i, f, o)::

    a_i += P_i * c_{t-1}    a_f += P_f * c_{t-1}    a_o += P_o * c_t

With these options every gate is ``act(clip(a))`` and the backward multiplies by
``act'(clip(a)) * [|a| <= clip]``; ``dP_i = sum da_i c_{t-1}``, ``dP_f = sum da_f
c_{t-1}``, ``dP_o = sum da_o c_t``; ``c_{t-1}`` also receives ``da_i P_i + da_f P_f`` and
``c_t`` receives ``da_o P_o``.  With ``input_forget``, ``di`` also receives ``-df``.

The cache returned by a training forward owns copies of everything it holds; it
never aliases the arrays returned to the caller, nor the arrays passed in.
"""

import numpy as np

__all__ = ["layer_forward", "layer_backward"]

_GATES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}

#: default activations (ONNX names, lowercase) of every cell
_DEFAULT_ACTS = {
    "rnn_tanh": (("tanh", 0.0, 0.0),),
    "rnn_relu": (("relu", 0.0, 0.0),),
    "gru": (("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0)),
    "lstm": (("sigmoid", 0.0, 0.0), ("tanh", 0.0, 0.0), ("tanh", 0.0, 0.0)),
}


def _act(spec, a):
    """ONNX activation ``spec = (name, alpha, beta)`` of ``a``, in the dtype of ``a``."""
    name, alpha, beta = spec
    al, be = a.dtype.type(alpha), a.dtype.type(beta)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "sigmoid":
            return _sigmoid(a)
        if name == "tanh":
            return np.tanh(a)
        if name == "relu":
            return np.maximum(a, 0)
        if name == "affine":
            return al * a + be
        if name == "leakyrelu":
            return np.where(a >= 0, a, al * a)
        if name == "thresholdedrelu":
            return np.where(a > al, a, 0).astype(a.dtype)
        if name == "scaledtanh":
            return al * np.tanh(be * a)
        if name == "hardsigmoid":
            return np.minimum(np.maximum(al * a + be, 0), 1)
        if name == "elu":
            return np.where(a >= 0, a, al * (np.exp(np.minimum(a, 0)) - 1))
        if name == "softsign":
            return a / (1 + np.abs(a))
        if name == "softplus":
            return np.logaddexp(a.dtype.type(0), a)
    raise ValueError(f"unknown activation {name!r}")


def _act_grad(spec, a):
    """Derivative of the activation ``spec`` at ``a`` (one-sided choices at kinks:
    relu, leakyrelu, elu use the left slope at 0; thresholdedrelu and hardsigmoid
    are 0 at their break points)."""
    name, alpha, beta = spec
    al, be = a.dtype.type(alpha), a.dtype.type(beta)
    one = a.dtype.type(1)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "sigmoid":
            s = _sigmoid(a)
            return s * (1 - s)
        if name == "tanh":
            return 1 - np.tanh(a) ** 2
        if name == "relu":
            return (a > 0).astype(a.dtype)
        if name == "affine":
            return np.full_like(a, al)
        if name == "leakyrelu":
            return np.where(a > 0, one, al).astype(a.dtype)
        if name == "thresholdedrelu":
            return (a > al).astype(a.dtype)
        if name == "scaledtanh":
            return al * be * (1 - np.tanh(be * a) ** 2)
        if name == "hardsigmoid":
            v = al * a + be
            return np.where((v > 0) & (v < 1), al, 0).astype(a.dtype)
        if name == "elu":
            return np.where(a > 0, one, al * np.exp(np.minimum(a, 0))).astype(a.dtype)
        if name == "softsign":
            return 1 / (1 + np.abs(a)) ** 2
        if name == "softplus":
            return _sigmoid(a)
    raise ValueError(f"unknown activation {name!r}")


def _clip(a, clip):
    """``a`` clamped to ``[-clip, clip]`` (unchanged when clip is None)."""
    if clip is None:
        return a
    c = a.dtype.type(clip)
    return np.minimum(np.maximum(a, -c), c)


def _clip_grad(a, clip):
    """Gradient of :func:`_clip` at ``a``: 1 inside ``[-clip, clip]``, else 0."""
    if clip is None:
        return 1
    c = a.dtype.type(clip)
    return ((a >= -c) & (a <= c)).astype(a.dtype)


def _gate(spec, a, clip):
    """``act(clip(a))``."""
    return _act(spec, _clip(a, clip))


def _gate_grad(spec, a, clip):
    """``d act(clip(a)) / da``."""
    return _act_grad(spec, _clip(a, clip)) * _clip_grad(a, clip)


def _sigmoid(a):
    """Logistic sigmoid ``1 / (1 + exp(-a))`` in the dtype of ``a``.

    ``exp(-a)`` overflows to ``inf`` for very negative ``a``; the result is then
    exactly 0, which is the correct limit, so the overflow warning is silenced.
    NaN inputs give NaN outputs.
    """
    with np.errstate(over="ignore"):
        return 1 / (1 + np.exp(-a))


def _affine(v, w, b):
    """``v @ w.T + b`` (``b`` may be None), in the dtype of the operands."""
    out = v @ w.T
    if b is not None:
        out = out + b
    return out


def _step_indices(s, lengths, reverse):
    """Rows active at loop step ``s`` and the time index each of them processes.

    Parameters
    ----------
    s : int
        Loop step, ``0 <= s < T``.
    lengths : ndarray of int64, shape (N,)
        Length of every sequence.
    reverse : bool
        Direction of processing.

    Returns
    -------
    rows : ndarray of intp
        Batch indices ``n`` with ``s < lengths[n]``.
    tt : ndarray of intp
        Time index processed by each active row: ``s`` forward,
        ``lengths[n] - 1 - s`` in reverse.
    """
    rows = np.nonzero(lengths > s)[0]
    if reverse:
        tt = (lengths[rows] - 1 - s).astype(np.intp)
    else:
        tt = np.full(rows.shape, s, dtype=np.intp)
    return rows, tt


def layer_forward(cell, x, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr=None, lengths=None,
                  reverse=False, reset_after=True, training=False, acts=None, clip=None,
                  input_forget=False, w_peep=None):
    """Run one recurrent layer in one direction over a padded, time-major batch.

    Parameters
    ----------
    cell : {'rnn_tanh', 'rnn_relu', 'lstm', 'gru'}
        Recurrent cell.
    x : ndarray, shape (T, N, I)
        Input sequence, ``T >= 1``, ``N >= 0``; float32 or float64.
    h0 : ndarray, shape (N, P)
        Initial hidden state; ``P`` is ``w_hr.shape[0]`` for an LSTM with
        projection, else ``H``.
    c0 : ndarray, shape (N, H), or None
        Initial cell state for ``'lstm'``; None for the other cells.
    w_ih : ndarray, shape (G*H, I)
        Input-to-hidden weights, gate blocks stacked (LSTM i, f, g, o; GRU r, z, n).
    w_hh : ndarray, shape (G*H, P)
        Hidden-to-hidden weights, same gate order.
    b_ih, b_hh : ndarray, shape (G*H,), or None
        Biases; both None for a layer without bias.
    w_hr : ndarray, shape (P, H), optional
        LSTM projection weights (``h_t = W_hr m_t``); None without projection.
    lengths : ndarray of int64, shape (N,), optional
        Valid length of every sequence, ``0 <= lengths[n] <= T``.  None means every
        length is ``T``.
    reverse : bool, default False
        Process time backwards, each sequence from its own last valid step.
    reset_after : bool, default True
        GRU only: True applies the reset gate after the recurrent product
        (PyTorch); False applies it before (``W_hn (r * h)``).
    training : bool, default False
        Keep what :func:`layer_backward` needs in the returned cache.
    acts : tuple of (str, float, float), optional
        ONNX activations ``(name, alpha, beta)`` (lowercase names, alpha/beta
        resolved): 1 for rnn, 2 for gru, 3 for lstm.  None: the cell's defaults.
    clip : float, optional
        Clamp every gate pre-activation to ``[-clip, clip]``; None: no clamp.
    input_forget : bool, default False
        LSTM only: couple the forget gate to the input gate, ``f = 1 - i``.
    w_peep : ndarray, shape (3*H,), optional
        LSTM only: peephole weights in gate order (i, f, o).

    Returns
    -------
    y : ndarray, shape (T, N, P)
        Hidden state at every valid step, exactly 0 at padded steps.
    h_n : ndarray, shape (N, P)
        Hidden state after each sequence's last processed step.
    c_n : ndarray, shape (N, H), or None
        Cell state after each sequence's last processed step (LSTM), else None.
    cache : dict or None
        Saved state for :func:`layer_backward` when ``training``, else None.
        It holds private copies only.
    """
    if cell not in _GATES:
        raise ValueError(f"unknown cell {cell!r}")
    x = np.asarray(x)
    dtype = x.dtype
    T, N, _ = x.shape
    H = w_hh.shape[0] // _GATES[cell]
    P = h0.shape[1]
    if lengths is None:
        lengths = np.full(N, T, dtype=np.int64)
    else:
        lengths = np.array(lengths, dtype=np.int64)
    acts = _DEFAULT_ACTS[cell] if acts is None else tuple(tuple(a) for a in acts)
    peep = None if w_peep is None else np.array(w_peep, dtype=dtype)
    if peep is not None:
        p_i, p_f, p_o = peep[0 * H:1 * H], peep[1 * H:2 * H], peep[2 * H:3 * H]

    y = np.zeros((T, N, P), dtype=dtype)
    h = np.array(h0, dtype=dtype)                       # running state, (N, P)
    c = np.array(c0, dtype=dtype) if cell == "lstm" else None
    steps = []                                          # per-step saved tensors

    for s in range(T):
        rows, tt = _step_indices(s, lengths, reverse)
        x_t = x[tt, rows]                               # (n_active, I)
        h_prev = h[rows]                                # (n_active, P)
        saved = {"rows": rows, "tt": tt, "x": x_t, "h_prev": h_prev}

        if cell in ("rnn_tanh", "rnn_relu"):
            a = _affine(x_t, w_ih, b_ih) + _affine(h_prev, w_hh, b_hh)
            h_new = _gate(acts[0], a, clip)
            saved.update(a=a)

        elif cell == "lstm":
            c_prev = c[rows]
            a = _affine(x_t, w_ih, b_ih) + _affine(h_prev, w_hh, b_hh)
            a_i, a_f = a[:, 0 * H:1 * H], a[:, 1 * H:2 * H]
            a_g, a_o = a[:, 2 * H:3 * H], a[:, 3 * H:4 * H]
            if peep is not None:
                a_i = a_i + p_i * c_prev
                a_f = a_f + p_f * c_prev
            i = _gate(acts[0], a_i, clip)
            f = 1 - i if input_forget else _gate(acts[0], a_f, clip)
            g = _gate(acts[1], a_g, clip)
            c_new = f * c_prev + i * g
            if peep is not None:
                a_o = a_o + p_o * c_new
            o = _gate(acts[0], a_o, clip)
            hc = _act(acts[2], c_new)                   # h(c_t), tanh by default
            m = o * hc
            h_new = m if w_hr is None else m @ w_hr.T
            c[rows] = c_new
            saved.update(c_prev=c_prev, c_new=c_new, a_i=a_i, a_f=a_f, a_g=a_g, a_o=a_o,
                         i=i, f=f, g=g, o=o, hc=hc, m=m)

        else:  # gru
            gi = _affine(x_t, w_ih, b_ih)               # (n_active, 3H)
            b_hh_rz = None if b_hh is None else b_hh[:2 * H]
            b_hh_n = None if b_hh is None else b_hh[2 * H:]
            gh_rz = _affine(h_prev, w_hh[:2 * H], b_hh_rz)
            a_r = gi[:, 0 * H:1 * H] + gh_rz[:, 0 * H:1 * H]
            a_z = gi[:, 1 * H:2 * H] + gh_rz[:, 1 * H:2 * H]
            r = _gate(acts[0], a_r, clip)
            z = _gate(acts[0], a_z, clip)
            if reset_after:
                gh_n = _affine(h_prev, w_hh[2 * H:], b_hh_n)        # W_hn h + b_hn
                a_n = gi[:, 2 * H:] + r * gh_n
                saved.update(gh_n=gh_n)
            else:
                rh = r * h_prev
                a_n = gi[:, 2 * H:] + _affine(rh, w_hh[2 * H:], b_hh_n)
                saved.update(rh=rh)
            n = _gate(acts[1], a_n, clip)
            h_new = (1 - z) * n + z * h_prev
            saved.update(a_r=a_r, a_z=a_z, a_n=a_n, r=r, z=z, n=n)

        h[rows] = h_new
        y[tt, rows] = h_new
        steps.append(saved)

    h_n = h
    c_n = c
    cache = None
    if training:
        cache = {
            "cell": cell,
            "dtype": dtype,
            "shape": (T, N, x.shape[2]),
            "H": H,
            "P": P,
            "reset_after": bool(reset_after),
            "w_ih": np.array(w_ih, dtype=dtype),
            "w_hh": np.array(w_hh, dtype=dtype),
            "has_bias": b_ih is not None,
            "w_hr": None if w_hr is None else np.array(w_hr, dtype=dtype),
            "acts": acts,
            "clip": clip,
            "input_forget": bool(input_forget),
            "w_peep": peep,
            "lengths": lengths,
            "steps": steps,
        }
    return y, h_n, c_n, cache


def layer_backward(cache, dy, dh_n=None, dc_n=None):
    """Backpropagation through time for one layer, one direction.

    Parameters
    ----------
    cache : dict
        The cache returned by :func:`layer_forward` with ``training=True``.
        It is not modified.
    dy : ndarray, shape (T, N, P)
        Gradient of the loss with respect to ``y``; ignored at padded steps.
    dh_n : ndarray, shape (N, P), optional
        Gradient with respect to ``h_n``; None means zero.
    dc_n : ndarray, shape (N, H), optional
        Gradient with respect to ``c_n`` (LSTM); None means zero.

    Returns
    -------
    grads : dict
        ``'x'`` (T, N, I), exactly 0 at padded steps; ``'h0'`` (N, P);
        ``'c0'`` (N, H) or None for non-LSTM cells; ``'weight_ih'``,
        ``'weight_hh'``; ``'bias_ih'``, ``'bias_hh'`` or None without bias;
        ``'weight_hr'`` (P, H) or None without projection; and ``'weight_peep'``
        (3H,) only when the forward had peepholes.  All fresh arrays in the input dtype.
    """
    if cache is None:
        raise ValueError("layer_backward needs the cache of a training=True forward")
    cell = cache["cell"]
    dtype = cache["dtype"]
    T, N, I = cache["shape"]
    H, P = cache["H"], cache["P"]
    w_ih, w_hh, w_hr = cache["w_ih"], cache["w_hh"], cache["w_hr"]
    has_bias = cache["has_bias"]
    acts, clip = cache["acts"], cache["clip"]
    peep = cache["w_peep"]
    dy = np.asarray(dy, dtype=dtype)

    dx = np.zeros((T, N, I), dtype=dtype)
    dw_ih = np.zeros_like(w_ih)
    dw_hh = np.zeros_like(w_hh)
    db_ih = np.zeros(w_ih.shape[0], dtype=dtype)
    db_hh = np.zeros(w_hh.shape[0], dtype=dtype)
    dw_hr = None if w_hr is None else np.zeros_like(w_hr)
    dpeep = None if peep is None else np.zeros_like(peep)
    # running gradients w.r.t. the state each sequence currently holds
    dh = np.zeros((N, P), dtype=dtype) if dh_n is None else np.array(dh_n, dtype=dtype)
    dc = None
    if cell == "lstm":
        dc = np.zeros((N, H), dtype=dtype)
        if dc_n is not None:
            dc = np.array(dc_n, dtype=dtype)

    for saved in reversed(cache["steps"]):
        rows, tt = saved["rows"], saved["tt"]
        x_t, h_prev = saved["x"], saved["h_prev"]
        dh_t = dh[rows] + dy[tt, rows]                  # total gradient into h_t

        if cell in ("rnn_tanh", "rnn_relu"):
            da = dh_t * _gate_grad(acts[0], saved["a"], clip)
            da_i = da_h = da
            dh_prev = da_h @ w_hh

        elif cell == "lstm":
            i, f, g, o = saved["i"], saved["f"], saved["g"], saved["o"]
            hc, c_prev, c_new = saved["hc"], saved["c_prev"], saved["c_new"]
            if w_hr is None:
                dm = dh_t
            else:
                dw_hr += dh_t.T @ saved["m"]
                dm = dh_t @ w_hr
            do = dm * hc
            da_o = do * _gate_grad(acts[0], saved["a_o"], clip)
            dc_t = dc[rows] + dm * o * _act_grad(acts[2], c_new)  # total into c_t
            if peep is not None:
                dc_t = dc_t + da_o * peep[2 * H:3 * H]
            di = dc_t * g
            df = dc_t * c_prev
            dg = dc_t * i
            dc_prev = dc_t * f                          # gradient into c_{t-1}
            if cache["input_forget"]:
                di = di - df                            # f = 1 - i
                da_f = np.zeros_like(df)
            else:
                da_f = df * _gate_grad(acts[0], saved["a_f"], clip)
            da_i = di * _gate_grad(acts[0], saved["a_i"], clip)
            da_g = dg * _gate_grad(acts[1], saved["a_g"], clip)
            if peep is not None:
                dc_prev = dc_prev + da_i * peep[0 * H:1 * H] + da_f * peep[1 * H:2 * H]
                dpeep[0 * H:1 * H] += (da_i * c_prev).sum(axis=0)
                dpeep[1 * H:2 * H] += (da_f * c_prev).sum(axis=0)
                dpeep[2 * H:3 * H] += (da_o * c_new).sum(axis=0)
            dc[rows] = dc_prev
            da = np.concatenate([da_i, da_f, da_g, da_o], axis=1)
            da_i = da_h = da
            dh_prev = da_h @ w_hh

        else:  # gru
            r, z, n = saved["r"], saved["z"], saved["n"]
            dn = dh_t * (1 - z)
            dz = dh_t * (h_prev - n)
            da_n = dn * _gate_grad(acts[1], saved["a_n"], clip)
            da_z = dz * _gate_grad(acts[0], saved["a_z"], clip)
            dh_prev = dh_t * z
            if cache["reset_after"]:
                dr = da_n * saved["gh_n"]
                da_r = dr * _gate_grad(acts[0], saved["a_r"], clip)
                da_i = np.concatenate([da_r, da_z, da_n], axis=1)
                da_h = np.concatenate([da_r, da_z, da_n * r], axis=1)
                dh_prev = dh_prev + da_h @ w_hh
            else:
                drh = da_n @ w_hh[2 * H:]               # gradient into r * h_{t-1}
                dr = drh * h_prev
                da_r = dr * _gate_grad(acts[0], saved["a_r"], clip)
                da_i = np.concatenate([da_r, da_z, da_n], axis=1)
                da_h = da_i
                dh_prev = dh_prev + drh * r + da_i[:, :2 * H] @ w_hh[:2 * H]
                # the n block of W_hh multiplies r * h_{t-1}, not h_{t-1}
                dw_hh[2 * H:] += da_n.T @ saved["rh"]

        dw_ih += da_i.T @ x_t
        if cell == "gru" and not cache["reset_after"]:
            dw_hh[:2 * H] += da_h[:, :2 * H].T @ h_prev
        else:
            dw_hh += da_h.T @ h_prev
        db_ih += da_i.sum(axis=0)
        db_hh += da_h.sum(axis=0)
        dx[tt, rows] = da_i @ w_ih
        dh[rows] = dh_prev

    grads = {
        "x": dx,
        "h0": dh,
        "c0": dc,
        "weight_ih": dw_ih,
        "weight_hh": dw_hh,
        "bias_ih": db_ih if has_bias else None,
        "bias_hh": db_hh if has_bias else None,
        "weight_hr": dw_hr,
    }
    if peep is not None:
        grads["weight_peep"] = dpeep
    return grads
