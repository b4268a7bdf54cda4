"""Recurrent layers (ops/defs/iOS15/recurrent.py, iOS17 (fp16), iOS18 (gru's reset_after, input_bias)).

x is (seq, batch, input). Gate layouts: lstm [input, forget, output, cell], gru [reset, output (new),
update], as coremltools' numpy references in its op tests. "reverse" runs the sequence backwards and
returns its outputs in that (processing) order; a bidirectional lstm concatenates the forward and
backward hidden states, the backward one aligned with the input's time steps (PyTorch's layout).
lstm's `clip` clips the cell state after each step; its peepholes add p * c (c_{t-1} for the input and
forget gates, c_t for the output gate). Activations take their default parameters (hard_sigmoid
0.2x + 0.5, scaled_tanh = tanh).
"""

from __future__ import annotations

import torch

from ...errors import WorkbenchError
from ..registry import op
from ._util import scalar, tensor

_ACTIVATIONS = {
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "scaled_tanh": torch.tanh, "relu": torch.relu,
    "linear": lambda v: v, "hard_sigmoid": lambda v: (0.2 * v + 0.5).clamp(0.0, 1.0),
    "sigmoid_hard": lambda v: (0.2 * v + 0.5).clamp(0.0, 1.0),
}


def _act(name):
    name = str(scalar(name)).lower()  # MIL accepts the names in either case
    if name not in _ACTIVATIONS:
        raise WorkbenchError(f"unknown MIL recurrent activation {name!r}; expected one of {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


def _zeros_if_none(value, n):
    return torch.zeros(n) if value is None else tensor(value).float().reshape(-1)


def _outputs(states: list, output_sequence) -> torch.Tensor:
    return torch.stack(states) if bool(scalar(output_sequence)) else states[-1].unsqueeze(0)


@op("rnn")
def rnn(x, initial_h, weight_ih, weight_hh, bias=None, direction="forward", output_sequence=False,
        activation="tanh"):
    """h_t = activation(W_ih x_t + W_hh h_{t-1} + bias)."""
    x, h = tensor(x), tensor(initial_h)
    w_ih, w_hh = tensor(weight_ih).float(), tensor(weight_hh).float()
    b, act = _zeros_if_none(bias, w_hh.shape[0]), _act(activation)
    steps = x.flip(0) if scalar(direction) == "reverse" else x
    inputs = torch.matmul(steps, w_ih.t()) + b
    states = []
    for xt in inputs:
        h = act(xt + h @ w_hh.t())
        states.append(h)
    return _outputs(states, output_sequence), h


@op("gru")
def gru(x, initial_h, weight_ih, weight_hh, bias=None, direction="forward", output_sequence=False,
        recurrent_activation="sigmoid", activation="tanh", reset_after=False, input_bias=None):
    """reset_after False: o = act(W_io x + W_ho (r * h) + b_o); True (iOS18, PyTorch's GRU):
    o = act(W_io x + b_io + r * (W_ho h + b_ho)), with `input_bias` the b_i* and `bias` the b_h*."""
    x, h = tensor(x), tensor(initial_h)
    w_ih, w_hh = tensor(weight_ih).float(), tensor(weight_hh).float()
    n = w_hh.shape[1]
    b = _zeros_if_none(bias, 3 * n)
    b_in = _zeros_if_none(input_bias, 3 * n)
    rec, act = _act(recurrent_activation), _act(activation)
    after = bool(scalar(reset_after))
    steps = x.flip(0) if scalar(direction) == "reverse" else x
    inputs = torch.matmul(steps, w_ih.t()) + b_in + (0 if after else b)
    w_r, w_o, w_z = w_hh.split(n)
    b_r, b_o, b_z = b.split(n)
    states = []
    for xt in inputs:
        x_r, x_o, x_z = xt.split(n, -1)
        if after:
            r = rec(x_r + h @ w_r.t() + b_r)
            z = rec(x_z + h @ w_z.t() + b_z)
            o = act(x_o + r * (h @ w_o.t() + b_o))
        else:
            r = rec(x_r + h @ w_r.t())
            z = rec(x_z + h @ w_z.t())
            o = act(x_o + (r * h) @ w_o.t())
        h = (1 - z) * o + z * h
        states.append(h)
    return _outputs(states, output_sequence), h


def _lstm_direction(x, h, c, w_ih, w_hh, bias, peephole, acts, clip):
    n = w_hh.shape[1]
    rec, cell, out = acts
    b = _zeros_if_none(bias, 4 * n)
    p_i, p_f, p_o = _zeros_if_none(peephole, 3 * n).split(n)
    inputs = torch.matmul(x, tensor(w_ih).float().t()) + b
    w_hh = tensor(w_hh).float()
    states = []
    for xt in inputs:
        g = xt + h @ w_hh.t()
        g_i, g_f, g_o, g_z = g.split(n, -1)
        i, f = rec(g_i + c * p_i), rec(g_f + c * p_f)
        c = f * c + i * cell(g_z)
        if clip is not None:
            c = c.clamp(-clip, clip)
        o = rec(g_o + c * p_o)
        h = o * out(c)
        states.append(h)
    return states, h, c


@op("lstm")
def lstm(x, initial_h, initial_c, weight_ih, weight_hh, bias=None, peephole=None, weight_ih_back=None,
         weight_hh_back=None, bias_back=None, peephole_back=None, direction="forward", output_sequence=False,
         recurrent_activation="sigmoid", cell_activation="tanh", activation="tanh", clip=None):
    x, h0, c0 = tensor(x), tensor(initial_h), tensor(initial_c)
    acts = (_act(recurrent_activation), _act(cell_activation), _act(activation))
    clip = None if clip is None else float(scalar(clip))
    kind = scalar(direction)
    if kind != "bidirectional":
        steps = x.flip(0) if kind == "reverse" else x
        states, h, c = _lstm_direction(steps, h0, c0, weight_ih, weight_hh, bias, peephole, acts, clip)
        return _outputs(states, output_sequence), h, c
    n = tensor(weight_hh).shape[1]
    fwd, hf, cf = _lstm_direction(x, h0[:, :n], c0[:, :n], weight_ih, weight_hh, bias, peephole, acts, clip)
    bwd, hb, cb = _lstm_direction(x.flip(0), h0[:, n:], c0[:, n:], weight_ih_back, weight_hh_back, bias_back,
                                  peephole_back, acts, clip)
    bwd = bwd[::-1]  # aligned with the input's time steps
    if bool(scalar(output_sequence)):
        seq = torch.cat([torch.stack(fwd), torch.stack(bwd)], -1)
    else:
        seq = torch.cat([fwd[-1], bwd[0]], -1).unsqueeze(0)
    return seq, torch.cat([hf, hb], -1), torch.cat([cf, cb], -1)
