"""The compression chart: size on disk against fidelity to PyTorch, one point per file (matplotlib).

Drawn with matplotlib's Agg canvas directly (the notebook's pyplot backend is left alone). Each point is
labelled beside it where the label reads as its own; in a crowd of points, where labels would be taken for
their neighbours' or pushed far off, by a number whose label is in the key beside the chart. `place_labels`
keeps labels and numbers apart; `compression_points` says what is drawn.
"""

from __future__ import annotations

import io
import itertools
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ..tasks import Classification, Segmentation, Task

# The fidelity figure a chart plots, by key: its axis label, and whether it is a fraction shown in percent.
FIDELITY = {"top1_agreement": ("top-1 agreement with PyTorch (% of images)", True),
            "miou": ("mIoU with PyTorch's masks, worst image (%)", True),
            "psnr": ("PSNR against PyTorch, worst image (dB)", False),
            "cosine": ("cosine similarity with PyTorch, worst image", False)}
PSNR_CAP = 100.0  # dB: above it the difference is float rounding; such points are drawn at the cap, marked ^
LABEL_SIZE = 9  # points: at the chart's 100 dpi, 12.5 px high when the chart is shown at its own size
MARKER = 5  # a variant's dot's half-width in pixels (with a pixel to spare)
FILE_MARKER = 9  # the uncompressed file's star (or triangle, above the PSNR cap): its half-width in pixels
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




# Where a label may sit around its point: the label's side or corner nearest the point, r pixels past the marker
# in direction (dx, dy) (x right, y up). Sideways: above and below (dy = +-1) a |dx| above 1 shifts the label
# along by |dx| - 0.5 of its width, and left and right (dx = +-1) a |dy| above 1 by |dy| - 0.5 of its height, so
# that numbers over a row of points can stand side by side, and beside a column one above the other.
_DIRECTIONS = ((1, 0), (-1, 0), (0, 1), (0, -1), (1, 1), (-1, 1), (1, -1), (-1, -1), (0.5, 1), (-0.5, 1),
               (0.5, -1), (-0.5, -1))
_SIDEWAYS = (tuple((s * k, dy) for k in (1.5, 2.5, 3.5) for dy in (1, -1) for s in (1, -1))
             + tuple((dx, s * k) for k in (1.5, 2.5) for dx in (1, -1) for s in (1, -1)))
_RINGS = (4, 10, 18, 28, 40, 54, 70, 90, 115, 145, 180, 220)  # pixels from the marker
CROWD = 24  # pixels: a point with two others this near is one of a crowd, whose labels are numbers


def _spot(anchor, size, markers, r, direction):
    """The box (x0, y0, x1, y1) of a label of `size` placed r pixels from the marker at `anchor`, in `direction`."""
    (x, y), (w, h), (dx, dy) = anchor, size, direction
    if abs(dx) > 1:
        cx = x - w / 2 + math.copysign(abs(dx) - 0.5, dx) * w
    else:
        cx = {1: x + markers + r, -1: x - markers - r - w, 0: x - w / 2, 0.5: x - 2, -0.5: x + 2 - w}[dx]
    if abs(dy) > 1:
        cy = y - h / 2 + math.copysign(abs(dy) - 0.5, dy) * h
    else:
        cy = {1: y + markers + r * 0.6, -1: y - markers - r * 0.6 - h, 0: y - h / 2}[dy]
    return cx, cy, cx + w, cy + h


def _spots(anchor, size, markers, reach: float = math.inf, sideways: bool = False):
    """(how far, the label's box) for each spot around the point at `anchor` up to `reach` pixels from its
    marker, nearest first: on rings around it, and with `sideways` also shifted sideways (`_SIDEWAYS`), as far
    again as the shift."""
    w, h = size

    def shift(d):
        return (abs(d[0]) - 0.5) * w if abs(d[0]) > 1 else (abs(d[1]) - 0.5) * h if abs(d[1]) > 1 else 0.0

    found = [(r + shift(d), k, d, r)
             for r in _RINGS if r <= reach for k, d in enumerate(_DIRECTIONS + (_SIDEWAYS if sideways else ()))]
    for far, _, direction, r in sorted(found):
        yield far, _spot(anchor, size, markers, r, direction)


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def _leader(anchor, box):
    """The leader line from a point to the nearest point of its label's `box` (as the chart draws it)."""
    (x, y) = anchor
    return (x, y), (min(max(x, box[0]), box[2]), min(max(y, box[1]), box[3]))


def _claims(other, anchor, box, clear: float, head: float = 20.0) -> bool:
    """Whether the point at `other` is about as near as the label's own point at `anchor` to its label `box`,
    so that the label could be taken for its: within `clear` pixels more than its own point is. A label beside
    its point (left or right, level with it) is measured from where it meets its point; any other from the
    parts of it the eye connects with a point: the `head` pixels either side of where it meets its point, and
    the first `head` pixels of the text, where reading starts."""
    meets = _leader(anchor, box)
    own = math.dist(*meets) + clear
    if abs(box[1] + box[3] - 2 * anchor[1]) < 2:
        return math.dist(other, meets[1]) <= own
    x = meets[1][0]
    parts = ((max(box[0], x - head), box[1], min(box[2], x + head), box[3]),
             (box[0], box[1], min(box[2], box[0] + head), box[3]))
    return any(math.dist(*_leader(other, part)) <= own for part in parts)


def _hits(segment, box) -> bool:
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


def _crosses(a, b) -> bool:
    """Whether segments a and b cross."""
    def turn(p, q, r):
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    (p1, p2), (p3, p4) = a, b
    return (turn(p1, p2, p3) * turn(p1, p2, p4) < 0) and (turn(p3, p4, p1) * turn(p3, p4, p2) < 0)


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 bounds: tuple[float, float, float, float], markers: float | Sequence[float] = 5.0,
                 fixed: Mapping[int, tuple[float, float, float, float]] | None = None,
                 numbered: Collection[int] = ()) -> list[tuple[float, float]]:
    """Where to put each point's label so that no two labels overlap, nor a label cover a marker.

    anchors: the points, in pixels (x right, y up); sizes: each label's (width, height) in pixels; bounds:
    (x0, y0, x1, y1) the labels stay inside; markers: the half-width of a marker (or of each one); fixed:
    {point: box} labels already placed, which stay where they are (the others keep clear of them); numbered:
    the points whose label is a number, always drawn with a leader line. Returns each label's lower-left
    corner. Each label tries spots on rings around its point, nearest first (a number also shifted sideways,
    so that numbers can stand side by side over a row of points, or one above the other beside a column); a
    spot costs the area it covers of other labels and markers, the leader lines it crosses (its own from the
    point, and theirs), its distance (a number's more steeply past 30 pixels) and, for a label that is not a
    number, each other point that `_claims` it. Labels are placed one by one, the most crowded points first,
    then each is moved to its best spot given all the others, twice over."""
    n = len(anchors)
    fixed = dict(fixed or {})
    COVER = 20  # a pixel of a label over another label or a marker: worse than any leader line's crossing
    NEAR = 1.5  # a pixel further from its point: long leader lines are hard to follow
    FAR = 8  # and a pixel of a number's leader past 30
    CLEAR = 8  # pixels: how much nearer to its own point than to any other a label meets its point
    half = [float(markers)] * n if isinstance(markers, (int, float)) else list(markers)
    dots = [(x - m, y - m, x + m, y + m) for (x, y), m in zip(anchors, half)]
    numbered = set(numbered)

    def cost(i, r, box, boxes, limit=math.inf):
        """What spot `box` at distance r costs label i (counted up to `limit`: a worse spot is not finished)."""
        w, h = sizes[i]
        outside = (max(0.0, bounds[0] - box[0]) + max(0.0, box[2] - bounds[2])
                   + max(0.0, bounds[1] - box[1]) + max(0.0, box[3] - bounds[3]))
        total = NEAR * r + outside * h * 10
        if i in numbered:  # a number far from its point is lost: better a short leader over another's
            total += FAR * max(0.0, r - 30)
        if total >= limit:
            return total
        total += COVER * sum(_overlap(box, d) for d in dots)
        if i not in numbered and total < limit:
            total += 150 * sum(_claims(a, anchors[i], box, CLEAR) for j, a in enumerate(anchors) if j != i)
        mine = _leader(anchors[i], box) if r > 4 else None
        for j, other in boxes.items():
            if total >= limit:
                return total
            if j == i:
                continue
            total += COVER * _overlap(box, other)
            theirs = _leader(anchors[j], other)
            total += 150 * _hits(theirs, box)
            if mine is not None:
                total += 150 * _hits(mine, other) + 400 * _crosses(mine, theirs)
        if mine is not None and total < limit:
            total += 60 * sum(_hits(mine, d) for j, d in enumerate(dots) if j != i)
        return total  # with NEAR * r: the nearer spot wins a tie

    def crowding(i):
        return sum(abs(anchors[i][0] - x) + abs(anchors[i][1] - y) < 40 for x, y in anchors)

    boxes: dict[int, tuple[float, float, float, float]] = dict(fixed)
    clear: set[int] = set()  # labels with nothing in their way (a later label may still come in their way)
    for sweep in range(3):
        for i in sorted((i for i in range(n) if i not in fixed), key=lambda i: (-crowding(i), i)):
            if sweep and i in clear and cost(i, 0, boxes[i], boxes) < 1:
                continue
            best, best_cost, best_far = boxes.get(i), math.inf, 0
            for far, box in _spots(anchors[i], sizes[i], half[i], sideways=i in numbered):
                c = cost(i, far, box, boxes, best_cost)
                if c < best_cost:
                    best, best_cost, best_far = box, c, far
                if c <= NEAR * far and not sweep:  # nothing in the way: the nearest free spot
                    break
            boxes[i] = best
            if best_cost <= NEAR * best_far:
                clear.add(i)
    return [(boxes[i][0], boxes[i][1]) for i in range(n)]


def _crowd(anchors: Sequence[tuple[float, float]]) -> set[int]:
    """The points with two others or more within `CROWD` pixels."""
    return {i for i, a in enumerate(anchors) if sum(math.dist(a, b) < CROWD for b in anchors) > 2}


def _reads_as_its_own(i: int, boxes: Mapping[int, tuple], anchors: Sequence[tuple[float, float]],
                      markers: Sequence[float], bounds: tuple[float, float, float, float], reach: float = 40.0,
                      clear: float = 8.0) -> bool:
    """Whether label i, at `boxes[i]`, reads as point i's: inside `bounds`, within `reach` pixels of the point's
    marker, over no other label or marker, its leader line through no other label, marker or leader, and no
    other point `_claims` it."""
    box = boxes[i]
    mine = _leader(anchors[i], box)
    own = math.dist(*mine)
    if own - markers[i] > reach or not (bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1]
                                        and box[3] <= bounds[3]):
        return False
    for j, a in enumerate(anchors):
        if j == i:
            continue
        dot = (a[0] - markers[j], a[1] - markers[j], a[0] + markers[j], a[1] + markers[j])
        if _claims(a, anchors[i], box, clear) or _overlap(box, dot) or (own > 7 + markers[i] and _hits(mine, dot)):
            return False
    for j, other in boxes.items():
        theirs = _leader(anchors[j], other)
        if j != i and (_overlap(box, other) or _hits(mine, other) or _hits(theirs, box) or _crosses(mine, theirs)):
            return False
    return True


def _untangle(numbered: Collection[int], boxes: dict, anchors: Sequence[tuple[float, float]],
              markers: Sequence[float], bounds: tuple[float, float, float, float]) -> None:
    """Swap the places of two numbers wherever that untangles their leader lines: fewer crossings (of each
    other's, of other labels and of markers), no longer leaders, and nothing covered. Changes `boxes` in place."""
    dots = [(x - m, y - m, x + m, y + m) for (x, y), m in zip(anchors, markers)]

    def tangles(i, box, boxes):
        mine = _leader(anchors[i], box)
        count = sum(_hits(mine, d) for j, d in enumerate(dots) if j != i)
        for j, other in boxes.items():
            if j != i:
                theirs = _leader(anchors[j], other)
                count += _hits(mine, other) + _hits(theirs, box) + _crosses(mine, theirs)
        return count

    def fits(i, box, boxes):
        return (bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
                and not any(_overlap(box, d) for j, d in enumerate(dots) if j != i)
                and not any(_overlap(box, other) for j, other in boxes.items() if j != i))

    def length(i, box):
        return math.dist(*_leader(anchors[i], box))

    def at(box, where):  # `box` moved to the centre of `where`
        dx, dy = (where[0] + where[2] - box[0] - box[2]) / 2, (where[1] + where[3] - box[1] - box[3]) / 2
        return box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy

    for _ in range(3):
        swapped = False
        for i, j in itertools.combinations(sorted(numbered), 2):
            a, b = boxes[i], boxes[j]
            if not tangles(i, a, boxes):
                continue
            trial = {**boxes, i: at(a, b), j: at(b, a)}
            if (tangles(i, trial[i], trial) + tangles(j, trial[j], trial) < tangles(i, a, boxes) + tangles(j, b, boxes)
                    and length(i, trial[i]) + length(j, trial[j]) <= length(i, a) + length(j, b) + 4
                    and fits(i, trial[i], trial) and fits(j, trial[j], trial)):
                boxes.update(trial)
                swapped = True
        if not swapped:
            return


def compression_chart(results: Mapping, task: Task, *, image_format: str = "png", figure: str | None = None) -> bytes:
    """A chart of size on disk against fidelity to PyTorch, for every compressed variant in `results`.

    results: `Report.formats` ({format: FormatResult}) from `Session.check(..., compress=...)`. One colour
    per format (the legend); a star for each format's uncompressed artifact, a dot for each variant, each
    labelled "<format> <variant> (<size ratio>)" beside it, or, in a crowd of points, numbered 1, 2, 3... from
    left to right with its label in the key under its format in the legend. x: size on disk (KB or MB, as the sizes
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
    """Where the chart's labels and markers landed, in figure pixels (x0, y0, x1, y1): what a test checks.
    numbers: {point: its number} for the points labelled by a number, their label in the key beside the chart."""

    labels: list[tuple[float, float, float, float]]
    markers: list[tuple[float, float, float, float]]
    frame: tuple[float, float, float, float]
    numbers: dict[int, int] = field(default_factory=dict)


def _chart(results: Mapping, task: Task, figure: str | None = None, height: float | None = None):
    """The chart's matplotlib Figure, and where its labels and markers were drawn. height: the figure's height
    in inches (default: by the number of points; taller when the key beside the chart needs it)."""
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
    fig = Figure(figsize=(min(8.0 + 0.15 * crowd, 10.0), height or min(5.6 + 0.25 * crowd, 8.4)), dpi=100)
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

    # Labels: a point's own "<format> <variant> (<ratio>)" right beside it where nothing else is near; in a
    # crowd, where labels beside the points would be taken for their neighbours' or pushed far off along
    # tangled leader lines, a number (placed apart, with a leader line), its label in the key beside the chart.
    renderer = fig.canvas.get_renderer()
    ratios = [f"({'uncompressed' if p.base else f'{p.ratio:.2f}x'}" + (", MISCALIBRATED" if p.miscalibrated else "")
              + (f", {p.figure:.0f} dB)" if up and math.isfinite(p.figure) else ", identical)" if up else ")")
              for p, up in zip(points, capped)]
    texts = [f"{p.label} {r}" for p, r in zip(points, ratios)]

    def measure(text, **style):
        probe = ax.text(0, 0, text, fontsize=LABEL_SIZE, **style)
        box = probe.get_window_extent(renderer)
        probe.remove()
        return box.width + 2, box.height + 1

    def legend(numbers, right):
        """The legend beside the chart: each format's colour, under it the key to its numbered points."""
        handles, shades = [], []
        digits = len(str(max(numbers.values(), default=0)))
        for name, c in colours.items():
            handles.append(Line2D([], [], marker="o", linestyle="", color=c, label=name))
            shades.append(None)
            for i in sorted((i for i in numbers if points[i].format == name), key=numbers.get):
                number = str(numbers[i]).rjust(digits, "\u2007")  # a figure space: the numbers line up
                handles.append(Line2D([], [], linestyle="", label=f"{number}  {points[i].variant} {ratios[i]}"))
                shades.append(_darker(c))
        handles.append(Line2D([], [], marker="*", linestyle="", markersize=11, color="#bbbbbb",
                              markeredgecolor="black", label="uncompressed"))
        handles.append(Line2D([], [], marker="o", linestyle="", color="#bbbbbb", label="variant (size ratio)"))
        shades += [None, None]
        made = fig.legend(handles=handles, loc="upper left", bbox_to_anchor=(right + 0.02, top), fontsize=LABEL_SIZE,
                          frameon=False, title="format", title_fontsize=LABEL_SIZE, alignment="left",
                          labelspacing=0.3, handlelength=1.2, handletextpad=0.6, borderaxespad=0)
        for text, shade in zip(made.get_texts(), shades):
            if shade:
                text.set_color(shade)
        return made

    sizes = [measure(t) for t in texts]
    half = [FILE_MARKER if p.base else MARKER for p in points]
    numerals = [measure(str(k), fontweight="bold") for k in range(len(points) + 1)]

    def numbering(numbered, anchors):
        """The numbers of the points numbered: from left to right (then top to bottom), a crowd reads 1, 2, 3..."""
        return {i: k for k, i in enumerate(sorted(numbered, key=lambda i: (round(anchors[i][0]), -anchors[i][1])), 1)}

    def arrange():
        """The points in pixels, the labels' bounds, the points' numbers and every label's box. A crowd's points
        are numbered, and so is any other point whose label, where it was placed, does not read as its own."""
        anchors = [tuple(ax.transData.transform((x, y))) for x, y in zip(xs, ys)]
        frame = ax.get_window_extent(renderer)
        bounds = (frame.x0 + 2, frame.y0 + 2, frame.x1 - 2, frame.y1 - 2)
        crowd = _crowd(anchors)
        numbered, kept = set(crowd), {}

        def place():
            numbers = numbering(numbered, anchors)
            room = [numerals[numbers[i]] if i in numbers else size for i, size in enumerate(sizes)]
            corners = place_labels(anchors, room, bounds, markers=half, fixed=kept, numbered=numbers)
            boxes = {i: (cx, cy, cx + w, cy + h) for i, ((cx, cy), (w, h)) in enumerate(zip(corners, room))}
            named = [i for i in range(len(points)) if i not in numbers]
            return numbers, boxes, named, {i for i in named if not _reads_as_its_own(i, boxes, anchors, half, bounds)}

        for _ in range(3):  # numbering some frees room for others: placed anew
            numbers, boxes, named, unread = place()
            if not unread:
                break
            numbered |= unread
        else:  # the last of them numbered, the labels that read as their own kept where they are
            numbered |= unread
            kept = {i: boxes[i] for i in named if i not in unread}
            numbers, boxes, _, _ = place()
        # a point numbered to make room for others has its label back where it now reads as its own
        for i in sorted(set(numbers) - crowd, key=lambda i: numbers[i]):
            for _, box in _spots(anchors[i], sizes[i], half[i], reach=40):
                if _reads_as_its_own(i, {**boxes, i: box}, anchors, half, bounds):
                    boxes[i] = box
                    del numbers[i]
                    break
        _untangle(numbers, boxes, anchors, half, bounds)
        numbers = numbering(numbers, anchors)
        return anchors, frame, bounds, numbers, boxes

    def narrower():
        """The axes' right edge, moved left to leave a key beside them the room it could need (every point
        numbered)."""
        probe = legend({i: len(points) for i in range(len(points))}, 0.75)
        wide = probe.get_window_extent(renderer).width
        fig.legends.remove(probe)
        right = min(0.75, 1 - (wide + 36) / (fig.get_figwidth() * fig.dpi))
        ax.set_position((0.09, 0.10, right - 0.09, top - 0.10))
        return right

    # a crowd is numbered, so the key is needed: the axes leave it room before the labels are placed
    keyed = bool(_crowd([tuple(ax.transData.transform(xy)) for xy in zip(xs, ys)]))
    right = narrower() if keyed else 0.75
    anchors, frame, bounds, numbers, boxes = arrange()
    if numbers and not keyed:
        right = narrower()
        anchors, frame, bounds, numbers, boxes = arrange()
    to_data = ax.transData.inverted()
    for i, (p, (ax_, ay)) in enumerate(zip(points, anchors)):
        cx, cy, x1, y1 = boxes[i]
        w, h = x1 - cx, y1 - cy
        tx, ty = to_data.transform((cx + w / 2 if i in numbers else cx + 1, cy + h / 2))
        # a leader line to each number, and to a label that does not touch its point's marker
        gap = math.hypot(max(cx - ax_, 0, ax_ - x1), max(cy - ay, 0, ay - y1))
        leader = i in numbers or gap > 7
        # from the label's point nearest the marker, as `place_labels` kept it clear of the other labels
        near = (min(max((ax_ - cx) / w, 0.0), 1.0), min(max((ay - cy) / h, 0.0), 1.0))
        ax.annotate(str(numbers[i]) if i in numbers else texts[i], xy=(ax_, ay), xycoords="figure pixels",
                    xytext=(tx, ty), textcoords="data", fontsize=LABEL_SIZE,
                    fontweight="bold" if i in numbers else "normal", ha="center" if i in numbers else "left",
                    va="center", color=_darker(colours[p.format]), zorder=4,
                    arrowprops={"arrowstyle": "-", "color": colours[p.format], "linewidth": 0.7, "shrinkA": 0,
                                "shrinkB": 6 if p.base else 3, "relpos": near} if leader else None)

    made = legend(numbers, right)
    title = f"Compressed variants: size against {axis_label.split(' (')[0].split(',')[0]}"
    fig.text(0.09, 0.965, title, fontsize=12, va="top")
    if not points:
        ax.text(0.5, 0.5, "no variant has a figure to draw", transform=ax.transAxes, ha="center")
    if missing:
        shown = "; ".join(missing[:3]) + (f"; +{len(missing) - 3} more" if len(missing) > 3 else "")
        notes.append(_wrap_chars(f"not drawn: {shown}", 125))
    if notes:
        fig.text(0.09, 0.925, "\n".join(notes), fontsize=LABEL_SIZE, va="top",
                 color="#cc2222" if missing else "#666666")
    below = made.get_window_extent(renderer).y0
    if below < 4 and height is None:  # the key runs off the bottom: a figure tall enough for it under `top`
        return _chart(results, task, figure, (top * fig.get_figheight() * fig.dpi - below + 12) / (top * fig.dpi))
    drawn = _Drawn([boxes[i] for i in range(len(points))],
                   [(x - m, y - m, x + m, y + m) for (x, y), m in zip(anchors, half)], tuple(frame.extents),
                   numbers)
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
