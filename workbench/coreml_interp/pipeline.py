"""Core ML pipelines (`pipeline`, `pipelineClassifier`, `pipelineRegressor`): sub-models run in order,
each reading the features the pipeline's inputs and the earlier sub-models produced, by name.

Sub-models may be ML programs (their weights in the package's weights folder), neural networks, nested
pipelines, or the `nonMaximumSuppression` model that object-detection pipelines end with. Features pass
between sub-models as the values the programs compute (tensors, labels, dicts), with no conversion.
"""

from __future__ import annotations

import torch

from ..errors import WorkbenchError
from .ops.tensor import _nms_one
from .program import RUN, Program, Step, _plan_frees


def from_pipeline(spec, weights_dir, model_name: str = "the Core ML model") -> Program:
    """Compile a pipeline spec (plain, classifier or regressor) into a Program of one step per sub-model."""
    kind = spec.WhichOneof("Type")
    pipeline = spec.pipeline if kind == "pipeline" else getattr(spec, kind).pipeline
    steps = []
    names = list(pipeline.names) or [f"model{i}" for i in range(len(pipeline.models))]
    for name, sub in zip(names, pipeline.models):
        steps.append(_sub_model_step(name, sub, weights_dir, model_name))
    inputs = {f.name: "fp32" for f in spec.description.input}
    outputs = [f.name for f in spec.description.output]
    _plan_frees(steps, set(outputs))
    return Program(steps, inputs, outputs, f"pipeline of {len(steps)} models", nested=True)


def _sub_model_step(name: str, spec, weights_dir, model_name: str) -> Step:
    kind = spec.WhichOneof("Type")
    if kind == "nonMaximumSuppression":
        return _nms_step(name, spec)
    if kind == "mlProgram":
        from coremltools.converters.mil.frontend.milproto.load import load

        from .program import from_mil

        if weights_dir is None:
            raise WorkbenchError(f"{model_name}: pipeline model {name!r} is an ML program whose weights are in an "
                                 ".mlpackage; load the pipeline from its .mlpackage")
        try:
            program = from_mil(load(spec, spec.specificationVersion, weights_dir))
        except WorkbenchError:
            raise
        except Exception as exc:
            raise WorkbenchError(f"{model_name}: cannot read pipeline model {name!r} ({exc}); re-export it") from exc
    elif kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
        from .neuralnetwork import from_spec

        program = from_spec(spec)
    elif kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
        program = from_pipeline(spec, weights_dir, model_name)
    else:
        raise WorkbenchError(f"{model_name}: pipeline model {name!r} is a Core ML {kind} model; the interpreter "
                             "runs ML programs, neural networks and non-maximum suppression in pipelines")
    feeds = [f.name for f in spec.description.input]
    produced = [f.name for f in spec.description.output]

    def run(**values):
        fp16, observe = RUN.get()
        out = program.run({n: values[f"in:{n}"] for n in feeds}, fp16=fp16, observe=observe)
        return tuple(out.get(n) for n in produced)

    run.computes_fp16 = program.computes_fp16  # read by the pipeline's own Program.computes_fp16

    return Step(kind, name, run, {}, [(f"in:{n}", n) for n in feeds], [(n, False) for n in produced])


def _nms_step(name: str, spec) -> Step:
    """Core ML's NonMaximumSuppression model: confidence (boxes, classes) and coordinates (boxes, 4) as
    (x, y, width, height) centers; keeps the best boxes by their top class, drops those whose top class is
    below the confidence threshold and those overlapping a kept box by IoU > the IoU threshold (within a
    class with pickTop.perClass); outputs the kept rows, best first, as many as survive."""
    p = spec.nonMaximumSuppression
    names = {f.name for f in spec.description.input}
    conf_in, coord_in = p.confidenceInputFeatureName, p.coordinatesInputFeatureName
    iou_in = p.iouThresholdInputFeatureName if p.iouThresholdInputFeatureName in names else None
    thr_in = p.confidenceThresholdInputFeatureName if p.confidenceThresholdInputFeatureName in names else None
    dynamic = [("confidence", conf_in), ("coordinates", coord_in)]
    dynamic += [("iou", iou_in)] if iou_in else []
    dynamic += [("threshold", thr_in)] if thr_in else []
    outputs = [p.confidenceOutputFeatureName, p.coordinatesOutputFeatureName]

    def run(confidence, coordinates, iou=None, threshold=None):
        scores = confidence.reshape(-1, confidence.shape[-1]).float()
        boxes = coordinates.reshape(-1, 4).float()
        iou_t = float(iou.reshape(-1)[0]) if iou is not None else float(p.iouThreshold)
        conf_t = float(threshold.reshape(-1)[0]) if threshold is not None else float(p.confidenceThreshold)
        kept = _nms_one(boxes, scores, iou_t, conf_t, boxes.shape[0], bool(p.pickTop.perClass))
        index = torch.tensor(kept, dtype=torch.long)
        return scores[index], boxes[index]

    return Step("nonMaximumSuppression", name, run, {}, dynamic, [(o, False) for o in outputs])
