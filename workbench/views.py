"""Pictures: per sample image, the input, the PyTorch output and each converted output, drawn as the task
needs (top-5 bars, colour masks, output images), plus a difference heatmap. Returns PNG bytes."""

from __future__ import annotations

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


def palette(n: int) -> np.ndarray:
    if n <= len(_VOC):
        return _VOC[:n]
    rng = np.random.default_rng(0)
    return np.concatenate([_VOC, rng.integers(0, 256, (n - len(_VOC), 3), dtype=np.uint8)])


def overlay(pixels: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Colour mask over an (H, W, 3) uint8 image; background (class 0) left as is."""
    colours = palette(int(mask.max()) + 1)[mask]
    out = pixels.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colours[fg]
    return out.astype(np.uint8)


def side_by_side(pixels: np.ndarray, names: Sequence[str], reference: Mapping[str, np.ndarray],
                 outputs: Mapping[str, Mapping[str, np.ndarray]], task: Task,
                 comparisons: Mapping[str, Comparison] | None = None, *, max_images: int = 4,
                 dpi: int = 72) -> bytes:
    """PNG of rows (images) by columns (input, PyTorch, each format, |difference| of the first format).

    pixels: (N, 3, H, W) 0-255; reference/outputs: {output name: (N, ...)}; outputs keyed by column label.
    """
    # A bare Figure draws off-screen without touching pyplot's backend (the notebook's inline plots).
    from matplotlib.figure import Figure

    main = task.main_output(reference)
    columns = [("PyTorch", reference)] + [(label, out) for label, out in outputs.items()]
    n = min(len(names), max_images)
    ncols = 1 + len(columns) + (1 if outputs else 0)
    fig = Figure(figsize=(2.3 * ncols, 2.3 * n), dpi=dpi)
    axes = fig.subplots(n, ncols, squeeze=False)
    for i in range(n):
        img = pixels[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
        _image(axes[i, 0], img, names[i] if i else f"input\n{names[i]}")
        for j, (label, out) in enumerate(columns, start=1):
            values = _main(out, main, reference)
            title = label if i == 0 else ""
            if label != "PyTorch" and comparisons and label in comparisons:
                rows = [r for r in comparisons[label].rows if r.image == names[i] and r.output == main]
                if rows:
                    title += f"\n{'PASS' if rows[0].passed else 'FAIL'} max|d| {rows[0].max_abs:.2g}"
            _draw(axes[i, j], task, img, values[i], title)
        if outputs:
            first_label, first = next(iter(outputs.items()))
            diff = np.abs(_main(first, main, reference)[i].astype(np.float64) - reference[main][i])
            _diff(axes[i, -1], task, diff, reference[main][i], f"|{first_label} - PyTorch|" if i == 0 else "")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _main(out: Mapping[str, np.ndarray], main: str, reference) -> np.ndarray:
    if main in out:
        return out[main]
    index = list(reference).index(main)
    return list(out.values())[index]


def _image(ax, img, title=""):
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _draw(ax, task: Task, img: np.ndarray, value: np.ndarray, title: str):
    if isinstance(task, Classification):
        top = task.top(value[None], 5)[0]
        labels = [t[0][:18] for t in top][::-1]
        ax.barh(range(len(top)), [t[1] for t in top][::-1], color="#4a7")
        ax.set_yticks(range(len(top)), labels, fontsize=7)
        ax.set_xlim(0, 1)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(title, fontsize=8)
    elif isinstance(task, Segmentation) and value.ndim == 3:
        mask = value.argmax(0)
        base = img if img.shape[:2] == mask.shape else np.zeros(mask.shape + (3,), np.uint8)
        _image(ax, overlay(base, mask), title)
    elif value.ndim == 3:
        pixels = (task.to_images(value[None])[0] if isinstance(task, ImageToImage)
                  else _normalize(value).transpose(1, 2, 0))
        _image(ax, pixels[..., 0] if pixels.shape[-1] == 1 else pixels[..., :3], title)
    else:
        ax.plot(np.ravel(value)[:512], lw=0.8)
        ax.set_title(title, fontsize=8)


def _diff(ax, task: Task, diff: np.ndarray, ref: np.ndarray, title: str):
    rng = float(ref.max() - ref.min()) or 1.0
    if diff.ndim == 3:
        heat = diff.max(axis=0) / rng
        im = ax.imshow(heat, cmap="magma", vmin=0, vmax=max(float(heat.max()), 1e-6))
        ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
        ax.axis("off")
    else:
        ax.stairs(np.ravel(diff) / rng, fill=True, color="#c44")  # one patch, not a bar per class
        ax.tick_params(labelsize=6)
    ax.set_title(title + ("\n" if title else "") + f"max {diff.max() / rng:.2g} of range", fontsize=8)


def _normalize(value: np.ndarray) -> np.ndarray:
    lo, hi = float(value.min()), float(value.max())
    return ((value - lo) / ((hi - lo) or 1.0) * 255).astype(np.uint8)
