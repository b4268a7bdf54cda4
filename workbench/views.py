"""Pictures: per sample image, the input, the PyTorch output and each converted output, drawn as the task
needs (top-5 bars, colour masks, output images), plus a difference heatmap. Returns PNG or JPEG bytes.

Drawn with PIL, not matplotlib: the widget redraws on every slider move, and a grid of matplotlib axes
costs about a second to lay out where these tiles cost milliseconds.
"""

from __future__ import annotations

import functools
import io
from typing import Mapping, Sequence

import numpy as np

from .compare import Comparison
from .tasks import Classification, ImageToImage, Segmentation, Task

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


def palette(n: int) -> np.ndarray:
    if n <= len(_VOC):
        return _VOC[:n]
    rng = np.random.default_rng(0)
    return np.concatenate([_VOC, rng.integers(0, 256, (n - len(_VOC), 3), dtype=np.uint8)])


def overlay(pixels: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Colour mask over an (H, W, 3) uint8 image; background (class 0) left as is."""
    colours = palette(int(mask.max()) + 1)[mask]
    blend = (1 - alpha) * pixels.astype(np.float32) + alpha * colours
    return np.where((mask > 0)[..., None], blend, pixels).astype(np.uint8)


def side_by_side(pixels: np.ndarray, names: Sequence[str], reference: Mapping[str, np.ndarray],
                 outputs: Mapping[str, Mapping[str, np.ndarray]], task: Task,
                 comparisons: Mapping[str, Comparison] | None = None, *, max_images: int = 4,
                 tile: int = 160, image_format: str = "png") -> bytes:
    """A picture of rows (images) by columns (input, PyTorch, each format, |difference| of the first format).

    pixels: (N, 3, H, W) 0-255; reference/outputs: {output name: (N, ...)}; outputs keyed by column label;
    comparisons: keyed like outputs, for each tile's PASS/FAIL line. tile: the side of one panel in pixels.
    image_format: "png" (lossless, for files) or "jpeg" (quality 95, no chroma subsampling: about 5 ms to
    encode where PNG takes about 40, for a picture redrawn on every slider move).
    """
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', not {image_format!r}")
    from PIL import Image, ImageDraw

    main = task.main_output(reference)
    columns = [("PyTorch", reference)] + [(label, out) for label, out in outputs.items()]
    n = min(len(names), max_images)
    ncols = 1 + len(columns) + (1 if outputs else 0)
    titles = {label: _wrap(label, tile) for label, _ in columns}
    head = (max(t.count("\n") for t in titles.values()) + 2) * _line_height() + 4
    canvas = Image.new("RGB", (ncols * (tile + 8) + 8, n * (tile + head) + 8), "white")
    draw = ImageDraw.Draw(canvas)

    def put(row: int, col: int, picture, title: str) -> None:
        x, y = 8 + col * (tile + 8), 4 + row * (tile + head)
        draw.multiline_text((x, y), title, fill=TEXT, font=_font(), spacing=1)
        canvas.paste(picture, (x, y + head))

    for i in range(n):
        img = pixels[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
        put(i, 0, _image(img, tile), names[i] if i else f"input\n{names[i]}")
        for j, (label, out) in enumerate(columns, start=1):
            title = titles[label] if i == 0 else ""
            if label != "PyTorch" and comparisons and label in comparisons:
                rows = [r for r in comparisons[label].rows if r.image == names[i] and r.output == main]
                if rows:
                    title += f"\n{'PASS' if rows[0].passed else 'FAIL'} max|d| {rows[0].max_abs:.2g}"
            put(i, j, _draw(task, img, _main(out, main, reference)[i], tile), title)
        if outputs:
            first_label, first = next(iter(outputs.items()))
            diff = np.abs(_main(first, main, reference)[i].astype(np.float64) - reference[main][i])
            rng = float(reference[main][i].max() - reference[main][i].min()) or 1.0
            title = (f"|{first_label} - PyTorch|\n" if i == 0 else "\n") + f"max {diff.max() / rng:.2g} of range"
            put(i, ncols - 1, _diff(diff / rng, tile), title)
    buf = io.BytesIO()
    if image_format == "png":
        canvas.save(buf, format="png", compress_level=1)
    else:
        canvas.save(buf, format="jpeg", quality=95, subsampling=0)
    return buf.getvalue()


def _wrap(text: str, width: int) -> str:
    """`text` broken at spaces into lines no wider than `width` pixels (a longer word stays whole)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and _font().getlength(f"{lines[-1]} {word}") <= width:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _font():
    from PIL import ImageFont

    return ImageFont.load_default(size=11)


def _line_height() -> int:
    box = _font().getbbox("Ag|")
    return int(box[3] - box[1]) + 2


def _main(out: Mapping[str, np.ndarray], main: str, reference) -> np.ndarray:
    if main in out:
        return out[main]
    index = list(reference).index(main)
    return list(out.values())[index]


def _image(pixels: np.ndarray, tile: int):
    """An (H, W) or (H, W, 3) uint8 array scaled to fit a tile x tile square, centred on white."""
    from PIL import Image

    picture = Image.fromarray(np.ascontiguousarray(pixels), "L" if pixels.ndim == 2 else "RGB").convert("RGB")
    scale = tile / max(picture.size)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    picture = picture.resize(size, Image.BILINEAR if scale < 1 else Image.NEAREST)
    square = Image.new("RGB", (tile, tile), "white")
    square.paste(picture, ((tile - size[0]) // 2, (tile - size[1]) // 2))
    return square


def _draw(task: Task, img: np.ndarray, value: np.ndarray, tile: int):
    if isinstance(task, Classification):
        return _bars(task.top(value[None], 5)[0], tile)
    if isinstance(task, Segmentation) and value.ndim == 3:
        mask = value.argmax(0)
        base = img if img.shape[:2] == mask.shape else np.zeros(mask.shape + (3,), np.uint8)
        return _image(overlay(base, mask), tile)
    if value.ndim == 3:
        pixels = (task.to_images(value[None])[0] if isinstance(task, ImageToImage)
                  else _normalize(value).transpose(1, 2, 0))
        return _image(pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3], tile)
    return _curve(np.ravel(value)[:512], tile)


def _bars(top: list[tuple[str, float]], tile: int):
    """Top-k as horizontal bars: label, bar (probability 0-1 across the tile), value."""
    from PIL import Image, ImageDraw

    square = Image.new("RGB", (tile, tile), "white")
    draw = ImageDraw.Draw(square)
    step = tile // max(len(top), 1)
    for k, (label, p) in enumerate(top):
        y = k * step
        draw.text((0, y + 1), f"{label[:18]}  {p:.2f}", fill=TEXT, font=_font())
        draw.rectangle((0, y + step - 8, max(1, round(p * (tile - 1))), y + step - 3), fill=BAR)
    draw.rectangle((0, 0, tile - 1, tile - 1), outline=GRID)
    return square


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


def _diff(relative: np.ndarray, tile: int):
    """|difference| as a fraction of the reference's range: a magma heatmap for images and masks (the
    worst channel per pixel, scaled to its own maximum), bars per value for vectors."""
    from PIL import Image, ImageDraw

    if relative.ndim == 3:
        heat = relative.max(axis=0)
        heat = heat / max(float(heat.max()), 1e-6)
        return _image(_HEAT[(heat * 255).round().astype(np.uint8)], tile)
    values = np.ravel(relative)
    square = Image.new("RGB", (tile, tile), "white")
    draw = ImageDraw.Draw(square)
    top = max(float(values.max()), 1e-12)
    # One column of the tile per group of values, as tall as the group's largest difference.
    groups = np.array_split(values, min(tile, len(values)))
    width = tile / len(groups)
    for k, g in enumerate(groups):
        h = round(float(g.max()) / top * (tile - 2))
        if h:
            draw.rectangle((round(k * width), tile - 1 - h, max(round(k * width), round((k + 1) * width) - 1),
                            tile - 1), fill=DIFF)
    draw.rectangle((0, 0, tile - 1, tile - 1), outline=GRID)
    return square


def _normalize(value: np.ndarray) -> np.ndarray:
    lo, hi = float(value.min()), float(value.max())
    return ((value - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8)
