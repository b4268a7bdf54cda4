"""`Workbench`: model, graph, preprocessing sliders, side-by-side comparison and export, in one widget.

The PyTorch side always gets the model's training preprocessing (the reference, computed once). The
converted side gets raw pixels and applies the slider preprocessing, as the phone will: Core ML's
ImageType semantics, one scalar scale and a bias per channel. Moving a slider reruns only the converted
runtimes on cached sessions; nothing is reconverted. Slider moves from the browser coalesce: a drag sends
many values while one recompute runs, and only the latest is computed (see `_on_control`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import html
import math
import shutil
import tempfile
import time
import traceback
import weakref
from pathlib import Path
from typing import Sequence

import ipywidgets as W

from .._files import atomic_output
from ..compare import Comparison
from ..errors import RuntimeUnavailable, WorkbenchError
from .. import formats as _formats
from ..graph import Graph
from ..images import SAMPLE_IMAGES
from ..preprocess import PRESETS, Preprocess
from ..formats.base import same_preprocess
from ..session import ArtifactSet, Session
from ..tasks import read_labels
from ..views import side_by_side

# How long a slider change waits for the ones queued behind it: messages that arrived during a recompute
# are all read within this time, so one recompute serves them all, with the latest values.
COALESCE_SECONDS = 0.02


class Workbench(W.VBox):
    """The workbench widget.

    model, images, preprocess (the training preprocessing), task, labels, size: as for `Session`.
    formats: the conversions to build and show. `preprocess` (the converted side's, settable) and
    `comparison` ({format: Comparison}, the latest) are the contract with code.
    """

    def __init__(self, model, images=None, *, preprocess: Preprocess | None = None, task=None,
                 labels: Sequence[str] | None = None, formats: Sequence[str] = ("onnx", "coreml", "torchscript"),
                 size=None, **load_options):
        self._session = Session(model, images if images is not None else SAMPLE_IMAGES, preprocess=preprocess,
                                task=task, labels=labels, size=size, **load_options)
        self.reference_preprocess = self._session.preprocess
        self.formats = tuple(formats)
        self.comparison: dict[str, Comparison] = {}
        self.divergence = None  # where the Core ML program leaves PyTorch, when Core ML fails
        self._preprocess_differs = False
        self.status: dict[str, str] = {}
        self._workdir = Path(tempfile.mkdtemp(prefix="workbench-live-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._workdir, True)
        self.live = ArtifactSet(self._session)  # the artifacts the sliders drive; exports never touch them
        self._graph: Graph | None = None
        self._syncing = False
        self._pending = None  # the scheduled recompute of slider changes, if any
        self._recomputes = 0  # comparisons computed so far (slider drags coalesce: fewer than moves)
        self._preprocess = self.reference_preprocess.with_imagetype()

        self._seconds: dict[str, float] = {}  # how long each live conversion took
        self._errors = W.HTML(layout=W.Layout(min_height="0px"))
        with _BuildProgress(len(self.formats) + 1) as self._building, _collector_paused():
            self._build_live_artifacts()
            super().__init__([
                W.HTML(f"<h3 style='margin:4px 0'>Workbench: {html.escape(self._session.model.source)}</h3>"),
                self._errors,
                W.Tab(children=[self._model_panel(), self._graph_panel()], titles=("Model", "Graph")),
                self._preprocess_panel(),
                self._comparison_panel(),
                self._export_panel(),
            ])
            self._building.step(f"comparing on {len(self._session.images)} images")
            self._recompute()

    # -- contract ---------------------------------------------------------------------------------------
    @property
    def preprocess(self) -> Preprocess:
        """The converted side's preprocessing; setting it recomputes the comparison before returning."""
        return self._preprocess

    @preprocess.setter
    def preprocess(self, value: Preprocess) -> None:
        if not isinstance(value, Preprocess):
            raise WorkbenchError(f"preprocess must be a Preprocess, not {type(value).__name__}")
        self._cancel_pending()  # this value is newer than any slider change still waiting
        self._apply(value)
        self._sync_controls()

    @property
    def session(self) -> Session:
        return self._session

    def close(self) -> None:
        self._cancel_pending()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        self.live.close()
        self._session.close()
        self._cleanup()
        super().close()

    # -- panels ---------------------------------------------------------------------------------------------
    def _build_live_artifacts(self) -> None:
        """Export each format once, taking the model tensor: the sliders apply in front of them, as Core ML's
        ImageType would (x * scale + bias, in fp32 before any fp16 cast). The live artifacts give the model's
        own outputs (no classifier labels: Export adds them). Each format's live options apply (the traces
        skip torch's own check: the first comparison, on the sample images, follows at once)."""
        s = self._session
        for fmt in self.formats:
            format_ = _formats.get(fmt)
            self._building.step(f"converting to {format_.title}")
            start = time.perf_counter()
            try:
                self.live.export(fmt, self._workdir / f"{s.name}{format_.suffix}", bake=False, labels=False,
                                  overwrite=True, **format_.live_options)
                self.status[fmt] = "ok"
            except WorkbenchError as exc:
                self.status[fmt] = f"failed: {exc}"
            self._seconds[fmt] = time.perf_counter() - start

    def _model_panel(self) -> W.Widget:
        s = self._session
        params = s.model.parameters
        rows = [("source", s.model.source), ("input", f"{s.input_shape} ({self.reference_preprocess.describe()})"),
                ("parameters", f"{params:,}" if params is not None else "-"), ("task", s.task.name),
                ("images", f"{len(s.images)}: {', '.join(i.name for i in s.images)}")]
        rows += [("note", n) for n in s.notes]
        for fmt in self.formats:
            state = self.status[fmt]
            colour = "#2a7" if state == "ok" else "#c33"
            art = self.live.artifacts.get(fmt)
            took = [f"converted in {self._seconds[fmt]:.1f} s"] if state == "ok" and fmt in self._seconds else []
            notes = took + list(art.notes if art is not None else ())
            extra = f" ({'; '.join(notes)})" if notes else ""
            rows.append((_formats.get(fmt).title, f"<span style='color:{colour}'>{html.escape(state)}</span>{html.escape(extra)}"))
        titles = {_formats.get(f).title for f in self.formats}
        body = "".join(f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(k)}</th>"
                       f"<td>{v if k in titles else html.escape(v)}</td></tr>" for k, v in rows)
        return W.HTML(f"<table style='font-size:13px'>{body}</table>")

    def _graph_panel(self) -> W.Widget:
        shown = [f for f in self.formats if self.status.get(f) == "ok"]
        self._graph_choice = W.ToggleButtons(options=[(_formats.get(f).title, f) for f in shown], description="Graph:")
        self._graph_view = W.HTML()
        self._graph_choice.observe(lambda change: self._show_graph(change["new"]), names="value")
        if shown:
            self._show_graph(shown[0])
        else:
            self._graph_view.value = "<i>no conversion succeeded: no graph to show</i>"
        return W.VBox([self._graph_choice, self._graph_view])

    def _show_graph(self, fmt: str) -> None:
        with self._guard():
            if self._graph is not None:
                self._graph.close()
            self._graph = Graph(self.live.artifacts[fmt].path)
            self._graph_view.value = self._graph.html()

    def _preprocess_panel(self) -> W.Widget:
        pre = self._preprocess
        self._scale = W.FloatLogSlider(value=pre.scale[0], base=10, min=-4, max=1, step=0.001,
                                       description="scale", readout_format=".6f", continuous_update=True)
        self._bias = [W.FloatSlider(value=b, min=min(-3.0, b), max=max(3.0, b), step=0.001, description=c,
                                    readout_format=".4f") for c, b in zip("RGB", _three(pre.bias))]
        self._bgr = W.Checkbox(value=pre.bgr, description="BGR", indent=False)
        self._gray = W.Checkbox(value=pre.grayscale, description="grayscale", indent=False, disabled=True)
        options = [("model's own (training)", "__model__")] + [(name, name) for name in PRESETS
                                                                 if PRESETS[name]().grayscale == pre.grayscale]
        self._preset = W.Dropdown(options=options, value="__model__", description="preset")
        self._match = W.Button(description="Match PyTorch", button_style="info", icon="magic",
                               tooltip="set the values derived from the model's training normalization")
        self._bake = W.Checkbox(value=False, description="bake the exact normalization into the model", indent=False)
        self._exactness = W.HTML()
        for control in [self._scale, self._bgr, self._bake, *self._bias]:
            control.observe(self._on_control, names="value")
        self._preset.observe(self._on_preset, names="value")
        self._match.on_click(lambda _: self._on_match())
        self._update_exactness()
        return W.VBox([W.HTML("<b>Preprocessing of the converted side</b> (Core ML ImageType: x * scale + bias)"),
                       W.HBox([self._preset, self._match]), self._scale,
                       W.HBox(self._bias[: self._preprocess.channels]), W.HBox([self._bgr, self._gray, self._bake]),
                       self._exactness])

    def _comparison_panel(self) -> W.Widget:
        self._picture = W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
        self._metrics = W.HTML()
        return W.VBox([W.HTML("<b>PyTorch (training preprocessing) beside each conversion (slider preprocessing)</b>"),
                       self._metrics, self._picture])

    def _export_panel(self) -> W.Widget:
        self._out = W.Text(value=str(Path.cwd() / "exports" / self._session.name), description="folder",
                           layout=W.Layout(width="60%"))
        self._export_formats = {n: W.Checkbox(value=self.status.get(n) == "ok", description=f.title, indent=False)
                                for n, f in _formats.registry().items()}
        self._target = W.Dropdown(options=["iOS13", "iOS14", "iOS15", "iOS16", "iOS17", "iOS18"], value="iOS16",
                                  description="target")
        self._precision = W.Dropdown(options=["fp16", "fp32"], value="fp16", description="precision")
        self._labels_file = W.Text(placeholder="labels.txt (optional)", description="labels")
        self._overwrite = W.Checkbox(value=False, description="overwrite existing files", indent=False)
        self._export_button = W.Button(description="Export", button_style="success", icon="download")
        self._progress = W.IntProgress(value=0, min=0, max=1, description="", layout=W.Layout(width="40%"))
        self._written = W.HTML()
        self._export_button.on_click(lambda _: self._on_export())
        return W.VBox([W.HTML("<b>Export</b> (current preprocessing inside the artifacts)"), self._out,
                       W.HBox(list(self._export_formats.values())), W.HBox([self._target, self._precision]),
                       W.HBox([self._labels_file, self._overwrite]), W.HBox([self._export_button, self._progress]),
                       self._written])

    # -- behaviour --------------------------------------------------------------------------------------------
    def _guard(self):
        return _ErrorArea(self._errors)

    def _controls_preprocess(self) -> Preprocess:
        if self._bake.value:
            return self.reference_preprocess
        n, current = self._preprocess.channels, self._preprocess
        # A slider holds its value rounded to its step, and the browser sends that rounding back: keep the
        # exact current value unless the user moved the control by at least half a step.
        scale = current.scale[0]
        if abs(math.log10(self._scale.value) - math.log10(abs(scale))) > self._scale.step / 2 + 1e-12:
            scale = self._scale.value
        bias = tuple(b if abs(slider.value - b) <= slider.step / 2 + 1e-12 else slider.value
                     for slider, b in zip(self._bias[:n], current.bias))
        if (scale, bias, self._bgr.value) == (current.scale[0], current.bias, current.bgr) and current.scale == (scale,) * n:
            return current
        return self.reference_preprocess.replace(scale=(scale,) * n, bias=bias, bgr=self._bgr.value, name="sliders")

    def _on_control(self, change) -> None:
        """A control moved. In a kernel, the recompute waits for the event loop, so the changes queued
        behind this one are read first and one recompute uses the latest values (a drag does not leave a
        queue of stale recomputes). With no event loop (a script, a test) it recomputes at once."""
        if self._syncing:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._flush()
            return
        if self._pending is None:
            self._pending = loop.call_later(COALESCE_SECONDS, self._flush)

    def _flush(self) -> None:
        self._pending = None
        with self._guard():
            self._apply(self._controls_preprocess())  # the controls' values now: the latest change wins

    def _cancel_pending(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None

    def _on_preset(self, change) -> None:
        if self._syncing:
            return
        with self._guard():
            base = self.reference_preprocess if change["new"] == "__model__" else Preprocess.preset(change["new"])
            self.preprocess = base.replace(size=self.reference_preprocess.size, resize=self.reference_preprocess.resize,
                                           fit=self.reference_preprocess.fit).with_imagetype()

    def _on_match(self) -> None:
        with self._guard():
            self.preprocess = self.reference_preprocess.with_imagetype()

    def _apply(self, pre: Preprocess) -> None:
        """Recompute with `pre`; on error the previous preprocessing and comparison stay."""
        if pre.channels != self.reference_preprocess.channels:
            raise WorkbenchError(f"the model takes {self.reference_preprocess.channels} channel(s); this "
                                 f"preprocessing gives {pre.channels}")
        previous = self._preprocess
        self._preprocess = pre
        try:
            self._recompute()
        except Exception:
            self._preprocess = previous
            raise
        self._update_exactness()

    def _sync_controls(self) -> None:
        pre = self._preprocess
        self._syncing = True
        try:
            self._scale.value = pre.scale[0]
            for slider, b in zip(self._bias, _three(pre.bias)):
                slider.min, slider.max = min(slider.min, b), max(slider.max, b)
                slider.value = b
            self._bgr.value = pre.bgr
            self._bake.value = pre.scale != tuple([pre.scale[0]] * pre.channels)
        finally:
            self._syncing = False

    def _update_exactness(self) -> None:
        fit = self.reference_preprocess.imagetype_fit()
        if fit.exact:
            text = f"<span style='color:#2a7'>Core ML's ImageType expresses the training preprocessing exactly</span>: {html.escape(fit.describe())}"
        else:
            text = (f"<span style='color:#b60'>Core ML's ImageType cannot express the training preprocessing exactly "
                    f"(per-channel std)</span>: best scalar scale {fit.scale:.6f} leaves up to {fit.max_error:.4f} "
                    "(normalized units). Tick <i>bake</i> to put the exact normalization in the model.")
        self._exactness.value = f"<div style='font-size:12px'>{text}<br>now: {html.escape(self._preprocess.describe())}</div>"

    def _recompute(self) -> None:
        live = self.live
        outputs, comparisons = {}, {}
        for fmt in self.formats:
            if self.status.get(fmt) != "ok":
                continue
            out = live.run(fmt, preprocess=self._preprocess)
            outputs[self._title(fmt)] = out
            comparisons[fmt] = live.compare(fmt, out)  # the artifact's precision sets the default tolerance
        self.comparison = comparisons
        self.divergence = None
        self._preprocess_differs = not same_preprocess(self._preprocess, self.reference_preprocess)
        failing = [f for f, c in comparisons.items() if not c.passed and _formats.get(f).locator]
        if failing and not self._preprocess_differs:  # the preprocessing is PyTorch's: look inside the program
            self.divergence = live.locate(failing[0], preprocess=self._preprocess)
        self._recomputes += 1
        self._metrics.value = self._metrics_html()
        self._drawn = (outputs, {self._title(f): c for f, c in comparisons.items()})
        self._picture.value = self._draw("jpeg")

    def _draw(self, image_format: str) -> bytes:
        """The comparison picture as last computed: JPEG on screen (redrawn on every move), PNG in files."""
        s, (outputs, comparisons) = self._session, self._drawn
        return side_by_side(s.pixels, [i.name for i in s.images], s.reference, outputs, s.task, comparisons,
                            image_format=image_format)

    def _title(self, fmt: str) -> str:
        """A column's name: the runtime that really ran (e.g. "Core ML interpreter (ML program, fp16)")."""
        return self.live.runner(fmt).label

    def _metrics_html(self) -> str:
        rows = []
        for fmt in self.formats:
            c = self.comparison.get(fmt)
            if c is None:
                why = self.status.get(fmt, "")
                rows.append(f"<tr><td>{_formats.get(fmt).title}</td><td colspan=6 style='color:#888'>{html.escape(why)}</td></tr>")
                continue
            w = c.worst()
            task = w.get("top1_agreement", w.get("miou"))
            colour = "#2a7" if c.passed else "#c33"
            rows.append(
                f"<tr><td>{html.escape(self._title(fmt))}</td><td style='color:{colour};font-weight:bold'>{'PASS' if c.passed else 'FAIL'}</td>"
                f"<td>{w['max_abs']:.3g}</td><td>{w['mean_abs']:.3g}</td><td>{w['psnr']:.1f}</td>"
                f"<td>{w['cosine']:.6f}</td><td>{'-' if task is None else f'{task:.3f}'}</td></tr>")
        head = "<tr><th>format</th><th>parity</th><th>max abs</th><th>mean abs</th><th>PSNR dB</th><th>cosine</th><th>top-1 / mIoU</th></tr>"
        table = f"<table style='font-size:12px;border-collapse:collapse'>{head}{''.join(rows)}</table>"
        if self.divergence is not None:
            table += (f"<div style='font-size:12px'><b>Core ML program against PyTorch, op by op</b> (first image):"
                      f"<pre style='font-size:11px'>{html.escape(self.divergence.describe())}</pre></div>")
        elif "coreml" in self.comparison and not self.comparison["coreml"].passed and self._preprocess_differs:
            table += ("<div style='font-size:12px'>The preprocessing differs from PyTorch's: click <i>Match "
                      "PyTorch</i> to see whether the Core ML program itself agrees (then the op-by-op "
                      "locator runs if it does not).</div>")
        return table

    def _on_export(self) -> None:
        button = self._export_button
        button.disabled = True
        try:
            with self._guard():
                self._written.value = self._export()
        finally:
            button.disabled = False

    def _export(self) -> str:
        formats = [f for f, box in self._export_formats.items() if box.value]
        if not formats:
            raise WorkbenchError("no format ticked; choose at least one to export")
        out = Path(self._out.value).expanduser()
        report_json, report_png = out / "parity_report.json", out / "parity_report.png"
        if not self._overwrite.value:
            clashes = [p for p in [out / f"{self._session.name}{_formats.get(f).suffix}" for f in formats] + [report_json, report_png]
                       if p.exists() or p.with_suffix(".mlmodel").exists()]
            if clashes:
                raise WorkbenchError(f"{clashes[0]} already exists; tick 'overwrite existing files' or choose another folder")
        if self._labels_file.value.strip():
            self._session.set_labels(read_labels(self._labels_file.value.strip()))
        pre = self.reference_preprocess if self._bake.value else self._preprocess
        self._progress.max, self._progress.value = 2 * len(formats) + 1, 0

        def step(fmt, what):
            self._progress.value += 1
            self._progress.description = f"{what} {fmt}"

        options = {"coreml": {"target": self._target.value, "precision": self._precision.value,
                              "normalization": "bake" if self._bake.value else "auto"}}
        report = self._session.check(formats, out, overwrite=True if self._overwrite.value else False,
                                     options=options, preprocess=pre, progress=step)
        with atomic_output(report_json, overwrite=True) as tmp:
            tmp.write_text(report.to_json())
        with atomic_output(report_png, overwrite=True) as tmp:
            tmp.write_bytes(self._draw("png"))  # the picture on screen, losslessly
        self._progress.value = self._progress.max
        self._progress.description = "done"
        items = []
        for fmt, r in report.formats.items():
            state = {True: "parity PASS", False: "parity FAIL", None: "not run here"}[r.passed]
            path = r.artifact.path if r.artifact else "-"
            items.append(f"<li>{html.escape(str(path))} ({_formats.get(fmt).title}, {state}{': ' + html.escape(r.error) if r.error else ''})</li>")
        items += [f"<li>{html.escape(str(p))}</li>" for p in (report_json, report_png)]
        return f"<b>written</b><ul style='font-size:12px'>{''.join(items)}</ul>"


@contextlib.contextmanager
def _collector_paused():
    """Python's cycle collector off while the conversions build: torch.export, the ONNX exporter and
    coremltools allocate millions of objects and set it off again and again, each pass walking them all.
    On mobilenet_v2 the build takes 0.55 s less (9.3 s instead of 9.9) and peaks at the same memory."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class _BuildProgress:
    """A progress bar in the output while the widget builds (it shows only once built), removed when done.
    Shown only in a Jupyter kernel: scripts and terminals get nothing."""

    def __init__(self, steps: int):
        self._bar = self._handle = None
        self._started = 0  # steps begun
        try:
            from IPython import get_ipython
        except ImportError:
            return
        shell = get_ipython()
        if shell is None or getattr(shell, "kernel", None) is None:
            return
        from IPython.display import display

        self._bar = W.IntProgress(value=0, max=steps, description="", style={"description_width": "initial"},
                                  layout=W.Layout(width="480px"))
        self._handle = display(self._bar, display_id=True)

    def step(self, what: str) -> None:
        """Begin step `what`; the one before it is done."""
        self._started += 1
        if self._bar is not None:
            self._bar.value = self._started - 1
            self._bar.description = f"{what} ({self._started}/{self._bar.max})"

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            from IPython.display import HTML

            self._handle.update(HTML(""))  # the output keeps no stale bar (and no "model not found" when reopened)
            self._bar.close()


def _three(values) -> tuple[float, ...]:
    values = tuple(values)
    return values * 3 if len(values) == 1 else values


class _ErrorArea:
    """Shows a WorkbenchError (message and fix) in the widget; other exceptions too, with a traceback tail."""

    def __init__(self, area: W.HTML):
        self.area = area

    def __enter__(self):
        self.area.value = ""
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        if isinstance(exc, (WorkbenchError, RuntimeUnavailable)):
            text = html.escape(str(exc))
        else:
            tail = "".join(traceback.format_exception(kind, exc, tb)[-3:])
            text = f"internal error (please report): {html.escape(str(exc))}<pre>{html.escape(tail)}</pre>"
        self.area.value = f"<div style='color:#b00;border:1px solid #e99;padding:6px;background:#fee'>{text}</div>"
        return True
