"""`Workbench`: model, graph, preprocessing controls, side-by-side comparison and export, in one widget.

A thin ipywidgets view of a `Controller` (widgets/controller.py), which holds the one state and does the work:
the view draws every control from that state and forwards events to it. The PyTorch side always gets the
model's training preprocessing (the reference, computed once); the converted side gets raw pixels and the
preprocessing in force, as the phone will. Moving a control reruns only the live runtimes; nothing is
reconverted. Slider moves from the browser coalesce: a drag sends many values while one recompute runs, and
only the latest is computed (see `_Coalescer`).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import html
import io
import logging
import math
import os
import traceback
from collections.abc import Sequence
from pathlib import Path

import ipywidgets as W

from .. import formats as _formats
from ..compare import Comparison
from ..errors import RuntimeUnavailable, WorkbenchError
from ..formats.base import same_preprocess
from ..graph import Graph
from ..images import SAMPLE_IMAGES
from ..preprocess import Preprocess
from ..session import Session
from .controller import CUSTOM, Controller
from .dataset import DatasetPanel
from .layers import LayersPanel

# How long a slider change waits for the ones queued behind it: messages that arrived during a recompute
# are all read within this time, so one recompute serves them all, with the latest values.
COALESCE_SECONDS = 0.02
# The scale slider spans the model's own scale times or divided by 10**SCALE_SPAN (4x): one pixel of a drag
# is about 0.7% of the scale (the whole 1e-4..10 range made a 12 px drag double it). Its range moves to a
# value put in force outside it (typed, or a preset's); the box beside it takes any value.
SCALE_SPAN = 0.6
SCALE_DIGITS = 4  # significant digits a dragged scale keeps: finer than a pixel, and no float noise in its box
# When set (tests/conftest.py sets it), an error in a callback that is not a WorkbenchError (a bug) is raised
# after it is shown and logged, so that a test sees it; a user's session shows it and carries on.
RAISE_BUGS = "WORKBENCH_RAISE_CALLBACK_BUGS"
log = logging.getLogger(__name__)
COMPRESSION_TAB = 2  # the Compression tab's index
GREEN, RED, GREY, AMBER = "#2a7", "#c33", "#888", "#b60"


class Workbench(W.VBox):
    """The workbench widget.

    model, images, preprocess (the training preprocessing), task, labels, size: as for `Session`.
    formats: the conversions run live (default: `workbench.formats.defaults()`); runtime_options: per format,
    what its runner takes. variants: per live format, the compressed variants the Compression tab starts with
    ({"FORMAT": ["VARIANT"]}, from each format's `variants`; more are ticked there). export_folder: where Export
    writes (default ``exports/<model name>`` under the working folder). `preprocess` (the converted side's,
    settable) and `comparison` ({format: Comparison}, the latest) are the contract with code.
    """

    def __init__(self, model, images=None, *, preprocess: Preprocess | None = None, task=None,
                 labels: Sequence[str] | None = None, formats: Sequence[str] | None = None, size=None,
                 runtime_options: dict[str, dict] | None = None, variants: dict[str, Sequence[str]] | None = None,
                 export_folder: str | Path | None = None, **load_options):
        steps = len(_formats.defaults() if formats is None else formats) + sum(map(len, (variants or {}).values())) + 2
        with _BuildProgress(steps) as building, _CollectorFrozen() as frozen:
            def step(what: str) -> None:
                frozen.freeze()  # what the steps so far built is not walked again by the collector
                building.step(what)

            step("loading the model and computing PyTorch's outputs")
            session = Session(model, images if images is not None else SAMPLE_IMAGES, preprocess=preprocess,
                              task=task, labels=labels, size=size, **load_options)
            self.controller = Controller(session, formats=formats, runtime_options=runtime_options,
                                         progress=step, variants=variants)
            self._graph: Graph | None = None
            self._syncing = False
            self._said: dict[str, W.HTML] = {}  # per control, the message area beside it (see `_beside`)
            self._recent = collections.defaultdict(lambda: collections.deque(maxlen=16))  # values shown lately
            self._coalescer = _Coalescer(self._apply_edits)
            self._export_folder = Path(export_folder) if export_folder is not None else None
            super().__init__(self._panels())
            self.controller.listen(self._render)
            for what in ("controls", "live", "result", "busy", "variants"):
                self._render(what)

    # -- contract ---------------------------------------------------------------------------------------
    @property
    def preprocess(self) -> Preprocess:
        """The converted side's preprocessing; setting it recomputes the comparison before returning."""
        return self.controller.preprocess

    @preprocess.setter
    def preprocess(self, value: Preprocess) -> None:
        self._coalescer.cancel()  # this value is newer than any slider change still waiting
        self.controller.set_preprocess(value)

    converted_preprocess = preprocess  # an unambiguous name: the converted side's, not the training one

    @property
    def comparison(self) -> dict[str, Comparison]:
        return self.controller.comparison

    @property
    def reference_preprocess(self) -> Preprocess:
        """The PyTorch side's (training) preprocessing."""
        return self.controller.reference_preprocess

    @property
    def session(self) -> Session:
        return self.controller.session

    @property
    def live(self):
        """The live artifacts and their runners (`session.ArtifactSet`); Export never touches them."""
        return self.controller.live

    @property
    def formats(self) -> tuple[str, ...]:
        return self.controller.formats

    @property
    def status(self) -> dict[str, str]:
        return self.controller.status

    @property
    def divergence(self):
        return self.controller.divergence

    @property
    def pending(self) -> bool:
        """Whether a slider change still waits to be applied (drags coalesce; see `_Coalescer`)."""
        return self._coalescer.pending

    def control(self, name: str) -> W.Widget:
        """The control called `name` ("scale", "scale_text", "bias0".."bias2", "bias0_text"..., "bgr", "bake",
        "preset", "match", "graph", "export", "confirm", "folder", "overwrite", "labels", "live:<format>",
        "export:<format>", "previous", "next", "images", "load_images", "variant:<format>:<variant>",
        "variant_shown", "export_variants", "tabs", and the Dataset tab's "dataset_folder", "dataset_limit",
        "dataset:<format or variant>", "dataset_run", "dataset_stop", "dataset_count", "dataset_which",
        "dataset_show", "dataset_back", "dataset_again"; the Layers tab's "layers_which", "layers_image",
        "layers_run", "layers_order", "layers_table"): what a user clicks or types into."""
        named = {"scale": self._scale, "scale_text": self._scale_text, "bgr": self._bgr, "bake": self._bake,
                 "preset": self._preset, "match": self._match, "graph": self._graph_choice,
                 "export": self._export_button, "confirm": self._confirm, "folder": self._out,
                 "overwrite": self._overwrite, "labels": self._labels_file, "previous": self._previous,
                 "next": self._next, "images": self._images, "load_images": self._load,
                 "variant_shown": self._variant_shown, "export_variants": self._export_variants,
                 "tabs": self._tabs}
        named.update({f"variant:{f}:{v}": box for (f, v), box in self._variant_boxes.items()})
        d = self._dataset
        named.update({"dataset_folder": d.folder, "dataset_limit": d.limit, "dataset_run": d.run_button,
                      "dataset_stop": d.stop_button, "dataset_show": d.show_button, "dataset_count": d.count,
                      "dataset_which": d.which, "dataset_back": d.back_button, "dataset_again": d.again_button,
                      **{f"dataset:{n}": b for n, b in d.boxes.items()}})
        lt = self._layers
        named.update({"layers_which": lt.which, "layers_image": lt.image, "layers_run": lt.go,
                      "layers_order": lt.order, "layers_table": lt.table})
        named.update({f"bias{i}": s for i, s in enumerate(self._bias)})
        named.update({f"bias{i}_text": t for i, t in enumerate(self._bias_text)})
        named.update({f"live:{n}": b for n, b in self._live_boxes.items()})
        named.update({f"export:{n}": b for n, b in self._export_formats.items()})
        if name not in named:
            raise WorkbenchError(f"no control {name!r}; controls: {', '.join(named)}")
        return named[name]

    def shown(self) -> dict[str, str]:
        """The text of each area as the front end shows it: "errors", "warnings", "busy", "metrics", "page",
        "exactness", "reasons", "written", "confirm", "model", "graph", "compression", "dataset", "layers" (its
        status and summary), "layers_picked" (the picked layer's figures), "layers_graph" (SVG), and
        "beside:<control>" for the message beside each control that has one ("beside:scale", "beside:preset"...)."""
        return {"errors": self._errors.value, "warnings": self._warnings.value, "busy": self._busy.value,
                "metrics": self._metrics.value, "page": self._page.value, "exactness": self._exactness.value,
                "reasons": self._reasons.value, "written": self._written.value,
                "confirm": self._confirm_text.value if self._confirm_row.layout.display != "none" else "",
                "model": self._model.value, "graph": self._graph_view.value,
                "compression": "".join(h.value for h in self._variant_blocked.values()) + self._variant_table.value,
                "dataset": " ".join(h.value for h in (self._dataset.progress, self._dataset.status, self._dataset.table,
                                                      self._dataset.worst)),
                "layers": self._layers.status.value + self._layers.summary.value,
                "layers_picked": self._layers.details.value, "layers_graph": self._layers.graph.value,
                **{f"beside:{name}": area.value for name, area in self._said.items()}}

    @property
    def picture(self) -> bytes:
        """The comparison picture on screen (JPEG)."""
        return self._picture.value

    @property
    def chart(self) -> bytes:
        """The Compression tab's chart on screen (PNG; drawn while the tab is shown)."""
        return bytes(self._chart.value)

    @property
    def graph(self) -> Graph | None:
        """The Netron server showing the chosen format's graph."""
        return self._graph

    def close(self) -> None:
        if not hasattr(self, "controller"):  # the build failed (its error was raised): nothing of ours to close
            super().close()
            return
        self._coalescer.cancel()
        if self._graph is not None:
            self._graph.close()
            self._graph = None
        self.controller.close()
        self.session.close()
        super().close()

    # -- building the view ---------------------------------------------------------------------------------
    def _panels(self) -> list[W.Widget]:
        c = self.controller
        self._errors = W.HTML(layout=W.Layout(min_height="0px"))
        self._errors.add_class("workbench-errors")
        self._warnings = W.HTML("".join(
            f"<div style='color:{AMBER};border:1px solid #eb8;padding:4px;background:#fff8e8;font-size:12px'>"
            f"{html.escape(w)}</div>" for w in c.warnings))
        self._busy = W.HTML(layout=W.Layout(min_height="20px"))
        self._model = W.HTML()
        self._dataset = DatasetPanel(c.dataset, reporting=self._reporting, say=self._say, beside=self._beside)
        self._layers = LayersPanel(c.layers, reporting=self._reporting, say=self._say, beside=self._beside)
        self._tabs = W.Tab(children=[self._model, self._graph_panel(), self._compression_panel(), self._dataset.box,
                                     self._layers.box],
                           titles=("Model", "Graph", "Compression", "Dataset", "Layers"))
        # the chart and the variants' picture are drawn only while their tab is shown
        self._tabs.observe(lambda ch: self._render_compression_pictures(), names="selected_index")
        return [W.HTML(f"<h3 style='margin:4px 0'>Workbench: {html.escape(c.session.model.source)}</h3>"),
                self._errors, self._warnings,
                self._tabs,
                self._preprocess_panel(), self._busy, self._comparison_panel(), self._export_panel()]

    def _graph_panel(self) -> W.Widget:
        self._graph_choice = W.ToggleButtons(options=[], description="Graph:")
        self._graph_view = W.HTML()
        self._graph_choice.observe(lambda change: self._show_graph(change["new"]), names="value")
        return W.VBox([W.HBox([self._graph_choice, self._beside("graph")]), self._graph_view])

    def _compression_panel(self) -> W.Widget:
        c = self.controller
        self._variant_boxes: dict[tuple[str, str], W.Checkbox] = {}
        self._variant_blocked: dict[str, W.HTML] = {}
        rows = []
        for fmt, names in c.variant_choices().items():
            boxes = []
            for name in names:
                box = W.Checkbox(description=name, indent=False, layout=W.Layout(width="auto"))
                box.observe(lambda ch, key=(fmt, name): self._on_variant(key, ch["new"]), names="value")
                self._variant_boxes[fmt, name] = box
                boxes.append(box)
            self._variant_blocked[fmt] = W.HTML()  # why this format's variants cannot be ticked now
            rows.append(W.HBox([W.HTML(f"<span style='font-size:12px;display:inline-block;width:90px'>"
                                       f"{html.escape(_formats.get(fmt).title)}</span>"), *boxes,
                                self._variant_blocked[fmt], self._beside(f"variant:{fmt}")]))
        self._variant_table = W.HTML()
        # pictures are shown at their own size (`_show`): a flex box would stretch them, blurred
        self._chart = W.Image(format="png", layout=W.Layout(max_width="100%"))
        self._chart.add_class("workbench-chart")
        self._variant_shown = W.Dropdown(options=[], description="images", style={"description_width": "initial"},
                                         layout=W.Layout(width="auto"))
        self._variant_shown.observe(
            lambda ch: self._act(lambda: ch["new"] and self.controller.show_variant(*ch["new"]),
                                 beside="variant_shown"), names="value")
        self._variant_picture = W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
        self._variant_picture.add_class("workbench-variant-picture")
        return W.VBox([W.HTML("<b>Compressed variants</b> of the live formats, each against PyTorch on the sample "
                              "images and rerun as the preprocessing changes; int8 is calibrated on the sample images "
                              "with the preprocessing in force. A variant is judged by its figures, not by the "
                              "parity tolerance."),
                       *rows, self._variant_table, self._chart,
                       W.HBox([W.HTML("<span style='font-size:12px'>where it differs most:&nbsp;</span>"),
                               self._variant_shown, self._beside("variant_shown")]), self._variant_picture])

    def _preprocess_panel(self) -> W.Widget:
        c = self.controller
        self._preset = W.Dropdown(options=c.presets() + [("custom values", CUSTOM)], description="preset")
        self._match = W.Button(description="Match PyTorch", button_style="info", icon="magic",
                               tooltip="set the values derived from the model's training normalization")
        # step=None: the front end snaps nothing, so it never sends back a rounded value (a drag is rounded
        # here, see `_dragged`); the text beside each slider shows the exact value in force and takes one typed in.
        centre = math.log10(c.reference_preprocess.imagetype_fit().scale)
        self._scale = W.FloatLogSlider(base=10, min=centre - SCALE_SPAN, max=centre + SCALE_SPAN, step=None,
                                       readout=False, description="scale", layout=W.Layout(width="520px"))
        self._scale_text = W.Text(continuous_update=False, layout=W.Layout(width="230px"))
        n = c.reference_preprocess.channels
        self._bias = [W.FloatSlider(min=-3, max=3, step=None, readout=False, layout=W.Layout(width="520px"))
                      for _ in range(n)]
        self._bias_text = [W.Text(continuous_update=False, layout=W.Layout(width="230px")) for _ in range(n)]
        self._bgr = W.Checkbox(description="BGR", indent=False, layout=W.Layout(width="auto"))
        self._bake = W.Checkbox(description="bake the exact normalization into the model", indent=False,
                                layout=W.Layout(width="auto"))
        self._reasons = W.HTML()
        self._exactness = W.HTML()
        self._scale.observe(lambda ch: self._on_slider("scale", ch["new"]), names="value")
        self._scale_text.observe(lambda ch: self._on_text("scale", ch["new"]), names="value")
        for i, (slider, text) in enumerate(zip(self._bias, self._bias_text)):
            slider.observe(lambda ch, i=i: self._on_slider(i, ch["new"]), names="value")
            text.observe(lambda ch, i=i: self._on_text(i, ch["new"]), names="value")
        self._bgr.observe(lambda ch: self._act(lambda: c.edit(bgr=ch["new"]), beside="bgr"), names="value")
        self._bake.observe(lambda ch: self._act(lambda: c.set_bake(ch["new"]), beside="bake"), names="value")
        self._preset.observe(lambda ch: self._act(lambda: c.choose_preset(ch["new"]), beside="preset"),
                             names="value")
        self._match.on_click(lambda _: self._act(c.match, beside="match"))
        self._live_boxes = {name: W.Checkbox(description=f.title, indent=False, layout=W.Layout(width="auto"))
                            for name, f in _formats.registry().items()}
        for name, box in self._live_boxes.items():
            box.observe(lambda ch, name=name: self._on_live(name, ch["new"]), names="value")
        rows = [W.HBox([self._scale, self._scale_text, self._beside("scale")])]
        rows += [W.HBox([s, t, self._beside(f"bias{i}")]) for i, (s, t) in enumerate(zip(self._bias, self._bias_text))]
        natives = [f"{f.title}'s {f.native.how}" for f in _formats.registry().values() if f.native is not None]
        how = f", as {', '.join(natives)} apply it" if natives else ""
        return W.VBox([W.HTML(f"<b>Preprocessing of the converted side</b> (x * scale + bias on 0-255 pixels{how})"),
                       W.HBox([self._preset, self._match, self._beside("preset"), self._beside("match")]), *rows,
                       W.HBox([self._bgr, self._bake, self._beside("bgr"), self._beside("bake")]),
                       self._reasons, self._exactness,
                       W.HBox([W.HTML("<span style='font-size:12px'>run live:&nbsp;</span>"),
                               *self._live_boxes.values(), self._beside("live")])])

    def _comparison_panel(self) -> W.Widget:
        self._picture = W.Image(format="jpeg", layout=W.Layout(max_width="100%"))
        self._picture.add_class("workbench-comparison")  # what a page (and the browser test) finds it by
        self._metrics = W.HTML()
        self._previous = W.Button(description="", icon="chevron-left", layout=W.Layout(width="40px"),
                                  tooltip="previous images")
        self._next = W.Button(description="", icon="chevron-right", layout=W.Layout(width="40px"),
                              tooltip="next images")
        self._page = W.HTML()
        self._images = W.Text(placeholder="a folder or image file of your own", description="images",
                              layout=W.Layout(width="50%"))
        self._load = W.Button(description="Use these images", icon="folder-open", layout=W.Layout(width="auto"))
        self._load.on_click(lambda _: self._act(lambda: self.controller.load_images(self._images.value.strip()),
                                                beside="load_images"))
        self._previous.on_click(lambda _: self._act(lambda: self.controller.show_page(self.controller.page - 1),
                                                    beside="page"))
        self._next.on_click(lambda _: self._act(lambda: self.controller.show_page(self.controller.page + 1),
                                                beside="page"))
        return W.VBox([W.HTML("<b>PyTorch (training preprocessing) beside each conversion (the preprocessing "
                              "above)</b>"), self._metrics,
                       W.HBox([self._previous, self._page, self._next, self._beside("page")]),
                       self._picture, W.HBox([self._images, self._load, self._beside("load_images")])])

    def _export_panel(self) -> W.Widget:
        c = self.controller
        folder = (Path.cwd() / "exports" / c.session.name if self._export_folder is None
                  else self._export_folder.expanduser().absolute())
        self._out = W.Text(value=str(folder), description="folder",
                           layout=W.Layout(width="60%"))
        self._export_formats = {n: W.Checkbox(value=c.status.get(n) == "ok", description=f.title, indent=False,
                                              layout=W.Layout(width="auto"))
                                for n, f in _formats.registry().items()}
        # each format's options (Option.panel), shown under its name while it is ticked
        self._export_option_controls = {n: {o.name: _option_control(o) for o in c.export_options(n)}
                                        for n in _formats.registry()}
        self._export_option_rows = {
            n: W.HBox([W.HTML(f"<span style='font-size:12px;display:inline-block;width:90px'>"
                              f"{html.escape(_formats.get(n).title)}</span>"), *controls.values()])
            for n, controls in self._export_option_controls.items() if controls}
        for box in self._export_formats.values():
            box.observe(lambda ch: self._render_export_options(), names="value")
        names = c.session.labels
        # the model's own labels go into a classifier's files unless a file is named here
        hint = (f"its {len(names)} labels ({', '.join(names[:3])}{', …' if len(names) > 3 else ''}), or a labels.txt"
                if names else "labels.txt (optional)")
        self._labels_file = W.Text(placeholder=hint, description="labels", layout=W.Layout(width="60%"))
        self._overwrite = W.Checkbox(value=False, description="overwrite existing files", indent=False)
        self._export_variants = W.Checkbox(value=True, indent=False, layout=W.Layout(width="auto"),
                                           description="with the compressed variants ticked in the Compression tab")
        self._export_button = W.Button(description="Export", button_style="success", icon="download")
        self._progress = W.IntProgress(value=0, min=0, max=1, description="", style={"description_width": "initial"},
                                       layout=W.Layout(width="40%"))
        self._confirm_text = W.HTML()
        # the buttons keep their width beside a long reason ("Export anyway" was cut to "Export...")
        self._confirm = W.Button(description="Export anyway", button_style="warning",
                                 layout=W.Layout(width="auto", flex="0 0 auto"))
        self._cancel = W.Button(description="Cancel", layout=W.Layout(width="auto", flex="0 0 auto"))
        self._confirm_row = W.HBox([self._confirm_text, self._confirm, self._cancel], layout=W.Layout(display="none"))
        self._written = W.HTML()
        self._export_button.on_click(lambda _: self._on_export(confirmed=False))
        self._confirm.on_click(lambda _: self._on_export(confirmed=True))
        self._cancel.on_click(lambda _: self._hide_confirm())
        self._render_export_options()
        return W.VBox([W.HTML("<b>Export</b> (the preprocessing in force inside the artifacts)"), self._out,
                       W.HBox(list(self._export_formats.values())), *self._export_option_rows.values(),
                       W.HBox([self._labels_file, self._overwrite]), self._export_variants,
                       W.HBox([self._export_button, self._progress]), self._beside("export"),
                       self._confirm_row, self._written])

    def _render_export_options(self) -> None:
        """A format's option row shows while the format is ticked for export, and only then."""
        for name, row in self._export_option_rows.items():
            row.layout.display = "flex" if self._export_formats[name].value else "none"

    def export_options(self) -> dict[str, dict]:
        """The options the Export panel sets, per ticked format ({FORMAT: {NAME: VALUE}})."""
        return {n: {k: ctl.value for k, ctl in self._export_option_controls[n].items()}
                for n, box in self._export_formats.items() if box.value and self._export_option_controls[n]}

    # -- events -> controller -----------------------------------------------------------------------------
    def _beside(self, name: str) -> W.HTML:
        """The message area beside control `name`, made on first use: put it next to the control in the
        layout, then an error its action raises shows there as well as in the error area at the top
        (`_act(action, beside=name)`, or `with self._reporting(name):`), and `_say(name, text)` puts any
        other message there. `shown()["beside:<name>"]` is its text."""
        if name not in self._said:
            area = self._said[name] = W.HTML(layout=W.Layout(min_height="0px", margin="0 0 0 8px"))
            area.add_class("workbench-beside")
        return self._said[name]

    def _reporting(self, beside: str | None = None) -> _ErrorArea:
        """The context an action of control `beside` runs in: errors shown at the top and beside it."""
        return _ErrorArea(self._errors, self._beside(beside) if beside else None)

    def _say(self, name: str, text: str, colour: str = GREY) -> None:
        """A message (not an error) beside control `name`; "" clears it."""
        self._beside(name).value = (f"<span style='color:{colour};font-size:12px'>{html.escape(text)}</span>"
                                    if text else "")

    def _act(self, action, beside: str | None = None) -> None:
        """Run a controller action from an event; a WorkbenchError shows in the widget (and beside control
        `beside`), which keeps its state."""
        if self._syncing:
            return
        with self._reporting(beside):
            action()

    def _on_slider(self, key, value) -> None:
        """A slider moved in the front end. Values the view itself showed lately are echoes, not moves: the
        front end sends the handle's old value back when its range changes. A move is rounded to what the
        slider can aim at (`_dragged`) and its box shows it at once, before the recompute it starts."""
        if self._syncing:
            return
        if any(math.isclose(value, v, rel_tol=1e-9, abs_tol=1e-12) for v in self._recent[key]):
            self._render("controls")  # the front end took the old value back: give it the one in force again
            return
        value = self._dragged(key, value)
        text = self._scale_text if key == "scale" else self._bias_text[key]
        self._syncing = True
        try:
            text.value = _numbers(value)
        finally:
            self._syncing = False
        self._coalescer.add(key, value)

    def _dragged(self, key, value: float) -> float:
        """A dragged value as the slider can aim it: the scale to SCALE_DIGITS significant digits, a bias to
        the decimals a thousandth of its slider's range needs (0.001 on -3..3). A drag in floating point
        gives 0.2999999999999998 where the user aimed at 0.3; a typed value is kept as typed."""
        if key == "scale":
            return float(f"{value:.{SCALE_DIGITS}g}")
        slider = self._bias[key]
        decimals = max(0, -math.floor(math.log10((slider.max - slider.min) / 3000)))
        return round(float(value), decimals) + 0.0  # + 0.0: no -0.0 in the box

    def _shown(self, key, value: float) -> None:
        """Remember that slider `key` showed `value` (distinct values only: an echo may lag several renders)."""
        recent = self._recent[key]
        if not any(math.isclose(value, v, rel_tol=1e-9, abs_tol=1e-12) for v in recent):
            recent.append(value)

    def _on_text(self, key, text: str) -> None:
        if self._syncing:
            return
        with self._reporting(_control_name(key)):
            try:
                value = float(text)
            except ValueError:
                self._render("controls")
                raise WorkbenchError(
                    f"{text!r} is not a number; type a value such as 0.0039215686 or -123.68") from None
            self._coalescer.cancel()
            self._apply_edits({key: value})

    def _apply_edits(self, edits: dict) -> None:
        with self._reporting(_control_name(next(iter(edits))) if edits else None):
            try:
                self.controller.edit(scale=edits.pop("scale", None), bias=edits or None)
            except WorkbenchError:
                self._render("controls")  # back to the values in force
                raise

    def _on_live(self, name: str, on: bool) -> None:
        """Tick a format to run it live. In a kernel it converts in a worker thread (the slowest converters take a
        minute) while every other control keeps working; with no event loop it converts at once."""
        if self._syncing:
            return
        c = self.controller
        with self._reporting("live"):
            if not on:
                c.remove_live(name)
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                c.add_live(name)
                return
            if c.begin_live(name):
                job = loop.run_in_executor(None, c.convert, name)
                job.add_done_callback(lambda done: loop.call_soon(self._live_converted, name, done))

    def _on_variant(self, key: tuple[str, str], on: bool) -> None:
        """Tick a compressed variant: in a kernel it compresses in a worker thread (palettizing or calibrating
        takes seconds) while the other controls keep working; with no event loop it compresses at once."""
        if self._syncing:
            return
        c = self.controller
        with self._reporting(f"variant:{key[0]}"):
            if not on:
                c.remove_variant(*key)
                return
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                try:
                    c.add_variant(*key)
                finally:
                    self._render("variants")  # a refused tick is unticked
                return
            try:
                started = c.begin_variant(*key)
            finally:
                self._render("variants")
            if started:
                job = loop.run_in_executor(None, c.compress, *key)
                job.add_done_callback(lambda done: loop.call_soon(self._variant_compressed, key, done))

    def _variant_compressed(self, key: tuple[str, str], done) -> None:
        with self._reporting(f"variant:{key[0]}"):
            self.controller.finish_variant(*key, done.result())

    def _live_converted(self, name: str, done) -> None:
        with self._reporting("live"):
            self.controller.finish_live(name, done.result())

    def _show_graph(self, fmt: str | None) -> None:
        if fmt is None or self._syncing:
            return
        with self._reporting("graph"):
            artifact = self.live.artifacts[fmt]
            if self._graph is None:  # one server for the widget: other formats are other pages on it
                self._graph = Graph(artifact.path)
                self._graph_view.value = self._graph.html()
            else:
                self._graph_view.value = self._graph.show(artifact.path)

    def _on_export(self, confirmed: bool) -> None:
        c = self.controller
        button = self._export_button
        button.disabled = True
        self._hide_confirm()
        self._written.value = self._beside("export").value = ""  # nothing of the last Export stays on screen
        chosen = [f for f, box in self._export_formats.items() if box.value]
        variants = self._export_variants.value
        self._progress.max, self._progress.value = max(c.export_steps(chosen, variants), 1), 0
        self._progress.description = ""
        registered = _formats.registry()

        def step(what: str, verb: str):
            head, _, rest = what.partition(" ")  # a format's name, and a compressed variant's after it
            title = " ".join([registered[head].title, rest]).strip() if head in registered else what
            self._progress.value = min(self._progress.value + 1, self._progress.max)
            self._progress.description = f"{verb} {title}"

        try:
            with self._reporting("export"):
                c.export(self._out.value, chosen, options=self.export_options(), labels_file=self._labels_file.value,
                         overwrite=self._overwrite.value, confirmed=confirmed, progress=step, variants=variants)
        finally:
            button.disabled = False
            if c.export_outcome is None or c.export_outcome.written == []:
                self._progress.value, self._progress.description = 0, ""  # no half-full bar after a stop

    def _hide_confirm(self) -> None:
        self._confirm_row.layout.display = "none"

    # -- controller state -> view -----------------------------------------------------------------------
    def _render(self, what: str) -> None:
        {"controls": self._render_controls, "busy": self._render_busy, "column": self._render_metrics,
         "result": self._render_result, "export": self._render_export, "live": self._render_live,
         "variants": self._render_variants}[what]()
        if what in ("live", "variants"):
            self._dataset.refresh_choices()
        if what in ("live", "variants", "controls"):
            self._dataset.render()  # whether its figures still hold for the preprocessing in force
        if what in ("live", "variants", "controls", "result"):
            self._layers.render()  # its choices, whether its figures still hold, a failing format's layers

    def _render_controls(self) -> None:
        c = self.controller
        controls = c.controls()
        self._syncing = True
        try:
            waiting = self._coalescer.waiting  # a drag not applied yet: its slider and box keep showing it
            scale = controls["scale"]
            exact = waiting.get("scale", scale.value if isinstance(scale.value, float) else scale.value[0])
            before = self._scale.value
            self._shown("scale", before)
            _move_log(self._scale, exact, *self._scale_range(exact))
            self._shown("scale", self._scale.value)
            # the front end may send the old handle back clamped into the new range (a typed 0.03, then Match,
            # came back as the range's end and undid the Match): that is an echo too
            ends = (self._scale.base ** self._scale.min, self._scale.base ** self._scale.max)
            self._shown("scale", min(max(before, ends[0]), ends[1]))
            self._scale.disabled = not scale.enabled
            self._scale_text.value = _numbers(waiting.get("scale", scale.value))
            self._scale_text.disabled = not scale.enabled
            for i, (slider, text) in enumerate(zip(self._bias, self._bias_text)):
                control = controls[f"bias{i}"]
                value = waiting.get(i, control.value)
                before = slider.value
                self._shown(i, before)
                _move(slider, value, min(-3.0, value - 1.0), max(3.0, value + 1.0))
                self._shown(i, slider.value)
                self._shown(i, min(max(before, slider.min), slider.max))  # its old handle, clamped: an echo
                slider.disabled, slider.description = not control.enabled, control.label
                text.value, text.disabled = _numbers(value), not control.enabled
            self._bgr.value, self._bgr.disabled = controls["bgr"].value, not controls["bgr"].enabled
            self._bake.value = controls["bake"].value
            preset = controls["preset"]
            self._preset.value, self._preset.disabled = preset.value, not preset.enabled
            reasons = sorted({ctl.reason for ctl in controls.values() if ctl.reason})
            self._reasons.value = "".join(f"<div style='font-size:12px;color:{GREY}'>{html.escape(r)}</div>"
                                          for r in reasons)
            self._render_exactness()
        finally:
            self._syncing = False

    def _scale_range(self, value: float) -> tuple[float, float]:
        """The scale slider's (min, max) exponents: the model's own scale times or divided by 10**SCALE_SPAN,
        or around `value` when it lies outside that."""
        centre = math.log10(self.controller.reference_preprocess.imagetype_fit().scale)
        if value > 0 and abs(math.log10(value) - centre) > SCALE_SPAN:
            centre = math.log10(value)
        return centre - SCALE_SPAN, centre + SCALE_SPAN

    def _render_exactness(self) -> None:
        c = self.controller
        ref = c.reference_preprocess
        inexact = [f for f in _formats.registry().values() if f.native_exact(ref) is False]
        moved = not any(same_preprocess(c.preprocess, p) for p in (ref, ref.with_imagetype()))
        if moved:  # the sliders left the model's own values: say so, not what the training values allow
            head = (f"<span style='color:{AMBER}'>The values in force are not the model's own</span>: PyTorch's "
                    "side keeps its training preprocessing, so the formats below differ by what these values change "
                    "(Match PyTorch returns to the model's own)")
        elif not inexact:
            head = (f"<span style='color:{GREEN}'>Every format carries the training preprocessing exactly</span> "
                    "(natively where its runtime applies it, else in the graph)")
        else:
            notes = "; ".join(f"{f.title}: {f.carries(ref)}" for f in inexact)
            head = (f"<span style='color:{AMBER}'>Not every runtime's own preprocessing expresses the training "
                    f"preprocessing exactly (per-channel std)</span>: {html.escape(notes)}. Tick <i>bake</i> to put "
                    "the exact normalization in the model.")
        grouped: dict[str, list[str]] = {}  # formats that carry it the same way, named together
        for f, note in c.exactness().items():
            grouped.setdefault(note, []).append(_formats.get(f).title)
        per_format = "; ".join(f"{html.escape(', '.join(titles))}: {html.escape(note)}"
                               for note, titles in grouped.items())
        self._exactness.value = (f"<div style='font-size:12px'>{head}<br>in force: "
                                 f"{html.escape(c.preprocess.describe())}<br>an export carries it: {per_format}</div>")

    def _render_busy(self) -> None:
        busy, was = self.controller.busy, self._busy.value
        self._busy.value = (f"<div style='font-size:12px;color:{AMBER}'>&#9203; {html.escape(busy)}... (results "
                            "below are out of date until replaced)</div>" if busy else "")
        if busy and not was:  # a recompute starts: mark the old rows once; each finished column redraws itself
            self._render_metrics()

    def _render_result(self) -> None:
        c = self.controller
        self._render_metrics()
        _show(self._picture, c.picture)
        n = len(c.session.images)
        first = c.page * 4 + 1
        self._page.value = (f"<span style='font-size:12px'>images {first}-{min(first + 3, n)} of {n} "
                            f"(page {c.page + 1} of {c.pages})</span>")
        self._previous.disabled, self._next.disabled = c.page == 0, c.page + 1 >= c.pages

    def _render_metrics(self) -> None:
        c = self.controller
        table = c.parity_view().html()
        if c.divergence is not None:
            table += (f"<div style='font-size:12px'><b>{html.escape(_formats.get(c.divergence_format).title)} "
                      "program against PyTorch, op by op</b> (first image):"
                      f"<pre style='font-size:11px'>{html.escape(c.divergence.describe())}</pre></div>")
        elif any(not comp.passed for comp in c.comparison.values()) and c.differs:
            table += ("<div style='font-size:12px'>The preprocessing differs from PyTorch's: click <i>Match "
                      "PyTorch</i> to see whether the converted program itself agrees (then the op-by-op "
                      "locator runs if it does not).</div>")
        self._metrics.value = table

    def _render_live(self) -> None:
        c = self.controller
        self._syncing = True
        try:
            for name, box in self._live_boxes.items():
                box.value = name in c.formats
            shown = [f for f in c.formats if c.status.get(f) == "ok"]
            options = [(_formats.get(f).title, f) for f in shown]
            if [v for _, v in self._graph_choice.options] != shown:
                self._graph_choice.options = options
                self._graph_choice.value = None
        finally:
            self._syncing = False
        if shown and self._graph_choice.value is None:
            self._graph_choice.value = shown[0]  # shows it (the observer runs)
        elif not shown:
            self._graph_view.value = "<i>no conversion succeeded: no graph to show</i>"
        self._model.value = self._model_html()
        self._render_metrics()  # a format's row says it is converting, or why it failed

    def _render_variants(self) -> None:
        c = self.controller
        self._syncing = True
        try:
            for (fmt, name), box in self._variant_boxes.items():
                box.value = (fmt, name) in c.variants
                box.disabled = bool(c.variant_blocked(fmt)) and not box.value
            running = [(v.title, k) for k, v in c.variants.items() if v.status == "ok"]
            if list(self._variant_shown.options) != running:
                self._variant_shown.options = running
            self._variant_shown.value = c.variant_shown if c.variant_shown in dict(running).values() else None
        finally:
            self._syncing = False
        for fmt, area in self._variant_blocked.items():
            reason = c.variant_blocked(fmt)
            area.value = f"<span style='font-size:11px;color:{GREY}'>{html.escape(reason)}</span>" if reason else ""
        self._variant_table.value = self._variants_html()
        self._render_compression_pictures()

    def _render_compression_pictures(self) -> None:
        if self._tabs.selected_index != COMPRESSION_TAB:
            return
        c = self.controller
        for area, image in ((self._chart, c.chart), (self._variant_picture, c.variant_picture)):
            _show(area, image)

    def _variants_html(self) -> str:
        """Per format with ticked variants: its uncompressed live artifact, then each variant, with its size
        and its figures against PyTorch (`Controller.compression_view`, the notebooks' table)."""
        c = self.controller
        if not c.variants:
            return (f"<div style='font-size:12px;color:{GREY}'>no variant ticked: tick one above to see its size "
                    "and its figures against PyTorch</div>")
        # wider than the panel (its text columns): it scrolls under itself, not at the bottom of the whole tab
        return f"<div style='overflow-x:auto;max-width:100%'>{c.compression_view().html()}</div>"

    def _model_html(self) -> str:
        c = self.controller
        s = c.session
        params = s.model.parameters
        rows = [("source", html.escape(s.model.source)),
                ("input", html.escape(f"{s.input_shape} ({c.reference_preprocess.describe()})")),
                ("parameters", f"{params:,}" if params is not None else "-"), ("task", html.escape(s.task.name)),
                ("images", html.escape(f"{len(s.images)}: {', '.join(i.name for i in s.images)}"))]
        rows += [("note", html.escape(n)) for n in s.notes]
        for fmt in c.formats:
            state = c.status.get(fmt, "")
            art = c.live.artifacts.get(fmt)
            took = [f"converted in {c.seconds[fmt]:.1f} s"] if state == "ok" and fmt in c.seconds else []
            notes = took + list(art.notes if art is not None else ())
            extra = f" ({'; '.join(notes)})" if notes else ""
            rows.append((_formats.get(fmt).title, f"<span style='color:{GREEN if state == 'ok' else RED}'>"
                                                  f"{html.escape(state)}</span>{html.escape(extra)}"))
        body = "".join(f"<tr><th style='text-align:left;padding-right:12px'>{html.escape(k)}</th><td>{v}</td></tr>"
                       for k, v in rows)
        return f"<table style='font-size:13px'>{body}</table>"

    def _render_export(self) -> None:
        outcome = self.controller.export_outcome
        if outcome is None:
            self._written.value = ""
            return
        if outcome.confirm:
            self._confirm_text.value = f"<span style='color:{AMBER}'>{html.escape(outcome.confirm)}</span>"
            self._confirm_row.layout.display = "flex"
            self._written.value = ""
        elif outcome.refused:
            self._written.value = f"<div style='color:{RED}'><b>refused</b>: {html.escape(outcome.refused)}</div>"
        else:
            self._progress.value, self._progress.description = self._progress.max, "done"
            items = "".join(f"<li>{html.escape(path)} ({html.escape(title)}"
                            f"{', ' + html.escape(verdict) if verdict else ''})</li>"
                            for path, title, verdict in outcome.written)
            self._written.value = f"<b>written</b><ul style='font-size:12px'>{items}</ul>"


def _option_control(option) -> W.Widget:
    """The Export panel's control for a format's option: a menu of its choices (or suggestions), a tick box for a
    yes/no, else a text box; the option's default shown and its help as the tooltip."""
    menu = option.choices or option.suggest
    layout = W.Layout(width="auto")
    if menu:
        control = W.Dropdown(options=list(menu), value=option.default, description=option.name, layout=layout,
                             style={"description_width": "initial"})
    elif isinstance(option.default, bool):
        control = W.Checkbox(value=option.default, description=option.name, indent=False, layout=layout)
    else:
        control = W.Text(value="" if option.default is None else str(option.default), description=option.name,
                         layout=layout, style={"description_width": "initial"})
    control.tooltip = option.help
    return control


def _move(slider: W.FloatSlider, value: float, low: float, high: float) -> None:
    """Give `slider` a new value and range without the front end ever clipping the value: one sync message may
    apply value before range in any order (the message's keys are a set), and a clipped value comes back as
    if the user had moved it. So: widen to both ranges, then the value, then the new range, in that order."""
    slider.min, slider.max = min(low, slider.min, value), max(high, slider.max, value)
    slider.value = value
    slider.min, slider.max = low, high


def _move_log(slider: W.FloatLogSlider, value: float, low: float, high: float) -> None:
    """`_move` for a logarithmic slider, whose range is in exponents: widen, set the value, narrow."""
    if value <= 0:  # a scale of 0 or less has no place on a log scale: the handle stays at the left end
        value = slider.base ** low
    exponent = math.log(value, slider.base)
    slider.min, slider.max = min(low, slider.min, exponent), max(high, slider.max, exponent)
    slider.value = value
    slider.min, slider.max = low, high


def _control_name(key) -> str:
    """The control a slider edit's key stands for: "scale", or bias channel i's "bias<i>"."""
    return "scale" if key == "scale" else f"bias{key}"


def _show(area: W.Image, data: bytes) -> None:
    """Put a picture on screen at its own size (narrower only where the page is): a flex box would stretch it
    to the box's width, blurred."""
    if area.value != data:
        area.value = data
    area.layout.display = "block" if data else "none"
    if data:
        from PIL import Image

        width = Image.open(io.BytesIO(data)).size[0]  # reads the header only
        area.layout.width, area.layout.max_width, area.layout.height = f"{width}px", "100%", "auto"


def _numbers(value) -> str:
    """A value as text with every digit it has (one number or one per channel)."""
    if isinstance(value, tuple):
        return ", ".join(repr(float(v)) for v in value)
    return repr(float(value))


class _Coalescer:
    """Slider changes, applied together: in a kernel the apply waits for the event loop, so the changes queued
    behind the first are read before it and one recompute uses the latest values (a drag does not leave a
    queue of stale recomputes). With no event loop (a script, a test) each change applies at once."""

    def __init__(self, apply):
        self._apply, self._edits, self._pending = apply, {}, None

    def add(self, key, value) -> None:
        self._edits[key] = value
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._pending is None:
            self._pending = loop.call_later(COALESCE_SECONDS, self.flush)

    @property
    def pending(self) -> bool:
        return self._pending is not None

    @property
    def waiting(self) -> dict:
        """The edits not applied yet, by key."""
        return dict(self._edits)

    def flush(self) -> None:
        self._pending = None
        edits, self._edits = self._edits, {}
        if edits:
            self._apply(edits)

    def cancel(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        self._edits = {}


class _CollectorFrozen:
    """While the widget builds, what each build step has made is frozen (`gc.freeze`): Python's cycle
    collector keeps running, for the build and for every other thread, but its full passes stop walking the
    half million objects that importing and converting left alive. Unfrozen when the build ends.

    Measured on notebook 05's widget (mobilenet_v2, three formats, 14 s here): the collector spends 1.5 s of
    the build with nothing done, 0.6 s with this. The former `gc.disable()` spent none but switched the
    collector off for the whole process meanwhile. Leaves alone a process that froze objects itself."""

    def __enter__(self):
        self._ours = gc.get_freeze_count() == 0  # someone froze objects already: their freeze is theirs
        return self

    def freeze(self) -> None:
        if self._ours:
            gc.freeze()

    def __exit__(self, *exc) -> None:
        if self._ours:
            gc.unfreeze()


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


class _ErrorArea:
    """Shows an error from a callback in the widget's error area, and beside the control that caused it
    (`beside`, when given). A WorkbenchError (what a user can fix) shows its message; anything else is a bug:
    shown with its traceback's tail, logged with the whole traceback, and raised again when the environment
    variable WORKBENCH_RAISE_CALLBACK_BUGS is set (the test suite sets it), so that tests see it."""

    def __init__(self, area: W.HTML, beside: W.HTML | None = None):
        self.area, self.beside = area, beside

    def __enter__(self):
        self.area.value = ""
        if self.beside is not None:
            self.beside.value = ""
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None:
            return False
        bug = not isinstance(exc, (WorkbenchError, RuntimeUnavailable))
        if bug:
            tail = "".join(traceback.format_exception(kind, exc, tb)[-3:])
            text = f"internal error (please report): {html.escape(str(exc))}<pre>{html.escape(tail)}</pre>"
            if not getattr(exc, "_workbench_logged", False):  # an error area inside another: logged once
                log.error("internal error in a widget callback", exc_info=(kind, exc, tb))
                with contextlib.suppress(AttributeError):
                    exc._workbench_logged = True
        else:
            text = html.escape(str(exc))
        self.area.value = f"<div style='color:#b00;border:1px solid #e99;padding:6px;background:#fee'>{text}</div>"
        if self.beside is not None:
            short = html.escape(str(exc)) if not bug else "internal error: see the message at the top"
            self.beside.value = f"<span style='color:#b00;font-size:12px'>{short}</span>"
        return not (bug and os.environ.get(RAISE_BUGS))
