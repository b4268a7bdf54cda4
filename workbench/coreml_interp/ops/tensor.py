"""Tensor operations and transformations (ops/defs/iOS15-18/tensor_operation.py, tensor_transformation.py,
and `select` from control_flow.py): shapes, slicing and slice updates, joining, padding, filling, masks,
space/depth/batch rearrangements, sorting, non-maximum suppression."""

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
    # a 0 copies the input's dim, counted from the right (iOS17: shape[i] matches x.shape[j] when
    # len(shape) - i == rank - j, and a 0 with no such dim is 1); iOS15/16 allow a 0 only when
    # len(shape) == rank, where counting from the right is counting from the left
    skip = len(dims) - x.dim()
    dims = [(x.shape[i - skip] if i >= skip else 1) if d == 0 else d for i, d in enumerate(dims)]
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


@op("fill")
def fill(shape, value=0.0):
    return torch.full(ints(shape), float(scalar(value)))


def arange(start, end, step) -> torch.Tensor:
    """numpy's arange, which MIL's range_1d is ("a numpy-like 1-D range"; value_inference calls np.arange):
    bounds on the wrong side of the step give an empty sequence, where torch.arange raises."""
    if (end - start) * step <= 0:
        return torch.arange(start, start, step)
    return torch.arange(start, end, step)


@op("range_1d")
def range_1d(end, start, step):
    return arange(scalar(start), scalar(end), scalar(step))


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


@op("fill_like", since=16)
def fill_like(ref_tensor, value=0.0):
    value = scalar(value)
    dtype = torch.bool if isinstance(value, bool) else torch.int32 if isinstance(value, int) else torch.float32
    return torch.full(tuple(tensor(ref_tensor).shape), value, dtype=dtype)


@op("band_part")
def band_part(x, lower=-1, upper=-1):
    """Zero everything outside the band of the last two axes: below `lower` and above `upper` diagonals
    (negative keeps the whole triangle)."""
    x = tensor(x)
    lower, upper = int(scalar(lower)), int(scalar(upper))
    m = torch.arange(x.shape[-2]).unsqueeze(1)
    n = torch.arange(x.shape[-1]).unsqueeze(0)
    keep = ((lower < 0) | (m - n <= lower)) & ((upper < 0) | (n - m <= upper))
    return torch.where(keep, x, torch.zeros((), dtype=x.dtype))


@op("non_zero")
def non_zero(x):
    """[N, rank] int32: the index of every non-zero element, in row-major order."""
    return torch.nonzero(tensor(x)).to(torch.int32)


@op("one_hot")
def one_hot(indices, one_hot_vector_size, axis=-1, on_value=1, off_value=0):
    indices = tensor(indices).long()
    size = int(scalar(one_hot_vector_size))
    on, off = scalar(on_value), scalar(off_value)
    dtype = torch.bool if isinstance(on, bool) else torch.int32 if isinstance(on, int) else torch.float32
    hot = F.one_hot(torch.where(indices < 0, indices + size, indices).clamp(0, size - 1), size).bool()
    hot &= ((indices >= -size) & (indices < size)).unsqueeze(-1)  # out-of-range indices give all off
    out = torch.where(hot, torch.tensor(on, dtype=dtype), torch.tensor(off, dtype=dtype))
    return out.movedim(-1, norm_axis(axis, indices.dim() + 1))


@op("reshape_like", since=16)
def reshape_like(x, ref_tensors, begins, ends, end_masks):
    shape = []
    for ref, b, e, m in zip(ref_tensors, ints(begins), ints(ends), np.asarray(end_masks).reshape(-1)):
        dims = list(tensor(ref).shape)
        shape += dims[b:] if bool(m) else dims[b:e]
    return tensor(x).reshape(shape)


def _slice_indices(x, begin, end, stride, begin_mask, end_mask, squeeze_mask):
    """Per axis, the indices slice_by_index selects (a one-element list on squeezed axes)."""
    rank = x.dim()
    begin, end = ints(begin), ints(end)
    stride = ints(stride) if stride is not None else [1] * rank
    masks = [[bool(v) for v in np.asarray(m).reshape(-1)] if m is not None else [False] * rank
             for m in (begin_mask, end_mask, squeeze_mask)]
    out = []
    for a in range(rank):
        n = x.shape[a]
        if masks[2][a]:
            out.append([begin[a] + n if begin[a] < 0 else begin[a]])
            continue
        b = None if masks[0][a] else begin[a]
        e = None if masks[1][a] else end[a]
        out.append(list(range(*slice(b, e, stride[a]).indices(n))))
    return out, masks[2]


@op("slice_update", since=18)
def slice_update(x, update, begin, end, stride=None, begin_mask=None, end_mask=None, squeeze_mask=None):
    """x with the slice that slice_by_index(x, ...) selects replaced by `update`."""
    x, update = tensor(x), tensor(update)
    index, squeezed = _slice_indices(x, begin, end, stride, begin_mask, end_mask, squeeze_mask)
    grid = torch.meshgrid(*[torch.tensor(i, dtype=torch.long) for i in index], indexing="ij")
    out = x.clone()
    out[grid] = update.reshape([len(i) for i in index]).to(x.dtype)
    return out


@op("space_to_batch")
def space_to_batch(x, block_shape, paddings):
    """TF's SpaceToBatchND on (N, C, H, W): pad, then each (i, j) offset in a block becomes a batch group
    (batch index (i * bw + j) * N + n)."""
    bh, bw = ints(block_shape)
    (t, b), (l, r) = np.asarray(paddings).reshape(2, 2).tolist()
    x = F.pad(tensor(x), [l, r, t, b])
    n, c, h, w = x.shape
    y = x.reshape(n, c, h // bh, bh, w // bw, bw).permute(3, 5, 0, 1, 2, 4)
    return y.reshape(bh * bw * n, c, h // bh, w // bw)


@op("batch_to_space")
def batch_to_space(x, block_shape, crops):
    """The inverse of space_to_batch: batch groups back into block offsets, then `crops` removed."""
    bh, bw = ints(block_shape)
    (t, b), (l, r) = np.asarray(crops).reshape(2, 2).tolist()
    x = tensor(x)
    nb, c, h, w = x.shape
    n = nb // (bh * bw)
    y = x.reshape(bh, bw, n, c, h, w).permute(2, 3, 4, 0, 5, 1).reshape(n, c, h * bh, w * bw)
    return y[:, :, t:h * bh - b, l:w * bw - r]


@op("sliding_windows")
def sliding_windows(x, axis, size, stride=1):
    """Windows of `size` every `stride` along `axis`: the window index at `axis`, its elements right after."""
    x = tensor(x)
    a = norm_axis(axis, x.dim())
    return x.unfold(a, int(scalar(size)), int(scalar(stride))).movedim(-1, a + 1)


@op("reverse_sequence")
def reverse_sequence(x, lengths, seq_axis=0, batch_axis=0):
    """For each batch element b, the first lengths[b] elements along seq_axis reversed."""
    x = tensor(x)
    s, b = norm_axis(seq_axis, x.dim()), norm_axis(batch_axis, x.dim())
    out = x.clone()
    for i, n in enumerate(ints(lengths)):
        if n > 0:
            part = x.select(b, i)
            axis = s - 1 if s > b else s
            out.select(b, i).narrow(axis, 0, n).copy_(part.narrow(axis, 0, n).flip(axis))
    return out


def _iou(box: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """IoU of one (x, y, w, h) center-size box with each of `boxes`."""
    def corners(b):
        half_w, half_h = b[..., 2] / 2, b[..., 3] / 2
        return b[..., 0] - half_w, b[..., 1] - half_h, b[..., 0] + half_w, b[..., 1] + half_h

    x0, y0, x1, y1 = corners(box)
    bx0, by0, bx1, by1 = corners(boxes)
    inter = (torch.minimum(x1, bx1) - torch.maximum(x0, bx0)).clamp(min=0) * (
        torch.minimum(y1, by1) - torch.maximum(y0, by0)).clamp(min=0)
    union = box[2] * box[3] + boxes[:, 2] * boxes[:, 3] - inter
    return torch.where(union > 0, inter / union, torch.zeros_like(union))


def _nms_one(boxes, scores, iou_threshold, score_threshold, max_boxes, per_class):
    """Greedy NMS of one batch element: boxes (B, 4), scores (B, K) -> the kept box indices."""
    best, cls = scores.max(1)
    order = [int(i) for i in torch.argsort(best, descending=True, stable=True) if best[i] >= score_threshold]
    kept: list[int] = []
    for i in order:
        if len(kept) == max_boxes:
            break
        rivals = [k for k in kept if not per_class or cls[k] == cls[i]]
        if rivals and bool((_iou(boxes[i], boxes[rivals]) > iou_threshold).any()):
            continue
        kept.append(i)
    return kept


@op("non_maximum_suppression")
def non_maximum_suppression(boxes, scores, iou_threshold, max_boxes, score_threshold=None,
                            per_class_suppression=False):
    """Greedy NMS by the best class score. iOS15: boxes (n, B, 4), scores (n, B, K), a score threshold,
    and a fourth output with the number kept; iOS17 (no score_threshold): boxes (n, 4, B), scores (n, K, B).
    Outputs are padded to max_boxes with zeros (index -1)."""
    ios17 = score_threshold is None
    boxes, scores = tensor(boxes), tensor(scores)
    if ios17:
        boxes, scores = boxes.transpose(1, 2), scores.transpose(1, 2)
    n, k = boxes.shape[0], scores.shape[2]
    m = int(scalar(max_boxes))
    out_boxes, out_scores = torch.zeros(n, m, 4), torch.zeros(n, m, k)
    out_index, counts = torch.full((n, m), -1, dtype=torch.int32), torch.zeros(n, dtype=torch.int32)
    threshold = float("-inf") if ios17 else float(scalar(score_threshold))
    for b in range(n):
        kept = _nms_one(boxes[b], scores[b], float(scalar(iou_threshold)), threshold, m,
                        bool(scalar(per_class_suppression)))
        counts[b] = len(kept)
        if kept:
            idx = torch.tensor(kept)
            out_boxes[b, :len(kept)], out_scores[b, :len(kept)] = boxes[b, idx], scores[b, idx]
            out_index[b, :len(kept)] = idx.to(torch.int32)
    if ios17:
        return out_boxes.transpose(1, 2), out_scores.transpose(1, 2), out_index
    return out_boxes, out_scores, out_index, counts
