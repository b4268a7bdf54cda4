"""What every format shares: the export spec, the artifact, what its outputs mean, and the runner protocol.

An exporter takes an `ExportSpec` (the model, its input shape, output names, and the preprocessing to bake
in, if any) and a destination path, writes the artifact atomically and returns an `Artifact`. A `Runner`
runs an artifact on the shared pixels: ``run(pixels, preprocess) -> {output name: array}``. It is a
context manager (activate: load the model and build the session, once; deactivate: free it), and an
artifact with preprocessing inside (a Core ML ImageType, a baked graph) applies its own and refuses a
different one, rather than silently ignoring it. Backends import their heavy package lazily.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..preprocess import Preprocess, to_channels
from ..tasks import output_items, softmax


# -- what a converted output means ---------------------------------------------------------------------
@dataclass(frozen=True)
class OutputMapping:
    """How a format changed one model output; the identity by default."""

    output: str

    def expected(self, reference: np.ndarray) -> np.ndarray:
        """The reference output as this artifact gives it."""
        return reference


@dataclass(frozen=True)
class ClassProbabilities(OutputMapping):
    """A classifier's {label: probability} output standing for the model's scores, in `labels` order;
    `softmax` says whether the format added the softmax (the model gives logits)."""

    labels: tuple[str, ...] = ()
    softmax: bool = False

    def expected(self, reference):
        return softmax(reference) if self.softmax else reference  # float64: a float32 softmax ties near-equal scores


@dataclass(frozen=True)
class ImagePixels(OutputMapping):
    """An image output in 0-255 pixels: pixels = output * scale + bias, clipped to 0-255."""

    scale: float = 255.0
    bias: float = 0.0

    def expected(self, reference):
        return np.clip(reference, (0 - self.bias) / self.scale, (255 - self.bias) / self.scale)

    def to_model_units(self, pixels: np.ndarray) -> np.ndarray:
        return (pixels - self.bias) / self.scale


@dataclass(frozen=True)
class DetectedBoxes(OutputMapping):
    """A detector whose file applies NMS itself (Core ML's pipeline ending in NonMaximumSuppression): PyTorch's
    raw head output stands for its detections after the task's threshold and class-aware NMS, as the plain
    boxes outputs (`tasks.detection.padded`: boxes, scores, classes, `limit` rows per image)."""

    task: object = field(default=None, compare=False, repr=False)
    limit: int = 300

    def expected(self, reference):
        import dataclasses

        from ..tasks.detection import padded

        task = dataclasses.replace(self.task, outputs=None, output=None)
        return padded(task.detect({self.output: reference}), self.limit)


@dataclass(frozen=True)
class Artifact:
    """An exported model on disk.

    `preprocess` is the preprocessing inside the artifact (it then takes 0-255 pixels in the model's
    channel order), or None when it takes the model's own input tensor. `mappings` say how the format
    changed outputs (a classifier's probabilities, an image's pixels).
    """

    format: str
    path: Path
    input_name: str
    output_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    preprocess: Preprocess | None = None
    precision: str = "fp32"
    notes: tuple[str, ...] = ()
    mappings: tuple[OutputMapping, ...] = ()
    # the traced module that was converted and whether it takes 0-255 pixels (in memory only): the
    # divergence locator runs it beside the converted program
    traced: tuple | None = field(default=None, repr=False, compare=False)

    def expected(self, reference: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The reference outputs as this artifact gives them (after a classifier's softmax, clipped where an
        output became an image)."""
        ref = dict(reference)
        for m in self.mappings:
            if m.output in ref:
                value = m.expected(ref[m.output])
                if isinstance(value, dict):  # one output became several (a detector's boxes, NMS inside)
                    del ref[m.output]
                    ref = {**value, **ref}
                else:
                    ref[m.output] = value
        return ref


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
def native_quiet():
    """Silence what a runtime's C++ prints to the process's stdout and stderr (MNN's "The device supports:
    ...", LiteRT's "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."): file descriptors 1 and 2 go to
    /dev/null meanwhile. In a notebook such lines land on the pink stderr and look like errors; in `workbench
    check --json` they would land inside the JSON. Errors still come back as exceptions."""
    import os
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [null]:
            os.close(fd)


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


# -- the preprocessing a runtime applies itself ---------------------------------------------------------
class Native:
    """How a format's runtime applies preprocessing itself (Core ML's ImageType, ncnn's and MNN's mean/norm),
    as the format declares it (`Format.native`). A format without one puts the preprocessing in the graph,
    where any `Preprocess` is exact.

    how: what carries it, in a few words ("ImageType scale/bias"). graph_options: the export options that put
    the exact preprocessing in the graph instead (what the widget's "bake" asks every format for).
    """

    how = "its runtime"
    graph_options: Mapping[str, object] = {}

    def exact(self, pre: Preprocess) -> bool:
        """Whether the runtime's own preprocessing expresses `pre` exactly."""
        raise NotImplementedError

    def note(self, pre: Preprocess) -> str:
        """How an export carries `pre`, for the user."""
        if self.exact(pre):
            return f"exact, natively ({self.how})"
        return f"not exact natively ({self.how}): exported with the normalization in the graph"


# -- running ------------------------------------------------------------------------------------------
@dataclass
class BareCall:
    """A format's bare runtime call for the bench (`Format.floor`): `call()` runs the runtime once on inputs
    prepared beforehand, with nothing of the workbench around it.

    what: what it runs, for the bench's row. own_seconds: `call()` returns the seconds the runtime's own clock
    measured (a worker process's), besides the time the caller sees. round_trip: the transport alone (a
    worker's IPC of the same payload, nothing run), when there is one.
    """

    call: Callable[[], object]
    what: str = "bare runtime, same inputs"
    own_seconds: bool = False
    round_trip: Callable[[], object] | None = None

    def __call__(self):
        return self.call()


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

    items = output_items(out)
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
