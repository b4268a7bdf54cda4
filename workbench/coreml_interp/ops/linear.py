"""Linear algebra (ops/defs/iOS15/linear.py): linear, matmul, einsum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import op
from ._util import scalar, tensor


@op("linear")
def linear(x, weight, bias=None):
    """iOS17: weight and bias (constants) may have another dtype than x (fp16/fp32/int32, T and U); the output
    has x's. Computed in the dtype the operands promote to (int32 weights on a float x: float)."""
    x = tensor(x)
    weight = tensor(weight)
    bias = None if bias is None else tensor(bias)
    common = torch.promote_types(x.dtype, weight.dtype if bias is None else torch.promote_types(weight.dtype,
                                                                                                 bias.dtype))
    out = F.linear(x.to(common), weight.to(common), None if bias is None else bias.to(common))
    return out.to(x.dtype)


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    """iOS17: x and y may differ in dtype when one is a constant; the output has the other's. Integer
    constants arrive as numpy arrays and float constants as float tensors, so of two tensors of different
    dtypes the integer one is the run-time value."""
    out_dtype = _run_time_dtype(x, y)
    x, y = tensor(x), tensor(y)
    if scalar(transpose_x):
        x = x.transpose(-1, -2)
    if scalar(transpose_y):
        y = y.transpose(-1, -2)
    common = torch.promote_types(x.dtype, y.dtype)
    return torch.matmul(x.to(common), y.to(common)).to(out_dtype)


def _run_time_dtype(x, y) -> torch.dtype:
    if not isinstance(x, torch.Tensor):
        return tensor(y).dtype
    if not isinstance(y, torch.Tensor) or x.dtype == y.dtype:
        return x.dtype
    return x.dtype if not x.dtype.is_floating_point else y.dtype


@op("einsum")
def einsum(values, equation):
    return torch.einsum(scalar(equation), *[tensor(v) for v in values])
