"""Recurrent layers (simpleRecurrent, gru, uniDirectionalLSTM, biDirectionalLSTM) on the MIL kernels.

Input x is (Seq, ..., inputVectorSize, 1, 1) (rank 5, or rank 3 without the trailing 1s); the optional
second (and third) inputs are the initial h (and c), zeros when absent. Outputs: y (every step when
sequenceOutput, else the last, in the input's layout), the final h, the final c.
Weight layouts as NeuralNetwork.proto: GRU gates [update z, reset r, output o], LSTM [input, forget,
blockInput z, output]; MIL's kernels take them reordered.
"""

from __future__ import annotations

import torch

from ...errors import WorkbenchError
from ..registry import kernel
from . import layer, weights

_ACT = {"ReLU": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "sigmoidHard": "hard_sigmoid", "linear": "linear",
        "scaledTanh": "scaled_tanh"}


def _act(params) -> str:
    return _ACT[params.WhichOneof("NonlinearityType")]


def _seq(x: torch.Tensor):
    """(S, B, I) from the layer's input, and a function giving an output back its input's layout."""
    s = x.shape[0]
    flat = x.reshape(s, -1, x.shape[-3] if x.dim() == 5 else x.shape[-1])
    five = x.dim() == 5

    def back(y):  # (S', B, H)
        return y.reshape(y.shape[0], y.shape[1], -1, 1, 1) if five else y

    return flat, back


def _state(value, batch, n):
    return torch.zeros(batch, n) if value is None else value.reshape(batch, n)


def _dynamic(inputs):
    return [(arg, ref) for arg, ref in zip(["x", "h", "c"], inputs)]


@layer("simpleRecurrent")
def _simple(b, name, p, inputs, outputs):
    rnn = kernel("rnn")
    n = p.outputVectorSize
    w_ih = weights(p.weightMatrix, (n, p.inputVectorSize))
    w_hh = weights(p.recursionMatrix, (n, n))
    bias = weights(p.biasVector) if p.hasBiasVector else None
    act, reverse, every = _act(p.activation), bool(p.reverseInput), bool(p.sequenceOutput)

    def fn(x, h=None):
        seq, back = _seq(x)
        y, hn = rnn(seq, _state(h, seq.shape[1], n), w_ih, w_hh, bias, "reverse" if reverse else "forward", every,
                    act)
        return back(y), back(hn[None])

    b.add(name, "rnn", inputs, outputs, dynamic=_dynamic(inputs), fn=fn)


@layer("gru")
def _gru(b, name, p, inputs, outputs):
    gru = kernel("gru")
    n, i = p.outputVectorSize, p.inputVectorSize
    w_ih = torch.cat([weights(m, (n, i)) for m in (p.resetGateWeightMatrix, p.outputGateWeightMatrix,
                                                    p.updateGateWeightMatrix)])
    w_hh = torch.cat([weights(m, (n, n)) for m in (p.resetGateRecursionMatrix, p.outputGateRecursionMatrix,
                                                    p.updateGateRecursionMatrix)])
    bias = torch.cat([weights(v) for v in (p.resetGateBiasVector, p.outputGateBiasVector,
                                           p.updateGateBiasVector)]) if p.hasBiasVectors else None
    acts = [_act(a) for a in p.activations] or ["sigmoid", "tanh"]
    reverse, every = bool(p.reverseInput), bool(p.sequenceOutput)

    def fn(x, h=None):
        seq, back = _seq(x)
        y, hn = gru(seq, _state(h, seq.shape[1], n), w_ih, w_hh, bias, "reverse" if reverse else "forward", every,
                    acts[0], acts[1])
        return back(y), back(hn[None])

    b.add(name, "gru", inputs, outputs, dynamic=_dynamic(inputs), fn=fn)


def _lstm_weights(w, n, i, params):
    """MIL's [input, forget, output, cell] blocks, the bias with the forget bias, and the peepholes."""
    w_ih = torch.cat([weights(m, (n, i)) for m in (w.inputGateWeightMatrix, w.forgetGateWeightMatrix,
                                                    w.outputGateWeightMatrix, w.blockInputWeightMatrix)])
    w_hh = torch.cat([weights(m, (n, n)) for m in (w.inputGateRecursionMatrix, w.forgetGateRecursionMatrix,
                                                    w.outputGateRecursionMatrix, w.blockInputRecursionMatrix)])
    if params.coupledInputAndForgetGate:
        raise WorkbenchError("an LSTM layer with coupledInputAndForgetGate: the interpreter's lstm kernel has "
                             "separate input and forget gates; check this model on a Mac")
    bias = torch.zeros(4 * n)
    if params.hasBiasVectors:
        bias = torch.cat([weights(v) for v in (w.inputGateBiasVector, w.forgetGateBiasVector, w.outputGateBiasVector,
                                               w.blockInputBiasVector)])
    if params.forgetBias:  # a vector of ones added to the forget gate's bias
        bias = bias.clone()
        bias[n:2 * n] += 1.0
    peep = None
    if params.hasPeepholeVectors:
        peep = torch.cat([weights(v) for v in (w.inputGatePeepholeVector, w.forgetGatePeepholeVector,
                                               w.outputGatePeepholeVector)])
    return w_ih, w_hh, bias, peep


def _lstm_options(p, acts):
    names = [_act(a) for a in acts] or ["sigmoid", "tanh", "tanh"]
    clip = float(p.params.cellClipThreshold) if p.params.cellClipThreshold else None
    return names, clip


@layer("uniDirectionalLSTM")
def _unilstm(b, name, p, inputs, outputs):
    lstm = kernel("lstm")
    n, i = p.outputVectorSize, p.inputVectorSize
    w_ih, w_hh, bias, peep = _lstm_weights(p.weightParams, n, i, p.params)
    (rec, cell, out), clip = _lstm_options(p, p.activations)
    reverse, every = bool(p.reverseInput), bool(p.params.sequenceOutput)

    def fn(x, h=None, c=None):
        seq, back = _seq(x)
        batch = seq.shape[1]
        y, hn, cn = lstm(seq, _state(h, batch, n), _state(c, batch, n), w_ih, w_hh, bias, peep,
                         direction="reverse" if reverse else "forward", output_sequence=every,
                         recurrent_activation=rec, cell_activation=cell, activation=out, clip=clip)
        return back(y), back(hn[None]), back(cn[None])

    b.add(name, "lstm", inputs, outputs, dynamic=_dynamic(inputs), fn=fn)


@layer("biDirectionalLSTM")
def _bilstm(b, name, p, inputs, outputs):
    """Outputs y (forward and backward hidden states concatenated), then h and c of each direction."""
    lstm = kernel("lstm")
    n, i = p.outputVectorSize, p.inputVectorSize
    fwd = _lstm_weights(p.weightParams[0], n, i, p.params)
    bwd = _lstm_weights(p.weightParams[1], n, i, p.params)
    (rec, cell, out), clip = _lstm_options(p, p.activationsForwardLSTM)
    every = bool(p.params.sequenceOutput)

    def fn(x, h=None, c=None, hb=None, cb=None):
        seq, back = _seq(x)
        batch = seq.shape[1]
        h0 = torch.cat([_state(h, batch, n), _state(hb, batch, n)], -1)
        c0 = torch.cat([_state(c, batch, n), _state(cb, batch, n)], -1)
        y, hn, cn = lstm(seq, h0, c0, fwd[0], fwd[1], fwd[2], fwd[3], bwd[0], bwd[1], bwd[2], bwd[3],
                         direction="bidirectional", output_sequence=every, recurrent_activation=rec,
                         cell_activation=cell, activation=out, clip=clip)
        return (back(y), back(hn[None, :, :n]), back(cn[None, :, :n]), back(hn[None, :, n:]),
                back(cn[None, :, n:]))

    b.add(name, "lstm", inputs, outputs, dynamic=[(a, r) for a, r in zip(["x", "h", "c", "hb", "cb"], inputs)],
          fn=fn)
