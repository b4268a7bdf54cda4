"""Pooling (ops/defs/iOS15/pool.py): max_pool, avg_pool, l2_pool with valid/same/custom padding and ceil_mode.

avg_pool's `exclude_padding_from_average` divides by the number of real (unpadded) elements under the
window. Max pooling pads with -inf, so padding never wins.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import op
from ._util import ints, scalar
from .conv import pads_for, torch_pad

_MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def _setup(x, kernel_sizes, strides, pad_type, pad):
    kernel = ints(kernel_sizes)
    n = len(kernel)
    strides = ints(strides) if strides is not None else [1] * n
    pads = pads_for(pad_type, pad, list(x.shape[-n:]), kernel, strides, [1] * n)
    return kernel, strides, pads, n


def _symmetric(pads, kernel, n):
    return all(pads[2 * i] == pads[2 * i + 1] and pads[2 * i] * 2 <= kernel[i] for i in range(n))


@op("max_pool")
def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    ceil = bool(scalar(ceil_mode))
    if _symmetric(pads, kernel, n):
        return _MAX[n](x, kernel, strides, [pads[2 * i] for i in range(n)], ceil_mode=ceil)
    x = F.pad(x, torch_pad(pads), value=float("-inf"))
    return _MAX[n](x, kernel, strides, 0, ceil_mode=ceil)


@op("avg_pool")
def avg_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, exclude_padding_from_average=False,
             ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    ceil, exclude = bool(scalar(ceil_mode)), bool(scalar(exclude_padding_from_average))
    if _symmetric(pads, kernel, n):
        return _AVG[n](x, kernel, strides, [pads[2 * i] for i in range(n)], ceil_mode=ceil,
                       count_include_pad=not exclude)
    padded = F.pad(x, torch_pad(pads))
    y = _AVG[n](padded, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    if exclude:
        ones = F.pad(torch.ones_like(x[..., :1, :, :] if n == 2 else x), torch_pad(pads))
        y = y / _AVG[n](ones, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    return y


@op("l2_pool")
def l2_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    padded = F.pad(x * x, torch_pad(pads))
    count = 1
    for k in kernel:
        count *= k
    return torch.sqrt(_AVG[n](padded, kernel, strides, 0, ceil_mode=bool(scalar(ceil_mode)),
                              count_include_pad=True) * count)
