"""The widget's state and work, with no UI: what the view draws and what its events call.

One `Controller` holds the one state: the converted side's `Preprocess` (and whether the exact normalization
is baked), the live formats and their status, the latest comparison with the preprocessing each column was
computed with, what is running now, the last error, the image page, the picture, and the last export's
outcome. Every control the view shows is drawn from it (`controls()`), so a control cannot show a value other
than the one in force. Listeners are called with what changed, while work proceeds, so a front end can show
a busy state and each format's column as soon as its runtime finishes (fastest first).

Imports no Jupyter: it is tested as it is.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import formats as _formats
from ..compare import DEFAULT_TOLERANCES, Comparison
from ..errors import WorkbenchError
from ..files import atomic_output, check_writable
from ..formats.base import same_preprocess
from ..preprocess import PRESETS, Preprocess
from ..session import ArtifactSet, FormatResult, Session, VariantResult, size_on_disk
from ..tasks import read_labels
from ..views import Table, compression_view, parity_table, side_by_side
from .dataset import DatasetRun
from .layers import LayersRun

MODEL = "__model__"  # the preset value that stands for the model's own (training) preprocessing
CUSTOM = "__custom__"  # shown when the values match no preset
PER_PAGE = 4  # sample images per page of the picture
FP16_SMALLEST = 6.1e-5  # fp16's smallest normal number: a reference below it cannot survive fp16


@dataclass(frozen=True)
class Control:
    """What one control shows: its value (as the exact number), whether it applies, and why not."""

    value: object
    enabled: bool = True
    reason: str = ""
    label: str = ""


@dataclass
class Variant:
    """A compressed variant of a live format (the Compression tab), rerun with it on every change.

    Compressed from the format's live artifact; one that calibrates (int8) is calibrated on the sample images
    with the preprocessing in force when it was built (`calibrated`). `result` holds its size against the
    uncompressed artifact's and its latest comparison with PyTorch, computed with `computed`.
    """

    format: str
    name: str
    status: str = ""
    artifacts: ArtifactSet | None = None  # its own set: its runner, built once
    result: VariantResult | None = None
    outputs: dict[str, np.ndarray] | None = None
    computed: Preprocess | None = None
    calibrated: Preprocess | None = None
    seconds: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return self.format, self.name

    @property
    def title(self) -> str:
        return f"{_formats.get(self.format).title} {self.name}"


@dataclass
class ExportOutcome:
    """The last Export: what it wrote (path, format title, verdict), or why it refused or asks first."""

    written: list[tuple[str, str, str]] = field(default_factory=list)
    refused: str | None = None
    confirm: str | None = None  # files would fail parity: the question to ask before writing them
    report: str | None = None


class Controller:
    """The workbench's state and actions. `session` is the reference and its exported artifacts; the
    controller keeps its own live artifact set, which exports never touch.

    formats: the formats converted live (rerun as the preprocessing changes). progress(text): told what the
    build is doing. Raises WorkbenchError for what a user can fix; state is unchanged when an action fails.
    """

    def __init__(self, session: Session, *, formats: Sequence[str] | None = None,
                 runtime_options: dict[str, dict] | None = None, progress: Callable[[str], None] | None = None,
                 variants: dict[str, Sequence[str]] | None = None):
        self.session = session
        self.reference_preprocess = session.training_preprocess
        names = tuple(_formats.defaults() if formats is None else formats)
        self.formats = tuple(_formats.get(n).name for n in names)  # unknown names refused here
        for fmt, chosen in (variants or {}).items():  # refused before any work
            if fmt not in self.formats:
                raise WorkbenchError(f"compressed variants of {fmt}, which is not live; add it to the formats "
                                     f"({', '.join(self.formats)})")
            _formats.get(fmt).check_variants(chosen)
        self.variants: dict[tuple[str, str], Variant] = {}
        self.variant_shown: tuple[str, str] | None = None  # whose images the Compression tab draws
        self._drawn: dict[str, tuple[int, bytes]] = {}  # the chart and the variant picture, drawn on demand
        self._compression_version = 0
        self.live = ArtifactSet(session, runtime_options)
        self.status: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # how long each live conversion took
        self.run_seconds: dict[str, float] = {}  # how long each format's last refresh took: fastest first
        self.preprocess = self.reference_preprocess.with_imagetype()
        self._chosen = MODEL  # the preset chosen last: the menu names it when others have the same values
        self.bake = False
        self._unbaked = self.preprocess  # what unticking bake returns to
        self.comparison: dict[str, Comparison] = {}
        self.outputs: dict[str, dict[str, np.ndarray]] = {}
        self.computed: dict[str, Preprocess] = {}  # the preprocessing each column was computed with
        self.divergence = None
        self.divergence_format: str | None = None  # whose program `divergence` walks
        self.busy: str | None = None
        self.error: str | None = None
        self.page = 0
        self.picture: bytes = b""
        self._tiles: dict = {}  # the picture's tiles that only the images and PyTorch's outputs decide (see draw)
        self.recomputes = 0
        self.export_outcome: ExportOutcome | None = None
        self.warnings = self._reference_warnings()
        self._listeners: list[Callable[[str], None]] = []
        self.dataset = DatasetRun(self)  # the Dataset tab's run: a whole folder, in the background
        self.layers = LayersRun(self)  # the Layers tab's: one format's per-layer comparison, on demand
        self._recomputing = threading.RLock()
        self._workdir = Path(tempfile.mkdtemp(prefix="workbench-live-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        for fmt in self.formats:
            self._convert(fmt, progress)
        for fmt, chosen in (variants or {}).items():
            for name in chosen:
                if progress:
                    progress(f"compressing {_formats.get(fmt).title} {name}")
                if self.begin_variant(fmt, name, quiet=True):
                    self._adopt_variant(self.variants[fmt, name], self.compress(fmt, name))
        if progress:
            progress(f"comparing on {len(session.images)} images")
        self.recompute()

    # -- listening ----------------------------------------------------------------------------------------
    def listen(self, callback: Callable[[str], None]) -> None:
        """Call `callback(what)` when state changes: "busy", "column", "result", "controls", "export", "live",
        "variants"."""
        self._listeners.append(callback)

    def _tell(self, what: str) -> None:
        for callback in self._listeners:
            callback(what)

    # -- live formats -------------------------------------------------------------------------------------
    def _convert(self, fmt: str, progress=None) -> None:
        """Export `fmt` once, taking the model tensor: the preprocessing applies in front of it, as a
        runtime's image input would. Live artifacts give the model's own outputs (no classifier labels: Export adds
        them)."""
        if progress:
            progress(f"converting to {_formats.get(fmt).title}")
        self._adopt(fmt, self.convert(fmt))

    def convert(self, fmt: str):
        """The live artifact of `fmt`, or the error that stopped it, with the seconds it took. Touches no
        state, so it may run in a worker thread while the widget goes on (see `begin_live`)."""
        format_ = _formats.get(fmt)
        start = time.perf_counter()
        try:
            artifact = format_.export(self.session.spec(bake=False, labels=False),
                                      self._workdir / f"{self.session.name}{format_.suffix}", overwrite=True,
                                      **format_.live_options)
        except WorkbenchError as exc:
            artifact = exc
        return artifact, time.perf_counter() - start

    def _adopt(self, fmt: str, converted) -> None:
        artifact, self.seconds[fmt] = converted
        if isinstance(artifact, WorkbenchError):
            self.status[fmt] = f"failed: {artifact}"
        else:
            self.live.add(artifact)
            self.status[fmt] = "ok"

    @property
    def running(self) -> tuple[str, ...]:
        """The live formats that converted and run on every change."""
        return tuple(f for f in self.formats if self.status.get(f) == "ok")

    def add_live(self, fmt: str) -> None:
        """Convert `fmt` and run it live from now on (busy while it converts)."""
        if not self.begin_live(fmt):
            return
        self._set_busy(f"converting to {_formats.get(fmt).title}")
        try:
            converted = self.convert(fmt)
        finally:
            self._set_busy(None)
        self.finish_live(fmt, converted)

    def begin_live(self, fmt: str) -> bool:
        """Add `fmt` to the live set as converting (its column says so); False when it is live already. The
        conversion itself is `convert(fmt)`, then `finish_live(fmt, converted)`: a front end can convert in
        a worker thread and keep every other control working meanwhile."""
        format_ = _formats.get(fmt)
        if fmt in self.formats:
            return False
        self.formats = self.formats + (fmt,)
        self.status[fmt] = f"converting to {format_.title} (the rest of the widget works meanwhile)"
        self._tell("live")
        return True

    def finish_live(self, fmt: str, converted) -> None:
        """Take the result of `convert(fmt)`; run the format from now on if it converted."""
        if fmt not in self.formats:  # removed while it converted
            return
        self._adopt(fmt, converted)
        self._tell("live")
        if self.status[fmt] == "ok":
            self.recompute()

    def remove_live(self, fmt: str) -> None:
        """Stop running `fmt` live (its artifact stays, for its graph), and its compressed variants."""
        if fmt in self.formats:
            self.formats = tuple(f for f in self.formats if f != fmt)
            for table in (self.comparison, self.outputs, self.computed):
                table.pop(fmt, None)
            dropped = [k for k in self.variants if k[0] == fmt]
            for key in dropped:
                self._drop_variant(key)
            if dropped:
                self._compression_changed()
            self._tell("live")
            self._tell("variants")
            self._redraw()

    # -- compressed variants (the Compression tab) --------------------------------------------------------------
    def variant_choices(self) -> dict[str, tuple[str, ...]]:
        """Per registered format that has compressed variants, their names (registry order)."""
        return {name: tuple(f.variants) for name, f in _formats.registry().items() if f.variants}

    def variant_blocked(self, fmt: str) -> str:
        """Why `fmt`'s variants cannot be chosen now ("" when they can)."""
        title = _formats.get(fmt).title
        if fmt not in self.formats:
            return (f"run {title} live first (tick it under 'run live'): its variants are compressed from that "
                    "conversion")
        if self.status.get(fmt) != "ok":
            return f"{title} is not converted: {self.status.get(fmt, '')}"
        return ""

    def add_variant(self, fmt: str, name: str) -> None:
        """Compress the live `fmt` artifact to variant `name` and rerun it with the others from now on."""
        if not self.begin_variant(fmt, name):
            return
        self._set_busy(f"compressing {_formats.get(fmt).title} {name}")
        try:
            compressed = self.compress(fmt, name)
        finally:
            self._set_busy(None)
        self.finish_variant(fmt, name, compressed)

    def begin_variant(self, fmt: str, name: str, *, quiet: bool = False) -> bool:
        """Add variant `name` of `fmt` as compressing; False when it is there already. Then `compress(fmt,
        name)` (may run in a worker thread) and `finish_variant(fmt, name, compressed)`. Raises WorkbenchError
        for an unknown variant or a format that is not live."""
        _formats.get(fmt).check_variants([name])
        blocked = self.variant_blocked(fmt)
        if blocked:
            raise WorkbenchError(blocked)
        if (fmt, name) in self.variants:
            return False
        self.variants[fmt, name] = Variant(fmt, name, status="compressing (the rest of the widget works meanwhile)")
        if not quiet:
            self._tell("variants")
        return True

    def compress(self, fmt: str, name: str):
        """Variant `name` of the live `fmt` artifact, or the error that stopped it, with the preprocessing it
        was calibrated with and the seconds it took. Touches no state (see `convert`)."""
        format_, base, pre = _formats.get(fmt), self.live.artifacts[fmt], self.preprocess
        start = time.perf_counter()
        s = self.session
        # The live artifact takes the model's tensor: what the phone feeds it is the preprocessing in force.
        calibration = s.calibration(pre, expected=pre)
        calibrates = format_.calibrates(name)
        try:
            artifact = format_.compress(name, base, self._workdir / f"{s.name}.{name}{format_.suffix}",
                                        calibration=calibration if calibrates else None, overwrite=True)
        except WorkbenchError as exc:
            artifact = exc
        return artifact, (calibration if calibrates else None), time.perf_counter() - start

    def finish_variant(self, fmt: str, name: str, compressed) -> None:
        """Take the result of `compress(fmt, name)`; run the variant from now on if it compressed."""
        variant = self.variants.get((fmt, name))
        if variant is None:  # removed (or its format stopped) while it compressed
            return
        self._adopt_variant(variant, compressed)
        if variant.status == "ok":
            try:
                self._run_variant(variant, self.preprocess)
            except WorkbenchError as exc:
                variant.status = f"failed to run: {exc}"
            self._compression_changed()
        self._tell("variants")

    def _adopt_variant(self, variant: Variant, compressed) -> None:
        artifact, calibration, variant.seconds = compressed
        if isinstance(artifact, WorkbenchError):
            variant.status = f"failed: {artifact}"
            return
        variant.artifacts = ArtifactSet(self.session, {variant.format: self.live.runtime_options.get(variant.format,
                                                                                                     {})})
        variant.artifacts.add(artifact)
        variant.calibrated = calibration.preprocess if calibration is not None else None
        variant.result = VariantResult(variant.name, artifact=artifact, size_bytes=size_on_disk(artifact.path),
                                       base_bytes=size_on_disk(self.live.artifacts[variant.format].path),
                                       calibration=calibration.to_dict() if calibration is not None else None)
        variant.status = "ok"
        if self.variant_shown is None:
            self.variant_shown = variant.key

    def remove_variant(self, fmt: str, name: str) -> None:
        """Stop running variant `name` of `fmt`."""
        if (fmt, name) in self.variants:
            self._drop_variant((fmt, name))
            self._compression_changed()
            self._tell("variants")

    def _drop_variant(self, key: tuple[str, str]) -> None:
        variant = self.variants.pop(key)
        if variant.artifacts is not None:
            variant.artifacts.close()
        if self.variant_shown == key:
            self.variant_shown = next((k for k, v in self.variants.items() if v.status == "ok"), None)

    def show_variant(self, fmt: str, name: str) -> None:
        """Draw the images where variant `name` of `fmt` differs most from PyTorch."""
        variant = self.variants.get((fmt, name))
        if variant is None or variant.status != "ok":
            raise WorkbenchError(f"{_formats.get(fmt).title} {name} is not a running variant; choose one of "
                                 f"{', '.join(v.title for v in self.variants.values() if v.status == 'ok') or 'none'}")
        self.variant_shown = (fmt, name)
        self._compression_changed()
        self._tell("variants")

    def _run_variant(self, variant: Variant, pre: Preprocess) -> None:
        out = variant.artifacts.run(variant.format, preprocess=pre)
        variant.result.comparison = variant.artifacts.compare(variant.format, out)
        variant.outputs, variant.computed = out, pre

    def variant_note(self, variant: Variant) -> str:
        """What to know about a variant's figures: how it was calibrated against the preprocessing in force."""
        if variant.calibrated is None:
            return "weights only: reads no calibration images"
        images = variant.result.calibration["images"] if variant.result and variant.result.calibration else []
        if same_preprocess(variant.calibrated, self.preprocess) and variant.calibrated.bgr == self.preprocess.bgr:
            return f"calibrated on {len(images)} sample images ({', '.join(images)}) with the preprocessing in force"
        return (f"calibrated with {variant.calibrated.describe()}, not the preprocessing in force "
                f"({self.preprocess.describe()}): its activation ranges are off for these inputs. Untick and tick it "
                "to recalibrate; Export calibrates with the preprocessing in force")

    def compression_results(self) -> dict[str, FormatResult]:
        """The live formats that have running variants, as `Session.check` reports them (for the chart)."""
        results: dict[str, FormatResult] = {}
        for (fmt, _), variant in self.variants.items():
            if variant.status != "ok" or variant.result is None or variant.result.comparison is None:
                continue
            if fmt not in results:
                results[fmt] = FormatResult(fmt, artifact=self.live.artifacts.get(fmt),
                                            comparison=self.comparison.get(fmt), label=self.title(fmt))
            results[fmt].variants[variant.name] = variant.result
        return results

    def parity_view(self) -> Table:
        """The parity table as the widget shows it: each live format's latest comparison (out of date ones
        faded), or why it has none, with the tolerance it is judged by (`views.parity_table`)."""
        results, messages = {}, {}
        for fmt in self.formats:
            status = self.status.get(fmt, "")
            failed = status.startswith("failed")
            results[fmt] = FormatResult(fmt, artifact=self.live.artifacts.get(fmt),
                                        comparison=self.comparison.get(fmt), label=self.title(fmt),
                                        error=status if failed else None)
            if fmt not in self.comparison:
                messages[fmt] = status if status != "ok" else "not run yet"
        return parity_table(results, tolerances={f: self.tolerance(f) for f in self.formats}, stale=self.stale(),
                            messages=messages)

    def compression_view(self) -> Table:
        """The Compression tab's table: per format with ticked variants its uncompressed live artifact, then
        each variant (its size, its figures against PyTorch, what they are computed on, how it was
        calibrated), as `views.compression_view` renders `Session.check`'s results: the same figures, the
        same way."""
        results: dict[str, FormatResult] = {}
        notes, messages, stale = {}, {}, set()
        for (fmt, name), variant in self.variants.items():
            if fmt not in results:
                results[fmt] = FormatResult(fmt, artifact=self.live.artifacts.get(fmt),
                                            comparison=self.comparison.get(fmt), label=self.title(fmt))
            ok = variant.status == "ok" and variant.result is not None and variant.result.comparison is not None
            results[fmt].variants[name] = variant.result if ok else VariantResult(name)
            if not ok:
                messages[fmt, name] = variant.status
                continue
            notes[fmt, name] = self.variant_note(variant)
            if variant.computed != self.preprocess:
                stale.add((fmt, name))
        return compression_view(results, runtimes={f: self.title(f) for f in results}, notes=notes,
                                stale=stale, messages=messages)

    def differing_most(self, variant: Variant, count: int = PER_PAGE) -> list[int]:
        """Indices of the sample images where `variant` differs most from PyTorch: a changed top-1 or mask
        first, then the largest difference as a share of the output's range."""
        if variant.result is None or variant.result.comparison is None:
            return []
        names = [i.name for i in self.session.images]
        score = dict.fromkeys(range(len(names)), (0.0, 0.0))
        for r in variant.result.comparison.rows:
            k = names.index(r.image)
            changed = 1.0 - min(r.task.get("top1_agreement", 1.0), r.task.get("pixel_agreement", 1.0))
            score[k] = max(score[k], (changed, r.max_abs / r.range if r.range > 0 else r.max_abs))
        return sorted(score, key=lambda k: score[k], reverse=True)[:count]

    def _compression_changed(self) -> None:
        """The variants' figures changed: the chart and the picture are drawn again when next asked for (a
        front end asks only while they are on screen, so a slider move with the tab hidden costs no drawing)."""
        self._compression_version += 1

    def _drawn_once(self, what: str, draw) -> bytes:
        version, image = self._drawn.get(what, (-1, b""))
        if version != self._compression_version:
            image = draw()
            self._drawn[what] = (self._compression_version, image)
        return image

    @property
    def chart(self) -> bytes:
        """PNG: size on disk against fidelity to PyTorch for every running variant (b"" when none)."""
        from ..views import compression_chart

        def draw():
            results = self.compression_results()
            return compression_chart(results, self.session.task) if results else b""

        return self._drawn_once("chart", draw)

    @property
    def variant_picture(self) -> bytes:
        """JPEG: the images where the shown variant differs most from PyTorch, beside PyTorch (b"" when none)."""

        def draw():
            variant = self.variants.get(self.variant_shown) if self.variant_shown else None
            if variant is None or variant.outputs is None:
                return b""
            s = self.session
            order = self.differing_most(variant)
            # No PASS/FAIL captions: a variant is judged by its figures, not by the parity tolerance.
            return side_by_side(
                s.pixels[order], [s.images[k].name for k in order], {k: v[order] for k, v in s.outputs.items()},
                {variant.title: {k: v[order] for k, v in variant.outputs.items()}}, s.task, count=None,
                image_format="jpeg")

        return self._drawn_once("picture", draw)

    def set_preprocess(self, pre: Preprocess, *, bake: bool | None = None) -> None:
        """Make `pre` the converted side's preprocessing and recompute before returning; on error the previous
        preprocessing and comparison stay."""
        if not isinstance(pre, Preprocess):
            raise WorkbenchError(f"preprocess must be a Preprocess, not {type(pre).__name__}")
        if pre.channels != self.reference_preprocess.channels:
            raise WorkbenchError(f"the model takes {self.reference_preprocess.channels} channel(s); this "
                                 f"preprocessing gives {pre.channels}")
        before = (self.preprocess, self.bake, self._unbaked)
        self.preprocess = pre
        self.bake = bool(bake) if bake is not None else (self.bake and same_preprocess(pre, self.reference_preprocess))
        if not self.bake:
            self._unbaked = pre
        self._tell("controls")
        try:
            self.recompute()
        except Exception:
            self.preprocess, self.bake, self._unbaked = before
            self._tell("controls")
            # the last good results drawn again: the columns a failed recompute had replaced showed its values
            with contextlib.suppress(Exception):  # the error that stopped it is the one raised
                self._tell("result")
            raise

    def edit(self, *, scale: float | None = None, bias: dict[int, float] | None = None,
             bgr: bool | None = None) -> None:
        """Change some values of the current preprocessing (one recompute for all of them)."""
        if self.bake:
            raise WorkbenchError("the exact normalization is baked in: untick bake to change the values")
        cur = self.preprocess
        n = cur.channels
        new_scale = cur.scale if scale is None else (float(scale),) * n
        new_bias = list(cur.bias)
        for i, value in (bias or {}).items():
            new_bias[i] = float(value)
        new_bgr = cur.bgr if bgr is None else bool(bgr)
        if (new_scale, tuple(new_bias), new_bgr) == (cur.scale, cur.bias, cur.bgr):
            return
        self.set_preprocess(cur.replace(scale=new_scale, bias=tuple(new_bias), bgr=new_bgr, name="sliders"))

    def presets(self) -> list[tuple[str, str]]:
        """(label, value) of the preset menu: the model's own, every preset of the model's channel count."""
        gray = self.reference_preprocess.grayscale
        return [("model's own (training)", MODEL)] + [(n, n) for n in PRESETS if PRESETS[n]().grayscale == gray]

    def _preset_preprocess(self, name: str) -> Preprocess:
        ref = self.reference_preprocess
        base = ref if name == MODEL else Preprocess.preset(name)
        return base.replace(size=ref.size, resize=ref.resize, fit=ref.fit).with_imagetype()

    @property
    def preset(self) -> str:
        """The preset whose values are in force (MODEL for the model's own), or CUSTOM. When several presets
        have these values (a gray model's own is the "gray" preset), the one chosen last."""
        if self.bake:
            return MODEL
        names = [name for _, name in self.presets()]
        if self._chosen in names:
            names.remove(self._chosen)
            names.insert(0, self._chosen)
        for name in names:
            if same_preprocess(self.preprocess, self._preset_preprocess(name)):
                return name
        return CUSTOM

    def choose_preset(self, name: str) -> None:
        """Apply preset `name` exactly (MODEL: the model's own, as one scale and a bias per channel carry it)."""
        if name == CUSTOM:
            return
        if name not in dict((v, v) for _, v in self.presets()):
            raise WorkbenchError(f"unknown preset {name!r}; choose one of {', '.join(v for _, v in self.presets())}")
        chosen, self._chosen = self._chosen, name  # said by the menu from the first render on
        try:
            self.set_preprocess(self._preset_preprocess(name), bake=False)
        except Exception:
            self._chosen = chosen
            raise

    def match(self) -> None:
        """The values derived from the model's training normalization (its best single scale,
        `Preprocess.imagetype_fit`)."""
        self.choose_preset(MODEL)

    def set_bake(self, on: bool) -> None:
        """Bake the exact (per-channel) normalization into the exported models, or return to the values
        before it."""
        if on == self.bake:
            return
        self.set_preprocess(self.reference_preprocess if on else self._unbaked, bake=on)

    def controls(self) -> dict[str, Control]:
        """What each preprocessing control shows: the values in force, and which controls apply."""
        pre, gray = self.preprocess, self.preprocess.grayscale
        baked = "the exact normalization is baked into the model: untick bake to set values by hand"
        per_channel = len(set(pre.scale)) > 1
        why = baked if self.bake else ("per-channel scale: one value per channel, see the note" if per_channel else "")
        out = {"scale": Control(pre.scale if per_channel else pre.scale[0], not why, why),
               "bgr": Control(pre.bgr, not self.bake and not gray,
                              baked if self.bake else "one channel: no colour order" if gray else ""),
               "preset": Control(self.preset, not self.bake, baked if self.bake else ""),
               "bake": Control(self.bake, True, "")}
        for i, (name, value) in enumerate(zip("Y" if gray else "BGR" if pre.bgr else "RGB", pre.bias)):
            out[f"bias{i}"] = Control(value, not self.bake, baked if self.bake else "",
                                      label="Y (luma)" if gray else name)
        return out

    def exactness(self) -> dict[str, str]:
        """Per registered format, how exactly an export carries the current preprocessing: natively (what its
        runtime applies itself: `Format.native`) or in the graph."""
        return {name: fmt.carries(self.preprocess) for name, fmt in _formats.registry().items()}

    # -- computing ----------------------------------------------------------------------------------------------
    def _set_busy(self, what: str | None) -> None:
        self.busy = what
        self._tell("busy")

    @property
    def differs(self) -> bool:
        """Whether the preprocessing in force differs from PyTorch's (then that alone can explain a FAIL)."""
        return not same_preprocess(self.preprocess, self.reference_preprocess)

    def stale(self) -> set[str]:
        """Columns computed with another preprocessing than the one in force (out of date until replaced)."""
        return {f for f, p in self.computed.items() if p != self.preprocess}

    def recompute(self) -> None:
        """Run every live format on the sample images with the current preprocessing, fastest first, each
        column replaced as soon as its runtime finishes; then the locator (when the preprocessing is
        PyTorch's and a format that has one fails) and the picture. On error the previous results stay.
        One at a time; when the preprocessing changed while it ran (a slider's echo handled meanwhile), it runs
        again, so every column ends computed with the preprocessing in force."""
        with self._recomputing:
            for _ in range(8):
                pre = self.preprocess
                self._recompute(pre)
                if self.preprocess == pre:
                    return

    def _recompute(self, pre: Preprocess) -> None:
        order = sorted(self.running, key=lambda f: self.run_seconds.get(f, 0.0))
        saved = (dict(self.comparison), dict(self.outputs), dict(self.computed))
        saved_variants = {k: (v.result.comparison, v.outputs, v.computed) for k, v in self.variants.items()
                          if v.result is not None}
        try:
            for k, fmt in enumerate(order, start=1):
                self._set_busy(f"running {self.title(fmt)} ({k}/{len(order)})")
                start = time.perf_counter()
                out = self.live.run(fmt, preprocess=pre)
                self.comparison[fmt] = self.live.compare(fmt, out)  # the artifact's precision sets the tolerance
                self.run_seconds[fmt] = time.perf_counter() - start
                self.outputs[fmt], self.computed[fmt] = out, pre
                self._tell("column")
            running = [v for v in self.variants.values() if v.status == "ok"]
            for k, variant in enumerate(running, start=1):  # compressed variants rerun too, after their formats
                self._set_busy(f"running {variant.title} ({k}/{len(running)} compressed variants)")
                self._run_variant(variant, pre)
            self.divergence = self.divergence_format = None
            failing = [f for f in order if not self.comparison[f].passed and _formats.get(f).locator]
            if failing and not self.differs and not self.warnings:  # PyTorch's preprocessing: look inside the program
                self._set_busy(f"locating where {self.title(failing[0])} leaves PyTorch")
                self.divergence = self.live.locate(failing[0], preprocess=pre)
                self.divergence_format = failing[0]
            self.recomputes += 1
            self._redraw()
            if self.variants:
                self._compression_changed()
        except Exception:
            self.comparison, self.outputs, self.computed = saved
            for key, (comparison, outputs, computed) in saved_variants.items():
                if key in self.variants:
                    v = self.variants[key]
                    v.result.comparison, v.outputs, v.computed = comparison, outputs, computed
            raise
        finally:
            self._set_busy(None)
        self._tell("result")
        if self.variants:
            self._tell("variants")

    def _redraw(self) -> None:
        self.picture = self.draw("jpeg")

    def draw(self, image_format: str = "png", *, every_image: bool = False) -> bytes:
        """The comparison picture as last computed: the current page (or every image), JPEG on screen (redrawn
        on every change), PNG in files."""
        s = self.session
        shown = [f for f in self.formats if f in self.outputs]
        return side_by_side(s.pixels, [i.name for i in s.images], s.outputs,
                            {self.title(f): self.outputs[f] for f in shown}, s.task,
                            {self.title(f): self.comparison[f] for f in shown},
                            start=0 if every_image else self.page * PER_PAGE, count=None if every_image else PER_PAGE,
                            image_format=image_format, cache=self._tiles,
                            expected={self.title(f): self.live.artifacts[f].expected(s.outputs) for f in shown})

    @property
    def pages(self) -> int:
        return max(1, math.ceil(len(self.session.images) / PER_PAGE))

    def show_page(self, page: int) -> None:
        """Show sample images page `page` (0-based) of `pages`."""
        if not 0 <= page < self.pages:
            raise WorkbenchError(f"page {page + 1} is out of range: there are {self.pages} pages of images")
        self.page = page
        self._redraw()
        self._tell("result")

    def title(self, fmt: str) -> str:
        """A column's name: the runtime that really ran (the runner's label, which says which engine and precision)."""
        return self.live.runner(fmt).label if fmt in self.live.artifacts else _formats.get(fmt).runtime

    def tolerance(self, fmt: str) -> str:
        """The tolerance a format is judged by, and why it differs between formats."""
        artifact = self.live.artifacts.get(fmt)
        precision = artifact.precision if artifact else "fp32"
        tol = DEFAULT_TOLERANCES[precision]
        why = "fp16 keeps about 3 significant digits" if precision == "fp16" else "float rounding"
        return f"{tol.rel:g} of scale ({precision}: {why})"

    def _reference_warnings(self) -> list[str]:
        """What makes parity claims meaningless for this reference: a main output below fp16's range or the
        same on every image (random weights, typically)."""
        s = self.session
        main = s.outputs[s.task.main_output(s.outputs)]
        largest = float(np.abs(main).max()) if main.size else 0.0
        spread = float(main.max() - main.min()) if main.size else 0.0
        found = []
        if largest < FP16_SMALLEST:
            found.append(f"the reference output is tiny (largest |value| {largest:.2g}, below fp16's smallest "
                         f"normal number {FP16_SMALLEST:g}): fp16 formats cannot represent it, and a PASS here says "
                         "little. Random weights? Load the trained weights to judge the preprocessing")
        if spread <= 1e-6 * max(largest, 1e-30):
            found.append("the reference output is the same for every input: any preprocessing passes, so parity "
                         "cannot tell a right preprocessing from a wrong one")
        elif main.ndim >= 2 and len(main) > 1:
            per_image = main.reshape(len(main), -1)
            if float(np.abs(per_image - per_image[:1]).max()) <= 1e-4 * max(spread, largest):
                found.append("the reference output barely changes between images: parity says little about the "
                             "preprocessing. Random weights? Load the trained weights to judge it")
        return found

    def load_images(self, source) -> None:
        """Compare on other sample images (a folder, files or PIL images): PyTorch's outputs are computed for
        them; the live artifacts and their runners stay. On error the current images stay."""
        session = self.session.with_images(source)
        previous = self.session
        self._rebase(session)
        self.page = 0
        try:
            self.warnings = self._reference_warnings()
            self.recompute()
        except Exception:
            self._rebase(previous)
            self.warnings = self._reference_warnings()
            raise
        self._tell("live")

    def _rebase(self, session: Session) -> None:
        self.session = self.live.reference = session
        self._tiles.clear()  # the input's and PyTorch's tiles of the picture
        for variant in self.variants.values():
            if variant.artifacts is not None:
                variant.artifacts.reference = session

    # -- export -------------------------------------------------------------------------------------------------
    def export_options(self, fmt: str) -> tuple:
        """The options of `fmt` the Export panel offers (`Option.panel`), with their defaults."""
        return tuple(o for o in _formats.get(fmt).export_options if o.panel)

    def export_paths(self, folder: str | Path, formats: Sequence[str], options: dict[str, dict] | None = None,
                     variants: bool = True) -> tuple[list[Path], dict[str, list[str]]]:
        """Every file an Export of `formats` into `folder` writes (each format's own files, `Format.files`: a
        graph and its weights, or the file an export option chooses), the reports last; and the variants it writes."""
        out = Path(folder).expanduser()
        paths: list[Path] = []
        compress: dict[str, list[str]] = {}
        for f in formats:
            fmt = _formats.get(f)
            paths += fmt.artifact_files(out / f"{self.session.name}{fmt.suffix}", dict((options or {}).get(f, {})))
        for (f, name), variant in self.variants.items() if variants else ():
            if f in formats and variant.status == "ok":
                fmt = _formats.get(f)
                compress.setdefault(f, []).append(name)
                paths += fmt.artifact_files(out / f"{self.session.name}.{name}{fmt.suffix}")
        return paths + [out / "parity_report.json", out / "parity_report.png"], compress

    def export_steps(self, formats: Sequence[str], variants: bool = True) -> int:
        """How many progress steps an Export of `formats` reports (export and run per format, one per variant)."""
        return 2 * len(formats) + sum(1 for (f, _), v in self.variants.items()
                                      if variants and f in formats and v.status == "ok")

    def export(self, folder: str | Path, formats: Sequence[str], *, options: dict[str, dict] | None = None,
               labels_file: str = "", overwrite: bool = False, confirmed: bool = False, variants: bool = True,
               progress: Callable[[str, str], None] | None = None, target: str | None = None,
               precision: str | None = None) -> ExportOutcome:
        """Write `formats` into `folder` with the preprocessing in force inside, and parity_report.json/.png.

        options: per format, its export options (`export_options(fmt)` are the ones the panel offers); with
        bake ticked, each format with a native preprocessing gets the options that put it in the graph.
        target/precision: deprecated, the options of those names for every chosen format that has them.
        variants: also write the compressed variants running in the Compression tab, of the formats written
        (each beside its format's file, calibrated with the preprocessing in force, in the report).
        progress(what, step): told as each step starts (`export_steps` of them).

        Refuses (outcome.refused) when a file exists and not `overwrite`; asks first (outcome.confirm) when a
        chosen live format fails parity with this preprocessing, unless `confirmed`. Nothing is left half
        written: when the export stops on an error, the files it had written are removed. The live artifacts
        and their runners are untouched. Raises WorkbenchError for bad labels or a folder that cannot be written.
        """
        self.export_outcome = None
        self._tell("export")
        names = list(formats)
        if not names:
            return self._outcome(ExportOutcome(refused="no format ticked: choose at least one to export"))
        options = self._export_options(names, options, target=target, precision=precision)
        out = Path(folder).expanduser()
        paths, compress = self.export_paths(out, names, options, variants)
        if not overwrite:
            clashes = [p for p in paths if p.exists()]
            if clashes:
                return self._outcome(ExportOutcome(refused=(
                    f"nothing written: {clashes[0]} already exists"
                    f"{f' (and {len(clashes) - 1} more)' if len(clashes) > 1 else ''}. "
                    "Tick 'overwrite existing files' to replace them, or choose another folder")))
        check_writable(out)  # a folder that cannot be written is said before anything is asked
        failing = [f for f in names if f in self.comparison and not self.comparison[f].passed]
        if failing and not confirmed:
            worst = "; ".join(f"{_formats.get(f).title} max abs {self.comparison[f].worst()['max_abs']:.3g}"
                              for f in failing)
            return self._outcome(ExportOutcome(confirm=(
                f"{', '.join(_formats.get(f).title for f in failing)} fail parity with this preprocessing ({worst}): "
                "the files would carry it. Export anyway, or click Match PyTorch or tick bake first")))
        if labels_file.strip():
            self.session.set_labels(read_labels(labels_file.strip()))
        report_json, report_png = paths[-2:]
        before = {p for p in paths if p.exists()}
        self._set_busy("exporting")
        try:
            report = self.session.check(names, out, overwrite=overwrite, preprocess=self.preprocess,
                                        options=options, progress=progress, compress=compress)
            text = report.to_json()
            dataset = self.dataset.report()  # the figures over a folder, when computed with this preprocessing
            if dataset is not None:
                text = json.dumps({**json.loads(text), "dataset": dataset}, indent=2)
            with atomic_output(report_json, overwrite=True) as tmp:
                tmp.write_text(text)
            with atomic_output(report_png, overwrite=True) as tmp:
                tmp.write_bytes(self.draw("png", every_image=True))  # every image, losslessly
        except BaseException:
            for p in paths:  # what this export wrote goes, so a retry starts clean; what was there stays
                if p not in before and p.is_dir():
                    shutil.rmtree(p)
                elif p not in before and p.exists():
                    p.unlink()
            raise
        finally:
            self._set_busy(None)
        outcome = ExportOutcome(report=str(report_json))
        for fmt, r in report.formats.items():
            verdict = {True: "parity PASS", False: "parity FAIL", None: "not run here"}[r.passed]
            if r.error:
                verdict += f": {r.error}"
            outcome.written.append((str(r.artifact.path) if r.artifact else "-", _formats.get(fmt).title, verdict))
            for name, v in r.variants.items():
                outcome.written.append((str(v.artifact.path) if v.artifact else "-",
                                        f"{_formats.get(fmt).title} {name}",
                                        f"not written: {v.error}" if v.error else _variant_figures(v)))
        outcome.written += [(str(report_json), "report", ""), (str(report_png), "picture", "")]
        return self._outcome(outcome)

    def _export_options(self, names: list[str], given: dict[str, dict] | None, **by_name) -> dict[str, dict]:
        """Each chosen format's export options: those given, the deprecated keywords for the formats that have
        an option of that name, and, with bake ticked, what puts a native preprocessing in the graph."""
        chosen: dict[str, dict] = {}
        for name in names:
            fmt = _formats.get(name)
            opts = {k: v for k, v in by_name.items() if v is not None and any(o.name == k for o in fmt.export_options)}
            opts.update((given or {}).get(name, {}))
            if self.bake and fmt.native is not None:
                opts.update(fmt.native.graph_options)
            fmt.check_export_options(opts)
            if opts:
                chosen[name] = opts
        return chosen

    def _outcome(self, outcome: ExportOutcome) -> ExportOutcome:
        self.export_outcome = outcome
        self._tell("export")
        return outcome

    def close(self) -> None:
        self.dataset.stop()
        self.dataset.wait(60)
        self.layers.wait(60)
        for key in list(self.variants):
            self._drop_variant(key)
        self.live.close()
        self._cleanup()


def _variant_figures(v: VariantResult) -> str:
    """A compressed variant's size and fidelity in a few words ("0.26x the size, top-1 1.000, PSNR 41.2 dB")."""
    figures = v.comparison.worst() if v.comparison is not None else {}
    parts = [f"{v.size_ratio:.2f}x the size"] if v.size_ratio else []
    for key, label in (("top1_agreement", "top-1 {:.3f}"), ("miou", "mIoU {:.3f}"), ("psnr", "PSNR {:.1f} dB")):
        if key in figures:
            parts.append(label.format(figures[key]))
    if parts and v.artifact is not None:  # the exported file's figures: the Compression tab's live ones may differ
        from ..views.tables import measured_on

        parts.append(f"on {measured_on(v.artifact)}")
    return ", ".join(parts)
