"""Pooling (ops/defs/iOS15/pool.py): max_pool, avg_pool, l2_pool with valid/same/custom padding and ceil_mode.

avg_pool's `exclude_padding_from_average` divides by the number of real (unpadded) elements under the
window. Max pooling pads with -inf, so padding never wins. ceil_mode keeps a last partial window unless it
would start in the end padding (MIL's `spatial_dimensions_out_shape`, PyTorch's rule).
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


def _out_sizes(sizes, kernel, strides, pads, ceil) -> list[int]:
    out = []
    for i, (size, k, s) in enumerate(zip(sizes, kernel, strides)):
        span = size + pads[2 * i] + pads[2 * i + 1] - k
        o = (span + (s - 1 if ceil else 0)) // s + 1
        if ceil and (o - 1) * s >= size + pads[2 * i] and pads[2 * i] + pads[2 * i + 1] > 0:
            o -= 1
        out.append(o)
    return out


def _crop(y, out):
    """Pooling an explicitly padded input in ceil mode can keep a window that starts in the end padding."""
    return y[(...,) + tuple(slice(0, o) for o in out)]


@op("max_pool")
def max_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    ceil = bool(scalar(ceil_mode))
    if _symmetric(pads, kernel, n):
        return _MAX[n](x, kernel, strides, [pads[2 * i] for i in range(n)], ceil_mode=ceil)
    out = _out_sizes(list(x.shape[-n:]), kernel, strides, pads, ceil)
    x = F.pad(x, torch_pad(pads), value=float("-inf"))
    return _crop(_MAX[n](x, kernel, strides, 0, ceil_mode=ceil), out)


@op("avg_pool")
def avg_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, exclude_padding_from_average=False,
             ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    ceil, exclude = bool(scalar(ceil_mode)), bool(scalar(exclude_padding_from_average))
    if _symmetric(pads, kernel, n):
        return _AVG[n](x, kernel, strides, [pads[2 * i] for i in range(n)], ceil_mode=ceil,
                       count_include_pad=not exclude)
    out = _out_sizes(list(x.shape[-n:]), kernel, strides, pads, ceil)
    padded = F.pad(x, torch_pad(pads))
    y = _AVG[n](padded, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    if exclude:
        ones = F.pad(torch.ones_like(x[..., :1, :, :] if n == 2 else x), torch_pad(pads))
        y = y / _AVG[n](ones, kernel, strides, 0, ceil_mode=ceil, count_include_pad=True)
    return _crop(y, out)


@op("l2_pool")
def l2_pool(x, kernel_sizes, strides=None, pad_type="valid", pad=None, ceil_mode=False):
    kernel, strides, pads, n = _setup(x, kernel_sizes, strides, pad_type, pad)
    out = _out_sizes(list(x.shape[-n:]), kernel, strides, pads, bool(scalar(ceil_mode)))
    # sum of squares over each window: zero-pad so that every kept window is whole (a ceil-mode window
    # past the end included), then a full-window average times the window size
    ends = [max(0, (o - 1) * s + k - (size + pads[2 * i] + pads[2 * i + 1]))
            for i, (o, s, k, size) in enumerate(zip(out, strides, kernel, x.shape[-n:]))]
    padded = F.pad(x * x, torch_pad([p + (ends[i // 2] if i % 2 else 0) for i, p in enumerate(pads)]))
    count = 1
    for k in kernel:
        count *= k
    return torch.sqrt(_crop(_AVG[n](padded, kernel, strides, 0, count_include_pad=True), out) * count)
