"""Result tables: one renderer per table, as HTML (the widget, the notebooks) and as text (a terminal).

A `Table` holds columns and rows of raw values; `Table.html()` and `Table.text()` format every figure by
its key with `figure_text`, so the widget, a notebook and a terminal print the same number for the same
thing. The builders:

- `parity_table(results)`: each format against PyTorch (verdict, max/mean abs, PSNR, cosine, the task's
  figure, tolerance), from `Report.formats` or the widget's live formats in the same shape (`FormatResult`);
- `compression_view(results)`: each format's uncompressed file and its compressed variants (size, size
  against the uncompressed file, the task's figures, what each figure is computed on, what the variant is,
  how it was calibrated). `compression_table` gives the same rows as dicts, `table_html` renders such dicts.

A command line prints ``parity_table(report.formats).text()``: the figure columns are the widget's.
"""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GREEN, RED, GREY = "#2a7", "#c33", "#888"

# A figure's title and how it is written, by key (the keys of `Comparison.worst()` and of the tables' rows).
FIGURES = {
    "max_abs": ("max abs", "{:.3g}"), "mean_abs": ("mean abs", "{:.3g}"), "psnr": ("PSNR dB", "{:.1f}"),
    "cosine": ("cosine", "{:.6f}"), "top1_agreement": ("top-1 agreement", "{:.3f}"),
    "top5_agreement": ("top-5 agreement", "{:.3f}"), "miou": ("mIoU", "{:.3f}"),
    "size_mb": ("size MB", "{:.3g}"), "ratio": ("size / uncompressed", "{:.2f}x"),
}
TASK_FIGURES = ("top1_agreement", "top5_agreement", "miou")  # present only where the task has them


def figure_text(key: str, value) -> str:
    """One cell as text: a figure by its key ("{:.3g}" for max abs, "{:.1f}" for PSNR...), "identical" for an
    infinite PSNR, "PASS"/"FAIL" for a verdict, "-" for None; anything else as str."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "PASS" if value else "FAIL"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if key == "psnr" and math.isinf(value):
            return "identical" if value > 0 else "-inf"
        if isinstance(value, float) and math.isnan(value):
            return "nan"
        if key in FIGURES:
            return FIGURES[key][1].format(value)
        return f"{value:.3f}" if isinstance(value, float) else str(value)
    return str(value)


@dataclass(frozen=True)
class Column:
    """A column: the row key it shows, its title, and whether it holds figures (right-aligned)."""

    key: str
    title: str
    figure: bool = False
    width: str = ""  # an HTML max-width for a column of prose ("420px"): it wraps there


@dataclass
class Row:
    """A row's raw values by column key, and how it is drawn.

    sub: a second, smaller line under a cell, by key (the runtime under the format). message: text that
    replaces every cell after the first (why a format has no figures). notes: lines under the row (errors,
    failures, the file's notes). tone: "" | "stale" (computed with another preprocessing: drawn faded) |
    "base" (an uncompressed file, shaded) | "failed" (its message in red).
    """

    values: dict
    sub: dict = field(default_factory=dict)
    message: str = ""
    notes: tuple[str, ...] = ()
    tone: str = ""


@dataclass
class Table:
    columns: list[Column]
    rows: list[Row]
    name: str = ""  # a class name for the HTML table ("workbench-parity"), what a page finds it by

    def cell(self, row: Row, column: Column) -> str:
        return figure_text(column.key, row.values.get(column.key))

    def html(self) -> str:
        """The table as HTML, every cell padded, titles on one line, figures right-aligned."""
        pad = "padding:3px 10px"
        head = "".join(f"<th style='{pad};white-space:nowrap;text-align:{'right' if c.figure else 'left'};"
                       f"border-bottom:1px solid #ccc'>{html.escape(c.title)}</th>" for c in self.columns)
        body = []
        for row in self.rows:
            style = {"stale": "opacity:0.45", "base": "background:#f4f4f4"}.get(row.tone, "")
            title = " title='out of date: computed with another preprocessing'" if row.tone == "stale" else ""
            cells = []
            for k, c in enumerate(self.columns):
                if row.message and k == 1:
                    colour = RED if row.tone == "failed" else GREY
                    cells.append(f"<td colspan={len(self.columns) - 1} style='{pad};color:{colour}'>"
                                 f"{html.escape(row.message)}</td>")
                    break
                text = html.escape(self.cell(row, c))
                if c.key == "passed" and row.values.get(c.key) is not None:
                    text = f"<b style='color:{GREEN if row.values[c.key] else RED}'>{text}</b>"
                sub = row.sub.get(c.key)
                if sub:
                    text += f"<br><span style='color:{GREY};font-size:11px'>{html.escape(sub)}</span>"
                align = "right" if c.figure else "left"
                wrap = f"max-width:{c.width};min-width:160px" if c.width else "white-space:nowrap"
                cells.append(f"<td style='{pad};text-align:{align};vertical-align:top;{wrap}'>{text}</td>")
            body.append(f"<tr style='{style}'{title}>{''.join(cells)}</tr>")
            if row.notes:
                notes = "<br>".join(html.escape(n) for n in row.notes)
                body.append(f"<tr style='{style}'><td></td><td colspan={len(self.columns) - 1} "
                            f"style='{pad};font-size:11px;color:{GREY}'>{notes}</td></tr>")
        name = f" class='{self.name}'" if self.name else ""
        return (f"<table{name} style='font-size:12px;border-collapse:collapse'><tr>{head}</tr>"
                f"{''.join(body)}</table>")

    def text(self) -> str:
        """The table as aligned text for a terminal: two spaces between columns, figures right-aligned, a
        row's second lines and notes indented under it."""
        cells = [[self.cell(row, c) for c in self.columns] for row in self.rows]
        widths = [max([len(c.title)] + [len(r[k]) for r, row in zip(cells, self.rows) if not row.message])
                  for k, c in enumerate(self.columns)]

        def line(values):
            out = [v.rjust(w) if c.figure else v.ljust(w) for v, w, c in zip(values, widths, self.columns)]
            return "  ".join(out).rstrip()

        lines = [line([c.title for c in self.columns])]
        lines.append("-" * len(lines[0]))
        for values, row in zip(cells, self.rows):
            if row.message:
                lines.append(f"{values[0].ljust(widths[0])}  {row.message}")
            else:
                lines.append(line(values))
            lines += [f"  {self.columns[k].title}: {row.sub[c.key]}" if k else f"  {row.sub[c.key]}"
                      for k, c in enumerate(self.columns) if row.sub.get(c.key)]
            lines += [f"  {n}" for n in row.notes]
        return "\n".join(lines)


# -- the parity table ----------------------------------------------------------------------------------------
def parity_table(results: Mapping, *, titles: Mapping[str, str] | None = None,
                 tolerances: Mapping[str, str] | None = None, stale: Iterable[str] = (),
                 messages: Mapping[str, str] | None = None) -> Table:
    """Each format against PyTorch: `results` is {format: FormatResult} (`Report.formats`, or the widget's
    live formats in that shape). titles: the name shown per format (default: the format's title);
    tolerances: the tolerance each is judged by, as text (a column when given); stale: formats computed with
    another preprocessing than the one in force (faded, "out of date"); messages: why a format has no
    figures (converting, failed...), used when its result has no comparison. The task's own figure (top-1
    agreement, mIoU) is a column only when some comparison has it."""
    from .. import formats as _formats

    stale = set(stale)
    comparisons = [r.comparison for r in results.values() if r.comparison is not None]
    present = {k for c in comparisons for k in c.worst()}
    columns = [Column("format", "format"), Column("passed", "parity"),
               *(Column(k, FIGURES[k][0], figure=True) for k in ("max_abs", "mean_abs", "psnr", "cosine")),
               *(Column(k, FIGURES[k][0], figure=True) for k in ("top1_agreement", "miou") if k in present)]
    if tolerances is not None:
        columns.append(Column("tolerance", "tolerance (max abs <=)", width="260px"))  # its reason wraps
    rows = []
    for name, r in results.items():
        title = (titles or {}).get(name) or _title(_formats, name)
        sub = {"format": r.label} if r.label and r.label != title else {}
        if r.comparison is None:
            why = (messages or {}).get(name) or r.error or r.skipped or "not run yet"
            rows.append(Row({"format": title}, sub, message=why, tone="failed" if r.error else ""))
            continue
        worst = r.comparison.worst()
        values = {"format": title, "passed": r.passed, **{k: worst.get(k) for k in FIGURES if k in worst}}
        if tolerances is not None:
            values["tolerance"] = tolerances.get(name, "")
        old = name in stale
        if old:
            sub["passed"] = "out of date"
        notes = tuple(r.comparison.failures[:3]) if not r.comparison.passed else ()
        rows.append(Row(values, sub, notes=notes, tone="stale" if old else ""))
    return Table(columns, rows, name="workbench-parity")


# -- the compression table -----------------------------------------------------------------------------------
def compression_table(results: Mapping) -> list[dict]:
    """One row per format's uncompressed artifact and per compressed variant (`Report.formats` from
    `Session.check(..., compress=...)`), as dicts: format, variant, size_mb, ratio, the worst-case figures
    (max_abs, psnr, cosine, and top1/top5 agreement or miou where the task has them), compared_on (what the
    figures are computed on: the model's scores, a classifier file's probabilities, an image clipped to its
    range), what (what the variant is), calibration (what it was calibrated with, and the warning when that
    is not what the file takes; None for weight-only variants), passed (None: figures only), error.
    `table_html` renders it; `compression_view` is the same rows as a `Table`."""
    rows = []
    keys = ("max_abs", "psnr", "cosine", *TASK_FIGURES)
    for name, r in results.items():
        if not r.variants:
            continue
        base_bytes = r.uncompressed_bytes
        worst = r.comparison.worst() if r.comparison is not None else {}
        precision = getattr(r.artifact, "precision", None)
        rows.append({"format": name, "variant": f"{precision or 'file'} (uncompressed)",
                     "size_mb": base_bytes / 1e6 if base_bytes else None, "ratio": 1.0 if base_bytes else None,
                     **{k: worst[k] for k in keys if k in worst}, "compared_on": measured_on(r.artifact),
                     "what": "the file the variants are made from", "calibration": None, "passed": r.passed,
                     "error": r.error or r.skipped})
        for variant, v in r.variants.items():
            worst = v.comparison.worst() if v.comparison is not None else {}
            calibration = None
            if v.calibration:
                calibration = f"{len(v.calibration.get('images', ()))} images, {v.calibration.get('preprocess')}"
                if v.calibration.get("warning"):
                    calibration += f"; WARNING: {v.calibration['warning']}"
            rows.append({"format": name, "variant": variant,
                         "size_mb": v.size_bytes / 1e6 if v.size_bytes else None, "ratio": v.size_ratio,
                         **{k: worst[k] for k in keys if k in worst},
                         "compared_on": measured_on(v.artifact) if v.artifact is not None else None,
                         "what": _what(variant, v.artifact.notes[0], calibrated=bool(calibration))
                         if v.artifact is not None and v.artifact.notes else None,
                         "calibration": calibration, "passed": v.passed, "error": v.error})
    return rows


def compression_view(results: Mapping, *, titles: Mapping[str, str] | None = None,
                     runtimes: Mapping[str, str] | None = None, notes: Mapping[tuple[str, str], str] | None = None,
                     stale: Iterable[tuple[str, str]] = (), messages: Mapping[tuple[str, str], str] | None = None
                     ) -> Table:
    """`compression_table`'s rows as a `Table`: a row per uncompressed file (shaded) and per variant; the
    task's figures only where some row has them (an image model has no top-1); "compared on" says what the
    figures are computed on. titles: per format the name shown; runtimes: per format the runtime that ran;
    notes: per (format, variant) the text of the last column (default: how it was calibrated); stale: the
    variants computed with another preprocessing than the one in force; messages: per (format, variant)
    what to show instead of figures (compressing, failed)."""
    from .. import formats as _formats

    stale, notes, messages = set(stale), notes or {}, messages or {}
    rows = compression_table(results)
    present = {k for row in rows for k in TASK_FIGURES if row.get(k) is not None}
    columns = [Column("name", "variant"), Column("size_mb", "size MB", figure=True),
               Column("ratio", "vs uncompressed", figure=True),
               *(Column(k, FIGURES[k][0], figure=True) for k in TASK_FIGURES if k in present),
               Column("psnr", "PSNR dB", figure=True), Column("max_abs", "max abs", figure=True)]
    table_rows = []
    for row in rows:
        fmt, variant = row["format"], row["variant"]
        title = (titles or {}).get(fmt) or _title(_formats, fmt)
        base = variant.endswith("(uncompressed)")
        values = dict(row, name=f"{title} {variant}")
        sub = {"name": (runtimes or {}).get(fmt, "")}
        key = (fmt, variant)
        if key in messages or row.get("error"):
            failed = bool(row.get("error")) or messages.get(key, "").startswith("failed")
            table_rows.append(Row(values, sub, message=messages.get(key) or row["error"],
                                  tone="failed" if failed else ""))
            continue
        note = notes.get(key, "" if base else row.get("calibration") or "weights only: reads no calibration images")
        old = key in stale
        # what it is and how it was calibrated, under its row across the table: as columns they made the table
        # wider than the panel
        lines = tuple(f"{label}: {text}" for label, text in (("compared on", row.get("compared_on")),
                                                               ("what it is", row.get("what")), ("calibration", note))
                      if text)
        table_rows.append(Row(values, sub, tone="base" if base else "stale" if old else "",
                              notes=(("out of date: computed with another preprocessing",) if old else ()) + lines))
    return Table(columns, table_rows, name="workbench-compression")


def table_html(rows: Sequence[Mapping], columns: Sequence[str] | None = None) -> str:
    """Rows of dicts (such as `compression_table`'s) as an HTML table: one column per key (the keys of
    every row, in order of first appearance, or `columns`), each figure as `figure_text` writes it."""
    if columns is None:
        columns = list(dict.fromkeys(k for row in rows for k in row))
    titles = {k: t for k, (t, _) in FIGURES.items()} | {"compared_on": "compared on", "what": "what it is"}
    figures = set(FIGURES) | {"passed"}
    return Table([Column(c, titles.get(c, c), figure=c in figures - {"passed"},
                         width="320px" if c in ("what", "calibration", "error") else "")
                  for c in columns], [Row(dict(r)) for r in rows]).html()


def measured_on(artifact) -> str:
    """What a file's figures against PyTorch are computed on: a classifier file that adds a softmax gives
    probabilities (its PSNR is not the logits' PSNR), an image output is clipped to its range; otherwise
    the model's own output."""
    from ..formats.base import ClassProbabilities, ImagePixels

    for m in getattr(artifact, "mappings", ()) or ():
        if isinstance(m, ClassProbabilities):
            return "probabilities (the file adds the softmax)" if m.softmax else "the model's scores"
        if isinstance(m, ImagePixels):
            lo, hi = (0 - m.bias) / m.scale, (255 - m.bias) / m.scale
            return f"the output clipped to {lo:g}..{hi:g} (the file returns an image)"
    return "the model's output"


def _what(variant: str, note: str, calibrated: bool = False) -> str:
    """A variant's note without its own name in front ("int8_weights: 8-bit weights..." -> "8-bit weights..."),
    and, `calibrated` (its calibration has a line of its own), without the images and preprocessing it names."""
    note = re.sub(rf"^{re.escape(variant)}:\s*", "", note)
    if calibrated:
        note = re.sub(r"calibrated on (\d+) images \(.*$", r"calibrated on the \1 images below", note)
    return note


def _title(formats, name: str) -> str:
    from ..errors import WorkbenchError

    try:
        return formats.get(name).title
    except WorkbenchError:  # a format not registered here (a report read back): its name
        return name
