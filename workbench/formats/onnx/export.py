"""ONNX export: torch.export-based exporter first, the legacy TorchScript exporter as a fallback."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from ...diagnose import conversion_error
from ...errors import WorkbenchError, first_line, require
from ...files import atomic_output
from ..base import Artifact, ExportSpec, quiet


def export_onnx(spec: ExportSpec, path: Path, *, opset: int | None = None, overwrite: bool = False,
                legacy: bool = False) -> Artifact:
    """Write `spec` as ONNX with named inputs/outputs and check it with onnx.checker.

    The dynamo (torch.export) exporter is tried first; if it fails, the legacy exporter runs and the
    artifact's notes say so. Raises ConversionError when both fail.
    """
    import torch

    onnx = require("onnx", "onnx onnxscript")
    baked = spec.preprocess
    model = spec.wrapped(bake=baked)
    x = spec.example_input(pixels=baked is not None)
    notes = []
    proto, first_error = None, None
    kwargs = dict(input_names=[spec.input_name], output_names=list(spec.output_names))
    if opset:
        kwargs["opset_version"] = opset
    if not legacy:
        try:
            with warnings.catch_warnings(), quiet("torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                                                 "torch.export", "torch.onnx"):
                warnings.simplefilter("ignore")
                program = torch.onnx.export(model, (x,), dynamo=True, external_data=False, verbose=False,
                                            **kwargs)
            proto = program.model_proto
        except Exception as exc:  # fall back, but keep the reason
            first_error = exc
            notes.append(f"torch.export-based exporter failed ({type(exc).__name__}); used the legacy exporter")
    if proto is None:
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", torch.jit.TracerWarning)
                torch.onnx.export(model, (x,), buffer, dynamo=False, **kwargs)
        except Exception as exc:
            raise conversion_error("ONNX", first_error or exc, module=spec.source) from exc
        notes += sorted({f"trace warning: {first_line(w.message)}" for w in caught
                         if issubclass(w.category, torch.jit.TracerWarning)})
        proto = onnx.load_from_string(buffer.getvalue())
    try:
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:
        raise WorkbenchError(f"the exported ONNX model fails onnx.checker: {first_line(exc)}") from exc
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(proto.SerializeToString())
    return Artifact("onnx", path, spec.input_name, spec.output_names, tuple(x.shape), baked,
                    notes=tuple(notes))

