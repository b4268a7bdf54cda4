"""What a model's output means: classification, segmentation, image-to-image, detection (`tasks.detection`).

A task picks the output that matters, turns it into something to show (top-k labels, a mask, an image)
and adds the metrics that matter to users of that task (top-1 agreement, mIoU) to `compare`'s numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import WorkbenchError


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class Task:
    """Base: every output is compared numerically; subclasses add meaning."""

    name = "generic"
    output: str | None = None

    def main_output(self, outputs: Mapping[str, np.ndarray]) -> str:
        if self.output is not None:
            if self.output not in outputs:
                raise WorkbenchError(f"the task expects an output {self.output!r}; the model has {list(outputs)}")
            return self.output
        return next(iter(outputs))

    def metrics(self, reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
        """Task metrics for one output over a batch (the first axis is the image)."""
        return {}


@dataclass(frozen=True)
class Classification(Task):
    """Class scores (N, K). `softmax`: None tells logits from probabilities by looking at them."""

    labels: tuple[str, ...] | None = field(default=None, repr=False)
    top_k: int = 5
    softmax: bool | None = None
    output: str | None = None
    name = "classification"

    def is_logits(self, scores: np.ndarray) -> bool:
        if self.softmax is not None:
            return self.softmax
        s = np.asarray(scores, np.float64)
        in_range = s.min() >= 0 and s.max() <= 1
        return not (in_range and np.allclose(s.reshape(s.shape[0], -1).sum(axis=1), 1, atol=1e-3))

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, np.float64).reshape(len(scores), -1)
        return softmax(s) if self.is_logits(s) else s

    def top(self, scores: np.ndarray, k: int | None = None) -> list[list[tuple[str, float]]]:
        """Per image, the k best (label, probability) pairs."""
        probs = self.probabilities(scores)
        k = min(k or self.top_k, probs.shape[1])
        labels = self.labels or [str(i) for i in range(probs.shape[1])]
        if len(labels) != probs.shape[1]:
            raise WorkbenchError(
                f"{len(labels)} labels for {probs.shape[1]} classes; the labels file must have one line per class")
        order = np.argsort(-probs, axis=1)[:, :k]
        return [[(labels[j], float(p[j])) for j in row] for p, row in zip(probs, order)]

    def metrics(self, reference, candidate):
        r = np.asarray(reference).reshape(len(reference), -1)
        c = np.asarray(candidate).reshape(len(candidate), -1)
        if r.shape[1] < 2:
            return {}
        k = min(5, r.shape[1])
        ref_top1, cand_top1 = r.argmax(1), c.argmax(1)
        ref_topk = np.argsort(-r, axis=1)[:, :k]
        cand_topk = np.argsort(-c, axis=1)[:, :k]
        return {
            "top1_agreement": float((ref_top1 == cand_top1).mean()),
            # the reference's top-1 is among the candidate's top-k
            "top5_agreement": float(np.mean([a in row for a, row in zip(ref_top1, cand_topk)])),
            "topk_overlap": float(np.mean([len(set(a) & set(b)) / k for a, b in zip(ref_topk, cand_topk)])),
        }


@dataclass(frozen=True)
class Segmentation(Task):
    """Per-pixel class scores (N, K, H, W); the mask is their argmax over K."""

    labels: tuple[str, ...] | None = field(default=None, repr=False)
    output: str | None = None
    name = "segmentation"

    def main_output(self, outputs):
        if self.output is None and "out" in outputs:
            return "out"  # torchvision's segmentation models: {"out", "aux"}
        return super().main_output(outputs)

    @staticmethod
    def mask(scores: np.ndarray) -> np.ndarray:
        return np.asarray(scores).argmax(axis=1)

    def metrics(self, reference, candidate):
        if np.asarray(reference).ndim != 4:
            return {}
        a, b = self.mask(reference), self.mask(candidate)
        ious = []
        for k in np.union1d(np.unique(a), np.unique(b)):
            inter = np.logical_and(a == k, b == k).sum()
            union = np.logical_or(a == k, b == k).sum()
            ious.append(inter / union)
        return {"pixel_agreement": float((a == b).mean()), "miou": float(np.mean(ious))}


@dataclass(frozen=True)
class ImageToImage(Task):
    """An image output (N, C, H, W). `output_range` is the range that maps to 0-255: (0, 1) for sigmoid
    and most super-resolution nets, (-1, 1) for tanh generators, (0, 255) for pixel outputs."""

    output_range: tuple[float, float] = (0.0, 1.0)
    output: str | None = None
    name = "image"

    def __post_init__(self):
        values = tuple(float(v) for v in self.output_range)
        if len(values) != 2 or not all(map(math.isfinite, values)) or values[0] >= values[1]:
            raise WorkbenchError(f"output_range {tuple(self.output_range)} must be (low, high) with low < high, "
                                 "such as (0, 1), (-1, 1) or (0, 255)")
        object.__setattr__(self, "output_range", values)

    @property
    def deprocess(self) -> tuple[float, float]:
        """(scale, bias) with pixels = y * scale + bias: x255 for (0, 1), (y + 1) * 127.5 for (-1, 1)."""
        lo, hi = self.output_range
        scale = 255.0 / (hi - lo)
        return scale, -lo * scale

    def to_images(self, output: np.ndarray) -> np.ndarray:
        """(N, C, H, W) output -> uint8 (N, H, W, C) pixels."""
        scale, bias = self.deprocess
        y = np.asarray(output, np.float32) * np.float32(scale) + np.float32(bias)  # float32: within 1e-4 of a level
        np.clip(y, 0, 255, out=y)
        y += 0.5
        return y.astype(np.uint8).transpose(0, 2, 3, 1)


# The ranges image outputs are trained to: sigmoid and most super-resolution nets, tanh generators, pixels.
STANDARD_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))
# What a range still "fits": trained nets with no final activation overshoot a little, and their app clips.
# How far matters more than how often: the super-resolution notebook's net puts 0.8% of its values outside
# (0, 1) at 96x96 and 2.1% at 224x224, by at most 0.07; a tanh output declared (0, 1) reaches -0.5.
OVERSHOOT_SHARE = 0.25
OVERSHOOT_BY = 0.25  # of the range's width
# A model's final op and the range it gives (unambiguous ones only).
ACTIVATION_RANGES = {"tanh": (-1.0, 1.0), "sigmoid": (0.0, 1.0), "hardsigmoid": (0.0, 1.0)}


def _fmt_range(r) -> str:
    return f"({r[0]:g}, {r[1]:g})"


def range_fits(values: np.ndarray, output_range) -> tuple[bool, float]:
    """Whether `values` fit `output_range` (see OVERSHOOT_SHARE), and the share of values outside it."""
    lo, hi = output_range
    v = np.asarray(values, np.float64)
    margin = OVERSHOOT_BY * (hi - lo)
    if not np.isfinite(v).all():
        return False, 1.0
    outside = float(np.mean((v < lo) | (v > hi))) if v.size else 0.0
    return outside <= OVERSHOOT_SHARE and v.min() >= lo - margin and v.max() <= hi + margin, outside


def fitting_range(values: np.ndarray) -> tuple[float, float] | None:
    """The first of STANDARD_RANGES that `values` fit, or None."""
    return next((r for r in STANDARD_RANGES if range_fits(values, r)[0]), None)


def check_output_range(name: str, values: np.ndarray, output_range, why: str) -> str | None:
    """Check that image output `name`'s reference `values` lie in `output_range` (declared by `why`).

    Returns None when they do, a note when a few values overshoot (they are clipped to 0-255 pixels), and
    raises WorkbenchError naming the range that fits when they do not: a wrong range deprocesses both
    sides alike, so parity would pass on wrong pixels.
    """
    v = np.asarray(values, np.float64)
    fits, outside = range_fits(v, output_range)
    lo, hi = (float(v.min()), float(v.max())) if v.size and np.isfinite(v).all() else (math.nan, math.nan)
    if fits:
        if outside == 0:
            return None
        return (f"image output {name!r}: {outside:.1%} of its values (min {lo:.3g}, max {hi:.3g}) lie outside "
                f"{_fmt_range(output_range)} and are clipped to 0-255 pixels")
    head = (f"image output {name!r} of the PyTorch model ranges from {lo:.4g} to {hi:.4g} ({outside:.0%} of it "
            f"outside {_fmt_range(output_range)}, the range {why}); its pixels would be wrong on both sides "
            "and parity would still pass")
    better = fitting_range(v)
    if better is not None:
        raise WorkbenchError(f"{head}. {_fmt_range(better)} fits: declare it with --output-range "
                             f"{better[0]:g} {better[1]:g} (Python: ImageToImage(output_range={_fmt_range(better)}))")
    raise WorkbenchError(f"{head}. None of {', '.join(map(_fmt_range, STANDARD_RANGES))} fits: declare the range "
                         "the model was trained to give with --output-range LOW HIGH (Python: "
                         "ImageToImage(output_range=(LOW, HIGH))), or, if it is not an image, --task generic")


def output_items(out) -> list[tuple[str, object]]:
    """A model's outputs as (name, value) pairs, as the workbench names them: a dict's keys, `output_0`,
    `output_1`... for a tuple or list of several, `output` for one value."""
    if isinstance(out, Mapping):
        return list(out.items())
    if isinstance(out, (tuple, list)):
        return [("output", out[0])] if len(out) == 1 else [(f"output_{i}", v) for i, v in enumerate(out)]
    return [("output", out)]


def final_activations(module, x) -> dict[str, tuple[str, tuple[float, float] | None]]:
    """{output name: (the torch function that produced it, the range it gives or None)} for one forward of
    `module` on tensor `x`, outputs named as `formats.base.named_outputs` names them. An output that is not
    a function's direct result is left out. The range is read from tanh (-1, 1), sigmoid and hardsigmoid
    (0, 1), and clamp/hardtanh with both bounds given: only where the final op says it unambiguously.
    """
    import weakref

    import torch
    from torch.overrides import TorchFunctionMode

    made: dict[int, tuple[str, tuple | None, weakref.ref]] = {}

    class _Record(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            result = func(*args, **(kwargs or {}))
            if isinstance(result, torch.Tensor):
                name = getattr(func, "__name__", "").rstrip("_")
                made[id(result)] = (name, _op_range(name, args, kwargs or {}), weakref.ref(result))
            return result

    with torch.no_grad(), _Record():
        out = module(x)
    found = {}
    for name, value in output_items(out):
        entry = made.get(id(value))
        if entry is not None and entry[2]() is value:
            found[name] = entry[:2]
    return found


def _op_range(name: str, args, kwargs) -> tuple[float, float] | None:
    if name in ACTIVATION_RANGES:
        return ACTIVATION_RANGES[name]
    if name not in ("clamp", "clip", "hardtanh"):
        return None
    keys, defaults = (("min_val", "max_val"), (-1.0, 1.0)) if name == "hardtanh" else (("min", "max"), (None, None))
    bounds = [args[i + 1] if len(args) > i + 1 else kwargs.get(k, d) for i, (k, d) in enumerate(zip(keys, defaults))]
    if all(isinstance(b, (int, float)) for b in bounds) and bounds[0] < bounds[1]:
        return float(bounds[0]), float(bounds[1])
    return None


TASKS = {"classification": Classification, "segmentation": Segmentation, "image": ImageToImage,
         "generic": Task, "detection": None}  # detection: imported on first use (it imports compare)


def __getattr__(name):
    if name in ("Detection", "Detections"):
        from . import detection

        return getattr(detection, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_task(name: str | None, *, labels: Sequence[str] | None = None, outputs=None, **kw) -> Task:
    """A task by name, or guessed from the shape of the first output when `name` is None."""
    if name is None and outputs is not None:
        first = np.asarray(next(iter(outputs.values())))
        name = "classification" if first.ndim == 2 else "segmentation" if (
            first.ndim == 4 and first.shape[1] > 4) else "image" if first.ndim == 4 else "generic"
    if name not in TASKS:
        raise WorkbenchError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    if name in ("classification", "segmentation") and labels is not None:
        kw["labels"] = tuple(labels)
    if name == "detection":
        from .detection import Detection

        if labels is not None:
            kw["labels"] = tuple(labels)
        return Detection(**kw)
    return TASKS[name](**kw) if name != "generic" else Task()


def distinct_labels(labels: Sequence[str]) -> list[str]:
    """`labels` with repeated names told apart ("crane", then "crane (2)"): a Core ML classifier maps each label
    to one probability, so a repeated name collapses two classes and shifts every probability after them
    (ImageNet's raw class names repeat "crane" and "maillot")."""
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return out


def read_labels(path) -> list[str]:
    """Labels from a text file, one per line (blank lines at the end ignored)."""
    from pathlib import Path

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise WorkbenchError(f"cannot read labels file {path}: {exc}") from exc
    labels = [line.strip() for line in text.rstrip().splitlines()]
    if not labels or not any(labels):
        raise WorkbenchError(f"labels file {path} is empty; write one class name per line")
    first: dict[str, int] = {}
    for line, label in enumerate(labels, start=1):
        if label in first:
            raise WorkbenchError(
                f"labels file {path} names {label!r} twice (lines {first[label]} and {line}); a Core ML classifier "
                "maps each label to one probability, so each line must be unique: rename one")
        first[label] = line
    return labels
