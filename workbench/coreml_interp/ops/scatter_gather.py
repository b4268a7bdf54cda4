"""Gather and scatter (ops/defs/iOS15-17/scatter_gather.py).

Negative indices count from the end of their axis (iOS17's `validate_indices` only asks the runtime to
check bounds; out-of-range indices raise here either way). Scatter modes: update (the last write wins
for duplicate indices, as on the CPU), add, sub, mul, div, max, min, with duplicates combined.
iOS16 adds `batch_dims` to gather and gather_nd.
"""

from __future__ import annotations

import torch

from ...errors import WorkbenchError
from ..registry import op
from ._util import norm_axis, scalar, tensor

_MODES = ("update", "add", "sub", "mul", "div", "max", "min")


def _wrap(indices: torch.Tensor, size) -> torch.Tensor:
    indices = indices.long()
    return torch.where(indices < 0, indices + size, indices)


@op("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    x, indices = tensor(x), tensor(indices)
    a = norm_axis(axis, x.dim())
    b = int(scalar(batch_dims))
    indices = _wrap(indices, x.shape[a])
    if b == 0:
        out = x.index_select(a, indices.reshape(-1))
        return out.reshape(*x.shape[:a], *indices.shape, *x.shape[a + 1:])
    # batch_dims: the first b axes of x and indices are matched, gathering in each batch element
    batch = x.shape[:b]
    xs, ids = x.reshape(-1, *x.shape[b:]), indices.reshape(-1, *indices.shape[b:])
    parts = [gather(xs[i], ids[i], a - b) for i in range(xs.shape[0])]
    return torch.stack(parts).reshape(*batch, *parts[0].shape)


@op("gather_along_axis")
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x, indices = tensor(x), tensor(indices)
    a = norm_axis(axis, x.dim())
    return torch.gather(x, a, _wrap(indices, x.shape[a]))


@op("gather_nd")
def gather_nd(x, indices, batch_dims=0, validate_indices=False):
    """out[i...] = x[batch..., indices[i..., 0], ..., indices[i..., k-1], ...]."""
    x, indices = tensor(x), tensor(indices).long()
    b = int(scalar(batch_dims))
    k = indices.shape[-1]
    batch = x.shape[:b]
    nb = 1
    for n in batch:
        nb *= n
    inner = x.shape[b:b + k]
    xs = x.reshape(nb, -1, *x.shape[b + k:])  # (batch, prod(inner), rest)
    flat = torch.zeros(indices.shape[:-1], dtype=torch.long)
    for i, n in enumerate(inner):
        flat = flat * n + _wrap(indices[..., i], n)
    flat = flat.reshape(nb, -1)  # (batch, points)
    out = xs[torch.arange(nb).unsqueeze(1), flat]  # (batch, points, rest)
    return out.reshape(*indices.shape[:-1], *x.shape[b + k:])


def _combine(out: torch.Tensor, dim: int, index: torch.Tensor, updates: torch.Tensor, mode: str) -> torch.Tensor:
    """out with `updates` combined in at `index` along `dim` (index and updates of the same shape)."""
    if mode not in _MODES:
        raise WorkbenchError(f"unknown MIL scatter mode {mode!r}; expected one of {', '.join(_MODES)}")
    updates = updates.to(out.dtype)
    if mode == "update":
        return out.scatter(dim, index, updates)
    if mode in ("add", "sub"):
        return out.scatter_add(dim, index, updates if mode == "add" else -updates)
    if mode == "div":  # a product of reciprocals; integers divide in float64 and truncate, as a cast would
        if out.is_floating_point():
            return out.scatter_reduce(dim, index, 1.0 / updates, "prod")
        return torch.trunc(out.double().scatter_reduce(dim, index, 1.0 / updates.double(), "prod")).to(out.dtype)
    return out.scatter_reduce(dim, index, updates, {"mul": "prod", "max": "amax", "min": "amin"}[mode])


@op("scatter")
def scatter(data, indices, updates, axis=0, mode="add", validate_indices=False):
    """data with updates written at `indices` (a vector) along `axis`; updates has `len(indices)` there."""
    data, updates = tensor(data), tensor(updates)
    a = norm_axis(axis, data.dim())
    idx = _wrap(tensor(indices).reshape(-1), data.shape[a])
    shape = [1] * data.dim()
    shape[a] = -1
    return _combine(data, a, idx.reshape(shape).expand(updates.shape), updates, scalar(mode))


@op("scatter_along_axis")
def scatter_along_axis(data, indices, updates, axis=0, mode="add", validate_indices=False):
    data, updates = tensor(data), tensor(updates)
    a = norm_axis(axis, data.dim())
    return _combine(data, a, _wrap(tensor(indices), data.shape[a]), updates, scalar(mode))


@op("scatter_nd")
def scatter_nd(data, indices, updates, mode="add", validate_indices=False):
    """data[indices[i..., :]] (a slice of the remaining axes) combined with updates[i...]."""
    data, indices, updates = tensor(data), tensor(indices).long(), tensor(updates)
    k = indices.shape[-1]
    inner, rest = data.shape[:k], data.shape[k:]
    flat = torch.zeros(indices.shape[:-1], dtype=torch.long)
    for i, n in enumerate(inner):
        flat = flat * n + _wrap(indices[..., i], n)
    table = data.reshape(-1, *rest)
    upd = updates.reshape(-1, *rest)
    index = flat.reshape([-1] + [1] * len(rest)).expand(upd.shape)
    return _combine(table, 0, index, upd, scalar(mode)).reshape(data.shape)
