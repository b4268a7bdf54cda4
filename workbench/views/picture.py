"""The comparison picture: per sample image, the input, the PyTorch output and each converted output, drawn
as the task needs (top-5 bars, colour masks with a class legend, output images), plus the difference of the
format that differs most on that image (a heatmap with its colour bar, or bars per class). Returns PNG or
JPEG bytes.

Drawn with PIL, not matplotlib: the widget redraws on every slider move, and a grid of matplotlib axes
costs about a second to lay out where these tiles cost milliseconds. Text is the costly part of a PIL
drawing (FreeType takes about 20 us a character), so each string is rendered once and pasted after that.
"""

from __future__ import annotations

import functools
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..compare import Comparison
from ..tasks import Classification, ImageToImage, Segmentation, Task

# Pascal VOC colours, with the seed's colour coding: person red, dog green, sheep blue.
_VOC = np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0], [0, 0, 128], [128, 0, 128], [0, 128, 128],
                 [128, 128, 128], [64, 0, 0], [192, 0, 0], [64, 128, 0], [192, 128, 0], [0, 255, 0], [192, 0, 128],
                 [64, 128, 128], [255, 0, 0], [0, 64, 0], [0, 0, 255], [0, 192, 0], [128, 192, 0], [0, 64, 128]],
                np.uint8)
# matplotlib's "magma" at 0, 1/8, ... 1: the heatmap's colours, interpolated.
_MAGMA = np.array([[0, 0, 4], [28, 16, 70], [80, 18, 123], [130, 37, 129], [182, 54, 121], [230, 81, 98],
                   [251, 136, 97], [254, 196, 136], [252, 253, 191]], np.float64)
_HEAT = np.stack([np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_MAGMA)), _MAGMA[:, c])
                  for c in range(3)], axis=1).round().astype(np.uint8)
TEXT, BAR, DIFF, GRID = (0, 0, 0), (68, 170, 119), (204, 68, 68), (190, 190, 190)
PASS, FAIL, TOP_DIFF, AXIS, RULE = (34, 139, 34), (204, 34, 34), (120, 0, 0), (90, 90, 90), (225, 225, 225)
GAP = 8  # between columns, and the canvas's margin
COLOUR_BAR = 8  # the colour bar's height in pixels
FONT_SIZE = 13  # pixels: the captions' text, DejaVu Sans, 13 px from ascender to descender, read at natural size


def pages(n_images: int, per_page: int = 4) -> list[range]:
    """The images of each page: pages(6) == [range(0, 4), range(4, 6)]. Each range's start and len are
    side_by_side's `start` and `count`. No images, no pages. Raises ValueError for per_page < 1."""
    if per_page < 1:
        raise ValueError(f"per_page must be at least 1, not {per_page}")
    return [range(s, min(s + per_page, n_images)) for s in range(0, max(n_images, 0), per_page)]


def palette(n: int) -> np.ndarray:
    if n <= len(_VOC):
        return _VOC[:n]
    rng = np.random.default_rng(0)
    return np.concatenate([_VOC, rng.integers(0, 256, (n - len(_VOC), 3), dtype=np.uint8)])


def overlay(pixels: np.ndarray, mask: np.ndarray, alpha: float = 0.55, colours: np.ndarray | None = None) -> np.ndarray:
    """Colour mask over an (H, W, 3) uint8 image; background (class 0) left as is. colours: (K, 3) uint8,
    palette(K) by default."""
    colours = (palette(int(mask.max()) + 1) if colours is None else colours)[mask]
    blend = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.where((mask > 0)[..., None], blend, pixels).astype(np.uint8)


def side_by_side(pixels: np.ndarray, names: Sequence[str], reference: Mapping[str, np.ndarray],
                 outputs: Mapping[str, Mapping[str, np.ndarray]], task: Task,
                 comparisons: Mapping[str, Comparison] | None = None, *, start: int = 0, count: int | None = 4,
                 max_images: int | None = None, tile: int = 160, image_format: str = "png",
                 cache: dict | None = None, expected: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> bytes:
    """A picture of rows (images) by columns (input, PyTorch, each format, and the |difference| of the format
    that differs most from PyTorch on that image, named in its caption when there are several).

    pixels: (N, 3, H, W) 0-255; reference/outputs: {output name: (N, ...)}; outputs keyed by column label;
    comparisons: keyed like outputs, for each tile's PASS/FAIL line. start, count: the images drawn,
    start .. start + count - 1 (fewer at the end; count=None draws all from start; `pages` lists the pages).
    max_images: the former name of count, still accepted. tile: the side of one panel in pixels (classifier
    columns grow wider so that class names fit). image_format: "png" (lossless, for files) or "jpeg"
    (quality 95, no chroma subsampling: several times faster to encode than PNG, for a picture redrawn on
    every slider move). Each row has its captions above its pictures: the image name, each
    format's PASS/FAIL and max |d|, and the difference's max as a fraction of the scale `compare` judges
    it by; under the pictures, the heatmap's colour bar and the classes of the masks.
    expected: per column label, PyTorch's outputs as that format gives them (`Artifact.expected`: clipped where
    its output became an image), what its difference is measured against, as `compare` measures it.
    cache: a dict kept by the caller between calls with the same pixels and reference (emptied when they
    change), where the input's and PyTorch's tiles are kept: the widget redraws on every slider move and
    only the formats' columns change.
    Raises ValueError for an unknown image_format, or a start or count out of range.
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")
    plan = _plan(pixels, names, reference, outputs, task, comparisons, start=start,
                 count=max_images if max_images is not None else count, tile=tile, cache=cache, expected=expected)
    canvas = _paint(plan)
    buf = io.BytesIO()
    if image_format == "png":
        canvas.save(buf, format="png", compress_level=1)
    else:
        canvas.save(buf, format="jpeg", quality=95, subsampling=0)
    return buf.getvalue()


@dataclass
class _Row:
    """One image's row. Bands from top to bottom: captions [top, picture_top), pictures
    [picture_top, footer_top), colour bar and legend [footer_top, bottom)."""

    index: int
    name: str
    captions: list[tuple[str, tuple[int, int, int]]]  # (text, colour) per column
    tiles: list  # PIL images, one per column
    top: int = 0
    picture_top: int = 0
    footer_top: int = 0
    bottom: int = 0
    max_abs: float | None = None  # the difference column's figures (the format that differs most, against PyTorch)
    scale: float | None = None
    heatmap: bool = False  # the difference is a heatmap: a colour bar goes under it
    legend: list[tuple[str, tuple[int, int, int] | None]] = field(default_factory=list)  # (name, colour)
    legend_lines: list[list[int]] = field(default_factory=list)  # legend entries per line


@dataclass
class _Plan:
    width: int
    height: int
    columns: list[tuple[int, int]]  # (x, width)
    titles: list[str]
    head: int
    rows: list[_Row]
    legend_span: tuple[int, int] = (0, 0)  # x range of the legend (under the output columns)


def _plan(pixels, names, reference, outputs, task, comparisons, *, start=0, count=4, tile=160, cache=None,
          expected=None) -> _Plan:
    """What to draw and where: every tile, caption and box, with no pixel drawn on the canvas yet."""
    cache = {} if cache is None else cache

    def kept(key, make):  # a tile that depends on the input and PyTorch's output alone
        if key not in cache:
            cache[key] = make()
        return cache[key]

    total = min(len(names), len(pixels))
    if count is not None and count < 1:
        raise ValueError(f"count must be at least 1 (or None for all images), not {count}")
    if not 0 <= start < max(total, 1):
        raise ValueError(f"start {start} is outside the {total} images; pages({total}) lists the valid starts")
    stop = total if count is None else min(total, start + count)
    main = task.main_output(reference)
    columns_out = [("PyTorch", reference)] + list(outputs.items())
    classifier = isinstance(task, Classification)
    wide = _classifier_width(task.labels, tile) if classifier and task.labels else tile  # names fit
    widths = [tile] + [wide] * (len(columns_out) + (1 if outputs else 0))
    xs = list(np.cumsum([GAP] + [w + GAP for w in widths[:-1]]))
    columns = [(int(x), w) for x, w in zip(xs, widths)]
    shown = "input" if (start, stop) == (0, total) else f"input, images {start + 1}-{stop} of {total}"
    titles = [_wrap(shown, tile)] + [_wrap(label, w) for (label, _), w in zip(columns_out, widths[1:])]
    if outputs:
        # one format alone: its name; several: each row shows the one that differs most on that image
        titles.append(_wrap(f"|{next(iter(outputs))} - PyTorch|" if len(outputs) == 1
                            else "|d| of the format that differs most", widths[-1]))
    lh = _line_height()
    head = max(t.count("\n") + 1 for t in titles) * lh + 6

    rows = []
    for i in range(start, stop):
        img = np.ascontiguousarray(pixels[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8))
        values = [_main(out, main, reference)[i] for _, out in columns_out]
        row = _Row(i, str(names[i]), [(_wrap(str(names[i]), tile), TEXT)],
                   [kept(("input", i, tile), functools.partial(_image, img, tile))])
        masks = []
        for k, ((label, _), value, w) in enumerate(zip(columns_out, values, widths[1:])):
            caption = ("", TEXT)
            if label != "PyTorch" and comparisons and label in comparisons:
                found = [r for r in comparisons[label].rows if r.image == names[i] and r.output == main]
                if found:
                    caption = (_wrap(f"{'PASS' if found[0].passed else 'FAIL'} max|d| {found[0].max_abs:.2g}", w),
                               PASS if found[0].passed else FAIL)
            row.captions.append(caption)
            if isinstance(task, Segmentation) and value.ndim == 3:
                masks.append(value.argmax(0))  # kept for the legend
                draw = functools.partial(_mask_tile, img, masks[-1], value.shape[0], tile)
            else:
                draw = functools.partial(_draw, task, img, value, tile, w)
            row.tiles.append(kept(("PyTorch", i, task, tile, w), draw) if k == 0 else draw())
        if outputs:
            refs = [values[0]] + [_main(expected[label], main, reference)[i] if expected and label in expected
                                  else values[0] for label, _ in columns_out[1:]]
            label, diff, row.max_abs, row.scale, fraction = _most_different(values, [n for n, _ in columns_out],
                                                                            refs)
            who = _wrap(f"{label}:", widths[-1]) + "\n" if len(outputs) > 1 else ""
            row.captions.append((f"{who}max |d| {row.max_abs:.2g}\n= {fraction:.2g} of scale {row.scale:.3g}", TEXT))
            row.heatmap = diff.ndim == 3 and not classifier  # (K, 1, 1) scores are still classes
            if row.heatmap:
                row.tiles.append(_heatmap(diff, tile))
            else:
                labels = task.labels if classifier and task.labels else None
                row.tiles.append(_difference_bars(np.ravel(diff), widths[-1], tile, labels,
                                                  "class" if classifier else "index"))
        if masks:
            k = reference[main].shape[1]
            row.legend = _legend(masks, k, task.labels if task.labels and len(task.labels) == k else None)
        rows.append(row)

    last = columns[-2] if outputs else columns[-1]  # the legend lies under the PyTorch and format columns
    legend_span = (columns[1][0], last[0] + last[1])
    y = GAP // 2 + head
    for row in rows:
        room = legend_span[1] - legend_span[0]
        row.legend = [(_fit(name, room - 30), colour) for name, colour in row.legend]
        row.legend_lines = _flow([_legend_width(name) for name, _ in row.legend], room,
                                 reserve=_text_mask(f"+{len(row.legend)} more").width)
        footer = max(COLOUR_BAR + lh + 6 if row.heatmap else 0, len(row.legend_lines) * lh + 4 if row.legend else 0)
        row.top = y
        row.picture_top = y + max(c.count("\n") + 1 for c, _ in row.captions) * lh + 6
        row.footer_top = row.picture_top + max(t.height for t in row.tiles)
        row.bottom = row.footer_top + footer + GAP
        y = row.bottom
    width = columns[-1][0] + columns[-1][1] + GAP
    return _Plan(width, y + GAP // 2, columns, titles, head, rows, legend_span)


def _paint(plan: _Plan):
    from PIL import Image, ImageDraw

    canvas = Image.new("RGB", (plan.width, plan.height), "white")
    draw = ImageDraw.Draw(canvas)
    lh = _line_height()
    for (x, _), title in zip(plan.columns, plan.titles):
        _text(canvas, (x, GAP // 2), title, TEXT)
    for row in plan.rows:
        draw.line((GAP // 2, row.top - 2, plan.width - GAP // 2, row.top - 2), fill=RULE)  # rows apart
        for (x, _), (caption, colour), picture in zip(plan.columns, row.captions, row.tiles):
            _text(canvas, (x, row.top + 2), caption, colour)
            canvas.paste(picture, (x, row.picture_top))
        if row.heatmap:
            x, w = plan.columns[-1]
            y = row.footer_top + 3
            canvas.paste(_colour_bar(w), (x, y))
            fraction = f"{row.max_abs / row.scale if row.scale else 0.0:.2g}"
            _text(canvas, (x, y + COLOUR_BAR + 1), "0", TEXT)
            _text(canvas, (x + w, y + COLOUR_BAR + 1), fraction, TEXT, align="right")
            # what the bar measures, between its ends' values where it fits (else the caption above says it)
            left, gap = _text_mask("0").width, w - _text_mask("0").width - _text_mask(fraction).width
            if _text_mask("|d| / scale").width + 12 <= gap:
                _text(canvas, (x + left + gap // 2, y + COLOUR_BAR + 1), "|d| / scale", AXIS, align="centre")
        top, side = _swatch()
        for k, line in enumerate(row.legend_lines):
            x, y = plan.legend_span[0], row.footer_top + 3 + k * lh
            for entry in line:
                name, colour = row.legend[entry]
                box = (x, y + top, x + side, y + top + side)
                if colour is None:  # class 0: the overlay leaves it uncoloured
                    draw.rectangle(box, outline=AXIS)
                else:
                    draw.rectangle(box, fill=colour, outline=AXIS)
                _text(canvas, (x + side + 4, y), name, TEXT)
                x += _legend_width(name)
        hidden = len(row.legend) - sum(map(len, row.legend_lines))
        if hidden:
            _text(canvas, (x, row.footer_top + 3 + (len(row.legend_lines) - 1) * lh), f"+{hidden} more", AXIS)
    return canvas


def _most_different(values: list, labels: list[str], refs: list | None = None):
    """Of the formats' outputs (values[1:], PyTorch's is values[0]), the one that differs most from PyTorch
    as a fraction of compare's scale: (its label, |difference|, its max, the scale, the fraction). refs: per
    column, PyTorch's output as that format gives it (clipped where its output became an image), what `compare`
    measured it against; default PyTorch's own. A non-finite difference is the largest."""
    found = None
    for k, (label, value) in enumerate(zip(labels[1:], values[1:]), start=1):
        ref = np.asarray(refs[k] if refs is not None else values[0])
        scale = _scale(ref)
        dtype = np.result_type(ref, value, np.float32)  # as compare: the outputs' own precision
        with np.errstate(all="ignore"):
            diff = np.abs(np.asarray(value).astype(dtype, copy=False).reshape(ref.shape)
                          - ref.astype(dtype, copy=False))
        largest = float(diff.max()) if np.isfinite(diff).all() else math.inf
        fraction = largest / scale if scale > 0 else (0.0 if largest == 0 else math.inf)
        if found is None or fraction > found[4]:
            found = (label, diff, largest, scale, fraction)
    return found


def _scale(ref: np.ndarray) -> float:
    """compare's scale of one image's output: its range, or its largest magnitude when that is larger."""
    values = np.asarray(ref)
    rng = float(values.max()) - float(values.min())
    return max(rng, float(np.abs(values).max()))


def _legend(masks: list[np.ndarray], k: int, labels) -> list[tuple[str, tuple[int, int, int] | None]]:
    """The classes present in any of an image's masks, the reference's largest first: (name, colour)."""
    counts = [np.bincount(m.ravel(), minlength=k) for m in masks]
    present = np.flatnonzero(np.sum(counts, axis=0))
    order = sorted(present, key=lambda c: (-counts[0][c], c))
    colours = palette(k)
    return [(labels[c] if labels else f"class {c}", tuple(int(v) for v in colours[c]) if c else None) for c in order]


def _legend_width(name: str) -> int:
    return _swatch()[1] + 4 + _text_mask(name).width + 12


def _flow(widths: list[int], room: int, max_lines: int = 3, reserve: int = 0) -> list[list[int]]:
    """Entries (by index) per line, left to right, on at most max_lines lines of `room` pixels; when some
    are left out, the last line keeps `reserve` pixels free (for "+N more")."""
    lines: list[list[int]] = []
    used = room
    for k, w in enumerate(widths):
        if used + w > room:
            if len(lines) == max_lines:
                break
            lines.append([])
            used = 0
        lines[-1].append(k)
        used += w
    if sum(map(len, lines)) < len(widths):
        while lines[-1] and sum(widths[j] for j in lines[-1]) + reserve > room:
            lines[-1].pop()
    return lines


def _wrap(text: str, width: int) -> str:
    """`text` broken at spaces into lines no wider than `width` pixels; a longer word is broken too."""
    return _wrap_cached(text, int(width))


@functools.lru_cache(maxsize=4096)
def _wrap_cached(text: str, width: int) -> str:
    font = _font()
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
            continue
        while len(word) > 1 and font.getlength(word) > width:
            cut = max(1, max(n for n in range(1, len(word) + 1) if n == 1 or font.getlength(word[:n]) <= width))
            lines.append(word[:cut])
            word = word[cut:]
        lines.append(word)
    return "\n".join(lines)


def _fit(text: str, width: int) -> str:
    """`text` on one line no wider than `width` pixels, ending in "..." when it had to be cut."""
    font = _font()
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "...") > width:
        text = text[:-1]
    return text.rstrip() + "..."


@functools.lru_cache(maxsize=1)
def _font():
    """DejaVu Sans at `FONT_SIZE`: the system's, else the copy matplotlib ships (found without importing it),
    else Pillow's own font at that size."""
    import importlib.util
    from pathlib import Path

    from PIL import ImageFont

    spec = importlib.util.find_spec("matplotlib")
    fonts = ["DejaVuSans.ttf"]
    if spec is not None and spec.origin:
        fonts.append(str(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"))
    for font in fonts:
        try:
            return ImageFont.truetype(font, FONT_SIZE)
        except OSError:
            continue
    return ImageFont.load_default(size=FONT_SIZE)


@functools.lru_cache(maxsize=1)
def _line_height() -> int:
    """A line of text's height in pixels: the font's, ascender to descender, and 2 pixels between lines."""
    box = _font().getbbox("Ag|")
    return int(box[3] - box[1]) + 2


@functools.lru_cache(maxsize=1)
def _swatch() -> tuple[int, int]:
    """A legend swatch beside a line of text: (its top below the line's top, its side), as tall as a capital."""
    box = _font().getbbox("H")
    return int(box[1]), int(box[3] - box[1])


@functools.lru_cache(maxsize=8192)
def _text_mask(line: str):
    """One line of text as an "L" mask, rendered once: FreeType's cost is paid on the first draw only."""
    from PIL import Image, ImageDraw

    box = _font().getbbox(line) if line else (0, 0, 0, 0)
    mask = Image.new("L", (max(1, int(box[2])), max(1, int(box[3]))), 0)
    if line:
        ImageDraw.Draw(mask).text((0, 0), line, fill=255, font=_font())
    return mask


def _text(image, xy: tuple[int, int], text: str, fill, align: str = "left") -> None:
    """Lines of text at xy (their top left; with align "right" or "centre", x is their right or centre)."""
    x, y = xy
    for k, line in enumerate(text.split("\n")):
        if not line:
            continue
        mask = _text_mask(line)
        left = x - mask.width if align == "right" else x - mask.width // 2 if align == "centre" else x
        top = y + k * _line_height()
        image.paste(fill, (left, top, left + mask.width, top + mask.height), mask)


def _main(out: Mapping[str, np.ndarray], main: str, reference) -> np.ndarray:
    if main in out:
        return out[main]
    index = list(reference).index(main)
    return list(out.values())[index]


def _image(pixels: np.ndarray, tile: int, colours: np.ndarray | None = None):
    """An (H, W) or (H, W, 3) uint8 array scaled to fit a tile x tile square, centred on white; an (H, W)
    array with `colours` (256 RGB rows) is an index into them, looked up after the scaling. Scaled in its
    own mode: a gray picture costs a third of an RGB one (the picture is redrawn on every slider move)."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB")
    scale = tile / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.BILINEAR if scale < 1 else Image.NEAREST)
    if colours is not None:
        picture = Image.fromarray(np.ascontiguousarray(colours[np.asarray(picture)]), "RGB")
    if size == (tile, tile):
        return picture.convert("RGB")
    square = Image.new("RGB", (tile, tile), "white")
    square.paste(picture.convert("RGB"), ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return square


def _draw(task: Task, img: np.ndarray, value: np.ndarray, tile: int, width: int | None = None):
    if task.name == "detection":  # boxes on the image (views/boxes.py)
        from .boxes import tile as boxes_tile

        drawn = boxes_tile(task, img, value, tile)
        if drawn is not None:
            return drawn
    if isinstance(task, Classification):
        return _bars(task.top(value[None], 5)[0], tile, width or tile)
    if isinstance(task, Segmentation) and value.ndim == 3:
        return _mask_tile(img, value.argmax(0), value.shape[0], tile)
    if value.ndim == 3:
        pixels = (task.to_images(value[None])[0] if isinstance(task, ImageToImage)
                  else _normalize(value).transpose(1, 2, 0))
        return _image(pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3], tile)
    return _curve(np.ravel(value)[:512], tile)


def _mask_tile(img: np.ndarray, mask: np.ndarray, classes: int, tile: int):
    """A mask over its input image (over black when their sizes differ), in the colours of the legend."""
    base = img if img.shape[:2] == mask.shape else np.zeros(mask.shape + (3,), np.uint8)
    return _image(overlay(base, mask, colours=palette(classes)), tile)


@functools.lru_cache(maxsize=64)
def _classifier_width(labels: tuple[str, ...], tile: int) -> int:
    """A classifier column's width: the longest class name and a value fit on one line, up to 2 tiles
    (longer names wrap, then end in "..."). Measured on the 30 longest names only: measuring is slow."""
    longest = sorted(labels, key=len)[-30:]
    need = max(_font().getlength(s) for s in longest) + _font().getlength("9.9e-99") + 10
    return int(min(2 * tile, max(tile, math.ceil(need))))


def _bars(top: list[tuple[str, float]], tile: int, width: int | None = None):
    """Top-k as horizontal bars: the class name (wrapped, never cut while a line holds it), its
    probability at the right, a bar (probability 0-1 across the tile) under them."""
    from PIL import Image, ImageDraw

    width = width or tile
    square = Image.new("RGB", (width, tile), "white")
    draw = ImageDraw.Draw(square)
    step = tile // max(len(top), 1)
    lh = _line_height()
    for k, (label, p) in enumerate(top):
        y = k * step
        value = f"{p:.2f}"
        name = _bar_label(label, width - _text_mask(value).width - 8, (step - 5) // lh)
        _text(square, (2, y + 1), name, TEXT)
        _text(square, (width - 3, y + 1), value, TEXT, align="right")
        top = max(y + step - 8, y + 2 + (name.count("\n") + 1) * lh)  # under the name's descenders
        length = max(1, round((p if math.isfinite(p) else 0.0) * (width - 1)))  # NaN scores: no bar
        draw.rectangle((0, top, length, max(top + 2, y + step - 3)), fill=BAR)
    draw.rectangle((0, 0, width - 1, tile - 1), outline=GRID)
    return square


@functools.lru_cache(maxsize=8192)
def _bar_label(label: str, room: int, lines: int) -> str:
    """A class name as drawn over its bar: whole on one line when it fits `room` pixels, else wrapped
    when `lines` lines fit above the bar, else cut to one line ending in "..."."""
    wrapped = _wrap(label, room)
    if wrapped.count("\n") < max(lines, 1) and all(_font().getlength(s) <= room for s in wrapped.split("\n")):
        return wrapped
    return _fit(label, room)


def _curve(values: np.ndarray, tile: int):
    from PIL import Image, ImageDraw

    square = Image.new("RGB", (tile, tile), "white")
    draw = ImageDraw.Draw(square)
    lo, hi = float(values.min()), float(values.max())
    xs = np.linspace(0, tile - 1, len(values))
    ys = (tile - 1) - (values - lo) / ((hi - lo) or 1.0) * (tile - 1)
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=BAR, width=1)
    draw.rectangle((0, 0, tile - 1, tile - 1), outline=GRID)
    return square


def _heatmap(diff: np.ndarray, tile: int):
    """|difference| of an image or mask scores (C, H, W): the worst channel per pixel, in magma from 0 to
    its largest value (the colour bar under it says which); non-finite values take the top colour."""
    heat = diff[0] if len(diff) == 1 else diff.max(axis=0)
    finite = np.isfinite(heat)
    whole = bool(finite.all())
    shown = heat if whole else heat[finite]
    top = float(shown.max()) if shown.size else 0.0
    index = heat * (255 / top) if top > 0 else np.zeros(heat.shape, np.float32)
    if not whole:
        index[~finite] = 255
    index += 0.5
    return _image(index.astype(np.uint8), tile, _HEAT)


@functools.lru_cache(maxsize=16)
def _colour_bar(width: int):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(
        _HEAT[np.linspace(0, 255, width).round().astype(int)], (COLOUR_BAR, width, 3))), "RGB")


def _difference_bars(values: np.ndarray, width: int, tile: int, labels, axis: str = "class"):
    """|difference| per class as bars (x: class, y: |d| from 0 to its largest value), with the names and
    values of the classes that differ most listed above the chart, each behind a swatch of the darker
    colour their bars are drawn in (the legend: dark bars are the classes named, light ones the rest)."""
    from PIL import Image, ImageDraw

    lh = _line_height()
    values = np.where(np.isfinite(values), values, np.inf).astype(np.float64)
    named = max(0, min(3, (tile - 3 * lh - 24) // lh, len(values)))
    worst = np.argsort(-values, kind="stable")[:named]
    square = Image.new("RGB", (width, tile), "white")
    swatches = ImageDraw.Draw(square)
    top, side = _swatch()
    for k, c in enumerate(worst):
        value = f"{values[c]:.2g}"
        name = labels[c] if labels else f"{axis} {c}"
        y = 2 + k * lh
        swatches.rectangle((3, y + top, 3 + side - 1, y + top + side - 1), fill=TOP_DIFF)
        _text(square, (side + 7, y), _fit(name, width - _text_mask(value).width - side - 16), TOP_DIFF)
        _text(square, (width - 4, y), value, TOP_DIFF, align="right")
    # the chart: y axis label and top value on one line, bars, then the x axis line with its labels
    y_label = 4 + named * lh
    top = float(values[np.isfinite(values)].max()) if np.isfinite(values).any() else 0.0
    _text(square, (3, y_label), "|d|", AXIS)
    _text(square, (width - 4, y_label), f"{top:.2g}", AXIS, align="right")
    x0, y0, x1, y1 = 3, y_label + lh + 1, width - 4, tile - lh - 4  # chart box, bars inside
    cw, ch = x1 - x0, y1 - y0
    if cw > 1 and ch > 1 and len(values):
        starts = (np.arange(cw) * len(values)) // cw
        group = np.maximum.reduceat(values, starts)
        marked = np.zeros(len(values), bool)
        marked[worst] = True
        dark = np.logical_or.reduceat(marked, starts)
        heights = np.where(np.isfinite(group), np.round(np.nan_to_num(group / top if top > 0 else 0.0) * (ch - 1)),
                           ch - 1).astype(int)
        rows = np.arange(ch)[:, None]
        filled = rows >= (ch - heights)[None, :]
        chart = np.full((ch, cw, 3), 255, np.uint8)
        chart[filled & ~dark[None, :]] = DIFF
        chart[filled & dark[None, :]] = TOP_DIFF
        square.paste(Image.fromarray(chart, "RGB"), (x0, y0))
    draw = ImageDraw.Draw(square)
    draw.line((x0 - 1, y0, x0 - 1, y1, x1, y1), fill=AXIS)
    _text(square, (x0, y1 + 1), "0", AXIS)
    _text(square, ((x0 + x1) // 2, y1 + 1), axis, AXIS, align="centre")
    _text(square, (x1, y1 + 1), str(len(values) - 1), AXIS, align="right")
    draw.rectangle((0, 0, width - 1, tile - 1), outline=GRID)
    return square


def _normalize(value: np.ndarray) -> np.ndarray:
    lo, hi = float(value.min()), float(value.max())
    return ((value - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8)
