"""Activation quantization (ops/defs/iOS17/quantization_ops.py): `quantize` and `dequantize`.

quantize: clip(round(x / scale) + zero_point) into int8 or uint8, rounding half to even (numpy's
`around`, which coremltools' value inference uses); dequantize: scale * (x - zero_point). Scale and zero
point are scalars, or vectors along `axis`. On constant inputs (weights) the compiler runs them once at load.
"""

from __future__ import annotations

import torch

from ...errors import WorkbenchError
from ..registry import op
from ._util import norm_axis, scalar, tensor

_RANGES = {"int8": (-128, 127, torch.int8), "uint8": (0, 255, torch.uint8)}


def _per_axis(param, x: torch.Tensor, axis) -> torch.Tensor:
    p = tensor(param).to(torch.float32)
    if p.dim() == 0 or p.dim() == x.dim():
        return p
    a = norm_axis(axis, x.dim())
    return p.reshape([-1 if i == a else 1 for i in range(x.dim())])


@op("quantize", since=17)
def quantize(input, scale, output_dtype, zero_point=None, axis=None):
    dtype = scalar(output_dtype)
    if dtype not in _RANGES:
        raise WorkbenchError(f"MIL quantize to {dtype!r}: expected int8 or uint8")
    low, high, torch_dtype = _RANGES[dtype]
    x = tensor(input).to(torch.float32)
    q = torch.round(x / _per_axis(scale, x, axis))
    if zero_point is not None:
        q = q + _per_axis(zero_point, x, axis)
    return q.clamp(low, high).to(torch_dtype)


@op("dequantize", since=17)
def dequantize(input, scale, zero_point=None, axis=None):
    x = tensor(input)
    y = x.to(torch.float32)
    if zero_point is not None:
        y = y - _per_axis(zero_point, x, axis)
    return y * _per_axis(scale, x, axis)
