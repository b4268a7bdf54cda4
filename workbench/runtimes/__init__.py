"""Runners: one protocol for every runtime. ``run(pixels, preprocess) -> {output name: array}``.

A runner is a context manager (activate: load the model and build the session, once; deactivate: free
it), and `run` takes the shared pixels (float32 (N, 3, H, W) RGB in 0-255) and the preprocessing to
apply. An artifact with preprocessing inside (a Core ML ImageType, a baked graph) applies its own and
refuses a different one, rather than silently ignoring it. Backends import their heavy package lazily.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping

import numpy as np

from ..errors import WorkbenchError
from ..preprocess import Preprocess, to_channels

_RUNNERS: dict[str, Callable] = {}
_MODULES = {"onnx": "onnxruntime", "torchscript": "torch", "coreml": "coreml"}


def runner(name: str):
    """Register a runner class for artifacts of format `name`; duplicates are a bug."""

    def register(cls):
        if name in _RUNNERS:
            raise RuntimeError(f"runner {name!r} is registered twice")
        _RUNNERS[name] = cls
        return cls

    return register


class Runner:
    """Base runner. Subclasses set `name`/`label` and fill `_activate`, `_run` (and `_deactivate`)."""

    name = "runner"
    label = "runner"
    preprocess: Preprocess | None = None  # the preprocessing inside the artifact, if any

    def __init__(self):
        self.active = False

    def __enter__(self):
        self.activate()
        return self

    def __exit__(self, *exc):
        self.deactivate()

    def activate(self) -> None:
        if not self.active:
            self._activate()
            self.active = True

    def deactivate(self) -> None:
        if self.active:
            self._deactivate()
            self.active = False

    def run(self, pixels: np.ndarray, preprocess: Preprocess | None = None) -> dict[str, np.ndarray]:
        """Outputs for a batch of pixels; `preprocess` is what the converted side applies to them."""
        self.activate()
        return self._run(self.inputs(pixels, preprocess))

    def inputs(self, pixels: np.ndarray, preprocess: Preprocess | None) -> np.ndarray:
        inside = self.preprocess
        if inside is None:
            if preprocess is None:
                raise WorkbenchError(f"{self.label} takes the model's input tensor: give the preprocessing")
            return preprocess.apply(pixels)
        if preprocess is not None and not same_preprocess(preprocess, inside):
            raise WorkbenchError(
                f"{self.label} has its preprocessing built in ({inside.describe()}); re-export it to use "
                f"{preprocess.describe()}")
        return np.ascontiguousarray(to_channels(np.asarray(pixels, np.float32), inside))

    def _activate(self) -> None:
        pass

    def _deactivate(self) -> None:
        pass

    def _run(self, inputs: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError


def same_preprocess(a: Preprocess, b: Preprocess, rtol: float = 1e-6) -> bool:
    return (a.bgr == b.bgr and a.grayscale == b.grayscale
            and np.allclose(a.scale, b.scale, rtol=rtol, atol=0)
            and np.allclose(a.bias, b.bias, rtol=rtol, atol=1e-9))


def named_outputs(out, names=None) -> dict[str, np.ndarray]:
    """A model's outputs (tensor, tuple/list or dict of tensors) as {name: numpy array}."""
    import torch

    if isinstance(out, Mapping):
        items = list(out.items())
    elif isinstance(out, (tuple, list)):
        items = [(f"output_{i}", v) for i, v in enumerate(out)]
        if len(items) == 1:
            items = [("output", items[0][1])]
    else:
        items = [("output", out)]
    if names is not None:
        if len(names) != len(items):
            raise WorkbenchError(f"{len(names)} output names {list(names)} for {len(items)} outputs")
        items = [(n, v) for n, (_, v) in zip(names, items)]
    result = {}
    for name, value in items:
        if not isinstance(value, torch.Tensor):
            raise WorkbenchError(
                f"output {name!r} is a {type(value).__name__}; the workbench reads tensors, tuples and dicts "
                "of tensors: return those from forward()")
        result[name] = value.detach().cpu().float().numpy()
    return result


def runner_for(artifact, **options) -> Runner:
    """The runner for an exported artifact (see `workbench.export.Artifact`)."""
    fmt = artifact.format
    if fmt not in _MODULES:
        raise WorkbenchError(f"no runner for format {fmt!r}; known: {', '.join(_MODULES)}")
    if fmt not in _RUNNERS:
        importlib.import_module(f".{_MODULES[fmt]}", __name__)
    return _RUNNERS[fmt](artifact, **options)
