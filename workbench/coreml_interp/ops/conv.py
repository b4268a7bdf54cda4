"""Convolutions (ops/defs/iOS15/conv.py): `conv`, `conv_transpose` and `conv_quantized`, 1-D to 3-D.

Weights are laid out as in PyTorch: conv [C_out, C_in/groups, *K], conv_transpose [C_in, C_out/groups,
*K]. Padding types: "valid", "custom" (`pad` = begin/end per spatial axis), "same" (output =
ceil(in/stride), the odd pixel at the end) and "same_lower" (the odd pixel at the start).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import WorkbenchError
from ..registry import op
from ._util import ints, scalar, tensor

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def _spatial(x, n, value, default):
    return ints(value) if value is not None else [default] * n


def same_pads(sizes, kernel, strides, dilations, lower=False) -> list[int]:
    """[begin0, end0, begin1, end1, ...] for "same" padding; the odd pixel goes last unless `lower`."""
    pads = []
    for size, k, s, d in zip(sizes, kernel, strides, dilations):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        pads += [big, small] if lower else [small, big]
    return pads


def pads_for(pad_type, pad, sizes, kernel, strides, dilations) -> list[int]:
    pad_type = scalar(pad_type) if pad_type is not None else "valid"
    n = len(sizes)
    if pad_type == "valid":
        return [0] * (2 * n)
    if pad_type == "custom":
        return ints(pad) if pad is not None else [0] * (2 * n)
    if pad_type in ("same", "same_lower"):
        return same_pads(sizes, kernel, strides, dilations, lower=pad_type == "same_lower")
    raise WorkbenchError(f"unknown MIL pad_type {pad_type!r}; expected valid, same, same_lower or custom")


def torch_pad(pads: list[int]) -> list[int]:
    """MIL's [begin0, end0, begin1, end1] (outer axis first) in F.pad's order (last axis first)."""
    out = []
    for i in reversed(range(len(pads) // 2)):
        out += [pads[2 * i], pads[2 * i + 1]]
    return out


@op("conv")
def conv(x, weight, bias=None, strides=None, pad_type="valid", pad=None, dilations=None, groups=1):
    weight = tensor(weight)
    n = weight.dim() - 2
    strides, dilations = _spatial(x, n, strides, 1), _spatial(x, n, dilations, 1)
    pads = pads_for(pad_type, pad, list(x.shape[-n:]), list(weight.shape[2:]), strides, dilations)
    if all(pads[2 * i] == pads[2 * i + 1] for i in range(n)):
        padding = [pads[2 * i] for i in range(n)]
    else:
        x, padding = F.pad(x, torch_pad(pads)), 0
    bias = None if bias is None else tensor(bias)
    return _CONV[n](x, weight, bias, strides, padding, dilations, int(scalar(groups)))


@op("conv_transpose")
def conv_transpose(x, weight, bias=None, pad=None, output_shape=None, pad_type="valid", strides=None,
                   dilations=None, groups=1):
    """The full transposed convolution, then `pad` cropped from each end (TF's shape logic, as MIL's type
    inference: "same" gives in * stride unless `output_shape` says otherwise, cropping what the full
    output has beyond the target, the odd element at the end; a target beyond the full output is zeros)."""
    weight = tensor(weight)
    n = weight.dim() - 2
    strides, dilations = _spatial(x, n, strides, 1), _spatial(x, n, dilations, 1)
    kernel, sizes = list(weight.shape[2:]), list(x.shape[-n:])
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(sizes, kernel, strides, dilations)]
    kind = scalar(pad_type) if pad_type is not None else "valid"
    if kind == "custom":
        pads = ints(pad) if pad is not None else [0] * (2 * n)
        target = [f - pads[2 * i] - pads[2 * i + 1] for i, f in enumerate(full)]
    elif kind in ("same", "same_lower"):
        target = [i * s for i, s in zip(sizes, strides)]
    else:
        pads, target = [0] * (2 * n), list(full)
    if output_shape is not None:
        target = ints(output_shape)[-n:]
    if kind in ("same", "same_lower"):
        pads = []
        for f, t in zip(full, target):
            total = max(f - t, 0)
            small, big = total // 2, total - total // 2
            pads += [big, small] if kind == "same_lower" else [small, big]
    y = _CONV_T[n](x, weight, None, strides, 0, 0, int(scalar(groups)), dilations)
    # zeros at the end where the target reaches past the full output (what output_padding would add)
    extra = [max(0, pads[2 * i] + t - f) for i, (t, f) in enumerate(zip(target, full))]
    if any(extra):
        y = F.pad(y, torch_pad([v for e in extra for v in (0, e)]))
    index = [slice(None)] * (y.dim() - n) + [slice(pads[2 * i], pads[2 * i] + t) for i, t in enumerate(target)]
    y = y[tuple(index)]
    if bias is not None:
        y = y + tensor(bias).reshape([-1] + [1] * n)
    return y.contiguous()


@op("conv_quantized")
def conv_quantized(x, weight, quantization_type, quant_scale, quant_bias, bias=None, nbits=8, strides=None,
                   pad_type="valid", pad=None, dilations=None, groups=1):
    """conv with uint8 weights: "linear" W = q * quant_scale + quant_bias (scalars or one per output
    channel); "lut" W = quant_scale[q] (quant_scale is the table; quant_bias is unused)."""
    q = tensor(weight).long()
    kind = scalar(quantization_type)
    scale = tensor(quant_scale).float()
    if kind == "linear":
        per_channel = [-1] + [1] * (q.dim() - 1)
        offset = tensor(quant_bias).float()
        w = q.float() * (scale.reshape(per_channel) if scale.numel() > 1 else scale.reshape(()))
        w = w + (offset.reshape(per_channel) if offset.numel() > 1 else offset.reshape(()))
    elif kind == "lut":
        w = scale.reshape(-1)[q]
    else:
        raise WorkbenchError(f"unknown MIL conv_quantized quantization_type {kind!r}; expected linear or lut")
    return conv(x, w.to(torch.float32), bias, strides, pad_type, pad, dilations, groups)
