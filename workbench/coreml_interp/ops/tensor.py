"""Tensor operations and transformations (ops/defs/iOS15-18/tensor_operation.py, tensor_transformation.py,
scatter_gather.py, and `select` from control_flow.py): shapes, slicing, joining, gathering, padding."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...errors import WorkbenchError
from ..registry import op
from ._util import ints, norm_axis, scalar, tensor


@op("identity")
def identity(x):
    return x


@op("shape")
def shape(x):
    return torch.tensor(list(tensor(x).shape), dtype=torch.int32)


@op("reshape")
def reshape(x, shape):
    x = tensor(x)
    dims = ints(shape)
    dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]  # 0 copies the input's dim
    return x.reshape(dims)


@op("expand_dims")
def expand_dims(x, axes):
    x = tensor(x)
    rank = x.dim() + len(ints(axes))
    for a in sorted(norm_axis(a, rank) for a in ints(axes)):
        x = x.unsqueeze(a)
    return x


@op("squeeze")
def squeeze(x, axes=None):
    x = tensor(x)
    if axes is None:
        return x.squeeze()
    for a in sorted((norm_axis(a, x.dim()) for a in ints(axes)), reverse=True):
        x = x.squeeze(a)
    return x


@op("transpose")
def transpose(x, perm):
    return tensor(x).permute(ints(perm))


@op("flatten2d")
def flatten2d(x, axis=1):
    x = tensor(x)
    a = norm_axis(axis, x.dim())
    return x.reshape(int(np.prod(x.shape[:a], dtype=np.int64)), -1)


@op("concat")
def concat(values, axis, interleave=False):
    values = [tensor(v) for v in values]
    a = norm_axis(axis, values[0].dim())
    if scalar(interleave):
        stacked = torch.stack(values, a + 1)
        return stacked.reshape(*values[0].shape[:a], -1, *values[0].shape[a + 1:])
    return torch.cat(values, a)


@op("stack")
def stack(values, axis):
    values = [tensor(v) for v in values]
    return torch.stack(values, norm_axis(axis, values[0].dim() + 1))


@op("split")
def split(x, num_splits=None, split_sizes=None, axis=0):
    a = norm_axis(axis, x.dim())
    if split_sizes is not None:
        return tuple(torch.split(x, ints(split_sizes), a))
    return tuple(torch.chunk(x, int(scalar(num_splits)), a))


@op("tile")
def tile(x, reps):
    return tensor(x).repeat(ints(reps))


@op("reverse")
def reverse(x, axes=None):
    x = tensor(x)
    return torch.flip(x, [norm_axis(a, x.dim()) for a in ints(axes)] if axes is not None else list(range(x.dim())))


@op("slice_by_index")
def slice_by_index(x, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    x = tensor(x)
    rank = x.dim()
    begin, end = ints(begin), ints(end)
    stride = ints(stride) if stride is not None else [1] * rank
    begin_mask = [bool(v) for v in np.asarray(begin_mask).reshape(-1)] if begin_mask is not None else [False] * rank
    end_mask = [bool(v) for v in np.asarray(end_mask).reshape(-1)] if end_mask is not None else [False] * rank
    squeeze = [bool(v) for v in np.asarray(squeeze_mask).reshape(-1)] if squeeze_mask is not None else [False] * rank
    for a in range(rank):
        n = x.shape[a]
        if squeeze[a]:
            continue
        s = stride[a]
        b = None if begin_mask[a] else begin[a]
        e = None if end_mask[a] else end[a]
        index = range(*slice(b, e, s).indices(n))
        if s == 1 and len(index) > 0:
            x = x.narrow(a, index.start, len(index))
        else:
            x = x.index_select(a, torch.tensor(list(index), dtype=torch.long))
    for a in reversed(range(rank)):
        if squeeze[a]:
            x = x.select(a, begin[a] if begin[a] >= 0 else begin[a] + x.shape[a])
    return x


@op("slice_by_size")
def slice_by_size(x, begin, size):
    x = tensor(x)
    for a, (b, s) in enumerate(zip(ints(begin), ints(size))):
        b = b + x.shape[a] if b < 0 else b
        x = x.narrow(a, b, x.shape[a] - b if s == -1 else s)
    return x


@op("pad")
def pad(x, pad, mode="constant", constant_val=0.0):
    pads = ints(pad)
    mode = scalar(mode)
    if mode in ("reflect", "replicate"):
        # `pad` may cover every axis (2 * rank values); torch reflects/replicates at most the last three,
        # so drop the leading axes that are not padded
        while len(pads) > 2 and pads[0] == 0 and pads[1] == 0:
            pads = pads[2:]
    order = []
    for i in reversed(range(len(pads) // 2)):
        order += [pads[2 * i], pads[2 * i + 1]]
    if mode == "constant":
        return F.pad(x, order, value=float(scalar(constant_val)))
    if mode in ("reflect", "replicate"):
        n = len(pads) // 2
        if n > 3:
            raise WorkbenchError(f"MIL pad mode {mode!r} on {n} axes: the interpreter pads at most the last three "
                                 "axes in this mode")
        lead = x.shape[:-n]
        y = F.pad(x.reshape(1, -1, *x.shape[-n:]), order, mode=mode)  # (1, batch, *padded axes)
        return y.reshape(*lead, *y.shape[-n:])
    raise WorkbenchError(f"unknown MIL pad mode {mode!r}; expected constant, reflect or replicate")


@op("depth_to_space")
def depth_to_space(x, block_size):
    b = int(scalar(block_size))
    n, c, h, w = x.shape
    return x.reshape(n, b, b, c // (b * b), h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c // (b * b), h * b, w * b)


@op("space_to_depth")
def space_to_depth(x, block_size):
    b = int(scalar(block_size))
    n, c, h, w = x.shape
    return x.reshape(n, c, h // b, b, w // b, b).permute(0, 3, 5, 1, 2, 4).reshape(n, c * b * b, h // b, w // b)


@op("pixel_shuffle")
def pixel_shuffle(x, upscale_factor):
    return F.pixel_shuffle(x, int(scalar(upscale_factor)))


@op("pixel_unshuffle", since=16)
def pixel_unshuffle(x, downscale_factor):
    return F.pixel_unshuffle(x, int(scalar(downscale_factor)))


@op("gather")
def gather(x, indices, axis=0, batch_dims=0, validate_indices=False):
    x, indices = tensor(x), tensor(indices).long()
    a = norm_axis(axis, x.dim())
    if int(scalar(batch_dims)) != 0:
        raise WorkbenchError("MIL gather with batch_dims > 0 is not supported by the interpreter")
    indices = torch.where(indices < 0, indices + x.shape[a], indices)
    out = x.index_select(a, indices.reshape(-1))
    return out.reshape(*x.shape[:a], *indices.shape, *x.shape[a + 1:])


@op("gather_along_axis")
def gather_along_axis(x, indices, axis=0, validate_indices=False):
    x, indices = tensor(x), tensor(indices).long()
    a = norm_axis(axis, x.dim())
    return torch.gather(x, a, torch.where(indices < 0, indices + x.shape[a], indices))


@op("fill")
def fill(shape, value=0.0):
    return torch.full(ints(shape), float(scalar(value)))


@op("range_1d")
def range_1d(end, start, step):
    return torch.arange(scalar(start), scalar(end), scalar(step))


@op("select")
def select(cond, a, b):
    return torch.where(tensor(cond).bool(), tensor(a), tensor(b))


@op("cumsum")
def cumsum(x, axis=0, exclusive=False, reverse=False):
    a = norm_axis(axis, x.dim())
    if scalar(reverse):
        x = x.flip(a)
    y = x.cumsum(a)
    if scalar(exclusive):
        y = y - x
    return y.flip(a) if scalar(reverse) else y


@op("topk")
def topk(x, k=1, axis=-1, ascending=False, sort=True, return_indices=True, output_indices_dtype="int32"):
    values, indices = torch.topk(x, int(scalar(k)), norm_axis(axis, x.dim()), largest=not scalar(ascending),
                                 sorted=True)
    return values, indices.to(torch.int32)


@op("argsort")
def argsort(x, axis=-1, ascending=False):
    return torch.argsort(x, dim=norm_axis(axis, x.dim()), descending=not scalar(ascending), stable=True).to(torch.int32)
