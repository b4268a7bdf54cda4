"""Elementwise binary and unary ops, with numpy broadcasting (ops/defs/iOS15/elementwise_*.py).

Binary ops broadcast like numpy. Unary ops with an `epsilon` (inverse, log, rsqrt) add it first, as
the MIL definitions say. `cast` changes the element type; rounding to fp16 is done by the program
for every tensor declared fp16, so an fp16 cast is the identity here.
"""

from __future__ import annotations

import torch

from ..registry import op
from ._util import scalar, tensor

_BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "real_div": torch.true_divide,
    "floor_div": torch.floor_divide, "mod": torch.remainder, "pow": torch.pow,
    "maximum": torch.maximum, "minimum": torch.minimum, "equal": torch.eq, "not_equal": torch.ne,
    "greater": torch.gt, "greater_equal": torch.ge, "less": torch.lt, "less_equal": torch.le,
    "logical_and": torch.logical_and, "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
}


def _binary(fn):
    def kernel(x, y):
        if not isinstance(x, torch.Tensor):
            x = tensor(x)
        if not isinstance(y, torch.Tensor):
            y = tensor(y)
        return fn(x, y)

    return kernel


for _name, _fn in _BINARY.items():
    op(_name)(_binary(_fn))


def _unary(fn):
    return lambda x: fn(x)


_UNARY = {
    "abs": torch.abs, "acos": torch.acos, "asin": torch.asin, "atan": torch.atan, "atanh": torch.atanh,
    "ceil": torch.ceil, "cos": torch.cos, "cosh": torch.cosh, "erf": torch.erf, "exp": torch.exp,
    "exp2": torch.exp2, "floor": torch.floor, "round": torch.round, "sign": torch.sign, "sin": torch.sin,
    "sinh": torch.sinh, "sqrt": torch.sqrt, "square": torch.square, "tan": torch.tan,
    "logical_not": torch.logical_not,
}

for _name, _fn in _UNARY.items():
    op(_name)(_unary(_fn))


@op("inverse")
def inverse(x, epsilon=1e-4):
    return 1.0 / (x + float(scalar(epsilon)))


@op("log")
def log(x, epsilon=1e-45):
    return torch.log(x + float(scalar(epsilon)))


@op("rsqrt")
def rsqrt(x, epsilon=1e-12):
    return torch.rsqrt(x + float(scalar(epsilon)))


@op("threshold")
def threshold(x, alpha):
    return torch.clamp(x, min=float(scalar(alpha)))


@op("clip")
def clip(x, alpha, beta):
    return torch.clamp(x, float(scalar(alpha)), float(scalar(beta)))


_DTYPES = {"fp16": torch.float32, "fp32": torch.float32, "fp64": torch.float32, "int8": torch.int8,
           "uint8": torch.uint8, "int16": torch.int16, "uint16": torch.int32, "int32": torch.int32,
           "int64": torch.int64, "bool": torch.bool}


@op("cast")
def cast(x, dtype):
    dtype = scalar(dtype)
    if dtype not in _DTYPES:
        from ...errors import WorkbenchError

        raise WorkbenchError(f"MIL cast to {dtype!r} is not supported; known: {', '.join(_DTYPES)}")
    x = tensor(x)
    target = _DTYPES[dtype]
    if x.is_floating_point() and not target.is_floating_point and target != torch.bool:
        x = torch.trunc(x)  # MIL casts to integers truncate toward zero, like numpy's astype
    return x.to(target)
