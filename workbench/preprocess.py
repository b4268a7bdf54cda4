"""Preprocessing as one frozen value: pixels in 0-255 become the tensor the model was trained on.

Core ML's `ImageType` computes ``y = x * scale + bias`` with ONE scalar scale and a per-channel bias.
`Preprocess` keeps a per-channel scale, so a torchvision ``Normalize(mean, std)`` with a per-channel std is
represented exactly, and `Preprocess.imagetype_fit` says whether Core ML can express it and, when not,
the worst-case error of the best scalar approximation.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .errors import WorkbenchError

# ITU-R 601 luma, the weights of PIL's "L" mode and the Y of its YCbCr (the super-resolution seed's input).
LUMA = (0.299, 0.587, 0.114)
# Above this, the scalar approximation is "exact" (float32 has ~7 digits; Core ML stores scale as float).
_EXACT_RTOL = 1e-6

Fit = Literal["crop", "letterbox", "stretch"]
Interpolation = Literal["bilinear", "bicubic"]


def _channels(values, n: int, what: str) -> tuple[float, ...]:
    if np.isscalar(values):
        values = [values] * n
    values = tuple(float(v) for v in values)
    if len(values) == 1 and n > 1:
        values = values * n
    if len(values) != n:
        raise WorkbenchError(f"{what} has {len(values)} values but the input has {n} channel(s); give 1 or {n}")
    return values


@dataclass(frozen=True)
class ImageTypeFit:
    """How Core ML's ImageType (one scalar scale, per-channel bias) expresses a `Preprocess`.

    `max_error` is the worst case, over every pixel value 0-255 and channel, of the difference between the
    approximated and the exact normalized value, in normalized units (0 when every channel has the same
    scale; below float32 precision when `exact`).
    """

    scale: float
    bias: tuple[float, ...]
    color_layout: str  # "RGB", "BGR" or "G" (grayscale)
    exact: bool
    max_error: float

    def describe(self) -> str:
        if self.exact:
            return f"exact: ImageType(scale={self.scale:.6g}, bias={_fmt(self.bias)})"
        return (
            f"not exact: the best scalar scale {self.scale:.6g} is off by up to {self.max_error:.4f} "
            "(normalized units) on some pixel values; bake the normalization into the model instead"
        )


def _fmt(values: Sequence[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


@dataclass(frozen=True)
class Preprocess:
    """Maps pixels x in 0-255 to ``x * scale[c] + bias[c]`` per channel, in the model's channel order.

    `bgr`: the model takes BGR channel order. `grayscale`: the model takes one luma channel (the Y of
    YCbCr). `mean`/`std` record the ``Normalize`` this came from (0-1 units), when it came from one.
    `size` (height, width) and `fit` say how images are brought to the input size; `resize` is the
    shorter side to resize to before a center crop (torchvision's 256 -> 224), when it differs;
    `interpolation` is the resampling filter of that resize (timm's models mostly say bicubic).
    """

    scale: tuple[float, ...]
    bias: tuple[float, ...]
    bgr: bool = False
    grayscale: bool = False
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    size: tuple[int, int] | None = None
    resize: int | None = None
    fit: Fit = "crop"
    name: str = "custom"
    interpolation: Interpolation = "bilinear"

    def __post_init__(self):
        n = self.channels
        object.__setattr__(self, "scale", _channels(self.scale, n, "scale"))
        object.__setattr__(self, "bias", _channels(self.bias, n, "bias"))
        for what, values in (("scale", self.scale), ("bias", self.bias)):
            if not all(math.isfinite(v) for v in values):
                raise WorkbenchError(f"preprocessing {what} {_fmt(values)} is not finite; use finite numbers")
        if any(v == 0 for v in self.scale):
            raise WorkbenchError(
                f"preprocessing scale {_fmt(self.scale)} contains 0, which maps every pixel to the bias; "
                "use a non-zero scale such as 1/255"
            )
        if self.size is not None:
            size = tuple(int(v) for v in self.size)
            if len(size) != 2 or min(size) < 1:
                raise WorkbenchError(f"input size {self.size} must be (height, width) with positive values")
            object.__setattr__(self, "size", size)
        if self.fit not in ("crop", "letterbox", "stretch"):
            raise WorkbenchError(f"fit {self.fit!r} is not one of 'crop', 'letterbox', 'stretch'")
        if self.interpolation not in ("bilinear", "bicubic"):
            raise WorkbenchError(f"interpolation {self.interpolation!r} is not one of 'bilinear', 'bicubic'")
        if self.resize is not None and int(self.resize) < 1:
            raise WorkbenchError(f"resize {self.resize} must be a positive number of pixels (the shorter side)")

    @property
    def channels(self) -> int:
        return 1 if self.grayscale else 3

    # -- constructors ------------------------------------------------------------------------------
    @classmethod
    def from_normalize(cls, mean, std, *, grayscale: bool = False, bgr: bool = False, **kw) -> Preprocess:
        """The preprocessing of ``ToTensor()`` then ``Normalize(mean, std)``: x/255 then (x - mean)/std."""
        n = 1 if grayscale else 3
        mean, std = _channels(mean, n, "mean"), _channels(std, n, "std")
        if any(s == 0 or not math.isfinite(s) for s in std):
            raise WorkbenchError(f"std {_fmt(std)} must be finite and non-zero (pixels are divided by it); use "
                                 "the std of the model's training Normalize, such as 0.5 or ImageNet's")
        kw.setdefault("name", "normalize")
        return cls(
            scale=tuple(1.0 / (255.0 * s) for s in std),
            bias=tuple(-m / s for m, s in zip(mean, std)),
            grayscale=grayscale, bgr=bgr, mean=mean, std=std, **kw,
        )

    @classmethod
    def from_timm(cls, cfg) -> Preprocess:
        """The eval preprocessing of a timm model's `pretrained_cfg` (a dict or timm's PretrainedCfg): mean, std,
        input size, interpolation, and the resize before the center crop, int(size / crop_pct) as timm does.
        A crop_mode other than "center" ("squash": resize to the size) is kept as fit="stretch"."""
        get = cfg.get if isinstance(cfg, dict) else lambda key, default=None: getattr(cfg, key, default)
        channels, h, w = tuple(get("input_size") or (3, 224, 224))
        crop_pct = get("crop_pct") or 1.0
        if not 0 < crop_pct <= 1:
            raise WorkbenchError(f"timm crop_pct {crop_pct} must be in (0, 1]")
        interpolation = get("interpolation") or "bilinear"
        if interpolation not in ("bilinear", "bicubic"):
            interpolation = "bicubic" if interpolation in ("random", "lanczos") else "bilinear"
        fit = "stretch" if get("crop_mode") == "squash" else "crop"
        resize = int(min(h, w) / crop_pct) if fit == "crop" else None
        architecture = get("architecture") or "timm"
        tag = get("tag")
        return cls.from_normalize(get("mean") or IMAGENET_MEAN, get("std") or IMAGENET_STD, grayscale=channels == 1,
                                  size=(h, w), resize=resize if resize != min(h, w) else None, fit=fit,
                                  interpolation=interpolation,
                                  name=f"timm {architecture}{'.' + tag if tag else ''} pretrained_cfg")

    @classmethod
    def preset(cls, name: str, **kw) -> Preprocess:
        """One of `PRESETS` by name; keyword arguments (size, fit, ...) are passed through."""
        try:
            make = PRESETS[name]
        except KeyError:
            raise WorkbenchError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
        return make().replace(**kw) if kw else make()

    def replace(self, **changes) -> Preprocess:
        """A copy with `changes`; a changed scale or bias no longer claims to come from mean/std."""
        if ({"scale", "bias"} & changes.keys()) and not {"mean", "std"} & changes.keys():
            changes.setdefault("mean", None)
            changes.setdefault("std", None)
            changes.setdefault("name", "custom")
        return dataclasses.replace(self, **changes)

    # -- applying ------------------------------------------------------------------------------------
    def apply(self, pixels: np.ndarray) -> np.ndarray:
        """Pixels float (N, 3, H, W) RGB in 0-255 -> the model input (N, C, H, W) float32."""
        x = np.asarray(pixels, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise WorkbenchError(f"pixels must be (N, 3, H, W) RGB or (N, 1, H, W); got shape {x.shape}")
        x = to_channels(x, self)
        scale = np.asarray(self.scale, np.float32).reshape(1, -1, 1, 1)
        bias = np.asarray(self.bias, np.float32).reshape(1, -1, 1, 1)
        return x * scale + bias

    def as_module(self):
        """A torch module computing ``x * scale + bias`` per channel: the normalization baked into a graph.

        It takes pixels already in the model's channel order (what Core ML's ImageType hands the model).
        """
        from ._torch import Affine

        return Affine(self.scale, self.bias)

    # -- translations ----------------------------------------------------------------------------------
    def imagetype_fit(self) -> ImageTypeFit:
        """The Core ML ImageType parameters that come closest, with an exactness report.

        With per-channel scales s_c, the scalar s = (min + max)/2 and biases shifted by (s_c - s) * 127.5
        center the error on the pixel range, which makes the worst case |s - s_c| * 127.5 (the least any
        scalar can do).
        """
        layout = "G" if self.grayscale else ("BGR" if self.bgr else "RGB")
        lo, hi = min(self.scale), max(self.scale)
        s = (lo + hi) / 2  # equal scales give back that scale and the biases unchanged, bit for bit
        bias = tuple(b + (sc - s) * 127.5 for sc, b in zip(self.scale, self.bias))
        # reported even when "exact" (scales equal to float32 precision), so max_error is always the worst case
        err = max(abs(s - sc) * 127.5 for sc in self.scale)
        exact = hi - lo <= _EXACT_RTOL * max(abs(lo), abs(hi))
        return ImageTypeFit(s, bias, layout, exact, err)

    def with_imagetype(self) -> Preprocess:
        """The preprocessing Core ML's ImageType would actually apply (itself when exact).

        The approximation no longer claims the mean/std it came from: they do not describe it.
        """
        fit = self.imagetype_fit()
        if fit.exact:
            return self
        return self.replace(scale=(fit.scale,) * self.channels, bias=fit.bias,
                            name=f"{self.name} (scalar approximation)")

    def mean_norm(self) -> dict[str, tuple[float, ...]]:
        """ncnn's ``substract_mean_normalize`` / MNN's ``mean``/``normal``: y = (x - mean) * norm."""
        return {"mean": tuple(-b / s for s, b in zip(self.scale, self.bias)), "norm": self.scale}

    def describe(self) -> str:
        if self.mean is not None and self.std is not None:
            text = f"Normalize(mean={_fmt(self.mean)}, std={_fmt(self.std)}) after x/255"
        else:
            text = f"x * {_fmt(self.scale)} + {_fmt(self.bias)}"
        order = "grayscale (luma)" if self.grayscale else ("BGR" if self.bgr else "RGB")
        return f"{self.name}: {text}, {order}"

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocess:
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise WorkbenchError(f"unknown preprocessing fields {sorted(unknown)}; known: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def to_channels(pixels: np.ndarray, pre: Preprocess) -> np.ndarray:
    """RGB pixels (N, 3, H, W) in the channel order and count `pre` expects (BGR flip, luma)."""
    if pre.grayscale:
        if pixels.shape[1] == 1:
            return pixels
        # 8-bit luma, as a grayscale image reaches the model: PIL's "L" conversion, in its fixed point
        w = np.asarray([19595, 38470, 7471], np.float64).reshape(1, 3, 1, 1)  # LUMA x 2**16
        return np.floor(((pixels * w).sum(axis=1, keepdims=True) + 32768) / 65536).astype(np.float32)
    if pixels.shape[1] == 1:
        pixels = np.repeat(pixels, 3, axis=1)
    return pixels[:, ::-1] if pre.bgr else pixels


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe-style VGG/ResNet: BGR, per-channel mean subtracted from 0-255 pixels, no scaling.
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)

PRESETS = {
    "unit": lambda: Preprocess(scale=1 / 255, bias=0.0, name="unit"),
    "half": lambda: Preprocess.from_normalize(0.5, 0.5, name="half"),
    "imagenet": lambda: Preprocess.from_normalize(IMAGENET_MEAN, IMAGENET_STD, name="imagenet"),
    "caffe": lambda: Preprocess(scale=1.0, bias=tuple(-m for m in CAFFE_MEAN_BGR), bgr=True, name="caffe"),
    "raw": lambda: Preprocess(scale=1.0, bias=0.0, name="raw"),
    "gray": lambda: Preprocess(scale=1 / 255, bias=0.0, grayscale=True, name="gray"),
    "gray_raw": lambda: Preprocess(scale=1.0, bias=0.0, grayscale=True, name="gray_raw"),
}
