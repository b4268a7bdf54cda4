"""A model on sample images: the reference computed once, artifacts exported, outputs compared.

`Session` is what the CLI and the widget drive. The PyTorch reference does not depend on the converted
side's preprocessing, so it is computed once; runners are built once per artifact and reused.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from .compare import DEFAULT_TOLERANCES, Comparison, Tolerance, compare
from .errors import OutputError, RuntimeUnavailable, WorkbenchError
from .export import FORMATS, Artifact, ExportSpec, export
from .images import load_images, to_pixels
from .models import LoadedModel, load_model
from .preprocess import Preprocess
from .runtimes import Runner, runner_for
from .runtimes.torch import TorchRunner
from .tasks import Task, make_task

DEFAULT_SIZE = (224, 224)


@dataclass
class FormatResult:
    """One format in a check: its artifact, its comparison, or why there is none."""

    format: str
    artifact: Artifact | None = None
    comparison: Comparison | None = None
    error: str | None = None  # export or run failed: parity is not established
    skipped: str | None = None  # exported, but cannot run here (Core ML off macOS)
    label: str = ""
    divergence: str | None = None  # where a failing Core ML program first leaves PyTorch

    @property
    def passed(self) -> bool | None:
        if self.error:
            return False
        if self.comparison is None:
            return None
        return self.comparison.passed

    def to_dict(self) -> dict:
        d = {"passed": self.passed, "runtime": self.label or None,
             "path": str(self.artifact.path) if self.artifact else None}
        if self.artifact:
            d["precision"] = self.artifact.precision
            d["notes"] = list(self.artifact.notes)
        if self.comparison is not None:
            d.update(self.comparison.worst())
            d["failures"] = self.comparison.failures
        if self.error:
            d["error"] = self.error
        if self.skipped:
            d["skipped"] = self.skipped
        if self.divergence:
            d["divergence"] = self.divergence
        return d


@dataclass
class Report:
    model: str
    images: list[str]
    preprocess: Preprocess
    task: str
    formats: dict[str, FormatResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every format was produced, and every one that could run here is within tolerance."""
        return bool(self.formats) and all(r.passed is not False for r in self.formats.values())

    def to_dict(self) -> dict:
        return {"passed": self.passed, "model": self.model, "images": self.images, "task": self.task,
                "preprocess": self.preprocess.to_dict(), "notes": self.notes,
                "formats": {k: v.to_dict() for k, v in self.formats.items()}}

    def to_json(self) -> str:
        """The report as JSON; JSON has no inf/nan, so PSNR of identical outputs is null."""
        return json.dumps(_finite(self.to_dict()), indent=2)


def _finite(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    return obj


class Session:
    """A model, its sample images and its reference outputs.

    model: anything `load_model` takes, or a LoadedModel. images: a folder, paths or PIL images.
    preprocess: the model's training preprocessing (the reference's); defaults to what the model's
    source says (torchvision weights), else x/255 with a note. size: (H, W) input size; defaults to the
    preprocessing's, else 224x224. task/labels: what the output means (guessed from its shape if not given).
    """

    def __init__(self, model, images, *, preprocess: Preprocess | None = None, task: str | Task | None = None,
                 labels: Sequence[str] | None = None, size: Sequence[int] | None = None, **load_options):
        self.model = model if isinstance(model, LoadedModel) else load_model(model, **load_options)
        if self.model.module is None:
            raise WorkbenchError(
                f"{self.model.source} is a {self.model.kind} model; the workbench compares conversions of a "
                "PyTorch model: load the .py/.pth/.pt it came from")
        self.notes = list(self.model.notes)
        pre = preprocess or self.model.preprocess
        if pre is None:
            pre = Preprocess.preset("unit")
            self.notes.append("training preprocessing unknown: assumed x/255 (pass preprocess= to set it)")
        if size is not None:
            pre = pre.replace(size=tuple(size)) if pre.size != tuple(size) else pre
        if pre.size is None:
            pre = pre.replace(size=DEFAULT_SIZE)
        self.preprocess = pre
        self.images = load_images(images)
        self.pixels = to_pixels(self.images, pre.size, pre.fit, pre.resize)
        # One image at a time, as a phone runs it: a model that mixes the batch still gets a fair reference.
        self.reference = TorchRunner(self.model.module, label="PyTorch (eager)", batch=1).run(self.pixels, pre)
        labels = labels if labels is not None else self.model.labels
        if isinstance(task, Task):
            self.task = task
        else:
            self.task = make_task(task or self.model.task, labels=labels, outputs=self.reference)
        self.labels = None
        if labels is not None:
            self.set_labels(labels)
        self.artifacts: dict[str, Artifact] = {}
        self._runners: dict[str, Runner] = {}

    def set_labels(self, labels: Sequence[str]) -> None:
        """Class names for the main output (a Core ML classifier's labels); one per class, or WorkbenchError."""
        main_name = self.task.main_output(self.reference)
        main = self.reference[main_name]
        n = main.shape[1] if main.ndim >= 2 else 1
        if len(labels) != n:
            raise WorkbenchError(
                f"{len(labels)} labels for a model with {n} classes (output {main_name!r} shape {main.shape[1:]}); "
                "the labels file needs one line per class")
        self.labels = tuple(labels)
        if hasattr(self.task, "labels"):
            self.task = dataclasses.replace(self.task, labels=self.labels)

    @property
    def name(self) -> str:
        """A file-name stem for artifacts: the torchvision name, the .py file's or the model file's stem."""
        source = self.model.source.split(" ")[0]
        if source.startswith("torchvision:"):
            stem = source.split(":", 1)[1]
        else:
            stem = Path(source.rpartition(":")[0] if ".py:" in source else source).stem
        return re.sub(r"[^\w.-]+", "_", stem).strip("_") or "model"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        h, w = self.preprocess.size
        return (1, self.preprocess.channels, h, w)

    def spec(self, *, bake: bool = True, preprocess: Preprocess | None = None) -> ExportSpec:
        """What exporters need; `bake` puts the preprocessing inside the artifact (pixels in)."""
        return ExportSpec(module=self.model.module, input_shape=self.input_shape,
                          output_names=tuple(self.reference), preprocess=(preprocess or self.preprocess) if bake else None,
                          task=self.task, source=self.model.source, labels=self.labels)

    def export(self, fmt: str, path: str | Path | None = None, *, bake: bool = True,
               preprocess: Preprocess | None = None, **options) -> Artifact:
        """Export to `fmt` (onnx, coreml, torchscript) at `path` and remember the artifact."""
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="workbench-")) / f"{self.name}{FORMATS[fmt]}"
        artifact = export(self.spec(bake=bake, preprocess=preprocess), fmt, path, **options)
        self.use(artifact)
        return artifact

    def use(self, artifact: Artifact) -> None:
        """Make `artifact` the one `run(artifact.format)` uses (its runner is built on first use)."""
        self.artifacts[artifact.format] = artifact
        old = self._runners.pop(artifact.format, None)
        if old is not None:
            old.deactivate()

    def runner(self, fmt: str) -> Runner:
        """The runner of the artifact exported for `fmt`, built once."""
        if fmt not in self._runners:
            if fmt not in self.artifacts:
                raise WorkbenchError(f"no {fmt} artifact yet; export it first")
            self._runners[fmt] = runner_for(self.artifacts[fmt])
        return self._runners[fmt]

    def run(self, fmt: str, preprocess: Preprocess | None = None) -> dict[str, np.ndarray]:
        """The `fmt` artifact's outputs on the sample images, with `preprocess` applied in front of it
        (None: the artifact's own). An artifact with other preprocessing inside refuses, never ignores it."""
        return self.runner(fmt).run(self.pixels, preprocess)

    def compare(self, fmt: str, outputs: dict[str, np.ndarray],
                tolerance: Tolerance | dict | None = None) -> Comparison:
        artifact = self.artifacts.get(fmt)
        tol = tolerance or DEFAULT_TOLERANCES[artifact.precision if artifact else "fp32"]
        return compare(self.expected(fmt), outputs, task=self.task, tolerance=tol,
                       images=[i.name for i in self.images], name=fmt)

    def expected(self, fmt: str) -> dict[str, np.ndarray]:
        """The reference as the `fmt` artifact gives it: after the softmax a Core ML classifier adds, and
        clipped to 0-255 pixels where an output became a Core ML image."""
        artifact = self.artifacts.get(fmt)
        ref = dict(self.reference)
        for name, kind, params in artifact.post if artifact else ():
            if kind == "image" and name in ref:
                scale, bias = params
                ref[name] = np.clip(ref[name], (0 - bias) / scale, (255 - bias) / scale)
            if kind == "softmax" and name in ref:
                z = ref[name].astype(np.float64)
                z = np.exp(z - z.max(axis=-1, keepdims=True))
                ref[name] = (z / z.sum(axis=-1, keepdims=True)).astype(np.float32)
        return ref

    def check(self, formats: Sequence[str] = ("onnx", "coreml", "torchscript"), out: str | Path | None = None,
              *, tolerance: Tolerance | dict | None = None, overwrite: bool = False,
              options: dict[str, dict] | None = None, preprocess: Preprocess | None = None,
              progress=None) -> Report:
        """Export to each format (preprocessing inside), run what can run here, compare with PyTorch.

        preprocess: what to bake into the artifacts (default: the training preprocessing); the reference
        is always the training preprocessing, so a different one shows up as a parity failure.
        progress: called with (format, step) as work proceeds. A format that fails to export or run is
        reported with its error; the others go on.
        """
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="workbench-"))
        report = Report(self.model.source, [i.name for i in self.images], self.preprocess, self.task.name,
                        notes=list(self.notes))
        for fmt in formats:
            if fmt not in FORMATS:
                raise WorkbenchError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
            result = report.formats[fmt] = FormatResult(fmt)
            if progress:
                progress(fmt, "export")
            try:
                result.artifact = self.export(fmt, out / f"{self.name}{FORMATS[fmt]}", overwrite=overwrite,
                                              preprocess=preprocess, **(options or {}).get(fmt, {}))
            except OutputError:
                raise  # the machine cannot take the outputs: no format can, so the whole check stops
            except WorkbenchError as exc:
                result.error = str(exc)
                continue
            if progress:
                progress(fmt, "run")
            try:
                outputs = self.run(fmt)
                result.label = self.runner(fmt).label
                result.comparison = self.compare(fmt, outputs, tolerance)
                if fmt == "coreml" and not result.comparison.passed and result.artifact.traced is not None:
                    result.divergence = self.locate(tolerance=tolerance).describe()
            except RuntimeUnavailable as exc:
                result.skipped = str(exc)
            except WorkbenchError as exc:
                result.error = str(exc)
        return report

    def locate(self, image: int = 0, tolerance: Tolerance | None = None, preprocess: Preprocess | None = None):
        """Where the Core ML program first diverges from PyTorch on sample image `image`, both sides given the
        same input: a `coreml_interp.Divergence` (run by the interpreter; the Core ML artifact must come from
        this session). preprocess: what to apply in front of an artifact that takes the model's tensor."""
        from .coreml_interp import CoreMLInterpreter
        from .coreml_interp.divergence import locate
        from .runtimes.coreml import image_feed

        artifact = self.artifacts.get("coreml")
        if artifact is None or artifact.traced is None:
            raise WorkbenchError("no traced Core ML export in this session: export it first "
                                 "(session.export('coreml'), traced, not method='export')")
        if not 0 <= image < len(self.images):
            raise WorkbenchError(f"image {image} is out of range: there are {len(self.images)} sample images")
        import torch

        runner = self.runner("coreml")
        runner.activate()
        interpreter = runner.model if isinstance(runner.model, CoreMLInterpreter) else CoreMLInterpreter(
            artifact.path)
        traced, takes_pixels = artifact.traced
        pixels = self.pixels[image:image + 1]
        x = runner.inputs(pixels, preprocess)  # what the artifact takes: channel-ordered pixels or the tensor
        model_input = x if takes_pixels or artifact.preprocess is None else artifact.preprocess.apply(pixels)
        feed = {artifact.input_name: image_feed(x[0], artifact.preprocess)}
        if isinstance(tolerance, dict):
            tolerance = tolerance.get("", None)
        tol = tolerance or DEFAULT_TOLERANCES[artifact.precision]
        return locate(traced, torch.from_numpy(np.ascontiguousarray(model_input)), interpreter, feed, tol)

    def close(self) -> None:
        for r in self._runners.values():
            r.deactivate()
        self._runners.clear()
