"""ExecuTorch compressed variants: PyTorch's PT2E quantization, lowered to XNNPACK in the Android tools env.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). `int8` needs the PyTorch module the artifact was exported from (an
export in this session keeps it in `Artifact.traced`): it is captured by torch.export here, then in the tools
env XNNPACKQuantizer (8-bit weights per output channel, 8-bit activations) annotates it, prepare_pt2e inserts
observers, the calibration inputs run through it, convert_pt2e freezes the ranges, and the quantized program
is lowered with XnnpackPartitioner. A .pte has no free-form metadata, so the calibration (images,
preprocessing) is in the artifact's notes and the report.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ...files import atomic_output
from .. import Calibration
from ..base import Artifact
from ..common.pytorch import export_program, saved_program
from ..common.tools_env import convert

HERE = Path(__file__).resolve().parent  # the tools-env scripts beside this file


def int8(artifact: Artifact, path, *, calibration: Calibration | None = None, overwrite=False) -> Artifact:
    """8-bit weights (per output channel) and activations (static, ranges calibrated on the images), run
    by XNNPACK's quantized kernels. Raises WorkbenchError with no calibration, no module to quantize (a .pte
    loaded from a file, or an fp16 export), or when quantizing or lowering fails."""
    import torch

    calibration = Calibration.require(calibration, "ExecuTorch int8 is static quantization")
    if artifact.traced is None:
        raise WorkbenchError(f"ExecuTorch int8 quantizes the PyTorch module {artifact.path} was exported from, "
                             "and this artifact has none (loaded from a file?): export the model to ExecuTorch "
                             "in this session first")
    if artifact.precision != "fp32":
        raise WorkbenchError(f"ExecuTorch int8 quantizes an fp32 program; {artifact.path} is {artifact.precision}: "
                             "export with precision='fp32'")
    module, _ = artifact.traced
    inputs = np.ascontiguousarray(calibration.inputs, np.float32)
    x = torch.from_numpy(inputs[:1].copy())
    program = export_program(module, x, what="ExecuTorch int8 (torch.export)")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="workbench-calibration-") as tmp, saved_program(program) as saved, \
            atomic_output(path, overwrite=overwrite) as out:
        np.save(Path(tmp) / "inputs.npy", inputs)
        result = convert(HERE / "_convert.py", {"program": str(saved), "out": str(out), "delegate": "xnnpack",
                                                "calibration": str(Path(tmp) / "inputs.npy")},
                         what="ExecuTorch int8 quantization", packages="executorch")
    what = (f"int8: 8-bit weights per output channel and 8-bit activations (PT2E, XNNPACKQuantizer), ranges "
            f"{calibration.describe()}")
    warning = calibration.warning()
    notes = (what, *result["notes"]) + ((warning,) if warning else ())
    return dataclasses.replace(artifact, path=path, notes=notes, traced=None)


int8.calibrates = True
