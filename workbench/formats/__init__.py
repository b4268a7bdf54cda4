"""The formats, one folder each, registered by name: everything the workbench knows about a format.

A format folder (`onnx/`, `coreml/`, `torchscript/`, ...) declares one `Format` in its `__init__.py` and keeps
its exporter, runner, file validation, its files on disk, its bare runtime call (for the bench) and what its
runtime applies natively beside it. The CLI (`--to`, its option flags), the session's `check`, the widget's
columns, checkboxes, graph buttons and Export panel, the sizes and the bench all iterate `registry()`; nothing
else lists formats. Adding a format is adding a folder (docs/architecture.md, "How to add a format"); code two
formats share lives in `formats/common/`, not in a sibling's folder. Declarations are light: a format's heavy
package (onnxruntime, coremltools, ...) is imported by its exporter or runner when first used.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import WorkbenchError
from ..preprocess import Preprocess
from .base import Artifact, BareCall, ExportSpec, Native, Runner


@dataclass(frozen=True)
class Option:
    """An export or runner option a user can set: its name, default and what it does.

    choices: the values it takes (others are refused); suggest: common values a menu offers where any value is
    taken. flag: its command-line alias of ``--option FORMAT.NAME=VALUE`` (``--runtime-option`` for a runner's),
    e.g. "--precision"; formats that declare the same flag share it, and it applies to each chosen format that
    has it. panel: shown in the widget's Export panel (under the format, while it is ticked).
    """

    name: str
    default: object = None
    help: str = ""
    choices: tuple | None = None
    flag: str | None = None
    panel: bool = False
    suggest: tuple = ()


@dataclass(frozen=True)
class Format:
    """A format: its names, its file, and where its exporter, runner and validator live.

    exporter/runner/validator/locator/files/netron/floor/bare_export: ``"module:attribute"`` relative to `package`
    (imported on first use):
    - files: ``(path, options=None) -> [Path]``, every file or folder an artifact at `path` is made of (ncnn's
      .param and .bin), or, given export options, what an export there writes; default: `path` alone;
    - netron: ``(path) -> Path``, the file Netron opens for the artifact (inside an .mlpackage); default: itself;
    - floor: ``(artifact, inputs, pixels=None, stack=None) -> callable``, the bare runtime call on already
      preprocessed inputs, built once (bench/refresh.py times the widget against it);
    - bare_export: ``(spec, path) -> None``, the converter's own calls writing the model `export` writes
      (bench/export.py times the exporter against it);
    - bench: ``(settings) -> (rows, targets)``, figures only this format has (Core ML: its interpreter per
      image), as a section of bench/ takes them (bench/formats.py runs every format's);
    modules: the Python packages its exporter and runtime import (their versions head the bench's results; none
    may load at ``import workbench``);
    native: the preprocessing the runtime applies itself (a `Native`: Core ML's ImageType, ncnn's and MNN's
    mean/norm); None puts it in the graph. live_options: what the widget's live conversion passes to the
    exporter (it compares on the sample images right after, so e.g. torch's own trace check can be skipped).
    """

    name: str
    title: str  # the format, as buttons and checkboxes name it ("Core ML")
    runtime: str  # what runs it here, before the runner says more ("ONNX Runtime")
    suffixes: tuple[str, ...]  # the first is what exports write
    package: str
    exporter: str = ".export:export"
    runner: str = ".runner:runner"
    validator: str = ".validate:validate"
    locator: str | None = None  # where a failing artifact first leaves PyTorch, op by op
    files: str | None = None
    netron: str | None = None
    floor: str | None = None
    bare_export: str | None = None
    bench: str | None = None
    modules: tuple[str, ...] = ()
    native: Native | None = None
    precisions: tuple[str, ...] = ("fp32",)
    default_precision: str = "fp32"
    export_options: tuple[Option, ...] = ()
    runtime_options: tuple[Option, ...] = ()
    live_options: dict = field(default_factory=dict)
    default: bool = False  # in `workbench check`'s and the widget's default set
    order: int = 100  # position in tables and menus
    notes: str = ""  # what a user should know (a dependency it adds, a limit)
    # compressed variants: name -> "module:function" relative to `package`, each
    # ``(artifact, path, *, calibration: Calibration | None, overwrite) -> Artifact`` (a new file beside it)
    variants: dict[str, str] = field(default_factory=dict)

    @property
    def suffix(self) -> str:
        return self.suffixes[0]

    def _load(self, ref: str | None) -> Callable:
        """The object `ref` names: "module:attribute", the module relative to `package` when it starts with a dot."""
        module, _, attr = ref.partition(":")
        return getattr(importlib.import_module(module, self.package if module.startswith(".") else None), attr)

    def export(self, spec: ExportSpec, path: str | Path, **options) -> Artifact:
        """Write `spec` at `path` (see the format's exporter for its options)."""
        self.check_export_options(options)
        return self._load(self.exporter)(spec, Path(path), **options)

    def make_runner(self, artifact: Artifact, **options) -> Runner:
        """A runner for `artifact` (not yet active), with the format's runtime options."""
        self.check_runtime_options(options)
        return self._load(self.runner)(artifact, **options)

    def compress(self, variant: str, artifact: Artifact, path: str | Path, *,
                 calibration: Calibration | None = None, overwrite: bool = False) -> Artifact:
        """Write the compressed `variant` of `artifact` at `path`; WorkbenchError names the format's variants
        when it has no such one."""
        self.check_variants([variant])
        return self._load(self.variants[variant])(artifact, Path(path), calibration=calibration,
                                                  overwrite=overwrite)

    def calibrates(self, variant: str) -> bool:
        """Whether `variant` reads calibration images (its function sets ``calibrates = True``)."""
        self.check_variants([variant])
        return bool(getattr(self._load(self.variants[variant]), "calibrates", False))

    def check_variants(self, names) -> None:
        """Refuse variant names this format does not declare, listing the ones it does."""
        for name in names:
            if name not in self.variants:
                raise WorkbenchError(f"{self.title} has no compressed variant {name!r}; its variants: "
                                     f"{', '.join(self.variants) or 'none'}")

    def check_export_options(self, options: dict) -> None:
        """Refuse options this format's exporter does not take, naming the ones it does."""
        _check_options(self, options, self.export_options, "export")

    def check_runtime_options(self, options: dict) -> None:
        """Refuse options this format's runner does not take, naming the ones it does."""
        _check_options(self, options, self.runtime_options, "runtime")

    def validate(self, path: str | Path) -> str | None:
        """Check a file of this format when it is loaded; raises WorkbenchError naming what is wrong.
        Returns a note for the user, or None."""
        return self._load(self.validator)(Path(path))

    def locate(self, *args, **kwargs):
        if self.locator is None:
            raise WorkbenchError(f"{self.title} has no op-by-op divergence locator")
        return self._load(self.locator)(*args, **kwargs)

    def native_exact(self, pre: Preprocess) -> bool | None:
        """Whether the runtime's own preprocessing expresses `pre` exactly (None: it has none; the
        preprocessing goes into the graph, where it is always exact)."""
        return None if self.native is None else self.native.exact(pre)

    def carries(self, pre: Preprocess) -> str:
        """How an export of this format carries `pre`: natively (exactly or not) or in the graph."""
        return "exact (in the graph)" if self.native is None else self.native.note(pre)

    def artifact_files(self, path: str | Path, options: dict | None = None) -> list[Path]:
        """Every file or folder an artifact at `path` is made of; given export `options`, what an export at
        `path` with them writes (a Core ML neural network is an .mlmodel, not an .mlpackage)."""
        if self.files is None:
            return [Path(path)]
        return [Path(p) for p in self._load(self.files)(Path(path), options)]

    def size_on_disk(self, path: str | Path) -> int:
        """Bytes of the artifact at `path`: every file it is made of, folders summed."""
        return sum(_bytes(p) for p in self.artifact_files(path) if p.exists())

    def graph_file(self, path: str | Path) -> Path:
        """The file Netron opens for the artifact at `path`; WorkbenchError when it is not there."""
        path = Path(path)
        if not path.exists():
            raise WorkbenchError(f"cannot show the graph: {path} does not exist")
        return Path(self._load(self.netron)(path)) if self.netron else path

    def bare_call(self, artifact: Artifact, inputs, pixels=None, stack=None) -> BareCall:
        """The bare runtime on `inputs` (preprocessed, (N, C, H, W) float32), built once: the call to time.
        `pixels`: the 0-255 images, for an artifact whose runtime applies its own preprocessing to them
        (ncnn's and MNN's mean/norm); `stack`: an ExitStack that closes what the call holds (a worker)."""
        if self.floor is None:
            raise WorkbenchError(f"{self.title} declares no bare runtime call (Format.floor) for the bench")
        call = self._load(self.floor)(artifact, inputs, pixels, stack)
        return call if isinstance(call, BareCall) else BareCall(call)

    def bare_exporter(self):
        """`(spec, path) -> None`: the converter's own calls writing what `export(spec, path)` writes (the
        bench's floor for an export); WorkbenchError when the format declares none."""
        if self.bare_export is None:
            raise WorkbenchError(f"{self.title} declares no bare converter call (Format.bare_export) for the bench")
        return self._load(self.bare_export)

    def own_bench(self) -> Callable | None:
        """`(settings) -> (rows, targets)`: the figures only this format has, or None when it declares none."""
        return self._load(self.bench) if self.bench else None

    def options_with_flags(self) -> list[tuple[str, Option]]:
        """(kind, option) of every option with a command-line flag; kind "export" or "runtime"."""
        return [(kind, o) for kind, opts in (("export", self.export_options), ("runtime", self.runtime_options))
                for o in opts if o.flag]


@dataclass(frozen=True)
class Calibration:
    """The images a compressed variant is calibrated on, and the preprocessing that takes their pixels to
    the model's input tensor (the artifact's own unless told otherwise).

    images: their names. pixels: (N, 3, H, W) RGB in 0-255. expected: the preprocessing the artifact's input
    really needs (the one inside it, else the model's training one); a different `preprocess` is a
    calibration mistake, made on purpose to see what it costs, and `warning()` names both.
    """

    images: tuple[str, ...]
    pixels: object = field(repr=False, compare=False)
    preprocess: Preprocess
    expected: Preprocess | None = None
    inside: Preprocess | None = None  # the preprocessing the artifact applies itself (it takes pixels)

    @property
    def inputs(self):
        """The artifact's input for each image, (N, C, H, W) float32: what reaches the model's first layer
        is `preprocess` applied to the pixels (an artifact that takes pixels gets the pixels that its own
        preprocessing turns into that)."""
        import numpy as np

        from ..preprocess import to_channels
        from .base import same_preprocess

        if self.inside is None:
            return self.preprocess.apply(self.pixels)
        if same_preprocess(self.preprocess, self.inside):
            return np.ascontiguousarray(to_channels(np.asarray(self.pixels, np.float32), self.inside))
        x = self.preprocess.apply(self.pixels)
        scale = np.asarray(self.inside.scale, np.float32).reshape(1, -1, 1, 1)
        bias = np.asarray(self.inside.bias, np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - bias) / scale, np.float32)

    @staticmethod
    def require(calibration: Calibration | None, variant: str) -> Calibration:
        """`calibration`, or the error that `variant` (e.g. "ONNX int8 is static quantization") cannot go
        without one."""
        if calibration is None:
            raise WorkbenchError(f"{variant}: it needs calibration images (Session.check's compress= gives the "
                                 "sample images)")
        return calibration

    def describe(self) -> str:
        """How the ranges were calibrated, for a variant's notes."""
        return (f"calibrated on {len(self.images)} images ({', '.join(self.images)}) with preprocessing "
                f"{self.preprocess.describe()}")

    def warning(self) -> str | None:
        """A note when the calibration preprocessing is not the one the artifact needs, naming both."""
        from .base import same_preprocess

        if self.expected is None or (same_preprocess(self.preprocess, self.expected)
                                     and self.preprocess.bgr == self.expected.bgr):
            return None
        return (f"calibrated with preprocessing {self.preprocess.describe()}, but the artifact takes "
                f"{self.expected.describe()}: its activation ranges are measured on inputs the artifact never gets; "
                "calibrate with its own")

    def to_dict(self) -> dict:
        return {"images": list(self.images), "preprocess": self.preprocess.describe(),
                "preprocess_dict": self.preprocess.to_dict(), "warning": self.warning()}


def _bytes(path: Path) -> int:
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


def _check_options(fmt: Format, given: dict, declared: tuple[Option, ...], kind: str) -> None:
    known = {o.name: o for o in declared}
    for name, value in given.items():
        if name not in known and name != "overwrite":
            raise WorkbenchError(f"{fmt.title} has no {kind} option {name!r}; its options: "
                                 f"{', '.join(known) or 'none'}")
        choices = known[name].choices if name in known else None
        if choices and value not in choices:
            raise WorkbenchError(f"{fmt.title} {kind} option {name}={value!r}: choose one of "
                                 f"{', '.join(map(str, choices))}")


_REGISTRY: dict[str, Format] = {}
_ORDERED: dict[str, Format] | None = None  # _REGISTRY in display order, kept until a format comes or goes
_discovered = False


def register(fmt: Format) -> Format:
    """Add `fmt` to the registry; a second format of the same name is a bug."""
    if fmt.name in _REGISTRY and _REGISTRY[fmt.name] is not fmt:
        raise RuntimeError(f"format {fmt.name!r} is registered twice ({_REGISTRY[fmt.name].package} and "
                           f"{fmt.package})")
    global _ORDERED
    _REGISTRY[fmt.name], _ORDERED = fmt, None
    return fmt


def unregister(name: str) -> None:
    """Remove a format (tests register formats of their own)."""
    global _ORDERED
    _REGISTRY.pop(name, None)
    _ORDERED = None


def registry() -> dict[str, Format]:
    """Every registered format by name, in display order (a copy: the widget looks formats up on every
    refresh, so the order is worked out once, not per call)."""
    global _discovered, _ORDERED
    if not _discovered:
        _discovered = True
        for info in pkgutil.iter_modules(__path__):
            if info.ispkg:
                importlib.import_module(f"{__name__}.{info.name}")
    if _ORDERED is None:
        _ORDERED = dict(sorted(_REGISTRY.items(), key=lambda kv: (kv[1].order, kv[0])))
    return dict(_ORDERED)


def get(name: str) -> Format:
    """The format called `name`, or a WorkbenchError listing the registered ones."""
    formats = registry()
    if name not in formats:
        raise WorkbenchError(f"unknown format {name!r}; choose from {', '.join(formats)}")
    return formats[name]


def defaults() -> tuple[str, ...]:
    """The formats `workbench check` and the widget use when none are named."""
    return tuple(n for n, f in registry().items() if f.default)


def modules() -> tuple[str, ...]:
    """Every registered format's Python packages (`Format.modules`), each once, in the registry's order."""
    return tuple(dict.fromkeys(m for f in registry().values() for m in f.modules))


def for_file(path: str | Path) -> Format | None:
    """The format whose files end like `path`, if any (the longest suffix that fits: ".ncnn.param")."""
    name = Path(path).name.lower()
    fits = [(len(s), f) for f in registry().values() for s in f.suffixes if name.endswith(s.lower())]
    return max(fits, key=lambda t: t[0])[1] if fits else None


def size_on_disk(path: str | Path) -> int:
    """Bytes of an artifact: every file its format says it is made of (ncnn's .param and .bin), or of the
    file or folder at `path` when no format claims it."""
    fmt = for_file(path)
    return fmt.size_on_disk(path) if fmt is not None else _bytes(Path(path))


def export(spec: ExportSpec, fmt: str, path: str | Path, **options) -> Artifact:
    """Export `spec` to format `fmt` at `path` (see each exporter for its options)."""
    return get(fmt).export(spec, path, **options)


def runner_for(artifact: Artifact, **options) -> Runner:
    """The runner for an exported artifact."""
    return get(artifact.format).make_runner(artifact, **options)


__all__ = ["Artifact", "BareCall", "Calibration", "ExportSpec", "Format", "Native", "Option", "Runner", "defaults",
           "export", "for_file", "get", "register", "registry", "runner_for", "size_on_disk", "unregister"]
