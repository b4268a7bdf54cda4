"""Image resizing (ops/defs/iOS15-17/image_resizing.py): bilinear and nearest upsampling/resizing, crop,
iOS17's `resize`, `crop_resize` (iOS15/16 `roi`, iOS17 `boxes`), `resample` and `affine`.

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
from ._util import ints, scalar, tensor


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


@op("resize", since=17)
def resize(x, shape, resized_dims, interpolation_mode="LINEAR", sampling_mode="DEFAULT"):
    """The last `resized_dims` axes resized to the end of `shape` (0 keeps that axis's size)."""
    x = tensor(x)
    k = int(scalar(resized_dims))
    target = ints(shape)[len(ints(shape)) - k:]
    sizes = [x.shape[x.dim() - k + i] if t == 0 else t for i, t in enumerate(target)]
    mode = scalar(interpolation_mode)
    if mode not in ("LINEAR", "NEAREST_NEIGHBOR"):
        raise WorkbenchError(f"unknown MIL resize interpolation_mode {mode!r}; expected LINEAR or NEAREST_NEIGHBOR")
    y = x.float()
    for i, n in enumerate(sizes):
        dim = x.dim() - k + i
        if mode == "LINEAR":
            y = _linear(y, dim, _grid(y.shape[dim], n, scalar(sampling_mode)))
        else:  # nearest: floor(i * in / out), as resize_nearest_neighbor
            index = (torch.arange(n, dtype=torch.float64) * y.shape[dim] / n).floor().long()
            y = y.index_select(dim, index.clamp(max=y.shape[dim] - 1))
    return y if x.is_floating_point() else y.round().to(x.dtype)


def _box_grid(start: torch.Tensor, end: torch.Tensor, n: int, mode: str) -> torch.Tensor:
    """Sample positions inside a box whose corner pixels sit at `start` and `end`: the resize_bilinear grids
    with the box's extent (end - start) in place of the input's (in - 1), kept inside the box as resize
    keeps them inside the image."""
    g = _box_points(start.double(), (end - start).double(), n, mode)
    return torch.minimum(torch.maximum(g, torch.minimum(start, end)), torch.maximum(start, end))


def _box_points(start, span, n: int, mode: str) -> torch.Tensor:
    i = torch.arange(n, dtype=torch.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n == 1:
            return start + i * 0 + (0.0 if mode == "STRICT_ALIGN_CORNERS" else span / 2)
        return start + i * span / (n - 1)
    if mode == "DEFAULT":
        return start + i * (span + 1) / n
    if mode == "OFFSET_CORNERS":
        delta = torch.clamp(span, min=1.0) / n
        return start + 0.5 * delta + i * delta
    if mode == "UNALIGN_CORNERS":
        return start + (i + 0.5) * (span + 1) / n - 0.5
    raise WorkbenchError(f"unknown MIL sampling_mode {mode!r}; expected STRICT_ALIGN_CORNERS, ALIGN_CORNERS, "
                         "DEFAULT, OFFSET_CORNERS or UNALIGN_CORNERS")


def _sample(image: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, pad: float) -> torch.Tensor:
    """Bilinear samples of image (C, H, W) at rows ys (h,) x columns xs (w,); `pad` outside the image."""
    h, w = image.shape[-2:]

    def axis(pos, n):
        low = pos.floor()
        frac = (pos - low).float()
        low = low.long()
        inside = (pos >= 0) & (pos <= n - 1)
        return low.clamp(0, n - 1), (low + 1).clamp(0, n - 1), frac, inside

    y0, y1, fy, iny = axis(ys, h)
    x0, x1, fx, inx = axis(xs, w)
    rows0, rows1 = image[:, y0], image[:, y1]
    top = rows0[:, :, x0] + (rows0[:, :, x1] - rows0[:, :, x0]) * fx
    bottom = rows1[:, :, x0] + (rows1[:, :, x1] - rows1[:, :, x0]) * fx
    out = top + (bottom - top) * fy.unsqueeze(1)
    inside = iny.unsqueeze(1) & inx.unsqueeze(0)
    return torch.where(inside, out, torch.tensor(pad, dtype=out.dtype))


def _corners(box: torch.Tensor, mode: str):
    """(h_start, w_start, h_end, w_end) from a box in `box_coordinate_mode`."""
    a, b, c, d = box.unbind(-1)
    if mode == "CORNERS_HEIGHT_FIRST":
        return a, b, c, d
    if mode == "CORNERS_WIDTH_FIRST":
        return b, a, d, c
    if mode == "CENTER_SIZE_HEIGHT_FIRST":
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    if mode == "CENTER_SIZE_WIDTH_FIRST":
        return b - d / 2, a - c / 2, b + d / 2, a + c / 2
    raise WorkbenchError(f"unknown MIL box_coordinate_mode {mode!r}")


@op("crop_resize")
def crop_resize(x, roi=None, boxes=None, box_indices=None, target_height=1, target_width=1,
                normalized_coordinates=False, spatial_scale=1.0, box_coordinate_mode="CORNERS_HEIGHT_FIRST",
                sampling_mode="DEFAULT", pad_value=0.0):
    """Each box cut out of its image and resized bilinearly to target_height x target_width.
    iOS15/16: roi (N, 1, 4 or 5, 1, 1) -> (N, B, C, th, tw) (with 5 values, the first picks the image and
    B is 1). iOS17: boxes (N, 4) and box_indices -> (N, C, th, tw)."""
    x = tensor(x)
    th, tw = int(scalar(target_height)), int(scalar(target_width))
    h, w = x.shape[-2:]
    mode, coords = scalar(sampling_mode), scalar(box_coordinate_mode)
    pad = float(scalar(pad_value))

    def crop(image, box):
        h0, w0, h1, w1 = _corners(box.double(), coords)
        if bool(scalar(normalized_coordinates)):
            h0, h1, w0, w1 = h0 * (h - 1), h1 * (h - 1), w0 * (w - 1), w1 * (w - 1)
        scale = float(scalar(spatial_scale))
        ys = _box_grid(h0 * scale, h1 * scale, th, mode)
        xs = _box_grid(w0 * scale, w1 * scale, tw, mode)
        return _sample(image, ys.reshape(-1), xs.reshape(-1), pad)

    if roi is None:  # iOS17
        boxes = tensor(boxes)
        index = ints(box_indices) if box_indices is not None else list(range(boxes.shape[0]))
        return torch.stack([crop(x[i], box) for i, box in zip(index, boxes)])
    roi = tensor(roi).reshape(tensor(roi).shape[0], -1)
    if roi.shape[1] == 5:
        return torch.stack([crop(x[int(r[0])], r[1:]).unsqueeze(0) for r in roi])
    return torch.stack([torch.stack([crop(x[b], r) for b in range(x.shape[0])]) for r in roi])


def _pixel(c: torch.Tensor, n: int, mode: str, align: bool) -> torch.Tensor:
    """Coordinates in `coordinates_mode` as pixel positions (pixel centers at integers)."""
    if mode == "unnormalized":
        return c
    if mode == "normalized_minus_one_to_one":
        return (c + 1) / 2 * (n - 1) if align else ((c + 1) * n - 1) / 2
    if mode == "normalized_zero_to_one":
        return c * (n - 1) if align else c * n - 0.5
    raise WorkbenchError(f"unknown MIL coordinates_mode {mode!r}; expected unnormalized, "
                         "normalized_minus_one_to_one or normalized_zero_to_one")


def _fold(index: torch.Tensor, n: int, mode: str):
    """Integer positions mapped into [0, n) by `padding_mode`, and whether each was inside."""
    inside = (index >= 0) & (index < n)
    if mode == "constant":
        return index.clamp(0, n - 1), inside
    if mode == "border":
        return index.clamp(0, n - 1), torch.ones_like(inside)
    if mode == "reflection":  # |1 2 3| -> 2 3 2 1 2 3 2 1: the edge is not repeated
        if n == 1:
            return torch.zeros_like(index), torch.ones_like(inside)
        period = 2 * (n - 1)
        r = index.remainder(period)
        return torch.where(r < n, r, period - r), torch.ones_like(inside)
    if mode == "symmetric":  # |1 2 3| -> 3 2 1 1 2 3 3 2 1: the edge is repeated
        r = index.remainder(2 * n)
        return torch.where(r < n, r, 2 * n - 1 - r), torch.ones_like(inside)
    raise WorkbenchError(f"unknown MIL padding_mode {mode!r}; expected constant, border, reflection or symmetric")


@op("resample", since=15)
def resample(x, coordinates, sampling_mode="bilinear", padding_mode="constant", padding_value=0.0,
             coordinates_mode="unnormalized", align_corners=False):
    """x (B, C, H, W) sampled at coordinates (B, H2, W2, 2) given as (x, y) = (w, h)."""
    x, coords = tensor(x), tensor(coordinates).double()
    b, c, h, w = x.shape
    align, cmode = bool(scalar(align_corners)), scalar(coordinates_mode)
    px = _pixel(coords[..., 0], w, cmode, align)
    py = _pixel(coords[..., 1], h, cmode, align)
    pmode, pad = scalar(padding_mode), float(scalar(padding_value))
    flat = x.reshape(b, c, h * w)

    def tap(iy, ix):
        fy, oky = _fold(iy, h, pmode)
        fx, okx = _fold(ix, w, pmode)
        index = (fy * w + fx).reshape(b, 1, -1).expand(b, c, -1)
        v = flat.gather(2, index).reshape(b, c, *iy.shape[1:])
        return torch.where((oky & okx).unsqueeze(1), v, torch.tensor(pad, dtype=v.dtype))

    smode = scalar(sampling_mode)
    if smode == "nearest":
        return tap(torch.round(py).long(), torch.round(px).long())
    if smode != "bilinear":
        raise WorkbenchError(f"unknown MIL resample sampling_mode {smode!r}; expected bilinear or nearest")
    y0, x0 = py.floor(), px.floor()
    fy, fx = (py - y0).float().unsqueeze(1), (px - x0).float().unsqueeze(1)
    y0, x0 = y0.long(), x0.long()
    top = tap(y0, x0) * (1 - fx) + tap(y0, x0 + 1) * fx
    bottom = tap(y0 + 1, x0) * (1 - fx) + tap(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


@op("affine", since=15)
def affine(x, transform_matrix, output_height, output_width, sampling_mode="bilinear", padding_mode="constant",
           padding_value=0.0, coordinates_mode="normalized_minus_one_to_one", align_corners=True):
    """Output pixel (x, y), in `coordinates_mode` over the output grid, reads the input at
    (a0 x + a1 y + a2, b0 x + b1 y + b2) in the same mode (torch's affine_grid, then resample)."""
    x = tensor(x)
    oh, ow = int(scalar(output_height)), int(scalar(output_width))
    m = tensor(transform_matrix).double().reshape(-1, 6).expand(x.shape[0], 6)
    cmode, align = scalar(coordinates_mode), bool(scalar(align_corners))

    def positions(n):  # output pixel centers in the coordinate mode
        i = torch.arange(n, dtype=torch.float64)
        if cmode == "unnormalized":
            return i
        if cmode == "normalized_minus_one_to_one":
            return i * 2 / (n - 1) - 1 if align else (2 * i + 1) / n - 1
        return i / (n - 1) if align else (i + 0.5) / n

    gy, gx = torch.meshgrid(positions(oh), positions(ow), indexing="ij")
    a = m[:, :, None, None]
    sx = a[:, 0] * gx + a[:, 1] * gy + a[:, 2]
    sy = a[:, 3] * gx + a[:, 4] * gy + a[:, 5]
    return resample(x, torch.stack([sx, sy], -1), sampling_mode, padding_mode, padding_value, cmode, align)
