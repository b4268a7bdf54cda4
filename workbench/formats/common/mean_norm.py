"""Runtimes that apply a per-channel (x - mean) * norm to 8-bit pixels themselves (ncnn, MNN): the runner
base they share, the note that tells an app the values, and the ONNX file both converters start from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ...preprocess import Preprocess, to_channels
from ..base import ExportSpec, Native, Runner, same_preprocess


def eight_bit(pixels: np.ndarray, pre: Preprocess) -> np.ndarray | None:
    """(N, H, W, C) uint8 images as a phone's camera hands them to the runtime: RGB, or the 8-bit luma for a
    grayscale model (PIL's conversion, as the reference makes it). None when the pixels are not whole
    numbers in 0-255 (the runtime's 8-bit entry point cannot take them)."""
    x = np.asarray(pixels, np.float32)
    if pre.grayscale:
        x = to_channels(x, pre)
    elif x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    if x.min() < 0 or x.max() > 255 or not np.array_equal(x, np.round(x)):
        return None
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1).astype(np.uint8))


class MeanNormRunner(Runner):
    """A runner whose runtime applies the preprocessing itself, with its own per-channel mean/norm.

    An artifact exported with preprocessing (artifact.preprocess) gets it from the runtime's image API
    (`_run_native`) and refuses a different one; one exported without takes the model's tensor, computed
    in numpy from the preprocessing given to `run` (the widget's live artifacts).
    """

    def run(self, pixels, preprocess=None):
        self.activate()
        inside = self.preprocess
        if inside is None:
            return self._run(self.inputs(pixels, preprocess))
        if preprocess is not None and not same_preprocess(preprocess, inside):
            raise WorkbenchError(
                f"{self.label} applies the preprocessing it was exported with ({inside.describe()}); export "
                f"again to use {preprocess.describe()}")
        images = eight_bit(pixels, inside)
        if images is None:  # not 8-bit pixels: the same arithmetic in numpy, then the tensor
            return self._run(self.inputs(pixels, None))
        return self._run_native(images, inside)

    def _run_native(self, images: np.ndarray, pre: Preprocess) -> dict[str, np.ndarray]:
        raise NotImplementedError


def onnx_for(spec: ExportSpec, folder: Path) -> Path:
    """The model alone (the runtime applies the preprocessing) as a self-contained ONNX file in `folder`:
    weights inline, since pnnx cannot read an external .onnx.data file."""
    from .. import get

    path = folder / "model.onnx"
    get("onnx").export(dataclasses.replace(spec, preprocess=None), path)
    return path


def mean_norm_note(runtime: str, spec: ExportSpec, call: str, norm: str = "norm") -> str | None:
    """What the app gives the runtime: the exact per-channel mean and norm of the exported preprocessing."""
    if spec.preprocess is None:
        return None
    mn = spec.preprocess.mean_norm()
    fmt = lambda v: "[" + ", ".join(f"{x + 0.0:.6g}" for x in v) + "]"  # noqa: E731  (+ 0.0: no "-0")
    order = "grayscale" if spec.preprocess.grayscale else ("BGR" if spec.preprocess.bgr else "RGB")
    return (f"{runtime} applies the preprocessing, exact per channel: {call}(mean={fmt(mn['mean'])}, "
            f"{norm}={fmt(mn['norm'])}) on 0-255 {order} pixels")


class MeanNorm(Native):
    """ncnn's `substract_mean_normalize` and MNN's `CVImageProcess`: (x - mean) * norm per channel, so every
    `Preprocess` (a per-channel scale and bias) is exact."""

    how = "mean/norm"

    def exact(self, pre: Preprocess) -> bool:
        return True
