"""A per-layer comparison drawn: the converted graph's matched layers coloured by their error, as SVG.

`graph_svg(layers)` draws the layers in the converted graph's order, one box per layer (its op and the PyTorch
module it stands for, its error in units of its tolerance), each filled by the band its error falls in
(`BANDS`, drawn by `legend_html`). An edge joins a layer to each matched layer it is computed from; one that
skips layers (a residual) arcs on the right. Hovering a box shows its figures. A long graph is drawn as a window
around the picked layer, under `strip_svg`, the whole graph as one row of coloured cells with the window marked.
No Jupyter here: the widget's Layers tab shows these strings, and a script can save them.
"""

from __future__ import annotations

import html
import math

# (largest error in units of the layer's tolerance, fill, text colour, what the legend says)
BANDS = (
    (0.1, "#b8e0a8", "#143d14", "within a tenth of tolerance"),
    (1.0, "#fde48a", "#4a3b00", "within tolerance"),
    (10.0, "#f99a5b", "#3d1600", "over tolerance (up to 10x)"),
    (math.inf, "#d7301f", "#ffffff", "over 10x tolerance"),
)
NONFINITE = ("#5b0a1e", "#ffffff", "not finite (inf or NaN)")
PICKED = "#1f4e9c"

BOX_W, BOX_H, GAP = 360, 24, 10  # a box, and the space between two
LEFT, TOP = 8, 8


def ratio(layer) -> float:
    """The layer's error in units of its tolerance (1: at the limit)."""
    if not layer.finite or not math.isfinite(layer.error):
        return math.inf
    return layer.error / layer.limit if layer.limit > 0 else (0.0 if layer.error == 0 else math.inf)


def band(layer) -> tuple[str, str, str]:
    """(fill, text colour, label) of the band the layer's error falls in."""
    if not layer.finite:
        return NONFINITE
    r = ratio(layer)
    for upper, fill, ink, label in BANDS:
        if r <= upper:
            return fill, ink, label
    return BANDS[-1][1:]


def describe_layer(layer, unit: str = "node") -> str:
    """A layer's figures, one per line (a box's hover text, the tab's details)."""
    lines = [f"{unit} {layer.index + 1}: {layer.op} {layer.name!r}", f"PyTorch module: {layer.torch}",
             f"shape {tuple(layer.shape)}",
             f"error {layer.error:.3g} of its scale (tolerance {layer.limit:.3g}: {_times(ratio(layer))})",
             f"max abs {layer.max_abs:.3g}, scale {layer.scale:.3g}, PyTorch's largest magnitude {layer.peak:.3g}",
             f"adds {_grow(layer.growth)} to the largest error of its inputs"]
    if not layer.finite:
        lines.append("its value is not finite")
    if layer.overflow:
        lines.append("its PyTorch value passes fp16's largest number (65504)")
    if layer.source:
        lines.append(f"source: {layer.source}")
    return "\n".join(lines)


def _grow(g: float) -> str:
    return "-" if g == -math.inf else f"{g:+.3g}"  # -inf: an input was not finite, this layer is


def _times(r: float) -> str:
    return "not finite" if not math.isfinite(r) else f"{r:.2g}x"


def window(layers, picked: str | None, size: int) -> tuple[int, int]:
    """The [start, end) of the layers drawn: all when they fit in `size`, else `size` around the picked one."""
    n = len(layers.layers)
    if n <= size:
        return 0, n
    at = next((k for k, x in enumerate(layers.layers) if x.torch == picked), 0)
    start = min(max(0, at - size // 3), n - size)
    return start, start + size


def graph_svg(layers, picked: str | None = None, size: int = 30) -> str:
    """The matched layers of `layers` (a `layers.Layers`) as an SVG graph, coloured by error; `picked`: the
    `torch` name of the layer to outline (default: the first over tolerance). At most `size` layers are drawn,
    around the picked one. Tags on the right name the first layer over tolerance, the one whose error grows most
    and the first fp16 overflow."""
    items = list(layers.layers)
    if not items:
        return ("<svg xmlns='http://www.w3.org/2000/svg' width='360' height='30'><text x='8' y='20' "
                "font-size='12' fill='#555'>no layer matched a PyTorch module</text></svg>")
    if picked is None and layers.first is not None:
        picked = layers.first.torch
    start, end = window(layers, picked, size)
    shown = items[start:end]
    row = {x.torch: k for k, x in enumerate(shown)}
    tags: dict[str, list[str]] = {}
    for what, layer in (("first over tolerance", layers.first), ("grows most", layers.growth),
                        ("fp16 overflow", layers.overflow)):
        if layer is not None:
            tags.setdefault(layer.torch, []).append(what)
    top = TOP + (18 if start else 0)

    def y(k: int) -> float:
        return top + k * (BOX_H + GAP)

    edges, arcs = [], 0
    for k, layer in enumerate(shown):
        sources = list(layer.inputs) or ([shown[k - 1].torch] if k else [])
        for src in sources:
            j = row.get(src)
            if j is None or j >= k:
                continue
            x0 = LEFT + BOX_W / 2
            if j == k - 1:
                edges.append(f"<line x1='{x0}' y1='{y(j) + BOX_H}' x2='{x0}' y2='{y(k)}' stroke='#888' "
                              "stroke-width='1.2' marker-end='url(#arrow)'/>")
            else:  # a skip connection arcs on the right, further out the more layers it skips
                arcs += 1
                reach = LEFT + BOX_W + 12 + min(60, 6 * (k - j))
                a, b = y(j) + BOX_H / 2, y(k) + BOX_H / 2
                edges.append(f"<path d='M{LEFT + BOX_W},{a} C{reach},{a} {reach},{b} {LEFT + BOX_W},{b}' fill='none' "
                             "stroke='#888' stroke-width='1.2' marker-end='url(#arrow)'/>")
    boxes, tag_w = [], 0
    for k, layer in enumerate(shown):
        fill, ink, label = band(layer)
        is_picked = layer.torch == picked
        stroke = f"stroke='{PICKED}' stroke-width='3'" if is_picked else "stroke='#666' stroke-width='0.8'"
        text = _fit(f"{layer.op}  {layer.torch}", 44)
        tip = html.escape(f"{describe_layer(layer, layers.unit)}\n{label}")
        boxes.append(
            f"<g class='workbench-layer' data-torch='{html.escape(layer.torch)}' data-band='{html.escape(label)}'>"
            f"<title>{tip}</title>"
            f"<rect x='{LEFT}' y='{y(k)}' width='{BOX_W}' height='{BOX_H}' rx='4' fill='{fill}' {stroke}/>"
            f"<text x='{LEFT + 8}' y='{y(k) + 16}' font-size='12' fill='{ink}'>{html.escape(text)}</text>"
            f"<text x='{LEFT + BOX_W - 8}' y='{y(k) + 16}' font-size='12' fill='{ink}' text-anchor='end'>"
            f"{html.escape(_times(ratio(layer)))}</text></g>")
        notes = tags.get(layer.torch, [])
        if is_picked:
            notes = ["picked", *notes]
        if notes:
            text = f"\u25c0 {', '.join(notes)}"
            tag_w = max(tag_w, 7 * len(text))
            boxes.append(f"<text x='{LEFT + BOX_W + 80}' y='{y(k) + 16}' font-size='12' fill='{PICKED}'>"
                         f"{html.escape(text)}</text>")
    more = []
    if start:
        more.append(f"<text x='{LEFT}' y='{TOP + 10}' font-size='11' fill='#555'>&#8942; {start} layers above"
                    "</text>")
    height = y(len(shown)) + (16 if end < len(items) else 0) + 4
    if end < len(items):
        more.append(f"<text x='{LEFT}' y='{height - 6}' font-size='11' fill='#555'>&#8942; {len(items) - end} "
                    "layers below</text>")
    width = LEFT + BOX_W + 80 + max(tag_w, 40) + 8
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='workbench-layers-graph' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' font-family='sans-serif'>"
            "<defs><marker id='arrow' viewBox='0 0 10 10' refX='9' refY='5' markerWidth='6' markerHeight='6' "
            "orient='auto-start-reverse'><path d='M0,0 L10,5 L0,10 z' fill='#888'/></marker></defs>"
            + "".join(edges) + "".join(boxes) + "".join(more) + "</svg>")


def strip_svg(layers, picked: str | None = None, size: int = 30, width: int = 660) -> str:
    """The whole graph as one row of cells coloured by error, in the graph's order, with the window that
    `graph_svg` draws outlined: where in a long graph the error starts."""
    items = list(layers.layers)
    if not items:
        return ""
    if picked is None and layers.first is not None:
        picked = layers.first.torch
    start, end = window(layers, picked, size)
    cell = width / len(items)
    cells = []
    for k, layer in enumerate(items):
        fill = band(layer)[0]
        tip = html.escape(f"{layer.op} {layer.torch}: {_times(ratio(layer))} tolerance")
        cells.append(f"<rect x='{k * cell:.2f}' y='4' width='{max(cell, 1):.2f}' height='14' fill='{fill}'>"
                     f"<title>{tip}</title></rect>")
    frame = (f"<rect x='{start * cell:.2f}' y='1' width='{(end - start) * cell:.2f}' height='20' fill='none' "
             f"stroke='{PICKED}' stroke-width='2'/>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' class='workbench-layers-strip' width='{width}' height='22'>"
            + "".join(cells) + (frame if end - start < len(items) else "") + "</svg>")


def legend_html() -> str:
    """What each fill means (the same bands `graph_svg` colours by)."""
    swatches = [(fill, label) for _, fill, _, label in BANDS] + [(NONFINITE[0], NONFINITE[2])]
    cells = "".join(f"<span style='display:inline-block;margin-right:12px;font-size:12px'>"
                    f"<span style='display:inline-block;width:14px;height:12px;background:{fill};"
                    f"border:1px solid #666;vertical-align:middle;margin-right:4px'></span>{html.escape(label)}</span>"
                    for fill, label in swatches)
    return (f"<div class='workbench-layers-legend'>{cells}<span style='font-size:12px;color:{PICKED}'>"
            "outlined: the layer picked in the table</span></div>")


def ranked_rows(layers, order: str = "ranked") -> list[tuple[str, str]]:
    """The table's rows as (text, torch name): by the error each layer adds, largest first ("ranked"), or in
    the graph's order ("graph")."""
    items = layers.ranked() if order == "ranked" else list(layers.layers)
    return [(f"{_fit(x.torch, 28):<28} {_fit(x.op, 14):<14} {x.error:>9.3g} {_times(ratio(x)):>9} "
             f"{_grow(x.growth):>10}", x.torch) for x in items]


RANKED_HEADER = f"{'PyTorch module':<28} {'op':<14} {'error':>9} {'vs limit':>9} {'adds':>10}"


def _fit(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n - 1] + "…"
