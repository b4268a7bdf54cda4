"""The compression chart: size on disk against fidelity to PyTorch, one point per file (matplotlib).

Drawn with matplotlib's Agg canvas directly (the notebook's pyplot backend is left alone), with each label
placed apart from the others by `place_labels`. `compression_points` says what is drawn.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ..tasks import Classification, Segmentation, Task

# The fidelity figure a chart plots, by key: its axis label, and whether it is a fraction shown in percent.
FIDELITY = {"top1_agreement": ("top-1 agreement with PyTorch (% of images)", True),
            "miou": ("mIoU with PyTorch's masks, worst image (%)", True),
            "psnr": ("PSNR against PyTorch, worst image (dB)", False),
            "cosine": ("cosine similarity with PyTorch, worst image", False)}
PSNR_CAP = 100.0  # dB: above it the difference is float rounding; such points are drawn at the cap, marked ^
LABEL_SIZE = 8  # points: at the chart's 100 dpi, 11 px high when the chart is shown at its own size
MARKER = 7  # a marker's half-width in pixels (the uncompressed file's star is the largest)
_FORMAT_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"]


@dataclass(frozen=True)
class CompressionPoint:
    """One file on the compression chart: a format's uncompressed artifact (`base`) or one of its variants."""

    format: str
    variant: str  # the variant's name; the artifact's precision ("fp32") for the uncompressed file
    size_bytes: int
    ratio: float  # size against the format's uncompressed file (1.0 for that file)
    figure: float  # the chosen fidelity figure (`Comparison.worst()[key]`)
    base: bool = False
    miscalibrated: bool = False  # calibrated with another preprocessing than the file takes

    @property
    def label(self) -> str:
        return f"{self.format} {self.variant}"


def fidelity_figure(task: Task, figures: Sequence[Mapping[str, float]] = ()) -> str:
    """The figure a compression chart plots for `task`: top-1 agreement for a classifier, mIoU for a
    segmentation, PSNR for an image (and any other output); the first of these that `figures` (each a
    `Comparison.worst()`) has when the task's own is missing from all of them."""
    wanted = ("top1_agreement" if isinstance(task, Classification) else "miou" if isinstance(task, Segmentation)
              else "psnr")
    present = {k for f in figures for k in f}
    if not present or wanted in present:
        return wanted
    return next((k for k in ("top1_agreement", "miou", "psnr", "cosine") if k in present), wanted)


def compression_points(results: Mapping, task: Task, figure: str | None = None
                       ) -> tuple[str, list[CompressionPoint], list[str]]:
    """What `compression_chart` draws: (figure key, points, not drawn).

    results: `Report.formats` ({format: FormatResult}) from `Session.check(..., compress=...)`; formats
    without variants are left out. figure: a key of `FIDELITY` (default: `fidelity_figure`). Each format
    gives its uncompressed artifact (when it was compared here) and each variant that ran; `not drawn`
    has a line for every variant or artifact that has no figure, with the reason (its error)."""
    with_variants = {name: r for name, r in results.items() if r.variants}
    if figure is None:
        worsts = [c.worst() for r in with_variants.values()
                  for c in [r.comparison, *(v.comparison for v in r.variants.values())] if c is not None]
        figure = fidelity_figure(task, worsts)
    if figure not in FIDELITY:
        raise ValueError(f"figure must be one of {', '.join(FIDELITY)}, not {figure!r}")
    points: list[CompressionPoint] = []
    missing: list[str] = []
    for name, r in with_variants.items():
        base_bytes = r.uncompressed_bytes
        precision = getattr(r.artifact, "precision", None) or "uncompressed"
        worst = r.comparison.worst() if r.comparison is not None else {}
        if base_bytes and figure in worst:
            points.append(CompressionPoint(name, precision, base_bytes, 1.0, float(worst[figure]), base=True))
        else:
            why = r.error or r.skipped or ("no " + figure if r.comparison is not None else "not compared here")
            missing.append(f"{name} {precision}: {why}")
        for variant, v in r.variants.items():
            worst = v.comparison.worst() if v.comparison is not None else {}
            if v.error or not v.size_bytes or figure not in worst:
                missing.append(f"{name} {variant}: {v.error or 'no ' + figure}")
                continue
            ratio = v.size_ratio if v.size_ratio is not None else 1.0
            points.append(CompressionPoint(name, variant, v.size_bytes, ratio, float(worst[figure]),
                                           miscalibrated=bool((v.calibration or {}).get("warning"))))
    return figure, points, missing




def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 bounds: tuple[float, float, float, float], markers: float = 5.0) -> list[tuple[float, float]]:
    """Where to put each point's label so that no two labels overlap, nor a label cover a marker.

    anchors: the points, in pixels (x right, y up); sizes: each label's (width, height) in pixels; bounds:
    (x0, y0, x1, y1) the labels stay inside; markers: the half-width of a marker. Returns each label's
    lower-left corner. Each label tries spots on rings around its point, nearest first; a spot costs the
    area it covers of other labels and markers, the leader lines it crosses (its own from the point, and
    theirs) and its distance. Labels are placed one by one, the most crowded points first, then each is
    moved to its best spot given all the others, twice over."""
    n = len(anchors)
    COVER = 20  # a pixel of a label over another label or a marker: worse than any leader line's crossing
    NEAR = 1.5  # a pixel further from its point: long leader lines are hard to follow
    dots = [(x - markers, y - markers, x + markers, y + markers) for x, y in anchors]
    rings = (4, 10, 18, 28, 40, 54, 70, 90, 115, 145, 180, 220)
    directions = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1), (0.5, 1), (-0.5, 1),
                  (0.5, -1), (-0.5, -1))

    def spots(i):
        """(how far, the label's box) for each spot around point i, nearest first."""
        (x, y), (w, h) = anchors[i], sizes[i]
        for r in rings:
            for dx, dy in directions:
                # the label's side or corner nearest the point sits r pixels away in direction (dx, dy)
                cx = {1: x + markers + r, -1: x - markers - r - w, 0: x - w / 2, 0.5: x - 2, -0.5: x + 2 - w}[dx]
                cy = {1: y + markers + r * 0.6, -1: y - markers - r * 0.6 - h, 0: y - h / 2}[dy]
                yield r, (cx, cy, cx + w, cy + h)

    def overlap(a, b):
        return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))

    def leader(i, box):
        """The leader from point i to the nearest point of its label `box`."""
        (x, y) = anchors[i]
        return (x, y), (min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3]))

    def hits(segment, box):
        """Whether `segment` passes through `box` (Liang-Barsky clipping)."""
        (x0, y0), (x1, y1) = segment
        t0, t1 = 0.0, 1.0
        for p, q in ((x0 - x1, x0 - box[0]), (x1 - x0, box[2] - x0), (y0 - y1, y0 - box[1]), (y1 - y0, box[3] - y0)):
            if p == 0:
                if q < 0:
                    return False
                continue
            t = q / p
            if p < 0:
                t0 = max(t0, t)
            else:
                t1 = min(t1, t)
            if t0 > t1:
                return False
        return t1 - t0 > 0.05  # more than a touch at an end

    def intersect(a, b):
        def turn(p, q, r):
            return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

        (p1, p2), (p3, p4) = a, b
        return (turn(p1, p2, p3) * turn(p1, p2, p4) < 0) and (turn(p3, p4, p1) * turn(p3, p4, p2) < 0)

    def cost(i, r, box, boxes, limit=math.inf):
        """What spot `box` at distance r costs label i (counted up to `limit`: a worse spot is not finished)."""
        w, h = sizes[i]
        outside = (max(0.0, bounds[0] - box[0]) + max(0.0, box[2] - bounds[2])
                   + max(0.0, bounds[1] - box[1]) + max(0.0, box[3] - bounds[3]))
        total = NEAR * r + outside * h * 10 + COVER * sum(overlap(box, d) for d in dots)
        mine = leader(i, box) if r > 4 else None
        for j, other in boxes.items():
            if total >= limit:
                return total
            if j == i:
                continue
            total += COVER * overlap(box, other)
            theirs = leader(j, other)
            total += 150 * hits(theirs, box)
            if mine is not None:
                total += 150 * hits(mine, other) + 400 * intersect(mine, theirs)
        if mine is not None and total < limit:
            total += 60 * sum(hits(mine, d) for j, d in enumerate(dots) if j != i)
        return total  # with NEAR * r: the nearer spot wins a tie

    def crowding(i):
        return sum(abs(anchors[i][0] - x) + abs(anchors[i][1] - y) < 40 for x, y in anchors)

    boxes: dict[int, tuple[float, float, float, float]] = {}
    clear: set[int] = set()  # labels with nothing in their way (a later label may still come in their way)
    for sweep in range(3):
        for i in sorted(range(n), key=lambda i: (-crowding(i), i)):
            if sweep and i in clear and cost(i, 0, boxes[i], boxes) < 1:
                continue
            best, best_cost, best_far = boxes.get(i), math.inf, 0
            for far, box in spots(i):
                c = cost(i, far, box, boxes, best_cost)
                if c < best_cost:
                    best, best_cost, best_far = box, c, far
                if c <= NEAR * far and not sweep:  # nothing in the way: the nearest free spot
                    break
            boxes[i] = best
            if best_cost <= NEAR * best_far:
                clear.add(i)
    return [(boxes[i][0], boxes[i][1]) for i in range(n)]


def compression_chart(results: Mapping, task: Task, *, image_format: str = "png", figure: str | None = None) -> bytes:
    """A chart of size on disk against fidelity to PyTorch, for every compressed variant in `results`.

    results: `Report.formats` ({format: FormatResult}) from `Session.check(..., compress=...)`. One colour
    per format (the legend); a star for each format's uncompressed artifact, a dot for each variant, each
    labelled "<format> <variant>" with the labels placed apart. x: size on disk (KB or MB, as the sizes
    need); y: the task's fidelity figure (`fidelity_figure`; `figure` chooses another key of `FIDELITY`).
    PSNR above `PSNR_CAP` is drawn at the cap with a ^ marker. Variants that failed or have no figure are
    named under the title. image_format: "png" or "jpeg". Drawn with matplotlib's Agg canvas directly: the
    notebook's pyplot backend is left alone. Raises ValueError for an unknown image_format or figure.
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")
    fig, _ = _chart(results, task, figure)
    buf = io.BytesIO()
    if image_format == "png":
        fig.savefig(buf, format="png")
    else:
        fig.savefig(buf, format="jpeg", pil_kwargs={"quality": 92})
    return buf.getvalue()


@dataclass
class _Drawn:
    """Where the chart's labels and markers landed, in figure pixels (x0, y0, x1, y1): what a test checks."""

    labels: list[tuple[float, float, float, float]]
    markers: list[tuple[float, float, float, float]]
    frame: tuple[float, float, float, float]


def _chart(results: Mapping, task: Task, figure: str | None = None):
    """The chart's matplotlib Figure, and where its labels and markers were drawn."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    key, points, missing = compression_points(results, task, figure)
    axis_label, percent = FIDELITY[key]
    largest = max((p.size_bytes for p in points), default=0)
    unit, div = ("MB", 1e6) if largest >= 1e6 else ("KB", 1e3)

    def y_of(p):
        v = p.figure * 100 if percent else p.figure
        return min(v, PSNR_CAP) if key == "psnr" and not math.isnan(v) else v

    crowd = max(0, len(points) - 12)  # more room for more labels
    fig = Figure(figsize=(min(8.0 + 0.15 * crowd, 10.0), min(5.6 + 0.25 * crowd, 8.4)), dpi=100)
    FigureCanvasAgg(fig)
    capped = [key == "psnr" and not p.figure <= PSNR_CAP for p in points]  # inf and above the cap
    top = 0.80 if missing else 0.845 if any(capped) else 0.87  # room for the notes under the title
    ax = fig.add_axes((0.09, 0.10, 0.66, top - 0.10))
    from .. import formats as _formats

    order = list(_formats.registry())  # a format keeps its colour from chart to chart
    colours = {name: _FORMAT_COLOURS[(order.index(name) if name in order else len(order) + i) % len(_FORMAT_COLOURS)]
               for i, name in enumerate(dict.fromkeys(p.format for p in points))}
    xs = [p.size_bytes / div for p in points]
    ys = [y_of(p) for p in points]
    finite = [v for v in ys if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    if percent:
        lo, hi = min(lo, 0.0), 100.0
    elif key == "psnr":
        lo, hi = min(lo, 0.0), hi
    pad = (hi - lo) * 0.08 or 1.0
    ax.set_ylim(lo - pad, hi + 2 * pad)  # room above the best points for their labels
    if percent:
        ax.set_yticks(range(0, 101, 20))
    ax.set_xlim(0, (max(xs) if xs else 1.0) * 1.15)
    ys = [v if math.isfinite(v) else hi for v in ys]  # inf PSNR (identical): at the top
    for p, x, y, up in zip(points, xs, ys, capped):
        ax.scatter([x], [y], s=150 if p.base else 40, marker="^" if up else "*" if p.base else "o",
                   color=colours[p.format], edgecolors="black" if p.base else "none", linewidths=0.6, zorder=3)
    ax.set_xlabel(f"size on disk ({unit}); in brackets: against the format's uncompressed file")
    ax.set_ylabel(axis_label)
    ax.grid(True, color="#dddddd", zorder=0)
    notes = []
    if any(capped):
        ax.axhline(PSNR_CAP, color="#999999", linestyle=":", linewidth=1)
        notes.append(f"^ PSNR above {PSNR_CAP:.0f} dB (float rounding), drawn at {PSNR_CAP:.0f}")

    # labels: measured, then placed apart in pixels, then drawn with a leader line when far from the point
    renderer = fig.canvas.get_renderer()
    texts = [f"{p.label} ({'uncompressed' if p.base else f'{p.ratio:.2f}x'}"
             + (", MISCALIBRATED" if p.miscalibrated else "")
             + (f", {p.figure:.0f} dB)" if up and math.isfinite(p.figure) else ", identical)" if up else ")")
             for p, up in zip(points, capped)]
    sizes = []
    for t in texts:
        probe = ax.text(0, 0, t, fontsize=LABEL_SIZE)
        box = probe.get_window_extent(renderer)
        sizes.append((box.width + 2, box.height + 1))
        probe.remove()
    anchors = [tuple(ax.transData.transform((x, y))) for x, y in zip(xs, ys)]
    frame = ax.get_window_extent(renderer)
    corners = place_labels(anchors, sizes, (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2), markers=MARKER)
    to_data = ax.transData.inverted()
    for p, t, (ax_, ay), (cx, cy), (w, h) in zip(points, texts, anchors, corners, sizes):
        tx, ty = to_data.transform((cx + 1, cy + h / 2))
        # a leader line when the label does not touch its point's marker
        gap = math.hypot(max(cx - ax_, 0, ax_ - cx - w), max(cy - ay, 0, ay - cy - h))
        ax.annotate(t, xy=(ax_, ay), xycoords="figure pixels", xytext=(tx, ty), textcoords="data",
                    fontsize=LABEL_SIZE, ha="left", va="center", color=_darker(colours[p.format]), zorder=4,
                    arrowprops={"arrowstyle": "-", "color": colours[p.format], "linewidth": 0.6,
                                "shrinkA": 0, "shrinkB": 4} if gap > 7 else None)

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=name) for name, c in colours.items()]
    handles.append(Line2D([], [], marker="*", linestyle="", markersize=11, color="#bbbbbb",
                          markeredgecolor="black", label="uncompressed"))
    handles.append(Line2D([], [], marker="o", linestyle="", color="#bbbbbb", label="variant (size ratio)"))
    fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.77, top), fontsize=8, frameon=False,
               title="format", title_fontsize=8, alignment="left")
    title = f"Compressed variants: size against {axis_label.split(' (')[0].split(',')[0]}"
    fig.text(0.09, 0.965, title, fontsize=11, va="top")
    if not points:
        ax.text(0.5, 0.5, "no variant has a figure to draw", transform=ax.transAxes, ha="center")
    if missing:
        shown = "; ".join(missing[:3]) + (f"; +{len(missing) - 3} more" if len(missing) > 3 else "")
        notes.append(_wrap_chars(f"not drawn: {shown}", 125))
    if notes:
        fig.text(0.09, 0.925, "\n".join(notes), fontsize=7, va="top", color="#cc2222" if missing else "#666666")
    drawn = _Drawn([(cx, cy, cx + w, cy + h) for (cx, cy), (w, h) in zip(corners, sizes)],
                   [(x - MARKER, y - MARKER, x + MARKER, y + MARKER) for x, y in anchors], tuple(frame.extents))
    return fig, drawn


def _darker(colour: str) -> str:
    """A "#rrggbb" colour at two thirds of its brightness: label text in the format's colour, readable."""
    return "#" + "".join(f"{int(colour[i:i + 2], 16) * 2 // 3:02x}" for i in (1, 3, 5))


def _wrap_chars(text: str, width: int, lines: int = 2) -> str:
    """`text` in at most `lines` lines of about `width` characters, cut with an ellipsis."""
    import textwrap

    wrapped = textwrap.wrap(text, width)
    if len(wrapped) > lines:
        wrapped = wrapped[:lines]
        wrapped[-1] = wrapped[-1][: width - 1] + "…"
    return "\n".join(wrapped)
