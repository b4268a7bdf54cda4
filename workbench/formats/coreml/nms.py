"""A detector exported to Core ML with non-maximum suppression inside, as apps ship it for Vision: a pipeline of
the model (an ML program giving each candidate box's class scores and its centre, width and height) and Core ML's
NonMaximumSuppression model. Ultralytics exports the same pipeline (`nms=True`) and cannot validate it off macOS;
here the workbench's interpreter runs both parts, so its boxes can be compared with PyTorch's.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ...files import atomic_output
from ..base import Artifact, ExportSpec

CONFIDENCE, COORDINATES = "confidence", "coordinates"  # the names Vision reads
KINDS = ("yolov8", "yolov5")


def _candidates(module, kind: str):
    """`module` giving, for its first image, (class scores (N, C), boxes (N, 4) as centre x, y, width, height)."""
    import torch

    class Candidates(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.module = module

        def forward(self, x):
            out = self.module(x)
            if isinstance(out, dict):  # outputs by name: the first is the detection head's
                out = next(iter(out.values()))
            p = out[0] if isinstance(out, (tuple, list)) else out
            p = p[0]
            if kind == "yolov8":  # (4 + C, N)
                p = p.transpose(0, 1)
                return p[:, 4:], p[:, :4]
            return p[:, 5:] * p[:, 4:5], p[:, :4]  # yolov5: (N, 5 + C), objectness times class scores

    return Candidates().eval()


def export_with_nms(spec: ExportSpec, path: str | Path, *, overwrite: bool = False, **options) -> Artifact:
    """Export the detector `spec` (a YOLO head; its task a `Detection`) to a Core ML pipeline at `path` whose last
    model is NonMaximumSuppression, class-aware at the task's IoU and score thresholds. The pipeline's outputs:
    `confidence` (K, C) and `coordinates` (K, 4, centre and size in input pixels), best first; the artifact is
    compared through `DetectedBoxes` (PyTorch's boxes after the same threshold and NMS). `options` go to the
    Core ML exporter (precision, target, normalization)."""
    import coremltools as ct
    import torch

    from ...tasks.detection import Detection
    from ..base import DetectedBoxes
    from .export import export_coreml

    task = spec.task
    if not isinstance(task, Detection):
        raise WorkbenchError("nms=True is for detectors: check with --task detection (Core ML's NonMaximumSuppression "
                             "needs a detector's boxes)")
    with torch.no_grad():
        head = spec.wrapped()(spec.example_input(pixels=False))
    head = head[0] if isinstance(head, (tuple, list)) else head
    main = spec.output_names[0]
    kind = task.decoder_for({main: head.numpy()})
    if kind not in KINDS:
        raise WorkbenchError(f"Core ML with NMS inside takes a YOLO head ({', '.join(KINDS)}); this one decodes as "
                             f"{kind!r}: export without nms and apply NMS in the app")
    classes = head.shape[1] - 4 if kind == "yolov8" else head.shape[2] - 5
    path = Path(path)
    inner = dataclasses.replace(spec, module=_candidates(spec.module, kind), task=None, labels=None,
                                output_names=(f"raw_{CONFIDENCE}", f"raw_{COORDINATES}"))
    with tempfile.TemporaryDirectory(prefix="workbench-nms-") as tmp:
        part = export_coreml(inner, Path(tmp) / "model.mlpackage", **options)
        model = ct.models.MLModel(str(part.path), skip_model_load=True)
        pipeline = _pipeline(ct, model, classes, task.iou_threshold, task.threshold, spec.labels or task.labels)
        with atomic_output(path, overwrite=overwrite) as out:
            pipeline.save(str(out))
    return dataclasses.replace(
        part, path=path, output_names=(CONFIDENCE, COORDINATES), traced=None,
        mappings=(DetectedBoxes(main, task, task.max_detections),),
        notes=part.notes + (f"NMS inside (Core ML NonMaximumSuppression, per class, IoU {task.iou_threshold:g}, "
                            f"score {task.threshold:.3g})",))


def pipeline_outputs(results: list[dict], limit: int) -> dict[str, np.ndarray]:
    """The pipeline's per-image outputs (`confidence`, `coordinates`, any number of rows) as the plain boxes
    outputs `DetectedBoxes` compares (`tasks.detection.padded`)."""
    from ...tasks.detection import Detections, padded

    return padded([Detections(*detections(r)) for r in results], limit)


def _pipeline(ct, model, classes: int, iou_threshold: float, score_threshold: float, labels):
    """Core ML's pipeline: `model`, then a NonMaximumSuppression model reading its two outputs."""
    from coremltools.proto import Model_pb2

    spec = model.get_spec()
    confidence_in, coordinates_in = spec.description.output
    nms = Model_pb2.Model()
    nms.specificationVersion = 5
    for i, feature in enumerate((confidence_in, coordinates_in)):
        nms.description.input.add().ParseFromString(feature.SerializeToString())
        out = nms.description.output.add()
        out.ParseFromString(feature.SerializeToString())
        out.name = (CONFIDENCE, COORDINATES)[i]
        array = out.type.multiArrayType
        del array.shape[:]
        any_count = array.shapeRange.sizeRanges.add()
        any_count.lowerBound, any_count.upperBound = 0, -1
        width = array.shapeRange.sizeRanges.add()
        width.lowerBound = width.upperBound = (classes, 4)[i]
    p = nms.nonMaximumSuppression
    p.confidenceInputFeatureName, p.coordinatesInputFeatureName = confidence_in.name, coordinates_in.name
    p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName = CONFIDENCE, COORDINATES
    p.iouThreshold, p.confidenceThreshold = float(iou_threshold), float(score_threshold)
    p.pickTop.perClass = True
    p.stringClassLabels.vector.extend([str(x) for x in (labels or range(classes))])
    pipeline = Model_pb2.Model()
    pipeline.specificationVersion = max(spec.specificationVersion, nms.specificationVersion)
    pipeline.description.input.extend(spec.description.input)
    pipeline.description.output.extend(nms.description.output)
    pipeline.description.metadata.CopyFrom(spec.description.metadata)
    pipeline.pipeline.models.add().CopyFrom(spec)
    pipeline.pipeline.models.add().CopyFrom(nms)
    pipeline.pipeline.names.extend(["model", "nms"])
    return ct.models.MLModel(pipeline, weights_dir=model.weights_dir, skip_model_load=True)


def detections(outputs: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The pipeline's outputs as (boxes (K, 4) x1, y1, x2, y2, scores (K,), classes (K,))."""
    from ...tasks.detection import _xyxy

    conf = np.asarray(outputs[CONFIDENCE], np.float32).reshape(-1, np.shape(outputs[CONFIDENCE])[-1])
    return _xyxy(np.asarray(outputs[COORDINATES], np.float32).reshape(-1, 4)), conf.max(1), conf.argmax(1)
