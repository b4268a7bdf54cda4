"""The widget's Layers tab: where a format (or a compressed variant) leaves PyTorch, layer by layer.

`LayersRun` runs one per-layer comparison at a time, on demand, in a background thread (no Jupyter: the
controller's tests drive it headless); `LayersPanel` draws it: the ranked layers as a table, the graph coloured
by each layer's error (`views.layers`), and the picked layer's figures. When a live format fails, the controller
has already located it (`Controller.divergence`), and the tab shows that until one is asked for.
"""

from __future__ import annotations

import html
import threading
import time

from .. import formats as _formats
from ..errors import WorkbenchError, first_line
from ..preprocess import Preprocess

GRAPH_SIZE = 30  # layers the graph draws at once, around the picked one
FP16 = "at fp16"  # a choice's suffix: the live format converted at fp16 for the comparison


class LayersRun:
    """One per-layer comparison at a time, for a widget's controller.

    `start(candidate, image)` returns at once; `result` is the latest `layers.Layers`, `candidate`, `image` and
    `preprocess` what it was computed for; `error` what went wrong instead.
    """

    def __init__(self, controller):
        self.controller = controller
        self.result = None
        self.error: str | None = None
        self.candidate: str | None = None
        self.image = 0
        self.preprocess: Preprocess | None = None
        self.seconds = 0.0
        self._thread: threading.Thread | None = None
        self._active = False
        self._listeners = []
        self._converted: dict = {}  # per format, its fp16 file (see `_fp16`)

    def choices(self) -> list[str]:
        """What can be compared layer by layer: the live formats that have a locator, each one that converts
        at fp32 live also "at fp16" (converted when asked: where fp16 would lose, before exporting it), then
        their ticked compressed variants ("FORMAT VARIANT")."""
        c = self.controller
        has = [f for f in c.running if _formats.get(f).locator]
        return [*has, *[f"{f} {FP16}" for f in has if self._fp16_able(f)],
                *[f"{f} {v}" for (f, v), variant in c.variants.items() if f in has and variant.status == "ok"]]

    def _fp16_able(self, fmt: str) -> bool:
        format_ = _formats.get(fmt)
        return ("fp16" in format_.precisions and any(o.name == "precision" for o in format_.export_options)
                and self.controller.live.artifacts[fmt].precision != "fp16")

    def title(self, candidate: str) -> str:
        fmt, _, rest = candidate.partition(" ")
        return f"{_formats.get(fmt).title} {rest}".strip()

    def listen(self, callback) -> None:
        """callback(what): "start" when a comparison starts, "done" when it ends (from its thread)."""
        self._listeners.append(callback)

    def _tell(self, what: str) -> None:
        for callback in self._listeners:
            callback(what)

    @property
    def running(self) -> bool:
        return self._active

    def start(self, candidate: str, image: int = 0) -> None:
        """Compare `candidate` (a format, or "FORMAT VARIANT") with PyTorch layer by layer on sample image
        `image`, with the preprocessing in force, in the background."""
        c = self.controller
        if self.running:
            raise WorkbenchError("a per-layer comparison is running: wait for it to end")
        if candidate not in self.choices():
            have = ", ".join(self.choices()) or f"none: turn on a format that has one ({_with_locator()})"
            raise WorkbenchError(f"{candidate!r} cannot be compared layer by layer here; choose among {have}")
        n = len(c.session.images)
        if not 0 <= image < n:
            raise WorkbenchError(f"image {image} is out of range: there are {n} sample images")
        fmt, _, variant = candidate.partition(" ")
        artifacts = c.variants[(fmt, variant)].artifacts if variant and variant != FP16 else c.live
        self.candidate, self.image, self.preprocess, self.error = candidate, image, c.preprocess, None
        self._active = True
        self._tell("start")
        # a runner of its own: the widget's keeps serving the sliders while this one runs
        self._thread = threading.Thread(target=self._run, name="workbench-layers", daemon=True,
                                        args=(artifacts, fmt, variant))
        self._thread.start()

    def _run(self, artifacts, fmt: str, variant: str) -> None:
        from ..layers import locate

        start = time.perf_counter()
        runner = None
        try:
            artifact = self._fp16(fmt) if variant == FP16 else artifacts.artifacts[fmt]
            runner = _formats.get(fmt).make_runner(artifact, **artifacts.runtime_options.get(fmt, {}))
            self.result = locate(artifacts.reference, artifact, runner, self.image, preprocess=self.preprocess,
                                 compressed=bool(variant) and variant != FP16)
        except WorkbenchError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: said in the tab, not lost in a thread
            self.error = f"internal error (please report): {type(exc).__name__}: {first_line(exc)}"
        finally:
            if runner is not None:
                runner.deactivate()
            self.seconds = time.perf_counter() - start
            self._active = False
            self._tell("done")

    def _fp16(self, fmt: str):
        """The live model converted to `fmt` at fp16, once (in the widget's work folder, beside the live file)."""
        if fmt not in self._converted:
            c = self.controller
            format_ = _formats.get(fmt)
            path = c.live.artifacts[fmt].path
            self._converted[fmt] = format_.export(
                c.session.spec(bake=False, labels=False), path.with_name(f"{path.stem}.fp16{format_.suffix}"),
                overwrite=True, **{**format_.live_options, "precision": "fp16"})
        return self._converted[fmt]

    def wait(self, timeout: float | None = None) -> None:
        """Until the comparison ends (tests, scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def stale(self) -> bool:
        """Whether the figures were computed with another preprocessing than the one in force now."""
        return self.preprocess is not None and self.preprocess != self.controller.preprocess

    def shown(self):
        """(Layers, what it is) to draw: the one asked for, else the controller's own (a failing format's)."""
        c = self.controller
        if self.result is not None:
            return self.result, self.candidate
        if c.divergence is not None:
            return c.divergence, c.divergence_format
        return None, None


class LayersPanel:
    """The Layers tab's widgets, drawing a `LayersRun` (built by the view; `box` is the tab)."""

    def __init__(self, run: LayersRun, *, reporting, say, beside):
        """reporting(name), say(name, text, colour), beside(name): the view's `_reporting`, `_say`, `_beside`."""
        import ipywidgets as W

        self.run, self._reporting, self._say = run, reporting, say
        self.which = W.Dropdown(options=[], description="compare", layout=W.Layout(width="260px"))
        self.image = W.Dropdown(options=[], description="on image", layout=W.Layout(width="260px"))
        self.go = W.Button(description="Compare layers", button_style="primary", icon="search",
                           layout=W.Layout(width="auto"))
        self.status = W.HTML()
        self.order = W.ToggleButtons(options=[("by error added", "ranked"), ("in graph order", "graph")],
                                     value="ranked", style={"button_width": "auto"})
        self.header = W.HTML()
        self.table = W.Select(options=[], rows=14, layout=W.Layout(width="620px"))
        self.table.add_class("workbench-layers-table")
        self.details = W.HTML()
        self.strip = W.HTML()
        self.graph = W.HTML(layout=W.Layout(overflow="auto", max_height="660px"))
        self.legend = W.HTML()
        self.summary = W.HTML()
        self.go.on_click(lambda _: self._act(self._start))
        self.order.observe(lambda _: self._draw_table(), names="value")
        self.table.observe(lambda ch: self._draw_picked(), names="value")
        self._drawn = None
        style = W.HTML("<style>.workbench-layers-table select{font-family:monospace;font-size:12px}</style>")
        self.box = W.VBox([
            style,
            W.HTML("<b>Layer by layer</b>: the converted model's values matched to PyTorch's modules on one image; "
                   "each layer's error is in units of its own tolerance (1x: at the limit). Runs in the background."),
            W.HBox([self.which, self.image, self.go, beside("layers")]), self.status, self.summary,
            self.order, self.header, self.table, self.details, self.legend, self.strip, self.graph])
        self.box.add_class("workbench-layers-tab")
        run.listen(lambda what: self.render())
        self.refresh_choices()

    def _act(self, action) -> None:
        with self._reporting("layers"):
            action()

    def _start(self) -> None:
        if not self.which.value:
            raise WorkbenchError(f"no format here can be compared layer by layer: turn on one of {_with_locator()}")
        self.run.start(self.which.value, self.image.value or 0)

    def refresh_choices(self) -> None:
        """The candidates and images offered (the tab is drawn again when the live formats or images change)."""
        choices = self.run.choices()
        if [v for _, v in self.which.options] != choices:
            keep = self.which.value
            self.which.options = [(self.run.title(x), x) for x in choices]
            if keep in choices:
                self.which.value = keep
        names = [(f"{k + 1}: {i.name}", k) for k, i in enumerate(self.run.controller.session.images)]
        if list(self.image.options) != names:
            keep = self.image.value
            self.image.options = names
            self.image.value = keep if keep is not None and keep < len(names) else (0 if names else None)
        self.go.disabled = self.run.running or not choices

    def render(self) -> None:
        run = self.run
        self.refresh_choices()
        if run.running:
            what = html.escape(run.title(run.candidate))
            self.status.value = (f"<span style='color:#555;font-size:12px'>comparing {what} layer by layer on image "
                                 f"{run.image + 1}…</span>")
            self._say("layers", "")
            return
        if run.error:
            self._say("layers", run.error, "#b00")
        else:
            self._say("layers", "")
        found, what = run.shown()
        self.status.value = self._status(found, what)
        if found is None:
            self.summary.value = self.header.value = self.details.value = ""
            self.legend.value = self.strip.value = self.graph.value = ""
            self.table.options = []
            return
        if found is not self._drawn:
            self._drawn = found
            from ..views.layers import legend_html

            self.summary.value = (f"<pre style='font-size:12px;white-space:pre-wrap;margin:2px 0'>"
                                  f"{html.escape(found.describe())}</pre>")
            self.legend.value = legend_html()
            self._draw_table(fresh=True)

    def _status(self, found, what) -> str:
        run = self.run
        if found is None:
            return ("<span style='color:#555;font-size:12px'>nothing compared yet: pick a format and press "
                    "Compare layers</span>")
        if found is not run.result:
            return (f"<span style='color:#555;font-size:12px'>{html.escape(run.title(what))} fails its tolerance: "
                    "located on the first image when the comparison ran</span>")
        image = run.controller.session.images[run.image].name
        text = (f"{html.escape(run.title(what))} on image {run.image + 1} ({html.escape(image)}), computed with "
                f"{html.escape(run.preprocess.describe())} in {_seconds(run.seconds)}")
        if run.stale():
            return (f"<span style='color:#a60;font-size:12px'>these figures were {text}; the preprocessing now is "
                    f"{html.escape(run.controller.preprocess.describe())}: press Compare layers again</span>")
        return f"<span style='color:#555;font-size:12px'>{text}</span>"

    def _draw_table(self, fresh: bool = False) -> None:
        """The rows in the order chosen. The row picked stays picked; a new comparison that diverges picks its
        first layer over tolerance (where to look first)."""
        from ..views.layers import RANKED_HEADER, ranked_rows

        found, _ = self.run.shown()
        if found is None:
            return
        self.header.value = f"<pre style='font-size:12px;margin:0'>{html.escape(RANKED_HEADER)}</pre>"
        rows = ranked_rows(found, self.order.value)
        picked = None if fresh and found.first is not None else self.table.value
        self.table.options = rows
        first = found.first or found.growth or (found.layers[0] if found.layers else None)
        if rows:
            self.table.value = picked if picked in {t for _, t in rows} else (first.torch if first else rows[0][1])
        self._draw_picked()

    def _draw_picked(self) -> None:
        from ..views.layers import describe_layer, graph_svg, strip_svg

        found, _ = self.run.shown()
        if found is None:
            return
        picked = self.table.value
        if picked:
            layer = found.layer(picked)
            self.details.value = (f"<pre style='font-size:12px;margin:2px 0;color:#1f4e9c'>"
                                  f"{html.escape(describe_layer(layer, found.unit))}</pre>")
        # the strip says where the window is in a graph longer than it
        self.strip.value = strip_svg(found, picked, GRAPH_SIZE) if found.matched > GRAPH_SIZE else ""
        self.graph.value = graph_svg(found, picked, GRAPH_SIZE)


def _with_locator() -> str:
    """The formats that have a per-layer locator, by title."""
    return ", ".join(f.title for f in _formats.registry().values() if f.locator)


def _seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else f"{s:.1f} s"
