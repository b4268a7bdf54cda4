"""Core ML: coremltools' own predict, which only exists on macOS.

Off macOS this runner refuses to run rather than show another runtime's output labelled as Core ML. The
artifact itself is still converted and saved by coremltools, on any OS.
"""

from __future__ import annotations

import platform

import numpy as np
from PIL import Image

from ..errors import RuntimeUnavailable, WorkbenchError, require
from . import Runner, runner


def available() -> bool:
    return platform.system() == "Darwin"


@runner("coreml")
class CoreMLRunner(Runner):
    name = "coreml"
    label = "Core ML"

    def __init__(self, artifact):
        super().__init__()
        self.artifact, self.preprocess = artifact, artifact.preprocess
        self.model = None
        if not available():
            raise RuntimeUnavailable(
                f"Core ML outputs cannot be computed on {platform.system()}: coremltools' predict runs only on "
                f"macOS. The model was converted and saved ({artifact.path}); check it on a Mac, or compare "
                "ONNX Runtime/TorchScript here")

    def _activate(self):
        ct = require("coremltools", "coremltools")
        self.model = ct.models.MLModel(str(self.artifact.path))
        self.label = f"Core ML (coremltools {ct.__version__} predict, {self.artifact.precision})"

    def _run(self, inputs):
        outputs = []
        for x in inputs:
            if self.preprocess is not None:  # an ImageType input: Core ML takes a PIL image
                arr = np.clip(x, 0, 255).round().astype(np.uint8)
                feed = Image.fromarray(arr[0], "L") if arr.shape[0] == 1 else Image.fromarray(
                    arr.transpose(1, 2, 0)[..., ::-1] if self.preprocess.bgr else arr.transpose(1, 2, 0), "RGB")
            else:
                feed = x[None]
            try:
                result = self.model.predict({self.artifact.input_name: feed})
            except Exception as exc:
                raise WorkbenchError(f"Core ML predict failed on {self.artifact.path}: {exc}") from exc
            outputs.append(result)
        names = [n for n in self.artifact.output_names if n in outputs[0]]
        return {n: np.concatenate([_array(o[n]) for o in outputs]) for n in names if not isinstance(
            outputs[0][n], (str, dict))}


def _array(value) -> np.ndarray:
    if isinstance(value, Image.Image):
        a = np.asarray(value, np.float32)
        return (a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None])
    return np.asarray(value, np.float32)
