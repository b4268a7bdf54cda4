"""Linear algebra (ops/defs/iOS15/linear.py): linear, matmul, einsum."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import op
from ._util import scalar, tensor


@op("linear")
def linear(x, weight, bias=None):
    return F.linear(x, tensor(weight), None if bias is None else tensor(bias))


@op("matmul")
def matmul(x, y, transpose_x=False, transpose_y=False):
    x, y = tensor(x), tensor(y)
    if scalar(transpose_x):
        x = x.transpose(-1, -2)
    if scalar(transpose_y):
        y = y.transpose(-1, -2)
    return torch.matmul(x, y)


@op("einsum")
def einsum(values, equation):
    return torch.einsum(scalar(equation), *[tensor(v) for v in values])
