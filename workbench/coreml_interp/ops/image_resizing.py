"""Image resizing (ops/defs/iOS15-17/image_resizing.py): bilinear and nearest upsampling/resizing, crop.

Bilinear sampling follows the grids in the MIL docs: align_corners (i*(in-1)/(out-1)), half-pixel
((i+0.5)*in/out-0.5, clamped), and iOS16's asymmetric grid (i*in/out) when `half_pixel_centers` is
False; resize_bilinear's sampling modes STRICT_ALIGN_CORNERS, ALIGN_CORNERS, DEFAULT, OFFSET_CORNERS and
UNALIGN_CORNERS. The two grids PyTorch has are run by F.interpolate; the others by a separable gather.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import WorkbenchError
from ..registry import op
from ._util import ints, scalar


def _grid(n_in: int, n_out: int, mode: str) -> torch.Tensor:
    i = torch.arange(n_out, dtype=torch.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = torch.full((1,), 0.0 if mode == "STRICT_ALIGN_CORNERS" else (n_in - 1) / 2, dtype=torch.float64)
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":
        g = i * ((n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else 0.0)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        g = (i + 0.5) * n_in / n_out - 0.5
    elif mode == "ASYMMETRIC":
        g = i * n_in / n_out
    else:
        raise WorkbenchError(f"unknown MIL sampling_mode {mode!r}; expected STRICT_ALIGN_CORNERS, "
                             "ALIGN_CORNERS, DEFAULT, OFFSET_CORNERS or UNALIGN_CORNERS")
    return g.clamp(0, n_in - 1)


def _linear(x: torch.Tensor, dim: int, grid: torch.Tensor) -> torch.Tensor:
    low = grid.floor().long()
    high = (low + 1).clamp(max=x.shape[dim] - 1)
    w = (grid - low).to(x.dtype)
    shape = [1] * x.dim()
    shape[dim] = -1
    a, b = x.index_select(dim, low), x.index_select(dim, high)
    return a + (b - a) * w.reshape(shape)


def bilinear(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    if mode in ("UNALIGN_CORNERS", "STRICT_ALIGN_CORNERS") or (mode == "ALIGN_CORNERS" and height > 1
                                                               and width > 1):
        y = F.interpolate(x.reshape(-1, *x.shape[-3:]) if x.dim() != 4 else x, size=(height, width),
                          mode="bilinear", align_corners=mode != "UNALIGN_CORNERS")
        return y.reshape(*x.shape[:-2], height, width)
    y = _linear(x, x.dim() - 2, _grid(x.shape[-2], height, mode))
    return _linear(y, x.dim() - 1, _grid(x.shape[-1], width, mode))


@op("upsample_bilinear")
def upsample_bilinear(x, scale_factor_height=1, scale_factor_width=1, align_corners=True,
                      half_pixel_centers=None):
    height = math.floor(float(scalar(scale_factor_height)) * x.shape[-2])
    width = math.floor(float(scalar(scale_factor_width)) * x.shape[-1])
    corners = bool(scalar(align_corners))
    half = (not corners) if half_pixel_centers is None else bool(scalar(half_pixel_centers))
    mode = "STRICT_ALIGN_CORNERS" if corners else "UNALIGN_CORNERS" if half else "ASYMMETRIC"
    return bilinear(x, height, width, mode)


@op("resize_bilinear")
def resize_bilinear(x, target_size_height=1, target_size_width=1, sampling_mode="DEFAULT"):
    return bilinear(x, int(scalar(target_size_height)), int(scalar(target_size_width)), scalar(sampling_mode))


def _nearest(x, height, width):
    y = F.interpolate(x.reshape(-1, *x.shape[-3:]) if x.dim() != 4 else x, size=(height, width), mode="nearest")
    return y.reshape(*x.shape[:-2], height, width)


@op("upsample_nearest_neighbor")
def upsample_nearest_neighbor(x, scale_factor_height=1, scale_factor_width=1):
    return _nearest(x, math.floor(float(scalar(scale_factor_height)) * x.shape[-2]),
                    math.floor(float(scalar(scale_factor_width)) * x.shape[-1]))


@op("resize_nearest_neighbor")
def resize_nearest_neighbor(x, target_size_height, target_size_width):
    return _nearest(x, int(scalar(target_size_height)), int(scalar(target_size_width)))


@op("crop")
def crop(x, crop_height, crop_width):
    top, bottom = ints(crop_height)
    left, right = ints(crop_width)
    return x[..., top:x.shape[-2] - bottom, left:x.shape[-1] - right]
