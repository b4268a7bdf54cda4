"""TorchScript export: a traced module, optionally optimized for mobile.

TorchScript is deprecated upstream and PyTorch Mobile is retired in favour of ExecuTorch; the format stays
because existing iOS/Android apps (the DeepLabV3 seed) load it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .._files import atomic_output
from . import Artifact, ExportSpec, exporter
from .diagnose import conversion_error


def trace(spec: ExportSpec, *, bake=None, post=None):
    """The spec's model traced (check_trace on), as Core ML's converter and this exporter use it."""
    import torch

    model = spec.wrapped(bake=bake, post=post)
    x = spec.example_input(pixels=bake is not None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.no_grad():
                return torch.jit.trace(model, x, strict=False), x
    except Exception as exc:
        raise conversion_error("TorchScript trace", exc, module=spec.source) from exc


@exporter("torchscript")
def export_torchscript(spec: ExportSpec, path: Path, *, optimize: bool = False,
                       overwrite: bool = False) -> Artifact:
    """Write `spec` as a traced TorchScript `.pt`; `optimize` runs torch's mobile optimizer on it."""
    import torch

    traced, x = trace(spec, bake=spec.preprocess)
    notes = []
    if optimize:
        from torch.utils.mobile_optimizer import optimize_for_mobile

        traced = optimize_for_mobile(traced)
        notes.append("optimized for mobile (conv/batchnorm folded, prepacked weights)")
    with atomic_output(path, overwrite=overwrite) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(traced, str(tmp))
    return Artifact("torchscript", path, spec.input_name, spec.output_names, tuple(x.shape), spec.preprocess,
                    notes=tuple(notes))
