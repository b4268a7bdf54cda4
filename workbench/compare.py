"""The one comparison: a converted model's outputs against the PyTorch reference, with numbers.

Per output and per image: max abs, mean abs, max rel, PSNR, cosine similarity, plus the task's own
metrics (top-1/top-5 agreement, pixel agreement and mIoU). Pass/fail is decided per output by a
`Tolerance` scaled to the reference's range, so a logit vector and a 0-255 image are judged alike (or to
its largest magnitude when that is larger: a near-constant output, such as a random-weight classifier's
probabilities, is not held to an empty range).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import WorkbenchError
from .tasks import Task


@dataclass(frozen=True)
class Tolerance:
    """Pass when ``max_abs <= atol + rel * scale`` and task metrics reach their minimum, where scale is
    the reference's range, or its largest magnitude when that is larger.

    `min_top1` applies to classification outputs and is the fraction of images whose top-1 agrees, judged
    over the batch; `min_miou` applies to each image of a segmentation output.
    """

    rel: float = 1e-4
    atol: float = 0.0
    min_top1: float | None = None
    min_miou: float | None = None

    def limit(self, ref_range: float) -> float:
        return self.atol + self.rel * ref_range


FP16_MAX = 65504.0  # fp16's largest finite number: a larger reference value becomes inf in an fp16 program

# Defaults per precision: fp32 runtimes agree to float rounding; fp16 keeps ~3 significant digits, and the
# error grows with depth, so 1% of the range is what fp16 parity means in practice.
DEFAULT_TOLERANCES = {"fp32": Tolerance(rel=1e-4), "fp16": Tolerance(rel=1e-2)}


@dataclass
class OutputMetrics:
    output: str
    image: str
    max_abs: float
    mean_abs: float
    max_rel: float
    psnr: float
    cosine: float
    range: float
    limit: float
    passed: bool
    task: dict[str, float] = field(default_factory=dict)


@dataclass
class Comparison:
    """One candidate (a format) against the reference: rows per output and image."""

    name: str
    rows: list[OutputMetrics]
    failures: list[str]
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and not self.failures

    def worst(self) -> dict[str, float]:
        """Worst case over images and outputs: the figures a summary reports."""
        if not self.rows:
            return {}
        out = {
            "max_abs": max(r.max_abs for r in self.rows),
            "mean_abs": max(r.mean_abs for r in self.rows),
            "max_rel": max(r.max_rel for r in self.rows),
            "psnr": min(r.psnr for r in self.rows),
            "cosine": min(r.cosine for r in self.rows),
        }
        for key in ("top1_agreement", "top5_agreement", "pixel_agreement", "miou"):
            values = [r.task[key] for r in self.rows if key in r.task]
            if values:
                out[key] = float(np.mean(values)) if key.endswith("agreement") else min(values)
        return out

    def to_dict(self) -> dict:
        return {"passed": self.passed, "error": self.error, "failures": self.failures, **self.worst(),
                "rows": [asdict(r) for r in self.rows]}


@dataclass(frozen=True, eq=False)
class ReferenceFigures:
    """What `compare` reads from one reference output alone, per image (rows of the (N, values) array).

    Computed once and passed back (`compare(..., reference_figures=)`) where one reference meets many
    candidates: the widget compares every live format with the same reference on every slider move."""

    range: np.ndarray  # max - min
    largest: np.ndarray  # max |value|
    squares: np.ndarray  # sum of value ** 2, in float64

    @classmethod
    def of(cls, ref: np.ndarray) -> ReferenceFigures:
        """The figures of `ref`, any shape whose first axis is the image."""
        ref = np.asarray(ref).reshape(len(ref), -1)
        with np.errstate(all="ignore"):
            rng = ref.max(axis=1).astype(np.float64) - ref.min(axis=1)
            largest = np.maximum(ref.max(axis=1), -ref.min(axis=1)).astype(np.float64)
        return cls(rng, largest, _rows(ref, ref))


def _rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row sums of a * b, accumulated in float64. einsum needs no temporaries and makes no BLAS call: np.dot
    and np.linalg.norm would, and OpenBLAS's idle threads busy-wait after a call; on a 2-core machine that
    spinning halved the speed of the runtime that ran next."""
    return np.einsum("ij,ij->i", a, b, dtype=np.float64)


def _per_image(ref: np.ndarray, cand: np.ndarray, figures: ReferenceFigures | None = None) -> dict[str, np.ndarray]:
    """The metrics of every image at once: ref and cand are (N, values), float32 or float64.

    Differences are taken in the outputs' own precision (float32 for every runtime here: a relative
    error of 6e-8 on a difference at most), and every sum accumulates in float64. Each pass over the
    outputs counts on a slider move, so: the reference's own figures come from `figures` when given, and
    the dot product ref . cand comes from |ref|^2 + |cand|^2 - |ref - cand|^2, exact where the terms do
    not cancel (the images where they do, far-apart outputs, take the dot product itself)."""
    figures = figures or ReferenceFigures.of(ref)
    rng, largest, rr = figures.range, figures.largest, figures.squares
    with np.errstate(all="ignore"):  # rows with non-finite values are overwritten below
        d = np.subtract(ref, cand)
        dd, cc = _rows(d, d), _rows(cand, cand)
        np.abs(d, out=d)
        max_abs, mean_abs = d.max(axis=1), np.einsum("ij->i", d, dtype=np.float64) / d.shape[1]
        mag = np.abs(ref)
        np.maximum(mag, (1e-6 * np.maximum(rng, 1e-12)).astype(mag.dtype)[:, None], out=mag)
        max_rel = np.divide(d, mag, out=d).max(axis=1)
        mse = dd / ref.shape[1]
        peak = np.where(rng > 0, rng, largest)
        peak = np.where(peak > 0, peak, 1.0)
        psnr = np.where(mse == 0, math.inf, 10 * np.log10(peak ** 2 / mse))
        dot = (rr + cc - dd) / 2
        cancels = np.abs(dot) < 1e-3 * (rr + cc)  # lost more than 3 of float64's 16 digits: take it directly
        if cancels.any():
            dot[cancels] = _rows(ref[cancels], cand[cancels])
        na, nb = np.sqrt(rr), np.sqrt(cc)
        cosine = np.where((na == 0) & (nb == 0), 1.0, np.where((na == 0) | (nb == 0), 0.0, dot / (na * nb)))
    # A non-finite value makes its row's sum of squares non-finite; a finite float32 row's cannot overflow.
    finite = np.isfinite(cc)
    if not finite.all():
        finite = np.isfinite(cand).all(axis=1)
    figures = {"max_abs": max_abs, "mean_abs": mean_abs, "max_rel": max_rel, "psnr": psnr, "cosine": cosine}
    for key, bad in (("max_abs", math.inf), ("mean_abs", math.inf), ("max_rel", math.inf), ("psnr", -math.inf),
                     ("cosine", 0.0)):
        figures[key] = np.where(finite, figures[key], bad)
    figures.update(range=rng, scale=np.maximum(rng, largest), finite=finite)
    return figures


def compare(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray], *,
            task: Task | None = None, tolerance: Tolerance | Mapping[str, Tolerance] | None = None,
            images: Sequence[str] | None = None, name: str = "candidate",
            reference_figures: Mapping[str, ReferenceFigures] | None = None) -> Comparison:
    """Compare `candidate`'s outputs with `reference`'s, per output and per image.

    Both map output names to arrays whose first axis is the image. `tolerance` is one Tolerance or a
    mapping from output name to Tolerance where "" is the default. Outputs are matched by name, or by
    position when the names differ (converters rename outputs). `reference_figures`: per output,
    `ReferenceFigures.of` its reference, for a reference compared many times. Raises WorkbenchError when an
    output is missing or shapes differ.
    """
    task = task or Task()
    tols = tolerance if isinstance(tolerance, Mapping) else {"": tolerance or DEFAULT_TOLERANCES["fp32"]}
    pairs = _match(reference, candidate, name)
    rows, failures = [], []
    for out_name, ref, cand in pairs:
        tol = tols.get(out_name, tols.get("", DEFAULT_TOLERANCES["fp32"]))
        ref, cand = np.asarray(ref), np.asarray(cand)
        dtype = np.result_type(ref, cand, np.float32)  # float32 outputs stay float32 (see _per_image)
        ref, cand = ref.astype(dtype, copy=False), cand.astype(dtype, copy=False)
        if ref.shape != cand.shape:
            if ref.size == cand.size and ref.shape[0] == cand.shape[0]:
                cand = cand.reshape(ref.shape)  # (N, K) vs (N, K, 1, 1): same values, other layout
            else:
                raise WorkbenchError(
                    f"output {out_name!r}: {name} gives shape {cand.shape}, the reference {ref.shape}")
        if images is not None and len(images) != ref.shape[0]:
            raise WorkbenchError(f"{len(images)} image names for {ref.shape[0]} images in output {out_name!r}; "
                                 "give one name per image")
        main = out_name == task.main_output({n: None for n, _, _ in pairs})
        n = ref.shape[0]
        if n == 0:
            continue
        if ref[0].size == 0:
            raise WorkbenchError(f"output {out_name!r} is empty: shape {ref.shape}")
        figures = _per_image(ref.reshape(n, -1), cand.reshape(n, -1), (reference_figures or {}).get(out_name))
        for i in range(n):
            f = {key: v[i].item() for key, v in figures.items()}
            metrics = task.metrics(ref[i:i + 1], cand[i:i + 1]) if main else {}
            limit = tol.limit(f["scale"])
            passed = f["finite"] and f["max_abs"] <= limit
            why = []
            if not f["finite"]:
                peak = float(np.abs(ref[i]).max())
                why.append(f"non-finite values: fp16 overflow (the reference reaches {peak:.3g}, beyond fp16's "
                           f"{FP16_MAX:g}): run at fp32 (Core ML: --precision fp32)" if peak > FP16_MAX
                           else "non-finite values")
            elif f["max_abs"] > limit:
                why.append(f"max abs {f['max_abs']:.3g} > {limit:.3g} (atol {tol.atol:g} + rel {tol.rel:g} x scale "
                           f"{f['scale']:.3g})")
            if tol.min_miou is not None and metrics.get("miou", 1) < tol.min_miou:
                passed = False
                why.append(f"mIoU {metrics['miou']:.3f} < {tol.min_miou:.3f}")
            image = images[i] if images is not None else str(i)
            if why:
                failures.append(f"{name} output {out_name!r} on {image}: " + "; ".join(why))
            rows.append(OutputMetrics(
                output=out_name, image=image, max_abs=f["max_abs"], mean_abs=f["mean_abs"], max_rel=f["max_rel"],
                psnr=f["psnr"], cosine=f["cosine"], range=f["range"], limit=limit, passed=passed, task=metrics))
        # top-1 agreement is a fraction of images: one image's agreement is only 0 or 1
        out_rows = rows[len(rows) - ref.shape[0]:]
        top1 = [r.task["top1_agreement"] for r in out_rows if "top1_agreement" in r.task]
        if tol.min_top1 is not None and top1 and float(np.mean(top1)) < tol.min_top1:
            differ = [r for r in out_rows if r.task.get("top1_agreement", 1) < 1]
            for r in differ:
                r.passed = False
            failures.append(f"{name} output {out_name!r}: top-1 agreement {np.mean(top1):.0%} < {tol.min_top1:.0%} "
                            f"over {len(top1)} images (differs on {', '.join(r.image for r in differ)})")
    return Comparison(name=name, rows=rows, failures=failures)


def _match(reference, candidate, name):
    ref_names, cand_names = list(reference), list(candidate)
    if set(ref_names) <= set(cand_names):
        return [(n, reference[n], candidate[n]) for n in ref_names]
    if len(ref_names) == len(cand_names):
        return [(n, reference[n], candidate[c]) for n, c in zip(ref_names, cand_names)]
    raise WorkbenchError(f"{name} has outputs {cand_names}; the reference has {ref_names}")


def failed(name: str, error: str) -> Comparison:
    """A comparison for a format that could not be produced or run."""
    return Comparison(name=name, rows=[], failures=[], error=error)
