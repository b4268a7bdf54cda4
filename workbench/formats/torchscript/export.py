"""TorchScript export: a traced module, optionally optimized for mobile.

TorchScript is deprecated upstream and PyTorch Mobile is retired in favour of ExecuTorch; the format stays
because existing iOS/Android apps (the DeepLabV3 seed) load it.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from ...errors import WorkbenchError
from ...files import atomic_output
from ..base import Artifact, ExportSpec
from ..common.pytorch import trace


def export_torchscript(spec: ExportSpec, path: Path, *, optimize: bool = False, check_trace: bool = True,
                       overwrite: bool = False) -> Artifact:
    """Write `spec` as a traced TorchScript `.pt`; `optimize` runs torch's mobile optimizer on it.
    check_trace: as for `common.pytorch.trace`."""
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
