"""Detections drawn on their image: PyTorch's boxes beside each format's, the boxes that do not match marked.

PyTorch's panel draws its boxes in green. A format's panel draws the boxes it shares with PyTorch in blue,
the boxes PyTorch does not find (extra) in red, and PyTorch's boxes the format lost as dashed orange
outlines, so a lost object shows where it was. Each box carries its label and score.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

FOUND, SHARED, EXTRA, LOST = (40, 170, 60), (40, 110, 230), (220, 40, 40), (245, 150, 20)


@dataclass
class BoxesPicture:
    """A row of panels for one image: `image` (PIL), a caption per panel, the lost/extra counts per format."""

    image: object
    captions: dict[str, str] = field(default_factory=dict)
    lost: dict[str, int] = field(default_factory=dict)
    extra: dict[str, int] = field(default_factory=dict)


def draw(pixels: np.ndarray, detections, task, colour=FOUND, marked=(), lost=None, scale: float = 1.0):
    """`pixels` (H, W, 3) uint8 with `detections` drawn (scaled by `scale`): the indices in `marked` in red,
    the boxes of `lost` (PyTorch's, missing here) dashed in orange. Returns a PIL image."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(np.ascontiguousarray(pixels), "RGB")
    if scale != 1.0:
        picture = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.BILINEAR)
    pen = ImageDraw.Draw(picture)
    w, h = picture.width - 1, picture.height - 1

    def inside(box):  # a box reaching past the image is drawn along its edge, not out of sight
        x1, y1, x2, y2 = (float(v) * scale for v in box)
        return [min(max(x1, 0), w), min(max(y1, 0), h), min(max(x2, 0), w), min(max(y2, 0), h)]

    for k in range(len(detections)):
        box = inside(detections.boxes[k])
        fill = EXTRA if k in marked else colour
        pen.rectangle(box, outline=fill, width=2)
        pen.text((box[0] + 2, box[1] + 1), f"{task.label(int(detections.classes[k]))} {detections.scores[k]:.2g}",
                 fill=fill)
    for k in range(len(lost) if lost is not None else 0):
        x1, y1, x2, y2 = inside(lost.boxes[k])
        for a, b in _dashes(x1, x2):
            pen.line([(a, y1), (b, y1)], fill=LOST, width=2)
            pen.line([(a, y2), (b, y2)], fill=LOST, width=2)
        for a, b in _dashes(y1, y2):
            pen.line([(x1, a), (x1, b)], fill=LOST, width=2)
            pen.line([(x2, a), (x2, b)], fill=LOST, width=2)
        pen.text((x1 + 2, y2 - 11), f"lost: {task.label(int(lost.classes[k]))}", fill=LOST)
    return picture


def tile(task, img: np.ndarray, value: np.ndarray, size: int):
    """One panel of views/picture.py's grid: `value` (one image's main output) decoded and drawn on `img`."""
    from ..errors import WorkbenchError

    try:
        detections = task.detect({task.output or "output": value[None]})[0]
    except WorkbenchError:  # a decoder that needs several outputs (SSD): drawn as a curve
        return None
    scale = size / max(img.shape[:2])
    return _square(draw(img, detections, task, scale=scale), size)


def side_by_side(reference, outputs: Mapping[str, Mapping[str, np.ndarray]], image: int = 0,
                 scale: float | None = None) -> BoxesPicture:
    """PyTorch's detections on sample image `image` of `reference` (a Session or Reference with a detection
    task) beside each format's (`outputs`: {format: its outputs}), the unmatched boxes marked."""
    from PIL import Image, ImageDraw

    task = reference.task
    pixels = np.clip(reference.pixels[image].transpose(1, 2, 0), 0, 255).astype(np.uint8)
    scale = scale or max(1.0, 256 / max(pixels.shape[:2]))
    t = task.threshold
    low = t * (1 - task.score_margin)
    one = {k: v[image:image + 1] for k, v in reference.outputs.items()}
    ref_low = task.detect(one, low)[0]
    ref = ref_low.above(t)
    panels = [draw(pixels, ref, task, FOUND, scale=scale)]
    captions = {"PyTorch": f"PyTorch: {len(ref)} boxes"}
    picture = BoxesPicture(None, captions)
    names = list(reference.outputs)
    for fmt, out in outputs.items():
        out = dict(zip(names, out.values())) if not set(names) <= set(out) else out
        cand_low = task.detect({k: v[image:image + 1] for k, v in out.items()}, low)[0]
        cand = cand_low.above(t)
        from ..tasks.detection import match

        m = match(ref, cand, ref_low, cand_low)
        picture.lost[fmt], picture.extra[fmt] = len(m["lost"]), len(m["extra"])
        lost = _subset(ref, m["lost"])
        panels.append(draw(pixels, cand, task, SHARED, marked=set(m["extra"]), lost=lost, scale=scale))
        captions[fmt] = (f"{fmt}: {len(cand)} boxes, {len(m['lost'])} lost, {len(m['extra'])} extra"
                         + ("" if m["lost"] or m["extra"] else ": the same objects"))
    width = sum(p.width for p in panels) + 8 * (len(panels) - 1)
    canvas = Image.new("RGB", (width, panels[0].height + 16), "white")
    pen = ImageDraw.Draw(canvas)
    x = 0
    for caption, panel in zip(captions.values(), panels):
        pen.text((x + 2, 2), caption, fill=(0, 0, 0))
        canvas.paste(panel, (x, 16))
        x += panel.width + 8
    picture.image = canvas
    return picture


def _subset(d, indices):
    from ..tasks.detection import Detections

    idx = np.asarray(indices, np.int64)
    return Detections(d.boxes[idx], d.scores[idx], d.classes[idx])


def _dashes(a: float, b: float, step: float = 6.0):
    lo, hi = min(a, b), max(a, b)
    return [(s, min(s + step / 2, hi)) for s in np.arange(lo, hi, step)]


def _square(picture, size: int):
    from PIL import Image

    square = Image.new("RGB", (size, size), "white")
    square.paste(picture, ((size - picture.width) // 2, (size - picture.height) // 2))
    return square
