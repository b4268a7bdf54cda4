"""Elementwise layers: unary math, comparisons (1.0/0.0 outputs), logic, broadcastable binaries, average,
dot, clampedReLU and gelu; each calls the MIL kernel of the same meaning where there is one."""

from __future__ import annotations

import torch
from coremltools.proto import NeuralNetwork_pb2 as _nn

from ..registry import kernel
from . import layer

_UNARY_MIL = {"ceil": "ceil", "floor": "floor", "sign": "sign", "round": "round", "exp2": "exp2", "sin": "sin",
              "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos", "atan": "atan", "sinh": "sinh",
              "cosh": "cosh", "tanh": "tanh", "atanh": "atanh", "erf": "erf"}


def _unary(op_type):
    def build(b, name, p, inputs, outputs):
        b.add(name, op_type, inputs, outputs)

    return build


for _layer, _op in _UNARY_MIL.items():
    layer(_layer)(_unary(_op))


@layer("asinh")
def _asinh(b, name, p, inputs, outputs):  # no MIL op: torch's
    b.add(name, "asinh", inputs, outputs, fn=torch.asinh)


@layer("acosh")
def _acosh(b, name, p, inputs, outputs):
    b.add(name, "acosh", inputs, outputs, fn=torch.acosh)


@layer("gelu")
def _gelu(b, name, p, inputs, outputs):
    b.add(name, "gelu", inputs, outputs, {"mode": _nn.GeluLayerParams.GeluMode.Name(p.mode)})


@layer("clampedReLU")
def _clamped_relu(b, name, p, inputs, outputs):
    b.add(name, "clamped_relu", inputs, outputs, {"alpha": p.alpha, "beta": p.beta})


_COMPARE = {"equal": "equal", "notEqual": "not_equal", "lessThan": "less", "lessEqual": "less_equal",
            "greaterThan": "greater", "greaterEqual": "greater_equal"}


def _compare(op_type):
    """Two inputs broadcast; one input is compared with `alpha`. The result is 1.0 or 0.0."""
    compare = kernel(op_type)

    def build(b, name, p, inputs, outputs):
        if len(inputs) == 1:
            alpha = torch.tensor(float(p.alpha))
            b.add(name, op_type, inputs, outputs, fn=lambda x: compare(x, alpha).float())
        else:
            b.add(name, op_type, inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])],
                  fn=lambda x, y: compare(x, y).float())

    return build


for _layer, _op in _COMPARE.items():
    layer(_layer)(_compare(_op))


def _logical(op_type):
    """Inputs are true where non-zero; the result is 1.0 or 0.0."""
    logic = kernel(op_type)

    def build(b, name, p, inputs, outputs):
        if op_type == "logical_not":
            b.add(name, op_type, inputs, outputs, fn=lambda x: logic(x != 0).float())
        else:
            b.add(name, op_type, inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])],
                  fn=lambda x, y: logic(x != 0, y != 0).float())

    return build


for _layer, _op in {"logicalAnd": "logical_and", "logicalOr": "logical_or", "logicalXor": "logical_xor",
                    "logicalNot": "logical_not"}.items():
    layer(_layer)(_logical(_op))


def _broadcastable(op_type):
    def build(b, name, p, inputs, outputs):
        b.add(name, op_type, inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])])

    return build


for _layer, _op in {"modBroadcastable": "mod", "minBroadcastable": "minimum", "maxBroadcastable": "maximum",
                    "powBroadcastable": "pow", "floorDivBroadcastable": "floor_div"}.items():
    layer(_layer)(_broadcastable(_op))


@layer("average")
def _average(b, name, p, inputs, outputs):
    def fn(values):
        out = values[0]
        for v in values[1:]:
            out = out + v
        return out / len(values)

    b.add(name, "average", inputs, outputs, dynamic=[("values", list(inputs))], fn=fn)


@layer("dot")
def _dot(b, name, p, inputs, outputs):
    """The dot product of the two inputs along the channel axis (C of ..., C, H, W); cosine similarity
    divides by both norms."""
    cosine = bool(p.cosineSimilarity)

    def fn(x, y):
        d = (x * y).sum(-3, keepdim=True)
        if cosine:
            d = d / (x.norm(dim=-3, keepdim=True) * y.norm(dim=-3, keepdim=True)).clamp(min=1e-12)
        return d

    b.add(name, "dot", inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])], fn=fn)
