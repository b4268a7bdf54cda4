"""Reductions (ops/defs/iOS15/reduction.py): `axes` None reduces everything; `keep_dims` defaults to False."""

from __future__ import annotations

import torch

from ..registry import op
from ._util import ints, norm_axis, scalar


def _axes(x, axes):
    return list(range(x.dim())) if axes is None else [norm_axis(a, x.dim()) for a in ints(axes)]


def _reduction(fn):
    def kernel(x, axes=None, keep_dims=False):
        return fn(x, _axes(x, axes), bool(scalar(keep_dims)))

    return kernel


def _amax(x, axes, keep):
    return torch.amax(x, axes, keep) if axes else x


def _amin(x, axes, keep):
    return torch.amin(x, axes, keep) if axes else x


_REDUCTIONS = {
    "reduce_mean": lambda x, a, k: x.mean(a, keepdim=k),
    "reduce_sum": lambda x, a, k: x.sum(a, keepdim=k),
    "reduce_prod": lambda x, a, k: _prod(x, a, k),
    "reduce_max": _amax,
    "reduce_min": _amin,
    "reduce_l1_norm": lambda x, a, k: x.abs().sum(a, keepdim=k),
    "reduce_l2_norm": lambda x, a, k: torch.sqrt((x * x).sum(a, keepdim=k)),
    "reduce_sum_square": lambda x, a, k: (x * x).sum(a, keepdim=k),
    "reduce_log_sum": lambda x, a, k: torch.log(x.sum(a, keepdim=k)),
    "reduce_log_sum_exp": lambda x, a, k: torch.logsumexp(x, a, keepdim=k),
}


def _prod(x, axes, keep):
    for a in sorted(axes, reverse=True):
        x = x.prod(a, keepdim=keep)
    return x


for _name, _fn in _REDUCTIONS.items():
    op(_name)(_reduction(_fn))


@op("reduce_argmax")
def reduce_argmax(x, axis=-1, keep_dims=False, output_dtype="int32"):
    return torch.argmax(x, norm_axis(axis, x.dim()), bool(scalar(keep_dims))).to(torch.int32)


@op("reduce_argmin")
def reduce_argmin(x, axis=-1, keep_dims=False, output_dtype="int32"):
    return torch.argmin(x, norm_axis(axis, x.dim()), bool(scalar(keep_dims))).to(torch.int32)
