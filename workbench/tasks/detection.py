"""Object detection: raw detector heads decoded into boxes, the same NMS on both sides, box-level agreement.

PASS for a detector means the same objects found: PyTorch's detections (after the score threshold and NMS)
are the ground truth, and a format passes when, on every image, each of them is found by the format (IoU >= 0.5,
same class) and the format finds nothing else. The raw head tensor's max abs is still reported, but does not
decide. A box whose score lies within `score_margin` (a fraction of the threshold) below the threshold on the
other side is not counted as lost or extra: rounding moves a borderline box across any threshold.

Decoders (`Detection.decoder`, read from the output shapes when None):
- "yolov8": Ultralytics YOLOv8/11 (1, 4 + C, N): cx, cy, w, h in input pixels, then C class scores.
- "yolov5": YOLOv5-style (1, N, 5 + C): cx, cy, w, h, objectness, C class scores (score = obj x class).
- "ssd": SSD/RetinaNet-style raw heads: box deltas (1, N, 4) and class logits (1, N, C), decoded with
  `anchors` (N, 4: cx, cy, w, h in pixels) and `variances` as torchvision's SSD does.
- "boxes": plain (1, N, 4) x1, y1, x2, y2 boxes, (1, N) or (1, N, C) scores, optional (1, N) classes.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..compare import Comparison
from ..errors import WorkbenchError
from . import Task

DECODERS = ("yolov8", "yolov5", "ssd", "boxes")
IOU_MATCH = 0.5  # a format's box "finds" PyTorch's at this IoU
COCO_IOUS = np.round(np.arange(0.5, 0.96, 0.05), 2)  # mAP@0.5:0.95


@dataclass(frozen=True)
class Detections:
    """One image's detections: boxes (K, 4) x1, y1, x2, y2 in input pixels, scores (K,), classes (K,) int."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    def above(self, threshold: float) -> Detections:
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.classes[keep])


def padded(found: Sequence[Detections], limit: int = 300) -> dict[str, np.ndarray]:
    """Per-image detections as fixed-size arrays, the plain "boxes" decoder's outputs: `boxes` (N, limit, 4),
    `scores` (N, limit), `classes` (N, limit), best first; rows past an image's detections are zero (a score
    of 0 is below any threshold)."""
    n = len(found)
    boxes, scores, classes = np.zeros((n, limit, 4), np.float32), np.zeros((n, limit), np.float32), \
        np.zeros((n, limit), np.float32)
    for i, d in enumerate(found):
        order = np.argsort(-d.scores, kind="stable")[:limit]
        k = len(order)
        boxes[i, :k], scores[i, :k], classes[i, :k] = d.boxes[order], d.scores[order], d.classes[order]
    return {"boxes": boxes, "scores": scores, "classes": classes}


@dataclass(frozen=True)
class Detection(Task):
    """Detector outputs decoded into boxes (see the module docstring for the decoders and what PASS means).

    score_threshold: boxes scoring below it are dropped, on both sides (None: 0.25, or, when PyTorch finds
    nothing at 0.25 on any image, as random weights do, the 10th best score, with a note). iou_threshold:
    NMS's (class-aware, torchvision.ops.batched_nms). outputs: for two- or three-output decoders, the output
    names of boxes, scores[, classes] (default: the model's first outputs in order).
    """

    labels: tuple[str, ...] | None = field(default=None, repr=False)
    decoder: str | None = None
    score_threshold: float | None = None
    iou_threshold: float = 0.45
    score_margin: float = 0.05
    max_detections: int = 300
    anchors: np.ndarray | None = field(default=None, repr=False, compare=False)
    variances: tuple[float, float] = (0.1, 0.2)
    outputs: tuple[str, ...] | None = None
    output: str | None = None
    name = "detection"

    def __post_init__(self):
        if self.decoder is not None and self.decoder not in DECODERS:
            raise WorkbenchError(f"unknown detection decoder {self.decoder!r}; choose one of {', '.join(DECODERS)}")
        if not 0 < self.iou_threshold <= 1:
            raise WorkbenchError(f"iou_threshold {self.iou_threshold} must be in (0, 1]")
        if self.score_threshold is not None and not 0 <= self.score_threshold < 1:
            raise WorkbenchError(f"score_threshold {self.score_threshold} must be in [0, 1)")

    @property
    def threshold(self) -> float:
        return 0.25 if self.score_threshold is None else self.score_threshold

    # -- decoding ------------------------------------------------------------------------------------
    def _inputs(self, outputs: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        names = list(self.outputs or ())
        if names:
            missing = [n for n in names if n not in outputs]
            if missing:
                raise WorkbenchError(f"detection output {missing[0]!r} is not among the outputs {list(outputs)}")
            return [np.asarray(outputs[n], np.float32) for n in names]
        main = self.main_output(outputs)
        return [np.asarray(outputs[main], np.float32)] + [np.asarray(v, np.float32) for k, v in outputs.items()
                                                         if k != main]

    def decoder_for(self, outputs: Mapping[str, np.ndarray]) -> str:
        """The decoder named, or the one the output shapes say."""
        if self.decoder is not None:
            return self.decoder
        arrays = self._inputs(outputs)
        first = arrays[0]
        if first.ndim == 3 and first.shape[-1] == 4 and len(arrays) >= 2:
            return "ssd" if self.anchors is not None else "boxes"
        if first.ndim == 3:
            if first.shape[1] < first.shape[2] and first.shape[1] > 4:
                return "yolov8"
            if first.shape[2] > 5:
                return "yolov5"
        raise WorkbenchError(
            f"cannot tell how to decode a detector output of shape {first.shape}: Detection(decoder=...) takes "
            f"{', '.join(DECODERS)} (YOLOv8/11 (1, 4+C, N), YOLOv5 (1, N, 5+C), SSD boxes+scores with anchors, "
            "plain boxes+scores)")

    def candidates(self, outputs: Mapping[str, np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per image, every box before threshold and NMS: (boxes (N, 4) xyxy, scores (N, C))."""
        kind = self.decoder_for(outputs)
        arrays = self._inputs(outputs)
        out = []
        for i in range(len(arrays[0])):
            a = [x[i] for x in arrays]
            if kind == "yolov8":
                p = a[0].T  # (N, 4 + C)
                out.append((_xyxy(p[:, :4]), p[:, 4:]))
            elif kind == "yolov5":
                p = a[0]
                out.append((_xyxy(p[:, :4]), p[:, 5:] * p[:, 4:5]))
            elif kind == "ssd":
                if self.anchors is None or len(a) < 2:
                    raise WorkbenchError("the ssd decoder needs box deltas and class logits outputs and "
                                         "Detection(anchors=(N, 4) cx, cy, w, h)")
                anchors = np.asarray(self.anchors, np.float32).reshape(-1, 4)
                d, v = a[0].reshape(-1, 4), self.variances
                cx = anchors[:, 0] + d[:, 0] * v[0] * anchors[:, 2]
                cy = anchors[:, 1] + d[:, 1] * v[0] * anchors[:, 3]
                w = anchors[:, 2] * np.exp(np.minimum(d[:, 2] * v[1], math.log(1000 / 16)))
                h = anchors[:, 3] * np.exp(np.minimum(d[:, 3] * v[1], math.log(1000 / 16)))
                logits = a[1].reshape(len(d), -1)
                scores = _softmax(logits)[:, 1:] if logits.shape[1] > 1 else 1 / (1 + np.exp(-logits))
                out.append((_xyxy(np.stack([cx, cy, w, h], 1)), scores))
            else:  # boxes, scores[, classes]
                boxes = a[0].reshape(-1, 4)
                scores = a[1].reshape(len(boxes), -1) if len(a) > 1 else np.ones((len(boxes), 1), np.float32)
                if len(a) > 2 and scores.shape[1] == 1:
                    classes = a[2].reshape(-1).astype(np.int64)
                    full = np.zeros((len(boxes), max(int(classes.max(initial=0)) + 1, 1)), np.float32)
                    full[np.arange(len(boxes)), np.clip(classes, 0, None)] = scores[:, 0]
                    scores = full
                out.append((boxes, scores))
        return out

    def detect(self, outputs: Mapping[str, np.ndarray], threshold: float | None = None) -> list[Detections]:
        """Per image, the detections at `threshold` (default: the task's) after class-aware NMS."""
        import torch
        from torchvision.ops import batched_nms

        t = self.threshold if threshold is None else threshold
        found = []
        for boxes, scores in self.candidates(outputs):
            cls = scores.argmax(1) if scores.size else np.zeros(0, np.int64)
            best = scores[np.arange(len(scores)), cls] if scores.size else np.zeros(0, np.float32)
            keep = np.flatnonzero(best >= t)
            b, s, c = (torch.from_numpy(np.ascontiguousarray(x[keep])) for x in (boxes, best, cls))
            kept = batched_nms(b.float(), s.float(), c, self.iou_threshold)[:self.max_detections].numpy()
            found.append(Detections(boxes[keep][kept].astype(np.float32), best[keep][kept].astype(np.float32),
                                    cls[keep][kept].astype(np.int64)))
        return found

    def resolved(self, outputs: Mapping[str, np.ndarray]) -> tuple[Detection, str | None]:
        """This task with its score threshold fixed on PyTorch's `outputs`, and a note when it was not 0.25."""
        if self.score_threshold is not None:
            return self, None
        if any(len(d) for d in self.detect(outputs, 0.25)):
            return dataclasses.replace(self, score_threshold=0.25), None
        tenth = [np.sort(s.max(1))[::-1][:10][-1] for _, s in self.candidates(outputs) if len(s)]
        t = float(np.median(tenth)) if tenth else 0.25
        note = (f"detection: PyTorch finds no box scoring 0.25 or more (random weights?): the score threshold is "
                f"{t:.3g} (the 10th best score, median over images), the same for every format; choose one with "
                "--score-threshold")
        return dataclasses.replace(self, score_threshold=t), note

    # -- agreement -----------------------------------------------------------------------------------
    def agreement(self, reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray]) -> list[dict]:
        """Per image, how the candidate's detections agree with PyTorch's (see `match`)."""
        t = self.threshold
        low = t * (1 - self.score_margin)
        ref_low, cand_low = self.detect(reference, low), self.detect(candidate, low)
        return [match(r.above(t), c.above(t), r, c) for r, c in zip(ref_low, cand_low)]

    def label(self, k: int) -> str:
        return self.labels[k] if self.labels and 0 <= k < len(self.labels) else str(k)


def match(ref: Detections, cand: Detections, ref_low: Detections | None = None,
          cand_low: Detections | None = None) -> dict:
    """Box-level agreement of one image: PyTorch's `ref` detections as ground truth, the format's `cand`.

    ref_low/cand_low: the same sides at a slightly lower threshold; a box of one side found by the other
    only there is borderline, neither lost nor extra. Returns precision and recall at IoU 0.5 (same class),
    map (mAP@0.5:0.95 of cand against ref, both sides with their borderline boxes, so that a box found just
    under the threshold is no miss there either), class_flips (boxes found with another class), box_diff
    (largest coordinate difference of matched boxes, pixels), score_diff, lost and extra (indices into ref and
    cand), and the box counts."""
    ref_low = ref if ref_low is None else ref_low
    cand_low = cand if cand_low is None else cand_low
    found = _greedy(ref, cand_low, IOU_MATCH, same_class=True)  # ref index -> cand_low index
    lost = [i for i in range(len(ref)) if i not in found]
    back = _greedy(cand, ref_low, IOU_MATCH, same_class=True)
    extra = [j for j in range(len(cand)) if j not in back]
    any_class = _greedy(ref, cand_low, IOU_MATCH, same_class=False)
    flips = sum(1 for i, j in any_class.items() if ref.classes[i] != cand_low.classes[j])
    box_diff = max((float(np.abs(ref.boxes[i] - cand_low.boxes[j]).max()) for i, j in any_class.items()), default=0.0)
    score_diff = max((abs(float(ref.scores[i] - cand_low.scores[j])) for i, j in any_class.items()), default=0.0)
    return {"precision": 1 - len(extra) / len(cand) if len(cand) else 1.0,
            "recall": 1 - len(lost) / len(ref) if len(ref) else 1.0,
            "map": mean_ap(ref_low, cand_low), "class_flips": flips, "box_diff": box_diff, "score_diff": score_diff,
            "lost": lost, "extra": extra, "lost_classes": [int(ref.classes[i]) for i in lost],
            "reference_boxes": len(ref), "boxes": len(cand), "borderline": len(cand_low) - len(cand)}


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of a (K, 4) with every box of b (M, 4), x1 y1 x2 y2."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(np.clip(x[:, 2:] - x[:, :2], 0, None), axis=1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _greedy(gt: Detections, pred: Detections, threshold: float, same_class: bool) -> dict[int, int]:
    """Predictions in score order each take the best unmatched ground-truth box at IoU >= threshold:
    {gt index: pred index}."""
    if not len(gt) or not len(pred):
        return {}
    overlaps = iou(pred.boxes, gt.boxes)
    taken: dict[int, int] = {}
    for j in np.argsort(-pred.scores, kind="stable"):
        row = overlaps[j].copy()
        if same_class:
            row[gt.classes != pred.classes[j]] = -1
        row[list(taken)] = -1
        i = int(row.argmax())
        if row[i] >= threshold:
            taken[i] = int(j)
    return taken


def mean_ap(gt: Detections, pred: Detections) -> float:
    """COCO-style mAP@0.5:0.95 (101-point interpolation) of `pred` against ground truth `gt`; 1.0 when both
    are empty, 0.0 when only one is."""
    if not len(gt):
        return 1.0 if not len(pred) else 0.0
    aps = []
    for t in COCO_IOUS:
        for k in np.unique(gt.classes):
            g = Detections(gt.boxes[gt.classes == k], gt.scores[gt.classes == k], gt.classes[gt.classes == k])
            sel = pred.classes == k
            p = Detections(pred.boxes[sel], pred.scores[sel], pred.classes[sel])
            if not len(p):
                aps.append(0.0)
                continue
            matched = _greedy(g, p, float(t), same_class=True)
            hits = np.zeros(len(p))
            hits[list(matched.values())] = 1
            order = np.argsort(-p.scores, kind="stable")
            tp = np.cumsum(hits[order])
            recall = tp / len(g)
            precision = tp / np.arange(1, len(p) + 1)
            precision = np.maximum.accumulate(precision[::-1])[::-1]
            points = np.linspace(0, 1, 101)
            idx = np.searchsorted(recall, points, side="left")
            aps.append(float(np.mean([precision[i] if i < len(precision) else 0.0 for i in idx])))
    return float(np.mean(aps))


def summary(per_image: Sequence[dict]) -> dict[str, float]:
    """The figures of a check over all images: precision and recall pooled over the boxes, the worst
    image's mAP, the class flips in all, the largest box and score differences."""
    ref = sum(d["reference_boxes"] for d in per_image)
    cand = sum(d["boxes"] for d in per_image)
    lost = sum(len(d["lost"]) for d in per_image)
    extra = sum(len(d["extra"]) for d in per_image)
    return {"det_precision": 1 - extra / cand if cand else 1.0, "det_recall": 1 - lost / ref if ref else 1.0,
            "det_map": min((d["map"] for d in per_image), default=1.0),
            "det_class_flips": float(sum(d["class_flips"] for d in per_image)),
            "det_box_diff": max((d["box_diff"] for d in per_image), default=0.0),
            "det_score_diff": max((d["score_diff"] for d in per_image), default=0.0),
            "det_lost": float(lost), "det_extra": float(extra), "det_reference_boxes": float(ref),
            "det_boxes": float(cand), "det_borderline": float(sum(d.get("borderline", 0) for d in per_image))}


def judge(task: Detection, expected: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray], comparison,
          images: Sequence[str]):
    """`comparison` (of the raw outputs) judged as a detector: a `DetectionComparison` whose failures are the
    images where the format does not find the same objects as PyTorch (a raw tensor's max abs beyond the
    tolerance is kept as a note, not a failure)."""
    expected = {k: v for k, v in expected.items()}
    # outputs are matched by name, or by position when a converter renamed them (as `compare` does)
    if not set(expected) <= set(outputs) and len(outputs) == len(expected):
        outputs = dict(zip(expected, outputs.values()))
    per_image = task.agreement(expected, outputs)
    failures = [f for f in comparison.failures if not f.startswith(f"{comparison.name} output ")]
    raw = [f for f in comparison.failures if f not in failures]
    for name, d in zip(images, per_image):
        why = []
        if d["lost"]:
            why.append(f"{len(d['lost'])} of PyTorch's {d['reference_boxes']} boxes lost ("
                       + ", ".join(task.label(c) for c in d["lost_classes"]) + ")")
        if d["extra"]:
            why.append(f"{len(d['extra'])} boxes PyTorch does not find")
        if why:
            failures.append(f"{comparison.name} on {name}: not the same objects: " + "; ".join(why)
                            + f" (IoU {IOU_MATCH}, same class, score threshold {task.threshold:.3g})")
    for row in comparison.rows:
        if row.output == task.main_output(expected):
            i = list(images).index(row.image)
            d = per_image[i]
            row.task.update({"det_precision": d["precision"], "det_recall": d["recall"], "det_map": d["map"]})
            row.passed = not d["lost"] and not d["extra"]
    return DetectionComparison(name=comparison.name, rows=comparison.rows, failures=failures,
                               error=comparison.error, detections=per_image, raw_notes=raw)


def _xyxy(cxcywh: np.ndarray) -> np.ndarray:
    c = np.asarray(cxcywh, np.float32)
    half = c[:, 2:4] / 2
    return np.concatenate([c[:, :2] - half, c[:, :2] + half], axis=1)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class DetectionComparison(Comparison):
    """A detector's comparison: the raw outputs' rows, and per image how the boxes agree (`match`)."""

    detections: list = field(default_factory=list)
    raw_notes: list = field(default_factory=list)  # the raw tensors' max-abs lines: figures, not failures

    def worst(self) -> dict[str, float]:
        out = super().worst()
        if self.detections:
            out.update(summary(self.detections))
        return out
