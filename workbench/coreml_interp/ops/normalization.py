"""Normalizations (ops/defs/iOS15/normalization.py): batch_norm, instance_norm, layer_norm, l2_norm, LRN."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..registry import op
from ._util import ints, norm_axis, scalar, tensor


def _channel(v, x):
    shape = [1] * x.dim()
    shape[1] = -1
    return tensor(v).reshape(shape)


def _scale_shift(y, gamma, beta):
    """y * gamma + beta, per channel (axis 1), each optional."""
    if gamma is not None:
        y = y * _channel(gamma, y)
    if beta is not None:
        y = y + _channel(beta, y)
    return y


@op("batch_norm")
def batch_norm(x, mean, variance, gamma=None, beta=None, epsilon=1e-5):
    y = (x - _channel(mean, x)) / torch.sqrt(_channel(variance, x) + float(scalar(epsilon)))
    return _scale_shift(y, gamma, beta)


@op("instance_norm")
def instance_norm(x, gamma=None, beta=None, epsilon=1e-5):
    axes = list(range(2, x.dim()))
    mean = x.mean(axes, keepdim=True)
    var = ((x - mean) ** 2).mean(axes, keepdim=True)
    y = (x - mean) / torch.sqrt(var + float(scalar(epsilon)))
    return _scale_shift(y, gamma, beta)


@op("layer_norm")
def layer_norm(x, axes=None, gamma=None, beta=None, epsilon=1e-5):
    axes = [norm_axis(a, x.dim()) for a in ints(axes)] if axes is not None else list(range(x.dim()))
    # the statistics in float64: in float32 the mean of values far from zero with a small spread (10 +- 1e-3)
    # is off by half an ulp (5e-7), which (x - mean) / sqrt(var + eps) magnifies to 2e-4; the MIL definition
    # is the exact formula, so the interpreter computes it as exactly as it can
    dtype, x = x.dtype, x.double()
    mean = x.mean(axes, keepdim=True)
    var = ((x - mean) ** 2).mean(axes, keepdim=True)
    y = ((x - mean) / torch.sqrt(var + float(scalar(epsilon)))).to(dtype)
    # gamma and beta have the shape of the normalized axes (x.shape[axes]), which need not be trailing
    shape = [x.shape[i] if i in axes else 1 for i in range(x.dim())]
    if gamma is not None:
        y = y * tensor(gamma).reshape(shape)
    if beta is not None:
        y = y + tensor(beta).reshape(shape)
    return y


@op("l2_norm")
def l2_norm(x, axes=None, epsilon=1e-6):
    # MIL normalizes the last three axes; the leading ones are batch (a rank-3 x is normalized whole)
    axes = [norm_axis(a, x.dim()) for a in ints(axes)] if axes is not None else list(range(max(x.dim() - 3, 0),
                                                                                         x.dim()))
    return x / torch.sqrt((x * x).sum(axes, keepdim=True) + float(scalar(epsilon)))


@op("local_response_norm")
def local_response_norm(x, size, alpha=1e-4, beta=0.75, k=1.0):
    return F.local_response_norm(x, int(scalar(size)), float(scalar(alpha)), float(scalar(beta)),
                                 float(scalar(k)))
