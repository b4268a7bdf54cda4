"""TorchScript export: a traced module, optionally optimized for mobile.

TorchScript is deprecated upstream and PyTorch Mobile is retired in favour of ExecuTorch; the format stays
because existing iOS/Android apps (the DeepLabV3 seed) load it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from ...diagnose import conversion_error
from ...errors import WorkbenchError, first_line
from ...files import atomic_output
from ..base import Artifact, ExportSpec


def trace(spec: ExportSpec, *, bake=None, post=None, check_trace: bool = True):
    """The spec's model traced, as Core ML's converter and this exporter use it.

    Returns (traced module, example input, notes); the notes carry the tracer's warnings, because a trace
    through data-dependent control flow keeps one branch and still matches on inputs that take it.
    check_trace: torch's own check (trace again, run both on the example input, compare), most of a trace's
    time (bench/first_render.py). Skip it only where the outputs are compared with PyTorch's right after.
    """
    import torch

    model = spec.wrapped(bake=bake, post=post)
    x = spec.example_input(pixels=bake is not None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            with torch.no_grad():
                traced = torch.jit.trace(model, x, strict=False, check_trace=check_trace)
    except Exception as exc:
        raise conversion_error("TorchScript trace", exc, module=spec.source) from exc
    notes = sorted({_trace_note(first_line(w.message)) for w in caught
                    if issubclass(w.category, torch.jit.TracerWarning)})
    return traced, x, tuple(notes)


def _trace_note(message: str) -> str:
    if message.startswith("Output nr"):  # torch's check ran the trace and the model: they disagree
        why = "the model's output changed between two runs on one input: is it random, or still in training mode?"
    else:
        why = "data-dependent control flow keeps one branch in the trace; check images that take the other"
    return f"trace warning: {message} ({why})"


def export_torchscript(spec: ExportSpec, path: Path, *, optimize: bool = False, check_trace: bool = True,
                       overwrite: bool = False) -> Artifact:
    """Write `spec` as a traced TorchScript `.pt`; `optimize` runs torch's mobile optimizer on it.
    check_trace: as for `trace`."""
    import torch

    traced, x, notes = trace(spec, bake=spec.preprocess, check_trace=check_trace)
    notes = list(notes)
    if optimize:
        import torch.backends.xnnpack
        from torch.utils.mobile_optimizer import optimize_for_mobile

        if not torch.backends.xnnpack.enabled:
            raise WorkbenchError(
                f"optimize=True needs a torch build with XNNPACK; torch {torch.__version__} here has none. "
                "Export without optimize, or run on a torch build with XNNPACK (the default CPU wheels)")
        traced = optimize_for_mobile(traced)
        notes.append("optimized for mobile (conv/batchnorm folded, prepacked weights)")
    # Serialized in memory, then written by Python: torch's own file writer aborts the whole process
    # (c10::Error in a destructor) when the disk fills, where Python's raises OSError.
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, buffer)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(buffer.getbuffer())
    return Artifact("torchscript", path, spec.input_name, spec.output_names, tuple(x.shape), spec.preprocess,
                    notes=tuple(notes))
