"""CoreMLInterpreter: run a Core ML model's program in Python, on any OS, with `MLModel.predict`'s API."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import WorkbenchError, require
from .program import Program, from_mil

_PRECISIONS = {None: "declared", "declared": "declared", "fp16": "declared", "float16": "declared",
               "fp32": "fp32", "float32": "fp32"}


@functools.cache
def _array_types() -> dict:
    """MultiArray data types (by their protobuf names) as numpy dtypes."""
    from coremltools.proto import FeatureTypes_pb2

    kind = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Value
    return {kind("FLOAT32"): np.float32, kind("DOUBLE"): np.float64, kind("FLOAT16"): np.float16,
            kind("INT32"): np.int32}


@functools.cache
def _color(name: str) -> int:
    from coremltools.proto import FeatureTypes_pb2

    return FeatureTypes_pb2.ImageFeatureType.ColorSpace.Value(name)


_KINDS = {"mlProgram": "ML program", "neuralNetwork": "neural network", "neuralNetworkClassifier": "neural network",
          "neuralNetworkRegressor": "neural network", "nonMaximumSuppression": "NMS", "pipeline": "pipeline"}


class CoreMLInterpreter:
    """Executes a Core ML model (ML program or neural network) with torch kernels.

    model: an `MLModel` (fresh from `ct.convert` or loaded), or a path to an `.mlpackage`/`.mlmodel`.
    compute_precision: None runs the program as declared, rounding every fp16 tensor to fp16; "fp32"
    removes the fp16 rounding of activations, to separate conversion errors from precision loss
    (weights stored in fp16 stay as stored: export at fp32 for an fp32 reference).

    function_name: for a multifunction (iOS18) ML program, the function to run (like `MLModel`'s
    function_name); by default the MLModel's own, else the model's default function.

    A reference semantics of the MIL op definitions, not bit-exact Core ML on the Neural Engine or GPU.
    Raises WorkbenchError for an unreadable model, an unknown function or an op the interpreter does
    not implement.
    """

    def __init__(self, model, compute_precision=None, function_name: str | None = None):
        key = getattr(compute_precision, "value", compute_precision)
        if key not in _PRECISIONS:
            raise WorkbenchError(f"compute_precision must be None (as declared) or 'fp32', not {compute_precision!r}")
        self.precision = _PRECISIONS[key]
        self.source = model if isinstance(model, (str, os.PathLike)) else None
        function_name = function_name or getattr(model, "function_name", None)
        self.spec, program, weights_dir = _load(model)
        self.function_name = function_name or self.spec.description.defaultFunctionName or "main"
        self.description = self._function_description()
        self.kind = self.spec.WhichOneof("Type")
        if self.kind == "mlProgram":
            self.program: Program = from_mil(program, self.function_name)
        elif self.kind in ("neuralNetwork", "neuralNetworkClassifier", "neuralNetworkRegressor"):
            from .neuralnetwork import from_spec

            self.program = from_spec(self.spec)
        elif self.kind in ("pipeline", "pipelineClassifier", "pipelineRegressor"):
            from .pipeline import from_pipeline

            self.program = from_pipeline(self.spec, weights_dir, self._name())
        else:
            raise WorkbenchError(f"{self._name()} is a Core ML {self.kind} model; the interpreter runs ML "
                                 "programs, neural networks, and pipelines of them (with non-maximum suppression)")
        self._inputs = {f.name: f for f in self.description.input}
        self._outputs = {f.name: f for f in self.description.output}
        self._states = {f.name: f for f in self.description.state}

    def _function_description(self):
        """The inputs/outputs/states of the function to run: a multifunction model's FunctionDescription."""
        functions = {f.name: f for f in self.spec.description.functions}
        if not functions:
            return self.spec.description
        if self.function_name not in functions:
            raise WorkbenchError(f"{self._name()} has no function {self.function_name!r}; its functions: "
                                 f"{', '.join(functions)}. Pass function_name= one of them")
        return functions[self.function_name]

    @property
    def fp16(self) -> bool:
        return self.precision == "declared"

    @property
    def declared_precision(self) -> str:
        """fp16 when the program computes in fp16 anywhere, else fp32."""
        return "fp16" if self.program.computes_fp16 else "fp32"

    @property
    def label(self) -> str:
        used = self.declared_precision if self.fp16 else "fp32"
        if self.kind.startswith("pipeline"):
            parts = " + ".join(_KINDS.get(s.op_type, s.op_type) for s in self.program.steps)
            return f"Core ML interpreter (pipeline: {parts}, {used})"
        return f"Core ML interpreter ({'ML program' if self.kind == 'mlProgram' else 'neural network'}, {used})"

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return list(self._outputs)

    def make_state(self) -> InterpreterState:
        """A fresh state for a stateful model (iOS18 `StateType`), every tensor zero; pass it to predict
        as `state=`, like `MLModel.make_state()`. Raises WorkbenchError for a model without state."""
        if not self._states:
            raise WorkbenchError(f"{self._name()} declares no state; make_state is for stateful (iOS18) models")
        return InterpreterState({name: torch.zeros(tuple(f.type.stateType.arrayType.shape))
                                 for name, f in self._states.items()})

    def predict(self, data, *, image_outputs: str = "pil", observe=None, state=None):
        """Outputs for one example {input name: value}, or a list of examples (like `MLModel.predict`).

        Image inputs take PIL images of the declared size; multiarrays take numpy arrays of the declared
        shape. Returns {output name: numpy array | PIL image | label | {label: probability}}.
        image_outputs: "pil" (8-bit images, as Core ML gives them) or "array" (the program's float
        output in 0-255, (1, C, H, W), before rounding). observe(op_type, op_name, outputs) sees every op.
        state: for a stateful model, the `make_state()` whose tensors this prediction reads and updates.
        """
        if image_outputs not in ("pil", "array"):
            raise WorkbenchError(f"image_outputs must be 'pil' or 'array', not {image_outputs!r}")
        if isinstance(data, (list, tuple)):
            return [self.predict(d, image_outputs=image_outputs, observe=observe, state=state) for d in data]
        if self._states and not isinstance(state, InterpreterState):
            raise WorkbenchError(f"{self._name()} is stateful (states {', '.join(map(repr, self._states))}): pass "
                                 "state=interpreter.make_state() to predict, and the same state to later calls")
        if state is not None and not self._states:
            raise WorkbenchError(f"{self._name()} declares no state; call predict without state=")
        if not isinstance(data, dict):
            raise WorkbenchError(f"predict takes a dict {{input name: value}}; inputs: {self._expected()}")
        unknown = set(data) - set(self._inputs)
        missing = set(self._inputs) - set(data)
        if unknown or missing:
            raise WorkbenchError(
                f"{self._name()}: {'unknown input ' + ', '.join(map(repr, sorted(unknown))) if unknown else ''}"
                f"{'; ' if unknown and missing else ''}"
                f"{'missing input ' + ', '.join(map(repr, sorted(missing))) if missing else ''}. "
                f"Expected: {self._expected()}")
        feeds = {name: self._feed(self._inputs[name], value) for name, value in data.items()}
        if state is not None:
            feeds.update(state.boxes)
        raw = self.program.run(feeds, fp16=self.fp16, observe=observe)
        return {name: self._output(self._outputs[name], raw[name], image_outputs) for name in self._outputs
                if name in raw}

    # inputs and outputs

    def _feed(self, feature, value) -> torch.Tensor:
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            return _image_feed(self._name(), feature, value)
        if kind == "multiArrayType":
            return _array_feed(self._name(), feature, value)
        raise WorkbenchError(f"{self._name()}: input {feature.name!r} is a {kind}; the interpreter feeds images "
                             "and multiarrays")

    def _output(self, feature, value, image_outputs: str = "pil"):
        kind = feature.type.WhichOneof("Type")
        if kind == "imageType":
            return _image_out(feature, value) if image_outputs == "pil" else value.detach().numpy().copy()
        if kind == "multiArrayType":
            dtype = _array_types().get(feature.type.multiArrayType.dataType, np.float32)
            if not isinstance(value, torch.Tensor):  # a constant output (a Python or numpy scalar or array)
                return np.asarray(value).astype(dtype)
            return value.detach().numpy().astype(dtype)
        if isinstance(value, torch.Tensor):
            return value.detach().numpy()
        return value

    def _expected(self) -> str:
        return ", ".join(f"{name!r} ({_describe(f)})" for name, f in self._inputs.items())

    def _name(self) -> str:
        return str(self.source) if self.source is not None else "the Core ML model"

    def __repr__(self):
        return f"CoreMLInterpreter({self._name()}, {self.label}, inputs: {self._expected()})"


class InterpreterState:
    """The state of a stateful model across predict calls: {state name: State box}."""

    def __init__(self, values: dict):
        from .ops.state import State

        self.boxes = {name: State(value) for name, value in values.items()}

    def read(self, name: str) -> np.ndarray:
        """The current value of state `name`, as a numpy array."""
        return self.boxes[name].value.detach().numpy().copy()

    def __repr__(self):
        return f"InterpreterState({', '.join(f'{k}: {tuple(v.value.shape)}' for k, v in self.boxes.items())})"


def _load(model):
    """(spec, MIL program or None, weights folder or None) from an MLModel or a path."""
    ct = require("coremltools", "coremltools")
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise WorkbenchError(f"no Core ML model at {path}")
        if path.suffix == ".mlmodel":
            try:
                spec = ct.utils.load_spec(str(path))
            except Exception as exc:
                raise WorkbenchError(f"{path} is not a readable Core ML model ({exc}); re-export it") from exc
            return spec, None, None
        if path.suffix != ".mlpackage":
            raise WorkbenchError(f"{path}: expected an .mlpackage or .mlmodel")
        if not (path / "Manifest.json").is_file():
            raise WorkbenchError(f"{path} has no Manifest.json: it is not a complete .mlpackage; re-export it")
        try:
            model = ct.models.MLModel(str(path), skip_model_load=True)
        except Exception as exc:
            raise WorkbenchError(f"{path} is not a readable .mlpackage ({exc}); re-export it") from exc
    if not isinstance(model, ct.models.MLModel):
        raise WorkbenchError(f"CoreMLInterpreter takes an MLModel or a path, not {type(model).__name__}")
    spec = model.get_spec()
    weights_dir = getattr(model, "weights_dir", None)
    if spec.WhichOneof("Type") != "mlProgram":
        return spec, None, weights_dir
    program = getattr(model, "_mil_program", None)
    if program is None:
        from coremltools.converters.mil.frontend.milproto.load import load

        weights = model.weights_dir
        try:
            program = load(spec, spec.specificationVersion, weights)
        except Exception as exc:
            raise WorkbenchError(f"cannot read the ML program in {model.package_path or 'the model'} "
                                 f"(weights folder {weights}): {exc}; re-export it") from exc
    return spec, program, weights_dir


def _describe(feature) -> str:
    t = feature.type
    kind = t.WhichOneof("Type")
    if kind == "imageType":
        space = {_color("GRAYSCALE"): "grayscale", _color("RGB"): "RGB", _color("BGR"): "BGR",
                 _color("GRAYSCALE_FLOAT16"): "grayscale fp16"}.get(t.imageType.colorSpace, "?")
        return f"{space} PIL image {t.imageType.width}x{t.imageType.height}"
    if kind == "multiArrayType":
        return f"numpy array of shape {tuple(t.multiArrayType.shape)}"
    return kind


def _image_feed(model: str, feature, value) -> torch.Tensor:
    t = feature.type.imageType
    if not isinstance(value, Image.Image):
        raise WorkbenchError(f"{model}: input {feature.name!r} takes a {_describe(feature)}, not a "
                             f"{type(value).__name__}")
    sizes = {(t.width, t.height)} | {(s.width, s.height) for s in t.enumeratedSizes.sizes}
    r = t.imageSizeRange
    flexible = t.WhichOneof("SizeFlexibility") == "imageSizeRange" and (
        r.widthRange.lowerBound <= value.width
        and (r.widthRange.upperBound < 0 or value.width <= r.widthRange.upperBound)
        and r.heightRange.lowerBound <= value.height
        and (r.heightRange.upperBound < 0 or value.height <= r.heightRange.upperBound))
    if value.size not in sizes and not flexible:
        raise WorkbenchError(f"{model}: input {feature.name!r} takes a {_describe(feature)}; got "
                             f"{value.width}x{value.height}: resize it (workbench.images.fit_image)")
    gray = t.colorSpace in (_color("GRAYSCALE"), _color("GRAYSCALE_FLOAT16"))
    arr = np.asarray(value.convert("L" if gray else "RGB"), dtype=np.float32)
    if gray:
        return torch.from_numpy(arr[None, None].copy())
    if t.colorSpace == _color("BGR"):
        arr = arr[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)[None]))


def _array_feed(model: str, feature, value) -> torch.Tensor:
    t = feature.type.multiArrayType
    arr = np.asarray(value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value)
    if arr.dtype == object or arr.dtype.kind not in "fiub":
        raise WorkbenchError(f"{model}: input {feature.name!r} takes a {_describe(feature)} of numbers, not "
                             f"{type(value).__name__}")
    shape = tuple(t.shape)
    ranges = [(r.lowerBound, r.upperBound) for r in t.shapeRange.sizeRanges]
    allowed = {shape} | {tuple(s.shape) for s in t.enumeratedShapes.shapes}
    in_range = bool(ranges) and len(ranges) == arr.ndim and all(
        lo <= n and (hi < 0 or n <= hi) for n, (lo, hi) in zip(arr.shape, ranges))
    if arr.shape not in allowed and not in_range:
        raise WorkbenchError(f"{model}: input {feature.name!r} takes shape {shape}; got {arr.shape}")
    dtype = _array_types().get(t.dataType, np.float32)
    if np.dtype(dtype).kind == "f":
        return torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=dtype))


def _image_out(feature, value: torch.Tensor) -> Image.Image:
    arr = value.detach().numpy()
    arr = arr.reshape(arr.shape[-3:]) if arr.ndim > 3 else arr
    arr = np.clip(np.round(arr), 0, 255).astype(np.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], "L")
    arr = arr.transpose(1, 2, 0)
    if feature.type.imageType.colorSpace == _color("BGR"):
        arr = arr[..., ::-1]
    return Image.fromarray(np.ascontiguousarray(arr), "RGB")
