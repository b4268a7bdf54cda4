"""Tensor layers: reshapes, permutes, splits, slices, gathers/scatters, fills, broadcasts, ranges, padding,
crops, masks, sorting; each calls the MIL kernel of the same meaning where there is one.

Legacy (rank-5) layers read the last three axes as [C, H, W] and the first of five as the sequence;
ND layers take real axes.
"""

from __future__ import annotations

import numpy as np
import torch
from coremltools.proto import NeuralNetwork_pb2 as _nn

from ..ops._util import ints
from ..ops.tensor import arange
from ..registry import kernel
from . import layer, weights


@layer("copy")
def _copy(b, name, p, inputs, outputs):
    b.add(name, "identity", inputs, outputs)


@layer("loadConstant")
def _load_constant(b, name, p, inputs, outputs):
    value = weights(p.data, tuple(p.shape))
    b.add(name, "const", inputs, outputs, dynamic=[], fn=lambda: value)


def _channel_last(x):
    return x.movedim(-3, -1)


@layer("reshape")
def _reshape(b, name, p, inputs, outputs):
    """target (C, H, W) or (Seq, C, H, W); CHANNEL_LAST reads and writes the elements in H, W, C order."""
    target = [int(v) for v in p.targetShape]
    last = p.mode == _nn.ReshapeLayerParams.ReshapeOrder.Value("CHANNEL_LAST")

    def fn(x):
        lead = list(x.shape[:-3])
        if len(target) == 4:  # the sequence axis too: the first of five, or the first of four
            lead = [target[0]] + (lead[1:] if x.dim() == 5 else [])
        chw = target[-3:]
        if last:
            y = _channel_last(x).reshape(*lead, chw[1], chw[2], chw[0])
            return y.movedim(-1, -3)
        return x.reshape(*lead, *chw)

    b.add(name, "reshape", inputs, outputs, fn=fn)


@layer("flatten")
def _flatten(b, name, p, inputs, outputs):
    last = p.mode == _nn.FlattenLayerParams.FlattenOrder.Value("CHANNEL_LAST")

    def fn(x):
        y = _channel_last(x) if last else x
        return y.reshape(*x.shape[:-3], -1, 1, 1)

    b.add(name, "flatten", inputs, outputs, fn=fn)


@layer("permute")
def _permute(b, name, p, inputs, outputs):
    """A permutation of [Seq, C, H, W] (the batch axis of a rank-5 input stays in place)."""
    axes = [int(a) for a in p.axis] or [0, 1, 2, 3]

    def fn(x):
        if x.dim() == 5:
            perm = [[0, 2, 3, 4][a] for a in axes]
            return x.permute(perm[0], 1, *perm[1:])
        rank = x.dim()
        y = x.reshape((1,) * (4 - rank) + tuple(x.shape)) if rank < 4 else x
        y = y.permute(axes)
        return y.reshape(y.shape[4 - rank:]) if rank < 4 and all(d == 1 for d in y.shape[:4 - rank]) else y

    b.add(name, "transpose", inputs, outputs, fn=fn)


@layer("split")
def _split(b, name, p, inputs, outputs):
    n = len(outputs)
    b.add(name, "split", inputs, outputs, fn=lambda x: tuple(torch.chunk(x, n, -3)))


@layer("sequenceRepeat")
def _sequence_repeat(b, name, p, inputs, outputs):
    n = int(p.nRepetitions) or 1

    def fn(x):
        reps = [1] * x.dim()
        reps[-5 if x.dim() >= 5 else 0] = n
        return x.repeat(reps)

    b.add(name, "tile", inputs, outputs, fn=fn)


@layer("crop")
def _crop(b, name, p, inputs, outputs):
    """One input: crop the border amounts from H and W. Two: crop the first to the second's H and W,
    from `offset` (top, left)."""
    if len(inputs) == 1:
        (top, bottom), (left, right) = [(a.startEdgeSize, a.endEdgeSize) for a in p.cropAmounts.borderAmounts]
        b.add(name, "crop", inputs, outputs, fn=lambda x: x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right])
        return
    top, left = (list(p.offset) + [0, 0])[:2]
    b.add(name, "crop", inputs, outputs, dynamic=[("x", inputs[0]), ("like", inputs[1])],
          fn=lambda x, like: x[..., top:top + like.shape[-2], left:left + like.shape[-1]])


@layer("tile")
def _tile(b, name, p, inputs, outputs):
    if len(inputs) > 1:
        b.add(name, "tile", inputs, outputs, dynamic=[("x", inputs[0]), ("reps", inputs[1])])
    else:
        b.add(name, "tile", inputs, outputs, {"reps": np.asarray(list(p.reps))})


@layer("stack")
def _stack(b, name, p, inputs, outputs):
    b.add(name, "stack", inputs, outputs, {"axis": p.axis}, dynamic=[("values", list(inputs))])


@layer("gather")
def _gather(b, name, p, inputs, outputs):
    b.add(name, "gather", inputs, outputs, {"axis": p.axis}, dynamic=[("x", inputs[0]), ("indices", inputs[1])])


@layer("gatherAlongAxis")
def _gather_along_axis(b, name, p, inputs, outputs):
    b.add(name, "gather_along_axis", inputs, outputs, {"axis": p.axis},
          dynamic=[("x", inputs[0]), ("indices", inputs[1])])


@layer("gatherND")
def _gather_nd(b, name, p, inputs, outputs):
    b.add(name, "gather_nd", inputs, outputs, dynamic=[("x", inputs[0]), ("indices", inputs[1])])


def _scatter_mode(p) -> str:
    return _nn.ScatterMode.Name(p.mode).replace("SCATTER_", "").lower()


@layer("scatter")
def _scatter(b, name, p, inputs, outputs):
    b.add(name, "scatter", inputs, outputs, {"axis": p.axis, "mode": _scatter_mode(p)},
          dynamic=[("data", inputs[0]), ("indices", inputs[1]), ("updates", inputs[2])])


@layer("scatterAlongAxis")
def _scatter_along_axis(b, name, p, inputs, outputs):
    b.add(name, "scatter_along_axis", inputs, outputs, {"axis": p.axis, "mode": _scatter_mode(p)},
          dynamic=[("data", inputs[0]), ("indices", inputs[1]), ("updates", inputs[2])])


@layer("scatterND")
def _scatter_nd(b, name, p, inputs, outputs):
    b.add(name, "scatter_nd", inputs, outputs, {"mode": _scatter_mode(p)},
          dynamic=[("data", inputs[0]), ("indices", inputs[1]), ("updates", inputs[2])])


@layer("reverse")
def _reverse(b, name, p, inputs, outputs):
    flags = [bool(v) for v in p.reverseDim]
    b.add(name, "reverse", inputs, outputs, {"axes": np.asarray([i for i, f in enumerate(flags) if f], np.int64)})


@layer("reverseSeq")
def _reverse_seq(b, name, p, inputs, outputs):
    b.add(name, "reverse_sequence", inputs, outputs, {"seq_axis": p.sequenceAxis, "batch_axis": p.batchAxis},
          dynamic=[("x", inputs[0]), ("lengths", inputs[1])])


@layer("splitND")
def _split_nd(b, name, p, inputs, outputs):
    static = {"axis": p.axis}
    if len(p.splitSizes):
        static["split_sizes"] = np.asarray(list(p.splitSizes))
    else:
        static["num_splits"] = p.numSplits or len(outputs)
    b.add(name, "split", inputs, outputs, static)


@layer("sliceDynamic")
def _slice_dynamic(b, name, p, inputs, outputs):
    """Inputs: x, begin ids, then optionally end ids and strides (else the parameters)."""
    slicer = kernel("slice_by_index")

    def fn(x, begin, end=None, stride=None):
        rank = x.dim()
        return slicer(x, begin, end if end is not None else np.asarray(list(p.endIds) or [1] * rank),
                      stride if stride is not None else np.asarray(list(p.strides) or [1] * rank),
                      np.asarray(list(p.beginMasks) or [False] * rank), np.asarray(list(p.endMasks) or [False] * rank),
                      np.asarray(list(p.squeezeMasks) or [False] * rank))

    dynamic = [(arg, ref) for arg, ref in zip(["x", "begin", "end", "stride"], inputs)]
    b.add(name, "slice_by_index", inputs, outputs, dynamic=dynamic, fn=fn)


@layer("sliceBySize")
def _slice_by_size(b, name, p, inputs, outputs):
    axis, size = p.axis, p.size

    def fn(x, begin):
        start = ints(begin)[0]
        a = axis % x.dim()
        start = start + x.shape[a] if start < 0 else start
        return x.narrow(a, start, size)

    b.add(name, "slice_by_size", inputs, outputs, dynamic=[("x", inputs[0]), ("begin", inputs[1])], fn=fn)


@layer("slidingWindows")
def _sliding_windows(b, name, p, inputs, outputs):
    b.add(name, "sliding_windows", inputs, outputs, {"axis": p.axis, "size": p.windowSize, "stride": p.step or 1})


@layer("topK")
def _top_k(b, name, p, inputs, outputs):
    topk = kernel("topk")
    axis, bottom = p.axis, bool(p.useBottomK)

    def fn(x, k=None):
        values, indices = topk(x, p.K if k is None else ints(k)[0], axis, bottom)
        return values, indices.float()

    b.add(name, "topk", inputs, outputs, dynamic=[(a, r) for a, r in zip(["x", "k"], inputs)], fn=fn)


def _arg(op_type):
    reduce = kernel(op_type)

    def build(b, name, p, inputs, outputs):
        axis, keep = p.axis, not p.removeDim
        b.add(name, op_type, inputs, outputs, fn=lambda x: reduce(x, axis, keep).float())

    return build


layer("argMax")(_arg("reduce_argmax"))
layer("argMin")(_arg("reduce_argmin"))


@layer("argSort")
def _arg_sort(b, name, p, inputs, outputs):
    argsort = kernel("argsort")
    axis, descending = p.axis, bool(p.descending)
    b.add(name, "argsort", inputs, outputs, fn=lambda x: argsort(x, axis, not descending).float())


@layer("getShape")
def _get_shape(b, name, p, inputs, outputs):
    b.add(name, "shape", inputs, outputs, fn=lambda x: torch.tensor(list(x.shape), dtype=torch.float32))


@layer("fillLike")
def _fill_like(b, name, p, inputs, outputs):
    value = float(p.value)
    b.add(name, "fill_like", inputs, outputs, fn=lambda x: torch.full(tuple(x.shape), value))


@layer("fillStatic")
def _fill_static(b, name, p, inputs, outputs):
    shape, value = [int(v) for v in p.targetShape], float(p.value)
    b.add(name, "fill", inputs, outputs, dynamic=[], fn=lambda: torch.full(shape, value))


@layer("fillDynamic")
def _fill_dynamic(b, name, p, inputs, outputs):
    value = float(p.value)
    b.add(name, "fill", inputs, outputs, fn=lambda x: torch.full(ints(x), value))


def _broadcast(x, shape):
    shape = list(shape)
    x = x.reshape((1,) * (len(shape) - x.dim()) + tuple(x.shape)) if x.dim() < len(shape) else x
    return x.expand(*[max(a, s) if a == 1 else a for a, s in zip(x.shape, shape)]).contiguous()


@layer("broadcastToLike")
def _broadcast_like(b, name, p, inputs, outputs):
    b.add(name, "broadcast_to", inputs, outputs, dynamic=[("x", inputs[0]), ("like", inputs[1])],
          fn=lambda x, like: _broadcast(x, like.shape))


@layer("broadcastToStatic")
def _broadcast_static(b, name, p, inputs, outputs):
    shape = [int(v) for v in p.targetShape]
    b.add(name, "broadcast_to", inputs, outputs, fn=lambda x: _broadcast(x, shape))


@layer("broadcastToDynamic")
def _broadcast_dynamic(b, name, p, inputs, outputs):
    b.add(name, "broadcast_to", inputs, outputs, dynamic=[("x", inputs[0]), ("shape", inputs[1])],
          fn=lambda x, shape: _broadcast(x, ints(shape)))


@layer("reshapeLike")
def _reshape_like(b, name, p, inputs, outputs):
    b.add(name, "reshape", inputs, outputs, dynamic=[("x", inputs[0]), ("like", inputs[1])],
          fn=lambda x, like: x.reshape(like.shape))


@layer("reshapeDynamic")
def _reshape_dynamic(b, name, p, inputs, outputs):
    b.add(name, "reshape", inputs, outputs, dynamic=[("x", inputs[0]), ("shape", inputs[1])],
          fn=lambda x, shape: x.reshape(ints(shape)))


@layer("rankPreservingReshape")
def _rank_preserving_reshape(b, name, p, inputs, outputs):
    """targetShape of the input's rank; 0 keeps that axis, -1 is inferred."""
    b.add(name, "reshape", inputs, outputs, {"shape": np.asarray(list(p.targetShape))})


@layer("constantPad")
def _constant_pad(b, name, p, inputs, outputs):
    """padAmounts: (begin, end) per axis, for the last len/2 axes. padToGivenOutputSizeMode reads the one
    non-zero amount of each pair as the axis's output size, padded at that side (begin or end); (0, 0)
    leaves the axis as it is."""
    amounts = [int(v) for v in p.padAmounts]
    value, to_size = float(p.value), bool(p.padToGivenOutputSizeMode)

    def fn(x, pads=None):
        a = ints(pads) if pads is not None else amounts
        n = len(a) // 2
        pairs = [(a[2 * i], a[2 * i + 1]) for i in range(n)]
        if to_size:
            sizes = x.shape[x.dim() - n:]
            pairs = [(s - size, 0) if s else (0, e - size) if e else (0, 0) for (s, e), size in zip(pairs, sizes)]
        order = []
        for s, e in reversed(pairs):
            order += [s, e]
        return torch.nn.functional.pad(x, order, value=value)

    b.add(name, "pad", inputs, outputs, dynamic=[(a, r) for a, r in zip(["x", "pads"], inputs)], fn=fn)


@layer("rangeStatic")
def _range_static(b, name, p, inputs, outputs):
    start, end, step = float(p.startValue), float(p.endValue), float(p.stepSizeValue) or 1.0
    b.add(name, "range_1d", inputs, outputs, dynamic=[], fn=lambda: arange(start, end, step))


@layer("rangeDynamic")
def _range_dynamic(b, name, p, inputs, outputs):
    """One input: end. Two: end, start. Three: start, end, step."""
    start0, step0 = float(p.startValue), float(p.stepSizeValue) or 1.0

    def fn(a, b_=None, c=None):
        first = lambda v: float(v.reshape(-1)[0])  # noqa: E731
        if c is not None:
            return arange(first(a), first(b_), first(c))
        if b_ is not None:
            return arange(first(b_), first(a), step0)
        return arange(start0, first(a), step0)

    b.add(name, "range_1d", inputs, outputs, dynamic=[(a, r) for a, r in zip(["a", "b_", "c"], inputs)], fn=fn)


@layer("whereNonZero")
def _where_non_zero(b, name, p, inputs, outputs):
    b.add(name, "non_zero", inputs, outputs, fn=lambda x: torch.nonzero(x).float())


@layer("whereBroadcastable")
def _where(b, name, p, inputs, outputs):
    b.add(name, "select", inputs, outputs, dynamic=[("cond", inputs[0]), ("a", inputs[1]), ("b", inputs[2])],
          fn=lambda cond, a, b: torch.where(cond != 0, a, b))


@layer("matrixBandPart")
def _band_part(b, name, p, inputs, outputs):
    b.add(name, "band_part", inputs, outputs, {"lower": p.numLower, "upper": p.numUpper})


def _triangle(upper: bool):
    def build(b, name, p, inputs, outputs):
        k = p.k

        def fn(x):
            i = torch.arange(x.shape[-2]).unsqueeze(1)
            j = torch.arange(x.shape[-1]).unsqueeze(0)
            keep = (j - i >= k) if upper else (j - i <= k)
            return torch.where(keep, x, torch.zeros((), dtype=x.dtype))

        b.add(name, "band_part", inputs, outputs, fn=fn)

    return build


layer("lowerTriangular")(_triangle(False))
layer("upperTriangular")(_triangle(True))


@layer("oneHot")
def _one_hot(b, name, p, inputs, outputs):
    one_hot = kernel("one_hot")

    def fn(indices, size=None):
        n = p.oneHotVectorSize if size is None else ints(size)[0]
        return one_hot(indices.long(), n, p.axis, float(p.onValue), float(p.offValue))

    b.add(name, "one_hot", inputs, outputs, dynamic=[(a, r) for a, r in zip(["indices", "size"], inputs)], fn=fn)


@layer("cumSum")
def _cum_sum(b, name, p, inputs, outputs):
    b.add(name, "cumsum", inputs, outputs, {"axis": p.axis, "exclusive": bool(p.excludeFinalSum),
                                            "reverse": bool(p.reverse)})


@layer("embedding")
def _embedding(b, name, p, inputs, outputs):
    """Indices along the channel axis (..., 1, 1, 1) -> (..., outputChannels, 1, 1)."""
    w = weights(p.weights, (p.outputChannels, p.inputDim))
    bias = weights(p.bias, (p.outputChannels,)) if p.hasBias else None

    def fn(x):
        idx = x.reshape(*x.shape[:-3]).long()
        y = w.t()[idx]
        if bias is not None:
            y = y + bias
        return y.reshape(*x.shape[:-3], -1, 1, 1)

    b.add(name, "gather", inputs, outputs, fn=fn)


@layer("embeddingND")
def _embedding_nd(b, name, p, inputs, outputs):
    """Indices (..., 1) -> (..., embeddingSize)."""
    w = weights(p.weights, (p.embeddingSize, p.vocabSize))
    bias = weights(p.bias, (p.embeddingSize,)) if p.hasBias else None

    def fn(x):
        y = w.t()[x[..., 0].long()]
        return y + bias if bias is not None else y

    b.add(name, "gather", inputs, outputs, fn=fn)
