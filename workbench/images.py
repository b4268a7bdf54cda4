"""Sample images: load real photos robustly and bring them to the model's input size, one policy for all.

Every runner gets the same pixels (float32 (N, 3, H, W) RGB in 0-255), so a difference between outputs
is never a difference in resizing.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import WorkbenchError
from .preprocess import Fit, Interpolation

# The photos shipped with the checkout: the default sample images of the CLI and the widget.
SAMPLE_IMAGES = Path(__file__).resolve().parents[1] / "sample_images"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
# Refuse images above this many pixels before decoding them: bounded memory (a 20000x20000 bomb is 400M).
MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class SampleImage:
    """A loaded photo: its name, where it came from, and the upright RGB image."""

    name: str
    image: Image.Image
    path: Path | None = None


def load_image(path: str | Path) -> Image.Image:
    """Open one image file as an upright 8-bit RGB image.

    EXIF orientation is applied; RGBA/LA/palette with transparency are composited on white; grayscale,
    CMYK and 16-bit images are converted; animated images give their first frame.
    Raises WorkbenchError naming the file when it is missing, not an image, truncated or too large.
    """
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"image {path} does not exist or is not a file")
    if path.stat().st_size == 0:
        raise WorkbenchError(f"image {path} is empty (0 bytes); replace it with a JPEG or PNG")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise WorkbenchError(
                    f"image {path} is {w}x{h} ({w * h / 1e6:.0f} megapixels), above the "
                    f"{MAX_PIXELS / 1e6:.0f} MP limit; downscale it first"
                )
            img.seek(0)
            return to_rgb(img)
    except WorkbenchError:
        raise
    except Image.DecompressionBombError as exc:
        # Pillow refuses above ~179 MP at open, before our own check sees the size; same verdict, same fix.
        raise WorkbenchError(
            f"image {path} is above the {MAX_PIXELS / 1e6:.0f} megapixel limit ({exc}); downscale it first"
        ) from exc
    except UnidentifiedImageError as exc:
        raise WorkbenchError(f"{path} is not an image Pillow can read ({exc}); use JPEG or PNG") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise WorkbenchError(f"image {path} is damaged or truncated ({exc}); re-save or replace it") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL image as upright 8-bit RGB (decodes it)."""
    img = ImageOps.exif_transpose(img) or img
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def load_images(source, *, limit: int | None = None) -> list[SampleImage]:
    """Sample images from a folder, a list of paths, or PIL images.

    In a folder, files that are not images are skipped with a warning naming them; a folder with no
    readable image raises WorkbenchError.
    """
    if isinstance(source, (str, Path)):
        folder = Path(source)
        if not folder.exists():
            raise WorkbenchError(f"image folder {folder} does not exist")
        if folder.is_file():
            return [SampleImage(folder.stem, load_image(folder), folder)]
        images, skipped = [], []
        for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                if path.suffix.lower() not in {".md", ".txt"}:
                    skipped.append(f"{path.name} (not an image file type)")
                continue
            try:
                images.append(SampleImage(path.stem, load_image(path), path))
            except WorkbenchError as exc:
                skipped.append(f"{path.name} ({exc})")
            if limit and len(images) >= limit:
                break
        if not images:
            # The error says why each file was refused: a CLI user never sees the warnings.
            why = f" (skipped {_shown(skipped)})" if skipped else ""
            raise WorkbenchError(f"no readable image in {folder}{why}; add JPEG or PNG photos")
        if skipped:
            warnings.warn(f"skipped in {folder}: " + "; ".join(skipped), stacklevel=2)
        return images
    images = []
    for i, item in enumerate(_iter(source)):
        if isinstance(item, SampleImage):
            images.append(item)
        elif isinstance(item, Image.Image):
            images.append(SampleImage(f"image_{i}", to_rgb(item)))
        else:
            path = Path(item)
            images.append(SampleImage(path.stem, load_image(path), path))
        if limit and len(images) >= limit:
            break
    if not images:
        raise WorkbenchError("no images given; pass a folder of JPEG/PNG photos or a list of paths")
    return images


def _shown(items: Sequence[str], limit: int = 3) -> str:
    return "; ".join(items[:limit]) + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _iter(source) -> Iterable:
    if isinstance(source, (SampleImage, Image.Image)):
        return [source]
    return source


def fit_image(img: Image.Image, size: Sequence[int], fit: Fit = "crop", resize: int | None = None,
              interpolation: Interpolation = "bilinear") -> np.ndarray:
    """The image brought to (height, width) as uint8 (H, W, 3).

    crop: scale so the image covers the size (or its shorter side to `resize`), then center crop, as
    torchvision's Resize + CenterCrop. letterbox: scale to fit inside and pad with black. stretch: resize.
    interpolation: Pillow's bilinear or bicubic filter (antialiased when downscaling, as torchvision's
    Resize on PIL images).
    """
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}.get(interpolation)
    if resample is None:
        raise WorkbenchError(f"interpolation {interpolation!r} is not one of 'bilinear', 'bicubic'")
    h, w = int(size[0]), int(size[1])
    iw, ih = img.size
    if fit == "stretch":
        return np.asarray(img.resize((w, h), resample, reducing_gap=None))
    if fit == "letterbox":
        s = min(w / iw, h / ih)
        nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
        canvas = Image.new("RGB", (w, h))
        canvas.paste(img.resize((nw, nh), resample), ((w - nw) // 2, (h - nh) // 2))
        return np.asarray(canvas)
    if resize:
        # As torchvision's Resize(int): the shorter side becomes `resize`, the longer is truncated, not rounded.
        long = int(resize * max(iw, ih) / min(iw, ih))
        nw, nh = (resize, long) if iw <= ih else (long, resize)
    else:
        s = max(w / iw, h / ih)
        nw, nh = round(iw * s), round(ih * s)
    nw, nh = max(w, nw), max(h, nh)
    img = img.resize((nw, nh), resample)
    left, top = int(round((nw - w) / 2.0)), int(round((nh - h) / 2.0))
    return np.asarray(img.crop((left, top, left + w, top + h)))


def to_pixels(images: Sequence[SampleImage], size: Sequence[int], fit: Fit = "crop",
              resize: int | None = None, interpolation: Interpolation = "bilinear") -> np.ndarray:
    """A batch of pixels, float32 (N, 3, H, W) RGB in 0-255, the input every runner starts from."""
    arrays = [fit_image(s.image, size, fit, resize, interpolation) for s in images]
    # C order: arithmetic on a transposed view is many times slower (bench/refresh.py), and every refresh
    # starts from these pixels.
    return np.ascontiguousarray(np.stack(arrays).transpose(0, 3, 1, 2), dtype=np.float32)
