"""The widget's Dataset tab: a whole folder checked in the background, its worst images put in the comparison.

`DatasetRun` holds the state and runs the check (no Jupyter: the controller's tests drive it headless);
`DatasetPanel` draws it. A run works on a session of its own (the widget's own one keeps serving the
sliders, the Graph and the Compression tabs) and keeps the preprocessing it started with: a slider moved
during a run changes nothing in it, and the tab then says its figures were computed with other values.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from ..errors import WorkbenchError, first_line
from ..preprocess import Preprocess
from ..views.dataset import histogram, worst_html

REFRESH_SECONDS = 1.0  # the tab's figures are read again from the run's store at most this often
SHOW = 8  # images "Show in comparison" puts in the side-by-side view


class DatasetRun:
    """One dataset check at a time, in a background thread, for a widget's controller.

    `start(folder, candidates)` returns at once; `state()` says where it is; `result` is the latest
    `workbench.dataset.DatasetResult` (read while it goes, final when done); `stop()` ends it after the
    current batch (the store keeps what is done). `show_worst(k)` puts the worst images into the comparison,
    `show_samples()` brings the sample images back.
    """

    def __init__(self, controller):
        self.controller = controller
        self.result = None
        self.error: str | None = None
        self.preprocess: Preprocess | None = None  # what the run's artifacts carry
        self.candidates: list[str] = []
        self.folder: str | None = None
        self.out: Path | None = None
        self.done = self.total = 0
        self.started = self.finished = None
        self.samples = None  # the sample images, while the worst ones are shown
        self.shown: list[str] = []  # names of the dataset images in the comparison
        self._paths: dict[str, str] = {}
        self._thread: threading.Thread | None = None
        self._active = False  # from start() until the run's last figures are in (before its "done")
        self._stop = threading.Event()
        self._listeners = []
        self._read_at = 0.0

    # -- what can run --------------------------------------------------------------------------------------
    def choices(self) -> list[str]:
        """The formats and compressed variants a run can check: the live ones, then their variants."""
        c = self.controller
        return [*c.formats, *[f"{f} {v}" for (f, v) in c.variants]]

    def listen(self, callback) -> None:
        """callback(what): "progress" while it runs, "done" when it ends (from the run's thread)."""
        self._listeners.append(callback)

    def _tell(self, what: str) -> None:
        for callback in self._listeners:
            callback(what)

    # -- running -------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._active

    def start(self, folder: str | Path, candidates: Sequence[str] | None = None, *, out: str | Path | None = None,
              limit: int | None = None, every: int | None = None, batch_size: int = 16) -> None:
        """Check every image of `folder` (flat, a tree, or an ImageFolder whose subfolders are classes) with
        `candidates` (format names, or "FORMAT VARIANT"; default: every one of `choices()`), in the background."""
        from ..dataset import open_source

        if self.running:
            raise WorkbenchError("a dataset run is going on: Stop it first")
        chosen = list(self.choices() if candidates is None else candidates)
        unknown = [n for n in chosen if n not in self.choices()]
        if unknown:
            raise WorkbenchError(f"{unknown[0]!r} is not live here; choose among {', '.join(self.choices())}")
        if not chosen:
            raise WorkbenchError("tick at least one format to check on the dataset")
        folder = str(folder).strip()
        if not folder:
            raise WorkbenchError("give the folder of images to check (flat, or one subfolder per class)")
        c = self.controller
        source = open_source(folder, labels=c.session.labels, limit=limit, every=every)  # errors here, at once
        formats = list(dict.fromkeys(n.split(" ", 1)[0] for n in chosen))
        compress = {}
        for n in chosen:
            if " " in n:
                fmt, variant = n.split(" ", 1)
                compress.setdefault(fmt, []).append(variant)
        self.preprocess, self.candidates, self.folder = c.preprocess, chosen, folder
        self.out = Path(out) if out is not None else None
        self.done, self.total, self.error, self.result = 0, len(source.items), None, None
        self._paths = {i.name: i.path for i in source.items}
        self.started, self.finished = time.monotonic(), None
        self._stop.clear()
        # a session of its own (its exports leave the widget's alone), on the sample images even while the worst
        # ones are shown: what its int8 variants are calibrated on, as the widget's live ones were
        session = c.session.with_images(self.samples if self.samples is not None else c.session.images)
        options = {f: dict(c.live.runtime_options.get(f, {})) for f in formats}
        self._thread = threading.Thread(
            target=self._run, name="workbench-dataset", daemon=True,
            args=(session, source, formats, compress, options, out, batch_size))
        self._active = True
        self._thread.start()

    def _run(self, session, source, formats, compress, options, out, batch_size) -> None:
        import tempfile

        from ..dataset import check_dataset

        out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="workbench-dataset-"))
        self.out = out
        try:
            result = check_dataset(session, source, formats, out, compress=compress, options=options,
                                   preprocess=self.preprocess, overwrite=True, progress=False,
                                   batch_size=batch_size, on_batch=lambda done, total: self._batch(session, done),
                                   stop=self._stop.is_set)
            self.result = result
        except WorkbenchError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug: said in the tab, not lost in a thread
            self.error = f"internal error (please report): {type(exc).__name__}: {first_line(exc)}"
        finally:
            self.finished = time.monotonic()
            self._active = False
            self._tell("done")

    def _batch(self, session, done: int) -> None:
        self.done = done
        now = time.monotonic()
        if now - self._read_at >= REFRESH_SECONDS:
            self._read_at = now
            self._read(session)
        self._tell("progress")

    def _read(self, session) -> None:
        from ..dataset import DatasetResult

        try:
            self.result = DatasetResult.load(self.out, session=session, pictures=False, candidates=self.candidates)
        except WorkbenchError:
            pass  # nothing stored yet

    def stop(self) -> None:
        """End the run after the batch it is on; what is done stays in its store."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> None:
        """Until the run ends (tests, scripts)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def state(self) -> dict:
        """done, total, rate (images/s), eta (s), running, stopped, error: what the progress line shows."""
        end = self.finished or time.monotonic()
        seconds = end - self.started if self.started else 0.0
        rate = self.done / seconds if seconds > 0 and self.done else None
        left = self.total - self.done
        return {"done": self.done, "total": self.total, "rate": rate,
                "eta": left / rate if rate and self.running else None, "running": self.running,
                "stopped": self._stop.is_set() and not self.running and self.done < self.total,
                "error": self.error}

    def stale(self) -> bool:
        """Whether the figures were computed with another preprocessing than the one in force now."""
        return self.preprocess is not None and self.preprocess != self.controller.preprocess

    # -- into the comparison -------------------------------------------------------------------------------
    def worst_images(self, k: int = SHOW, candidate: str | None = None) -> list[str]:
        """The names of the `k` worst images of `candidate` (or over every candidate, each image once, by its
        worst figure), worst first."""
        if self.result is None:
            raise WorkbenchError("run the dataset first: there are no figures to pick images from")
        rows = self.result.worst(max(k, 1) * (1 if candidate else len(self.result.candidates)), candidate)
        figure = self.result.figure
        rows.sort(key=lambda r: (r[figure] is not None, r[figure] if r[figure] is not None else 0,
                                 r["psnr"] if r["psnr"] is not None else 0))
        return list(dict.fromkeys(r["image"] for r in rows))[:k]

    def show_worst(self, k: int = SHOW, candidate: str | None = None) -> list[str]:
        """Put the `k` worst images into the side-by-side view as its sample images; their names."""
        names = self.worst_images(k, candidate)
        if not names:
            raise WorkbenchError("no image was compared: nothing to show")
        from ..images import SampleImage, load_image

        previous = self.controller.session.images
        self.controller.load_images([SampleImage(n, load_image(self._paths[n]), Path(self._paths[n])) for n in names])
        if self.samples is None:
            self.samples = previous
        self.shown = names
        return names

    def show_samples(self) -> None:
        """Back to the sample images the widget had before `show_worst`."""
        if self.samples is None:
            return
        self.controller.load_images(self.samples)
        self.samples, self.shown = None, []

    def report(self) -> dict | None:
        """For parity_report.json: the dataset figures when they were computed with the preprocessing in force,
        else a note that says why they are not there."""
        if self.result is None:
            return None
        if self.stale():
            return {"note": f"a dataset run ({self.folder}) was computed with another preprocessing "
                            f"({self.preprocess.describe()}): run it again to record its figures here"}
        return self.result.to_dict()


class DatasetPanel:
    """The Dataset tab's widgets, drawing a `DatasetRun` (built by the view; `box` is the tab)."""

    def __init__(self, run: DatasetRun, *, reporting, say, beside):
        """reporting(name): the context an action of control `name` runs in; say(name, text, colour): a message
        beside it; beside(name): its message area (the view's `_reporting`, `_say`, `_beside`)."""
        import ipywidgets as W

        self.run, self._reporting, self._say = run, reporting, say
        self.folder = W.Text(placeholder="a folder of images, or one subfolder per class", description="folder",
                             layout=W.Layout(width="60%"))
        self.limit = W.BoundedIntText(value=0, min=0, max=10**9, description="at most",
                                      style={"description_width": "initial"}, layout=W.Layout(width="140px"))
        self.boxes: dict[str, W.Checkbox] = {}
        self.choice_row = W.HBox()
        self.run_button = W.Button(description="Run", button_style="primary", icon="play",
                                   layout=W.Layout(width="auto"))
        self.stop_button = W.Button(description="Stop", icon="stop", disabled=True,
                                    layout=W.Layout(width="auto"))
        self.bar = W.IntProgress(value=0, min=0, max=1, layout=W.Layout(width="40%"))
        self.progress = W.HTML()
        self.status = W.HTML()
        self.table = W.HTML()
        self.histogram = W.Image(format="png")
        self.worst = W.HTML()
        self.count = W.BoundedIntText(value=SHOW, min=1, max=64, description="show the",
                                      style={"description_width": "initial"}, layout=W.Layout(width="130px"))
        self.which = W.Dropdown(options=[("of all formats", "")], layout=W.Layout(width="auto"))
        self.show_button = W.Button(description="worst in comparison", icon="search", disabled=True,
                                    layout=W.Layout(width="auto"))
        self.back_button = W.Button(description="Back to the sample images", disabled=True,
                                    layout=W.Layout(width="auto"))
        self.again_button = W.Button(description="Run again with the preprocessing in force", button_style="warning",
                                     layout=W.Layout(width="auto", display="none"))
        self.run_button.on_click(lambda _: self._act(self._start, "dataset_run"))
        self.again_button.on_click(lambda _: self._act(self._start, "dataset_run"))
        self.stop_button.on_click(lambda _: self.run.stop())
        self.show_button.on_click(lambda _: self._act(lambda: self.run.show_worst(self.count.value, self.which.value
                                                                                  or None), "dataset_show"))
        self.back_button.on_click(lambda _: self._act(self.run.show_samples, "dataset_show"))
        self._drawn = -1.0
        self.refresh_choices()
        self.box = W.VBox([
            W.HTML("<b>Check a whole folder</b>: every image through PyTorch and each format (in the background; "
                   "the sliders and the other tabs stay usable)"),
            W.HBox([self.folder, self.limit]), self.choice_row,
            W.HBox([self.run_button, self.stop_button, self.bar, self.progress]), beside("dataset_run"),
            W.HBox([self.status, self.again_button]), self.table, self.histogram,
            W.HBox([self.count, self.which, self.show_button, self.back_button]), beside("dataset_show"),
            self.worst])
        self.box.add_class("workbench-dataset-tab")  # what a page (and the browser test's screenshot) finds it by
        run.listen(lambda what: self.render(final=what == "done"))

    def _act(self, action, beside: str) -> None:
        with self._reporting(beside):
            action()
            self.render()

    def _start(self) -> None:
        chosen = [n for n, box in self.boxes.items() if box.value]
        self.run.start(self.folder.value, chosen, limit=self.limit.value or None)
        self._drawn = -1.0
        self.render()

    def refresh_choices(self) -> None:
        """One box per live format and ticked variant (the tab is drawn again when those change)."""
        import ipywidgets as W

        if list(self.boxes) == self.run.choices():
            return
        keep = {n: b.value for n, b in self.boxes.items()}
        self.boxes = {n: W.Checkbox(value=keep.get(n, True), description=n, indent=False,
                                    layout=W.Layout(width="auto")) for n in self.run.choices()}
        self.choice_row.children = [W.HTML("<span style='font-size:12px'>check&nbsp;</span>"), *self.boxes.values()]

    # -- drawing -------------------------------------------------------------------------------------------
    def render(self, final: bool = False) -> None:
        run, st = self.run, self.run.state()
        self.run_button.disabled, self.stop_button.disabled = st["running"], not st["running"]
        self.bar.max, self.bar.value = max(st["total"], 1), st["done"]
        parts = [f"{st['done']:,} / {st['total']:,} images"] if st["total"] else []
        if st["rate"]:
            parts.append(f"{st['rate']:.1f} images/s")
        if st["eta"] is not None:
            parts.append(f"about {_duration(st['eta'])} left")
        if st["stopped"]:
            parts.append("stopped (what was done is kept)")
        elif not st["running"] and st["total"] and run.finished and not st["error"]:
            parts.append("done")
        self.progress.value = f"<span style='font-size:12px'>{' · '.join(parts)}</span>"
        if st["error"]:
            self._say("dataset_run", st["error"], "#b00")
        self.status.value = self._status()
        self.again_button.layout.display = "" if run.stale() and not st["running"] else "none"
        result = run.result
        self.show_button.disabled = result is None or st["running"]
        self.back_button.disabled = run.samples is None
        if result is not None and (final or time.monotonic() - self._drawn >= REFRESH_SECONDS):
            self._drawn = time.monotonic()
            self._draw_result(result)

    def _status(self) -> str:
        run = self.run
        if run.preprocess is None:
            return ""
        text = f"computed with {html.escape(run.preprocess.describe())}"
        if run.stale():
            return (f"<span style='color:#a60;font-size:12px'>these figures were {text}; the preprocessing now is "
                    f"{html.escape(run.controller.preprocess.describe())}</span>")
        shown = f"; in the comparison: {html.escape(', '.join(run.shown))}" if run.shown else ""
        return f"<span style='color:#555;font-size:12px'>{text}{shown}</span>"

    def _draw_result(self, result) -> None:
        from ..views.tables import table_html

        rows, columns = by_candidate(result.table())
        wide = "overflow-x:auto; max-width:100%"  # a table still wider than the panel scrolls, not cut off
        self.table.value = f"<div class='workbench-dataset' style='{wide}'>{table_html(rows, columns)}</div>"
        self.which.options = [("of all formats", ""), *[(f"of {c}", c) for c in result.candidates]]
        self.histogram.value = histogram(result)
        self.worst.value = worst_html(result)


def by_candidate(table: list[dict]) -> tuple[list[dict], list[str]]:
    """`DatasetResult.table()` turned: a row per figure and a column per candidate, so a dozen figures stay
    within the panel's width (a column per figure was cut off at the panel's edge)."""
    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "-" if value is None else str(value)

    candidates = [r["candidate"] for r in table]
    figures = [k for k in dict.fromkeys(k for r in table for k in r) if k != "candidate"]
    rows = [{"figure": k, **{c: cell(r.get(k)) for c, r in zip(candidates, table)}} for k in figures]
    return rows, ["figure", *candidates]


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"

