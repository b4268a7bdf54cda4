"""A model on sample images: the reference computed once, artifacts exported, outputs compared.

`Reference` is what never changes: the model, the images and their pixels, the training preprocessing, the
PyTorch outputs, the task and labels. An `ArtifactSet` holds artifacts of a reference with their runners,
built once per artifact and reused: the widget's live set and each export's set are separate, so an export
never touches the runners that serve slider moves. `Session` is a reference with one set of exported
artifacts, and `check`: what the CLI and scripts drive.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import re
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import formats as _formats
from .compare import DEFAULT_TOLERANCES, FP16_MAX, Comparison, ReferenceFigures, Tolerance, compare
from .errors import OutputError, RuntimeUnavailable, WorkbenchError
from .formats import Artifact, ExportSpec, Runner
from .formats.common.pytorch import TorchRunner
from .images import load_images, to_pixels
from .models import LoadedModel, load_model
from .preprocess import Preprocess
from .tasks import ImageToImage, Task, check_output_range, final_activations, fitting_range, make_task, output_items

DEFAULT_SIZE = (224, 224)


THRESHOLDS = {"min_top1": ("top1_agreement", "top-1 agreement"), "min_psnr": ("psnr", "PSNR"),
              "min_miou": ("miou", "mIoU")}


def below(figures: Mapping[str, float], thresholds: Mapping[str, float] | None, name: str) -> list[str]:
    """A failure line for each figure of `figures` (a `Comparison.worst()`) under its threshold.

    thresholds: {"min_top1": fraction, "min_psnr": dB, "min_miou": fraction}; a figure the output does
    not have (top-1 of a segmentation) is not judged."""
    failures = []
    for key, minimum in (thresholds or {}).items():
        if key not in THRESHOLDS:
            raise WorkbenchError(f"unknown threshold {key!r}; use {', '.join(THRESHOLDS)}")
        figure, label = THRESHOLDS[key]
        if minimum is None or figure not in figures:
            continue
        value = figures[figure]
        if not value >= minimum:  # NaN fails too
            failures.append(f"{name}: {label} {value:.4g} < {key} {minimum:g}")
    return failures


size_on_disk = _formats.size_on_disk  # bytes of an artifact: every file its format says it is made of


@dataclass
class VariantResult:
    """A compressed variant of a format's artifact: its file, its size, its comparison with PyTorch.

    `passed` is None (figures only) unless thresholds were given (`Session.check(thresholds=...)`, the CLI's
    --min-top1/--min-psnr/--min-miou): a compressed model is expected to differ from PyTorch by more than
    the format's parity tolerance, so max abs does not fail it; a threshold it misses does, and so does a
    variant that could not be built or run.
    """

    variant: str
    artifact: Artifact | None = None
    comparison: Comparison | None = None
    size_bytes: int | None = None
    base_bytes: int | None = None  # the uncompressed artifact's
    calibration: dict | None = None  # the images and preprocessing it was calibrated on (None: it reads none)
    error: str | None = None
    failures: list[str] = field(default_factory=list)
    judged: bool = False  # thresholds were given
    label: str = ""
    divergence: str | None = None  # where it first leaves PyTorch (`check --layers`, a format with a locator)
    traceback: str | None = field(default=None, repr=False)  # of an exception that was not a WorkbenchError

    @property
    def passed(self) -> bool | None:
        if self.error:
            return False
        if not self.judged or self.comparison is None:
            return None
        return not self.failures

    @property
    def size_ratio(self) -> float | None:
        return self.size_bytes / self.base_bytes if self.size_bytes and self.base_bytes else None

    def to_dict(self) -> dict:
        figures = self.comparison.worst() if self.comparison is not None else {}
        return {"passed": self.passed, "size_bytes": self.size_bytes, "size_ratio": self.size_ratio,
                **{k: figures.get(k) for k in ("max_abs", "mean_abs", "psnr", "cosine")},
                **{k: v for k, v in figures.items() if k in ("top1_agreement", "top5_agreement", "miou")
                   or k.startswith("det_")},
                "failures": self.failures, "notes": list(self.artifact.notes) if self.artifact else [],
                "calibration": self.calibration, "runtime": self.label or None,
                "path": str(self.artifact.path) if self.artifact else None, "error": self.error,
                **({"divergence": self.divergence} if self.divergence else {})}


@dataclass
class FormatResult:
    """One format in a check: its artifact, its comparison, or why there is none; and its compressed variants."""

    format: str
    artifact: Artifact | None = None
    comparison: Comparison | None = None
    error: str | None = None  # export or run failed: parity is not established
    skipped: str | None = None  # exported, but cannot run here (RuntimeUnavailable)
    label: str = ""
    divergence: str | None = None  # where a failing program first leaves PyTorch (a format with a locator)
    variants: dict[str, VariantResult] = field(default_factory=dict)
    traceback: str | None = field(default=None, repr=False)  # of an exception that was not a WorkbenchError

    @property
    def passed(self) -> bool | None:
        if self.error:
            return False
        if self.comparison is None:
            return None
        return self.comparison.passed

    @property
    def uncompressed_bytes(self) -> int | None:
        """The size of the file the variants were made from (as they measured it, else measured now)."""
        measured = next((v.base_bytes for v in self.variants.values() if v.base_bytes), None)
        if measured is None and self.artifact is not None and self.artifact.path.exists():
            measured = size_on_disk(self.artifact.path)
        return measured

    def to_dict(self) -> dict:
        d = {"passed": self.passed, "runtime": self.label or None,
             "path": str(self.artifact.path) if self.artifact else None}
        if self.artifact:
            d["precision"] = self.artifact.precision
            # what the file itself applies to 0-255 pixels (None: it takes the model's input tensor)
            d["preprocess"] = self.artifact.preprocess.to_dict() if self.artifact.preprocess else None
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
        if self.variants:
            exists = self.artifact is not None and self.artifact.path.exists()
            d["size_bytes"] = size_on_disk(self.artifact.path) if exists else None
            d["variants"] = {k: v.to_dict() for k, v in self.variants.items()}
        return d


@dataclass
class Report:
    """A check: `preprocess` is what the artifacts carry inside, `training_preprocess` the reference's."""

    model: str
    images: list[str]
    preprocess: Preprocess
    task: str
    formats: dict[str, FormatResult] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    training_preprocess: Preprocess | None = None
    layers: dict = field(default_factory=dict)  # `check --layers`: Layers by "format" or "format variant"

    @property
    def passed(self) -> bool:
        """Every format was produced, every one that could run here is within tolerance, and no compressed
        variant failed (to build, to run, or a threshold)."""
        return bool(self.formats) and all(r.passed is not False and all(v.passed is not False
                                                                         for v in r.variants.values())
                                          for r in self.formats.values())

    def to_dict(self) -> dict:
        return {"passed": self.passed, "model": self.model, "images": self.images, "task": self.task,
                "preprocess": self.preprocess.to_dict(),
                "training_preprocess": (self.training_preprocess or self.preprocess).to_dict(), "notes": self.notes,
                "formats": self._formats_dict()}

    def _formats_dict(self) -> dict:
        doc = {k: v.to_dict() for k, v in self.formats.items()}
        for key, found in self.layers.items():  # --layers: every layer's figures beside its format or variant
            name, _, variant = key.partition(" ")
            (doc[name]["variants"][variant] if variant else doc[name])["layers"] = found.to_dict()
        return doc

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


class Reference:
    """A model, its sample images and its reference outputs: computed once, never changed by a conversion.

    model: anything `load_model` takes, or a LoadedModel. images: a folder, paths or PIL images.
    preprocess: the model's training preprocessing (kept as `training_preprocess`); defaults to what the model's
    source says (torchvision weights), else x/255 with a note. size: (H, W) input size; defaults to the
    preprocessing's, else 224x224. task/labels: what the main output means (guessed from its shape if not
    given); `task` may also map output names to tasks (per-output tasks; outputs not named are generic).
    output: the main output, by name or position (default: the task's, else the model's first); it comes
    first in `outputs` (PyTorch's outputs on the images, by name) and in every artifact. An image output's
    range is read from the model's final tanh/sigmoid unless declared (``ImageToImage(output_range=...)``);
    a reference outside it is an error.
    """

    def __init__(self, model, images, *, preprocess: Preprocess | None = None,
                 task: str | Task | Mapping[str, str | Task] | None = None, labels: Sequence[str] | None = None,
                 size: Sequence[int] | None = None, output: str | int | None = None, progress=None,
                 resize: int | None = None, crop_pct: float | None = None, interpolation: str | None = None,
                 **load_options):
        if progress:
            progress(str(getattr(model, "source", model)) if isinstance(model, (str, Path, LoadedModel))
                     else type(model).__name__, "load")
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
        pre = _resized(pre, resize, crop_pct, interpolation)
        self.training_preprocess = pre
        self.images = load_images(images)
        self.pixels = to_pixels(self.images, pre.size, pre.fit, pre.resize, pre.interpolation)
        if progress:
            progress("PyTorch", "run")
        output = self._tensor_outputs(pre, output)
        # One image at a time, as a phone runs it: a model that mixes the batch still gets a fair reference.
        raw = TorchRunner(self.model.module, label="PyTorch (eager)", batch=1).run(self.pixels, pre)
        self._model_outputs = tuple(raw)  # the model's own order: the export wrapper maps from it
        labels = labels if labels is not None else self.model.labels
        self.tasks = self._make_tasks(raw, task, output, labels)
        main = next(iter(self.tasks))
        self.task = self.tasks[main]
        self.outputs = {main: raw[main], **{k: v for k, v in raw.items() if k != main}}
        self._expected_cache: dict[tuple, tuple] = {}  # see _expected
        self.labels = None
        if labels is not None:
            self.set_labels(labels)

    def _tensor_outputs(self, pre: Preprocess, output: str | int | None) -> str | int | None:
        """Read the model's outputs once and keep its tensors: a side output that is not one (YOLOv8's dict of
        feature lists beside its predictions) is left out, with a note, instead of blocking the check. `output`
        (a position counts among all the model's outputs) is returned as a name; naming a left-out output is
        an error."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(pre.apply(self.pixels[:1])))
        try:
            # no_grad, not inference_mode: a model that caches tensors on its first call (Ultralytics' Detect
            # keeps its anchors) would keep inference tensors, which torch.export then refuses
            with torch.no_grad():
                items = output_items(self.model.module(x))
        except Exception:  # the reference run below reports a failing forward in its own words
            return output
        names = [n for n, _ in items]
        chosen = _output_name(dict(items), output) if output is not None else None
        kept = [n for n, v in items if isinstance(v, torch.Tensor)]
        if len(kept) == len(items) or not kept:
            return chosen if chosen is not None else output  # all tensors, or none: the runner says which
        if chosen is not None and chosen not in kept:
            value = dict(items)[chosen]
            raise WorkbenchError(f"output {chosen!r} is a {type(value).__name__}, not a tensor; the workbench "
                                 f"compares tensors: choose one of {kept} (--output NAME|INDEX)")
        for name, value in items:
            if name not in kept:
                self.notes.append(f"output {name!r} is a {type(value).__name__}, not a tensor: left out (the "
                                  f"workbench compares the model's tensor outputs: {', '.join(kept)})")
        self.model = dataclasses.replace(self.model, module=_kept_outputs(self.model.module, names, kept))
        return chosen

    def _make_tasks(self, raw: dict, task, output, labels) -> dict[str, Task]:
        """Every output's task, the main output's first; image ranges read from the model or checked."""
        given = dict(task) if isinstance(task, Mapping) else {}
        unknown = [n for n in given if n not in raw]
        if unknown:
            raise WorkbenchError(f"task given for output {unknown[0]!r}; the model's outputs are {list(raw)}")
        main = _output_name(raw, output) if output is not None else None
        if main is None and given:
            main = next(n for n in raw if n in given)
        main_task = given.get(main) if given else task
        if main is None and isinstance(main_task, Task) and main_task.output is not None:
            main = _output_name(raw, main_task.output)
        if isinstance(main_task, Task):
            chosen = main_task
        else:
            chosen = make_task(main_task or self.model.task, labels=labels,
                               outputs={main: raw[main]} if main else raw)
        main = main or chosen.main_output(raw)
        tasks = {main: _for_output(chosen, main)}
        for name in raw:
            if name != main:
                t = given.get(name)
                t = t if isinstance(t, Task) else make_task(t or "generic", outputs={name: raw[name]})
                tasks[name] = _for_output(t, name)
        declared = {n for n, t in ([(main, main_task)] + list(given.items())) if isinstance(t, ImageToImage)}
        guessed = main_task is None and self.model.task is None  # the main task was read from its shape
        images = [n for n, t in tasks.items() if isinstance(t, ImageToImage)]
        found = {}
        if images:
            import torch

            x = torch.from_numpy(self.training_preprocess.apply(self.pixels[:1]))
            try:
                found = final_activations(self.model.module, x)
            except Exception:  # reading the final op is a nicety: a model it cannot watch gets the default range
                found = {}
        for name in images:
            t = tasks[name]
            op, rng = found.get(name, ("", None))
            if name in declared:
                why = "declared"
                if rng is not None and tuple(rng) != t.output_range:
                    self.notes.append(f"image output {name!r}: declared range {t.output_range}, but the model's "
                                      f"final {op} gives {tuple(rng)}: check the declaration")
            elif rng is not None:
                t = tasks[name] = dataclasses.replace(t, output_range=rng)
                why = f"read from the model's final {op}"
                self.notes.append(f"image output {name!r}: range {tuple(rng)} {why}")
            else:
                why = "assumed by default" + (f" (its final op, {op}, does not say)" if op else "")
                self.notes.append(f"image output {name!r}: range {t.output_range} {why}; declare it with "
                                  "--output-range LOW HIGH (Python: ImageToImage(output_range=...))")
            if guessed and name == main and why.startswith("assumed") and fitting_range(raw[name]) is None:
                # image-shaped, but no image range fits its values: not an image, compared as a tensor
                tasks[name] = _for_output(Task(), name)
                self.notes[-1] = (f"output {name!r} is image-shaped but its values fit no image range: compared "
                                  "as a generic tensor (to show it as an image: --task image --output-range LOW HIGH)")
                continue
            note = check_output_range(name, raw[name], t.output_range, why)
            if note:
                self.notes.append(note)
        if getattr(tasks[main], "name", "") == "detection":  # one score threshold, fixed on PyTorch's boxes
            tasks[main], note = tasks[main].resolved(raw)
            if note:
                self.notes.append(note)
        return tasks

    @property
    def preprocess(self) -> Preprocess:
        """Deprecated: `training_preprocess` (the widget's `preprocess` is the converted side's)."""
        warnings.warn("Session.preprocess is now Session.training_preprocess", DeprecationWarning, stacklevel=2)
        return self.training_preprocess

    @property
    def reference(self) -> dict[str, np.ndarray]:
        """Deprecated: `outputs` (an ArtifactSet's `reference` is the Reference itself)."""
        warnings.warn("Session.reference is now Session.outputs", DeprecationWarning, stacklevel=2)
        return self.outputs

    def with_images(self, images) -> Reference:
        """The same model, preprocessing and tasks on other sample images, with PyTorch's outputs for them."""
        other = copy.copy(self)
        pre = self.training_preprocess
        other.images = load_images(images)
        other.pixels = to_pixels(other.images, pre.size, pre.fit, pre.resize, pre.interpolation)
        raw = TorchRunner(self.model.module, label="PyTorch (eager)", batch=1).run(other.pixels, pre)
        other.outputs = {name: raw[name] for name in self.outputs}
        other._expected_cache = {}
        return other

    def set_labels(self, labels: Sequence[str]) -> None:
        """Class names for the main output (a converted classifier's labels); one per class, or WorkbenchError."""
        main_name = self.task.main_output(self.outputs)
        main = self.outputs[main_name]
        n = main.shape[1] if main.ndim >= 2 else 1
        if self.task.name == "detection":  # a detector's classes are its decoded scores' columns
            n = self.task.candidates(self.outputs)[0][1].shape[1]
        if len(labels) != n:
            raise WorkbenchError(
                f"{len(labels)} labels for a model with {n} classes (output {main_name!r} shape {main.shape[1:]}); "
                "the labels file needs one line per class")
        self.labels = tuple(labels)
        if hasattr(self.task, "labels"):
            self.task = dataclasses.replace(self.task, labels=self.labels)

    @property
    def name(self) -> str:
        """A file-name stem for artifacts: the model's own name (its class or factory function, the torchvision
        or timm name), else the model file's stem."""
        own = getattr(self.model, "name", "")
        source = self.model.source.split(" ")[0]
        if own:
            stem = own
        elif source.startswith("torchvision:"):
            stem = source.split(":", 1)[1]
        else:
            stem = Path(source.rpartition(":")[0] if ".py:" in source else source).stem
        return re.sub(r"[^\w.-]+", "_", stem).strip("_") or "model"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        h, w = self.training_preprocess.size
        return (1, self.training_preprocess.channels, h, w)

    def spec(self, *, bake: bool = True, preprocess: Preprocess | None = None, labels: bool = True) -> ExportSpec:
        """What exporters need; `bake` puts the preprocessing inside the artifact (pixels in); `labels`
        False leaves a classifier's labels out (its artifact gives the model's own scores)."""
        module = self.model.module
        if tuple(self.outputs) != self._model_outputs:  # the main output first, as the reference has it
            module = _outputs_by_name(module, self._model_outputs)
        return ExportSpec(module=module, input_shape=self.input_shape,
                          output_names=tuple(self.outputs),
                          preprocess=(preprocess or self.training_preprocess) if bake else None,
                          task=self.task, source=self.model.source, labels=self.labels if labels else None)

    def calibration(self, preprocess: Preprocess, *, expected: Preprocess | None = None,
                    inside: Preprocess | None = None):
        """The sample images as calibration data for a compressed variant (see `formats.Calibration`)."""
        return _formats.Calibration(tuple(i.name for i in self.images), self.pixels, preprocess, expected=expected,
                                    inside=inside)

    def _expected(self, artifact: Artifact | None) -> tuple[dict[str, np.ndarray], dict[str, ReferenceFigures]]:
        """The reference as `artifact` gives it, and its figures for `compare`: computed once per way of giving
        it (the widget compares on every slider move), again when the reference is replaced."""
        key = artifact.mappings if artifact else ()
        cached = self._expected_cache.get(key)
        if cached is None or cached[0] is not self.outputs:
            expected = artifact.expected(self.outputs) if artifact else dict(self.outputs)
            cached = self._expected_cache[key] = (
                self.outputs, expected, {n: ReferenceFigures.of(v) for n, v in expected.items()})
        return cached[1], cached[2]

    def compare_artifact(self, artifact: Artifact | None, outputs: dict[str, np.ndarray],
                         tolerance: Tolerance | dict | None = None, name: str = "candidate") -> Comparison:
        """`outputs` of `artifact` against the reference as that artifact gives it, with the tolerance of
        its precision unless one is given."""
        from .formats.base import DetectedBoxes

        tol = tolerance or DEFAULT_TOLERANCES[artifact.precision if artifact else "fp32"]
        expected, figures = self._expected(artifact)
        task = self.task  # a file with NMS inside gives boxes: both sides are compared as boxes
        if artifact is not None and any(isinstance(m, DetectedBoxes) for m in artifact.mappings):
            task = dataclasses.replace(task, decoder="boxes", outputs=None, output=None)
        result = compare(expected, outputs, task=task, tolerance=tol, images=[i.name for i in self.images],
                         name=name, reference_figures=figures)
        if task.name == "detection":  # a detector passes when it finds the same objects
            from .tasks.detection import judge

            result = judge(task, expected, outputs, result, [i.name for i in self.images])
        if artifact is not None and artifact.precision == "fp16" and any(": non-finite" in f for f in result.failures):
            # a classifier's artifact gives probabilities: the logits that overflowed fp16 are the model's own
            for out, value in self.outputs.items():
                peak = float(np.abs(value).max()) if np.isfinite(value).all() else 0.0
                if peak > FP16_MAX:
                    result.failures = [
                        f.replace(": non-finite values", f": non-finite values: fp16 overflow (the model's {out!r} "
                                  f"reaches {peak:.3g}, beyond fp16's {FP16_MAX:g}): run at fp32 (CLI: "
                                  "--precision fp32)", 1)
                        if f"output {out!r} on " in f and "fp16 overflow" not in f else f for f in result.failures]
        return result


def _resized(pre: Preprocess, resize: int | None, crop_pct: float | None, interpolation: str | None) -> Preprocess:
    """`pre` with the resize before its center crop (`resize` pixels, or int(size / crop_pct) as timm does) and
    its resampling filter changed, where given."""
    changes = {}
    if resize is not None and crop_pct is not None:
        raise WorkbenchError("give resize (the shorter side in pixels) or crop_pct (size / resize), not both")
    if crop_pct is not None:
        if not 0 < crop_pct <= 1:
            raise WorkbenchError(f"crop_pct {crop_pct} must be in (0, 1]: the share of the resized image kept")
        resize = int(min(pre.size) / crop_pct)
    if resize is not None:
        if resize < min(pre.size):
            raise WorkbenchError(f"resize {resize} is smaller than the input size {pre.size}: the center crop "
                                 "needs at least that many pixels")
        changes.update(resize=resize if resize != min(pre.size) else None, fit="crop")
    if interpolation is not None:
        changes["interpolation"] = interpolation
    return dataclasses.replace(pre, **changes) if changes else pre


def _output_name(outputs: Mapping, output: str | int) -> str:
    """The name of output `output` (a name, or a position as int or digits), or WorkbenchError listing them."""
    names = list(outputs)
    if isinstance(output, int) or (isinstance(output, str) and output.isdigit() and output not in outputs):
        i = int(output)
        if not 0 <= i < len(names):
            raise WorkbenchError(f"output {i} is out of range: the model has {len(names)} outputs {names}")
        return names[i]
    if output not in outputs:
        raise WorkbenchError(f"the model has no output {output!r}; its outputs are {names} (name or position)")
    return output


def _for_output(task: Task, name: str) -> Task:
    """`task` bound to output `name`."""
    if dataclasses.is_dataclass(task):
        return dataclasses.replace(task, output=name) if task.output != name else task
    bound = type(task)()
    bound.output = name
    return bound


def _kept_outputs(module, names: Sequence[str], kept: Sequence[str]):
    """`module` giving only its outputs named `kept` (of all its outputs `names`), as a {name: tensor} dict."""
    import torch

    class TensorOutputs(torch.nn.Module):
        def __init__(self, model, names, kept):
            super().__init__()
            self.model, self.names, self.kept = model, list(names), list(kept)

        def forward(self, x):
            out = dict(zip(self.names, (v for _, v in output_items(self.model(x)))))
            return {name: out[name] for name in self.kept}

    wrapped = TensorOutputs(module, names, kept)
    wrapped.__class__.__name__ = type(module).__name__
    return wrapped.eval()


def _outputs_by_name(module, names: Sequence[str]):
    """`module` with its outputs as a {name: tensor} dict, so exporters can take them in any order."""
    import torch

    class OutputsByName(torch.nn.Module):
        def __init__(self, model, names):
            super().__init__()
            self.model, self.names = model, list(names)

        def forward(self, x):
            out = self.model(x)
            if isinstance(out, dict):
                return out
            return dict(zip(self.names, out if isinstance(out, (tuple, list)) else [out]))

    wrapped = OutputsByName(module, names)
    wrapped.__class__.__name__ = type(module).__name__
    return wrapped.eval()


class ArtifactSet:
    """Artifacts of one reference, at most one per format, each with its runner built on first use.

    runtime_options: per format, what its runner takes ({FORMAT: {OPTION: VALUE}}).
    """

    def __init__(self, reference: Reference, runtime_options: dict[str, dict] | None = None):
        self.reference = reference
        self.runtime_options = {k: dict(v) for k, v in (runtime_options or {}).items()}
        for name, options in self.runtime_options.items():
            _formats.get(name).check_runtime_options(options)
        self.artifacts: dict[str, Artifact] = {}
        self._runners: dict[str, Runner] = {}

    def export(self, fmt: str, path: str | Path | None = None, *, bake: bool = True,
               preprocess: Preprocess | None = None, labels: bool = True, **options) -> Artifact:
        """Export the reference's model to `fmt` at `path` (default: a new temporary folder) and keep it."""
        format_ = _formats.get(fmt)
        if path is None:
            path = Path(tempfile.mkdtemp(prefix="workbench-")) / f"{self.reference.name}{format_.suffix}"
        artifact = format_.export(self.reference.spec(bake=bake, preprocess=preprocess, labels=labels), path,
                                  **options)
        self.add(artifact)
        return artifact

    def add(self, artifact: Artifact) -> None:
        """Make `artifact` the one `run(artifact.format)` uses (its runner is built on first use)."""
        self.artifacts[artifact.format] = artifact
        old = self._runners.pop(artifact.format, None)
        if old is not None:
            old.deactivate()

    def runner(self, fmt: str) -> Runner:
        """The runner of the `fmt` artifact, built once."""
        if fmt not in self._runners:
            if fmt not in self.artifacts:
                raise WorkbenchError(f"no {fmt} artifact yet; export it first")
            self._runners[fmt] = _formats.runner_for(self.artifacts[fmt], **self.runtime_options.get(fmt, {}))
        return self._runners[fmt]

    def run(self, fmt: str, preprocess: Preprocess | None = None) -> dict[str, np.ndarray]:
        """The `fmt` artifact's outputs on the sample images, with `preprocess` applied in front of it
        (None: the artifact's own). An artifact with other preprocessing inside refuses, never ignores it."""
        return self.runner(fmt).run(self.reference.pixels, preprocess)

    def compare(self, fmt: str, outputs: dict[str, np.ndarray],
                tolerance: Tolerance | dict | None = None) -> Comparison:
        return self.reference.compare_artifact(self.artifacts.get(fmt), outputs, tolerance, name=fmt)

    def expected(self, fmt: str) -> dict[str, np.ndarray]:
        """The reference as the `fmt` artifact gives it (see `Artifact.expected`)."""
        return dict(self.reference._expected(self.artifacts.get(fmt))[0])

    def locate(self, fmt: str | None = None, image: int = 0, tolerance: Tolerance | None = None,
               preprocess: Preprocess | None = None):
        """Where the `fmt` artifact diverges from PyTorch, layer by layer, on sample image `image`, both sides
        given the same input: a `layers.Layers` (`first`: the first layer over tolerance). fmt None: the one
        artifact in this set whose format has a locator."""
        from .layers import locate

        fmt = self._locatable(fmt)
        return locate(self.reference, self.artifacts[fmt], self.runner(fmt), image, tolerance, preprocess)

    def _locatable(self, fmt: str | None) -> str:
        if fmt is not None:
            if fmt not in self.artifacts:
                raise WorkbenchError(f"no {fmt} artifact in this set: export it first")
            return fmt
        found = [f for f in self.artifacts if _formats.get(f).locator]
        if len(found) != 1:
            with_locator = [n for n, f in _formats.registry().items() if f.locator]
            raise WorkbenchError(f"name the format to locate in ({', '.join(found)})" if found else
                                 f"no artifact here has an op-by-op locator; export one of {', '.join(with_locator)}")
        return found[0]

    def close(self) -> None:
        for r in self._runners.values():
            r.deactivate()
        self._runners.clear()


class Session(Reference):
    """A reference and the artifacts exported from it: what `workbench check` and scripts drive.

    Takes what `Reference` takes, and runtime_options: per format, what its runner takes
    (``{FORMAT: {OPTION: VALUE}}``, each format's `runtime_options`).
    """

    def __init__(self, model, images, *, runtime_options: dict[str, dict] | None = None, **kwargs):
        super().__init__(model, images, **kwargs)
        self.exported = ArtifactSet(self, runtime_options)

    def with_images(self, images) -> Session:
        """This session's model on other sample images, with an export set of its own."""
        other = super().with_images(images)
        other.exported = ArtifactSet(other, self.exported.runtime_options)
        return other

    @property
    def artifacts(self) -> dict[str, Artifact]:
        return self.exported.artifacts

    def export(self, fmt: str, path: str | Path | None = None, *, bake: bool = True,
               preprocess: Preprocess | None = None, **options) -> Artifact:
        """Export to `fmt` (see `workbench.formats.registry()`) at `path` and remember the artifact."""
        return self.exported.export(fmt, path, bake=bake, preprocess=preprocess, **options)

    def use(self, artifact: Artifact) -> None:
        self.exported.add(artifact)

    def runner(self, fmt: str) -> Runner:
        return self.exported.runner(fmt)

    def run(self, fmt: str, preprocess: Preprocess | None = None) -> dict[str, np.ndarray]:
        return self.exported.run(fmt, preprocess)

    def compare(self, fmt: str, outputs: dict[str, np.ndarray],
                tolerance: Tolerance | dict | None = None) -> Comparison:
        return self.exported.compare(fmt, outputs, tolerance)

    def expected(self, fmt: str) -> dict[str, np.ndarray]:
        return self.exported.expected(fmt)

    def locate(self, fmt: str | None = None, image: int = 0, tolerance: Tolerance | None = None,
               preprocess: Preprocess | None = None):
        """Where the exported `fmt` artifact first diverges from PyTorch (see `ArtifactSet.locate`; the
        arguments in its order). A number first is the old order, `locate(image, ...)`: deprecated."""
        if isinstance(fmt, int):
            import warnings

            warnings.warn("Session.locate(image, ...) is deprecated: write locate(fmt, image, ...)", DeprecationWarning,
                          stacklevel=2)
            fmt, image = None, fmt
        return self.exported.locate(fmt, image, tolerance, preprocess)

    def check(self, formats: Sequence[str] | None = None, out: str | Path | None = None,
              *, tolerance: Tolerance | dict | None = None, overwrite: bool = False,
              options: dict[str, dict] | None = None, preprocess: Preprocess | None = None,
              progress=None, compress: Mapping[str, Sequence[str]] | None = None,
              thresholds: Mapping[str, float] | None = None,
              calibration_preprocess: Preprocess | None = None) -> Report:
        """Export to each format (preprocessing inside), run what can run here, compare with PyTorch.

        formats: names from `workbench.formats.registry()` (default: `workbench.formats.defaults()`).
        preprocess: what to bake into the artifacts (default: the training preprocessing); the reference
        is always the training preprocessing, so a different one shows up as a parity failure.
        options: per format, its export options. progress: called with (format, step) as each step starts
        (step: "export", "run", "locate"); `Reference` calls it for ("model", "load") and ("PyTorch", "run").
        A format that fails to export or run is reported with its error; the others go on.

        compress: per format, compressed variants to build after its artifact ({FORMAT: [VARIANT, ...]};
        `workbench.formats.get(name).variants` lists them), each written beside it, run and
        compared with PyTorch (see `VariantResult` for what passing means). Variants that calibrate (int8) use
        the sample images through the artifact's own preprocessing, or `calibration_preprocess` (a mistake
        made on purpose: the variant's notes name both). thresholds: {"min_top1", "min_psnr", "min_miou"},
        minimum figures every format and variant must reach (a format below one fails).
        """
        names = list(_formats.defaults() if formats is None else formats)
        if not names:
            raise WorkbenchError(f"no format to check; choose from {', '.join(_formats.registry())}")
        chosen = {name: _formats.get(name) for name in names}  # every name and option checked before any work
        for name, given in (options or {}).items():
            _formats.get(name).check_export_options(given)
        compress = {k: list(v) for k, v in (compress or {}).items()}
        for name, variants in compress.items():
            if name not in chosen:
                raise WorkbenchError(f"compressed variants of {name}, which is not checked; add it to the formats "
                                     f"({', '.join(chosen)})")
            chosen[name].check_variants(variants)
        below({}, thresholds, "")  # unknown threshold names are refused before any work
        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="workbench-"))
        report = Report(self.model.source, [i.name for i in self.images], preprocess or self.training_preprocess,
                        self.task.name, notes=list(self.notes), training_preprocess=self.training_preprocess)
        for name, fmt in chosen.items():
            result = report.formats[name] = FormatResult(name)
            if progress:
                progress(name, "export")
            try:
                result.artifact = self.export(name, out / f"{self.name}{fmt.suffix}", overwrite=overwrite,
                                              preprocess=preprocess, **(options or {}).get(name, {}))
            except OutputError:
                raise  # the machine cannot take the outputs: no format can, so the whole check stops
            except Exception as exc:  # a format that cannot be produced is one line; the others go on
                result.error, result.traceback = self._failure(fmt.title, "export", exc)
                result.variants = {v: VariantResult(v, error=f"not built: the {name} export failed")
                                   for v in compress.get(name, ())}
                continue
            if progress:
                progress(name, "run")
            try:
                outputs = self.run(name)
                result.label = self.runner(name).label
                result.comparison = self.compare(name, outputs, tolerance)
                result.comparison.failures += below(result.comparison.worst(), thresholds, name)
                if fmt.locator and not result.comparison.passed and result.artifact.traced is not None:
                    if progress:
                        progress(name, "locate")
                    result.divergence = self.locate(name, tolerance=tolerance).describe()
            except RuntimeUnavailable as exc:
                result.skipped = str(exc)
            except Exception as exc:
                result.error, result.traceback = self._failure(fmt.title, "run", exc)
            for variant in compress.get(name, ()):
                if progress:
                    progress(f"{name} {variant}", "compress")
                result.variants[variant] = self._variant(fmt, result.artifact, variant, out, tolerance, thresholds,
                                                         calibration_preprocess, overwrite)
        return report

    def _variant(self, fmt, artifact: Artifact, variant: str, out: Path, tolerance, thresholds,
                 calibration_preprocess: Preprocess | None, overwrite: bool) -> VariantResult:
        """Build, run and compare one compressed variant of `artifact`."""
        result = VariantResult(variant, judged=bool(thresholds and any(v is not None for v in thresholds.values())))
        result.base_bytes = size_on_disk(artifact.path)
        training = self.training_preprocess
        calibration = self.calibration(calibration_preprocess or artifact.preprocess or training,
                                       expected=artifact.preprocess or training, inside=artifact.preprocess)
        if fmt.calibrates(variant):
            result.calibration = calibration.to_dict()
        try:
            result.artifact = fmt.compress(variant, artifact, out / f"{self.name}.{variant}{fmt.suffix}",
                                           calibration=calibration, overwrite=overwrite)
            result.size_bytes = size_on_disk(result.artifact.path)
            runner = fmt.make_runner(result.artifact, **self.exported.runtime_options.get(fmt.name, {}))
            try:
                outputs = runner.run(self.pixels)
                result.label = runner.label
            finally:
                runner.deactivate()
            result.comparison = self.compare_artifact(result.artifact, outputs, tolerance, name=f"{fmt.name} {variant}")
            result.failures = below(result.comparison.worst(), thresholds, f"{fmt.name} {variant}")
        except RuntimeUnavailable as exc:
            result.error = f"cannot run here: {exc}"
        except Exception as exc:
            result.error, result.traceback = self._failure(f"{fmt.title} {variant}", "build or run", exc)
        return result

    def _failure(self, what: str, step: str, exc: Exception) -> tuple[str, str | None]:
        """One line for an exception raised while `step` ran for `what` (a format): a WorkbenchError's own
        message, anything else as "{what} {step} failed: Type: first line" with the custom autograd.Function
        behind it, if any; and the traceback of anything else (the CLI prints it with --debug)."""
        import traceback

        from .diagnose import autograd_function_hint, autograd_functions
        from .errors import first_line

        text = str(exc) if isinstance(exc, WorkbenchError) else (
            f"{what} {step} failed: {type(exc).__name__}: {first_line(exc)[:300]}")
        detail = f"{type(exc).__name__}: {exc}"
        if re.search(r"PythonOp|Python function|autograd|Function", detail, re.I):
            import torch

            x = torch.from_numpy(np.ascontiguousarray(self.training_preprocess.apply(self.pixels[:1])))
            hint = autograd_function_hint(autograd_functions(self.model.module, x), detail)
            if hint:  # it replaces a converter's generic advice
                text = f"{text.split(' Fix: ')[0].rstrip('.: ')}. {hint}"
        return text, None if isinstance(exc, WorkbenchError) else traceback.format_exc()

    def close(self) -> None:
        self.exported.close()

    def check_dataset(self, source, formats: Sequence[str] | None = None, out: str | Path | None = None, **kwargs):
        """Check every image of `source` (a folder, an ImageFolder, a .txt list), streamed in bounded memory:
        a `workbench.dataset.DatasetResult` (see `workbench.dataset.check_dataset` for the options)."""
        from .dataset import check_dataset

        return check_dataset(self, source, formats, out, **kwargs)
