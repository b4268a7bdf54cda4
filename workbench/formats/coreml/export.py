"""Core ML export: an ML program by default, a neural network when targeting iOS 13/14 as the seeds did.

Preprocessing becomes an ``ImageType`` input when Core ML's one scalar scale expresses it exactly; otherwise
(per-channel std) it is baked into the graph in front of the model and the ImageType passes pixels through,
unless the caller asks for the scalar approximation. Classifiers get ``ClassifierConfig`` with labels (and a
softmax when the model gives logits); image outputs get their deprocessing (x255, (x+1)*127.5) in the graph.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Literal

from ... import fixes
from ...diagnose import conversion_error
from ...errors import WorkbenchError, require
from ...files import atomic_output
from ...tasks import Classification, ImageToImage, Segmentation
from ..base import Artifact, ClassProbabilities, ExportSpec, ImagePixels, quiet
from ..common.pytorch import trace
from .files import NEURALNETWORK_TARGETS, files

PREVIEW_TYPE = "com.apple.coreml.model.preview.type"


def export_coreml(spec: ExportSpec, path: Path, *, target: str = "iOS16",
                  precision: Literal["fp16", "fp32"] = "fp16",
                  normalization: Literal["auto", "imagetype", "bake"] = "auto",
                  method: Literal["trace", "export"] = "trace", check_trace: bool = True, author: str = "",
                  description: str = "", nms: bool = False, overwrite: bool = False) -> Artifact:
    """Convert `spec` with coremltools and save it (.mlpackage, or .mlmodel for a neural network).

    target: the minimum deployment target (iOS13/iOS14 give the legacy neural network format).
    precision: compute precision of an ML program. normalization: "auto" uses ImageType's scale/bias
    when exact and bakes the normalization into the graph otherwise; "imagetype" forces the scalar
    approximation; "bake" always bakes. method: how the graph is captured (trace or torch.export).
    check_trace: torch's check of the trace (see `common.pytorch.trace`). nms: a detector's pipeline with Core
    ML's NonMaximumSuppression after the model (`nms.export_with_nms`), as apps read boxes through Vision.
    Raises ConversionError naming the failing op and the known fixes.
    """
    import torch

    if nms:
        from .nms import export_with_nms

        return export_with_nms(spec, path, target=target, precision=precision, normalization=normalization,
                               method=method, check_trace=check_trace, author=author, description=description,
                               overwrite=overwrite)

    ct = require("coremltools", "coremltools")
    if not hasattr(ct.target, target):
        raise WorkbenchError(f"unknown deployment target {target!r}; use iOS13 ... iOS18 or macOS10_15 ...")
    neuralnetwork = target in NEURALNETWORK_TARGETS
    if neuralnetwork and precision == "fp16":
        precision = "fp32"  # neural networks have no compute precision setting: fp32 weights
    path = files(Path(path), {"target": target})[0]

    module, fix_notes = fixes.apply(spec.module)  # known converter gaps, rewritten on a copy (workbench/fixes/)
    spec = replace(spec, module=module)
    pre, task = spec.preprocess, spec.task
    bake, effective, inputs, fit = None, None, None, None
    if pre is None:
        inputs = [ct.TensorType(name=spec.input_name, shape=spec.input_shape)]
    else:
        fit = pre.imagetype_fit()
        use_imagetype = normalization == "imagetype" or (normalization == "auto" and fit.exact)
        layout = {"G": ct.colorlayout.GRAYSCALE, "BGR": ct.colorlayout.BGR, "RGB": ct.colorlayout.RGB}[
            fit.color_layout]
        if use_imagetype:
            scale, bias, effective = fit.scale, list(fit.bias), pre.with_imagetype()
        else:
            scale, bias, bake, effective = 1.0, [0.0] * pre.channels, pre, pre
        inputs = [ct.ImageType(name=spec.input_name, shape=spec.input_shape, scale=scale,
                               bias=bias[0] if pre.grayscale else bias, color_layout=layout)]

    classifier = isinstance(task, Classification) and bool(spec.labels)
    post, outputs, config = {}, None, None
    main = spec.output_names[0]
    if classifier:
        if len(spec.output_names) != 1:
            raise WorkbenchError(f"a Core ML classifier needs one output; the model has {spec.output_names}")
        if task.softmax or (task.softmax is None and _gives_logits(spec)):
            post[main] = torch.nn.Softmax(dim=-1)
        config = ct.ClassifierConfig(list(spec.labels), predicted_feature_name="classLabel")
    elif isinstance(task, ImageToImage) and (neuralnetwork or _at_least(target, "iOS16")):
        from ..._torch import Deprocess

        post[main] = Deprocess(*task.deprocess)
        channels = _output_channels(spec)
        outputs = [ct.ImageType(name=main, color_layout=ct.colorlayout.GRAYSCALE if channels == 1
                                else ct.colorlayout.RGB)]
        outputs += [ct.TensorType(name=n) for n in spec.output_names[1:]]
    else:
        outputs = [ct.TensorType(name=n) for n in spec.output_names]

    trace_notes = ()
    if method == "export":
        model = spec.wrapped(bake=bake, post=post)
        x = spec.example_input(pixels=bake is not None or pre is not None)
        try:
            source = torch.export.export(model, (x,)).run_decompositions({})
        except Exception as exc:
            raise conversion_error("torch.export", exc, module=spec.source) from exc
    else:
        source, x, trace_notes = trace(spec, bake=bake, post=post, check_trace=check_trace)
    kwargs = dict(inputs=inputs, classifier_config=config, minimum_deployment_target=getattr(ct.target, target),
                  convert_to="neuralnetwork" if neuralnetwork else "mlprogram")
    if outputs is not None:
        kwargs["outputs"] = outputs
    if not neuralnetwork:
        kwargs["compute_precision"] = ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32
    try:
        with warnings.catch_warnings(), quiet("coremltools"), fixes.converting() as op_fix_notes:
            warnings.simplefilter("ignore")
            mlmodel = ct.convert(source, **kwargs)
    except Exception as exc:
        raise conversion_error("Core ML", exc, module=spec.source) from exc

    if classifier and neuralnetwork:
        # The neural-network path names the probabilities after an internal var; use the ML program's name.
        nn_spec = mlmodel.get_spec()
        ct.utils.rename_feature(nn_spec, nn_spec.description.predictedProbabilitiesName, "classLabel_probs")
        mlmodel = ct.models.MLModel(nn_spec, skip_model_load=True)
    _describe(mlmodel, spec, effective, bake is not None, task, author, description)
    with atomic_output(path, overwrite=overwrite) as tmp:
        mlmodel.save(str(tmp))
    names = tuple(o.name for o in mlmodel.get_spec().description.output)
    notes = list(trace_notes) + list(fix_notes) + op_fix_notes
    if fit is not None and not fit.exact:
        notes.append("normalization baked into the graph (per-channel std)" if bake is not None else
                     f"ImageType scalar approximation: {fit.describe()}")
    mappings = ()
    if classifier:
        mappings = (ClassProbabilities(main, tuple(spec.labels), softmax=main in post),)
    elif main in post:
        mappings = (ImagePixels(main, *task.deprocess),)
    artifact = Artifact("coreml", path, spec.input_name, names, spec.input_shape, effective,
                        precision=precision, notes=tuple(notes), mappings=mappings,
                        traced=(source, bake is not None) if method == "trace" else None)
    return replace(artifact, notes=artifact.notes + (f"{'neural network' if neuralnetwork else 'ML program'}, "
                                                     f"minimum target {target}",))


def _gives_logits(spec: ExportSpec) -> bool:
    import torch

    with torch.no_grad():
        x = spec.example_input(pixels=False)
        out = spec.wrapped()(x)[0].numpy()
    return spec.task.is_logits(out)


def _output_channels(spec: ExportSpec) -> int:
    import torch

    with torch.no_grad():
        return int(spec.wrapped()(spec.example_input(pixels=False))[0].shape[1])


def _at_least(target: str, minimum: str) -> bool:
    import re

    m = re.fullmatch(r"iOS(\d+)", target)
    return bool(m) and int(m.group(1)) >= int(minimum[3:])


def _describe(mlmodel, spec: ExportSpec, effective, baked: bool, task, author: str, description: str) -> None:
    from ... import __version__

    mlmodel.author = author or "workbench"
    mlmodel.short_description = description or f"{spec.source or 'model'} converted by the workbench"
    meta = mlmodel.user_defined_metadata
    meta["workbench.version"] = __version__
    meta["workbench.source"] = spec.source
    if effective is not None:
        meta["workbench.preprocess"] = json.dumps(effective.to_dict())
        meta["workbench.normalization"] = "baked into the graph" if baked else "ImageType scale/bias"
        mlmodel.input_description[spec.input_name] = (
            f"{'grayscale' if effective.grayscale else 'BGR' if effective.bgr else 'RGB'} image "
            f"{spec.input_shape[3]}x{spec.input_shape[2]}; preprocessing: {effective.describe()}")
    if isinstance(task, Classification):
        meta[PREVIEW_TYPE] = "imageClassifier"
    elif isinstance(task, Segmentation):
        meta[PREVIEW_TYPE] = "imageSegmenter"
        if spec.labels:
            meta["com.apple.coreml.model.preview.params"] = json.dumps({"labels": list(spec.labels)})

