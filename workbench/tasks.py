"""What a model's output means: classification, segmentation, image-to-image.

A task picks the output that matters, turns it into something to show (top-k labels, a mask, an image)
and adds the metrics that matter to users of that task (top-1 agreement, mIoU) to `compare`'s numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .errors import WorkbenchError


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
        y = np.clip(np.asarray(output, np.float64) * scale + bias, 0, 255) + 0.5
        return y.astype(np.uint8).transpose(0, 2, 3, 1)


TASKS = {"classification": Classification, "segmentation": Segmentation, "image": ImageToImage,
         "generic": Task}


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
    return TASKS[name](**kw) if name != "generic" else Task()


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
    return labels
