"""LiteRT compressed variants: Google's ai-edge-quantizer on the exported .tflite, in the Android tools env.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`), one ai_edge_quantizer recipe each, applied offline to the artifact's
file (no PyTorch module needed). `int8` is full integer: its activation ranges are calibrated on the sample
images by running the float model with LiteRT's interpreter, and its input and outputs become int8 tensors
with a scale and zero point, which the runner applies as an app would. A .tflite's metadata is not free-form
here, so the calibration (images, preprocessing) is in the artifact's notes and the report.
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
from ..common.tools_env import convert

HERE = Path(__file__).resolve().parent


def int8_dynamic(artifact, path, *, calibration=None, overwrite=False):
    """8-bit weights per output channel; activations quantized at run time from their own range
    (ai-edge-quantizer's dynamic_wi8_afp32, TFLite's "dynamic range quantization")."""
    return _save(artifact, path, "dynamic_wi8_afp32", "int8_dynamic: 8-bit weights per output channel, "
                 "activations quantized at run time (ai-edge-quantizer dynamic_wi8_afp32)", overwrite=overwrite)


def int8_weights(artifact, path, *, calibration=None, overwrite=False):
    """8-bit weights, dequantized to float before each op: float compute, a quarter of the weights' bytes
    (ai-edge-quantizer's weight_only_wi8_afp32)."""
    return _save(artifact, path, "weight_only_wi8_afp32", "int8_weights: 8-bit weights, float compute "
                 "(ai-edge-quantizer weight_only_wi8_afp32)", overwrite=overwrite)


def int8(artifact, path, *, calibration: Calibration | None = None, overwrite=False):
    """Full integer: 8-bit weights and activations, int8 input and outputs, ranges calibrated on the images
    (ai-edge-quantizer's static_wi8_ai8, min/max)."""
    calibration = Calibration.require(calibration, "LiteRT int8 is static quantization")
    what = (f"int8: 8-bit weights and activations, int8 input and outputs (ai-edge-quantizer static_wi8_ai8), "
            f"ranges {calibration.describe()}")
    return _save(artifact, path, "static_wi8_ai8", what, calibration=calibration, overwrite=overwrite)


int8.calibrates = True


def _save(artifact: Artifact, path, recipe: str, what: str, *, calibration: Calibration | None = None,
          overwrite: bool = False) -> Artifact:
    if artifact.precision != "fp32":
        raise WorkbenchError(f"LiteRT quantization starts from an fp32 model; {artifact.path} is "
                             f"{artifact.precision}: export with precision='fp32'")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="workbench-calibration-") as tmp, \
            atomic_output(path, overwrite=overwrite) as out:
        request = {"model": str(artifact.path), "out": str(out), "recipe": recipe, "calibration": None}
        if calibration is not None:
            request["calibration"] = str(Path(tmp) / "inputs.npy")
            np.save(request["calibration"], np.ascontiguousarray(calibration.inputs, np.float32))
        result = convert(HERE / "_quantize.py", request, what=f"LiteRT {recipe} quantization (ai-edge-quantizer)",
                         packages="ai-edge-quantizer")
    warning = calibration.warning() if calibration is not None else None
    notes = (what, *result["notes"]) + ((warning,) if warning else ())
    return dataclasses.replace(artifact, path=path, notes=notes, traced=None)
