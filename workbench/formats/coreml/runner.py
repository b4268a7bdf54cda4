"""Core ML: coremltools' own predict on macOS, the workbench's Core ML interpreter everywhere.

`engine="predict"` needs macOS; `engine="interpreter"` runs the model's program with torch kernels on
any OS (see workbench.coreml_interp) and says so in its label, with the precision used. The default is
predict on macOS and the interpreter elsewhere. Image outputs are compared before their 8-bit
rounding when the interpreter runs them (the program's own output), after it with predict.
"""

from __future__ import annotations

import platform

import numpy as np
from PIL import Image

from ...errors import RuntimeUnavailable, WorkbenchError, require
from ..base import ClassProbabilities, DetectedBoxes, ImagePixels, Runner

ENGINES = ("predict", "interpreter")


def available() -> bool:
    """Whether coremltools' own predict can run here."""
    return platform.system() == "Darwin"


class CoreMLRunner(Runner):
    name = "coreml"
    label = "Core ML"

    def __init__(self, artifact, engine: str | None = None, compute_precision: str | None = None):
        super().__init__()
        engine = engine or ("predict" if available() else "interpreter")
        if engine not in ENGINES:
            raise WorkbenchError(f"unknown Core ML engine {engine!r}; use one of {', '.join(ENGINES)}")
        if engine == "predict" and not available():
            raise RuntimeUnavailable(
                f"coremltools' predict runs only on macOS, not {platform.system()}: use engine='interpreter' "
                f"to run {artifact.path} with the workbench's Core ML interpreter")
        self.artifact, self.preprocess = artifact, artifact.preprocess
        self.engine, self.compute_precision = engine, compute_precision
        self.model = None
        self.label = "Core ML interpreter" if engine == "interpreter" else "Core ML"

    def _activate(self):
        if self.engine == "interpreter":
            from ...coreml_interp import CoreMLInterpreter

            self.model = CoreMLInterpreter(self.artifact.path, compute_precision=self.compute_precision)
            self.label = self.model.label
        else:
            ct = require("coremltools", "coremltools")
            self.model = ct.models.MLModel(str(self.artifact.path))
            self.label = f"Core ML (coremltools {ct.__version__} predict, {self.artifact.precision})"

    def _deactivate(self):
        self.model = None

    def interpreter(self):
        """The Core ML interpreter on this artifact: the one this runner runs, or a new one (on macOS)."""
        from ...coreml_interp import CoreMLInterpreter

        self.activate()
        return self.model if isinstance(self.model, CoreMLInterpreter) else CoreMLInterpreter(self.artifact.path)

    def _run(self, inputs):
        kwargs = {"image_outputs": "array"} if self.engine == "interpreter" else {}
        outputs = []
        for x in inputs:
            try:
                result = self.model.predict({self.artifact.input_name: image_feed(x, self.preprocess)}, **kwargs)
            except WorkbenchError:
                raise
            except Exception as exc:
                raise WorkbenchError(f"Core ML predict failed on {self.artifact.path}: {exc}") from exc
            outputs.append(result)
        boxes = next((m for m in self.artifact.mappings if isinstance(m, DetectedBoxes)), None)
        if boxes is not None:  # NMS inside: each image has its own number of boxes
            from .nms import pipeline_outputs

            return pipeline_outputs(outputs, boxes.limit)
        result = {}
        for name in self.artifact.output_names:
            values = [o[name] for o in outputs]
            if isinstance(values[0], dict):  # a classifier's probabilities, in label order
                continue
            if not isinstance(values[0], (str, int)):
                result[name] = np.concatenate([_array(v) for v in values])
        for m in self.artifact.mappings:
            if isinstance(m, ClassProbabilities):  # the classifier's dict stands for the model's output
                probs = next(n for n in self.artifact.output_names if isinstance(outputs[0][n], dict))
                result[m.output] = np.array([[o[probs][label] for label in m.labels] for o in outputs], np.float32)
            elif isinstance(m, ImagePixels) and m.output in result:  # back from 0-255 pixels to the model's units
                result[m.output] = m.to_model_units(result[m.output])
        return result


def image_feed(x: np.ndarray, preprocess):
    """One input as Core ML takes it: a PIL image for an ImageType (x: channel-ordered 0-255 pixels,
    (C, H, W)), else the tensor with its batch axis."""
    if preprocess is None:
        return x[None]
    arr = np.clip(x, 0, 255).round().astype(np.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], "L")
    arr = arr.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(arr[..., ::-1] if preprocess.bgr else arr), "RGB")


def _array(value) -> np.ndarray:
    if isinstance(value, Image.Image):
        a = np.asarray(value, np.float32)
        return (a[None, None] if a.ndim == 2 else a.transpose(2, 0, 1)[None])
    return np.asarray(value, np.float32)
