"""Exporters, one module per format, registered by name.

Every exporter takes an `ExportSpec` (the model, its input shape, output names, and the preprocessing to
bake in, if any) and a destination path, writes the artifact atomically, and returns an `Artifact`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import WorkbenchError
from ..preprocess import Preprocess

FORMATS = {"onnx": ".onnx", "coreml": ".mlpackage", "torchscript": ".pt"}
_EXPORTERS: dict[str, Callable] = {}


def exporter(name: str):
    """Register an exporter under `name`; a second registration of the same name is a bug."""

    def register(fn):
        if name in _EXPORTERS:
            raise RuntimeError(f"exporter {name!r} is registered twice")
        _EXPORTERS[name] = fn
        return fn

    return register


@dataclass(frozen=True)
class Artifact:
    """An exported model on disk.

    `preprocess` is the preprocessing inside the artifact (it then takes 0-255 pixels in the model's
    channel order), or None when it takes the model's own input tensor.
    """

    format: str
    path: Path
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    preprocess: Preprocess | None = None
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    # how outputs were changed for the format, as (model output name, kind, params):
    # ("softmax" | "probabilities", labels): a classifier's {label: probability} dict (softmax added or not);
    # ("image", (scale, bias)): an image output, pixels = output * scale + bias.
    post: tuple[tuple[str, str, tuple], ...] = ()
    # the traced module that was converted and whether it takes 0-255 pixels (in memory only): the
    # divergence locator runs it beside the converted program
    traced: tuple | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ExportSpec:
    """What every exporter needs. `preprocess`: bake it in (pixels in), or None (tensor in)."""

    module: object
    input_shape: tuple[int, int, int, int]
    output_names: tuple[str, ...]
    input_name: str = "image"
    preprocess: Preprocess | None = None
    task: object = None
    source: str = ""
    labels: tuple[str, ...] | None = None

    def wrapped(self, *, bake: Preprocess | None = None, post: dict | None = None):
        from .._torch import Exportable

        pre = bake.as_module() if bake is not None else None
        return Exportable(self.module, self.output_names, pre, post).eval()

    def example_input(self, pixels: bool):
        """A fixed example input: pixels in 0-255 when preprocessing is baked, else the model's tensor."""
        import torch

        g = torch.Generator().manual_seed(0)
        x = torch.rand(self.input_shape, generator=g) * 255
        if not pixels and self.preprocess is not None:
            x = torch.from_numpy(self.preprocess.apply(x.numpy()))
        return x


@contextlib.contextmanager
def quiet(*loggers: str):
    """Silence a converter's progress output (stdout, stderr: tqdm bars, graph dumps) and its loggers'
    warnings; exceptions still propagate."""
    chosen = [logging.getLogger(n) for n in loggers]
    levels = [lg.level for lg in chosen]
    for lg in chosen:
        lg.setLevel(logging.CRITICAL)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, level in zip(chosen, levels):
            lg.setLevel(level)


def get_exporter(name: str) -> Callable:
    if name not in FORMATS:
        raise WorkbenchError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}")
    if name not in _EXPORTERS:
        importlib.import_module(f".{name}", __name__)
    return _EXPORTERS[name]


def export(spec: ExportSpec, fmt: str, path: str | Path, **options) -> Artifact:
    """Export `spec` to format `fmt` at `path` (see each exporter for its options)."""
    return get_exporter(fmt)(spec, Path(path), **options)
