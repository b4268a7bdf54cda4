"""(h) Dataset check: peak memory against the number of images, throughput against the bare pipeline, and
--workers 2 against 1.

DeepLabV3 (mobilenet_v3_large, random weights) at 256x256 through the first of the default formats, on a generated
ImageFolder (crops of the sample photos). Each run is `workbench check ... --images DIR` in a subprocess, whose
peak memory (max RSS, from wait4) and JSON rate (images per second of the dataset phase) are recorded. The bare
pipeline is decode + PyTorch + the format's bare runtime call (`Format.floor`) on the same images, in one process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, row, target

SECTION = "h"
MODEL = "torchvision:deeplabv3_mobilenet_v3_large"


def timed_format() -> str:
    """The format timed: the first of the default set (`workbench check`'s first)."""
    from workbench import formats

    return formats.defaults()[0]


def _folder(root: Path, n: int) -> Path:
    from PIL import Image

    photos = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.jpg"))]
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        s = min(w, h) // (1 + i % 3)
        x, y = (i * 37) % max(1, w - s), (i * 53) % max(1, h - s)
        d = root / f"class_{i % 4}"
        d.mkdir(parents=True, exist_ok=True)
        img.crop((x, y, x + s, y + s)).resize((256, 256)).save(d / f"img_{i:05d}.jpg", quality=90)
    return root


def _check(images: Path, out: Path, limit: int, workers: int = 1) -> tuple[float, dict]:
    """(max RSS in MB, the JSON summary) of one streamed check."""
    cmd = [sys.executable, "-m", "workbench", "check", MODEL, "--weights", "none", "--preset", "imagenet",
           "--size", "256", "256", "--to", timed_format(), "--images", str(images), "--limit", str(limit),
           "--workers", str(workers), "--out", str(out), "--overwrite", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"workbench check exited {proc.returncode}")
    return usage.ru_maxrss / 1024, json.loads(stdout)


def _bare(images: Path, n: int, out: Path) -> float:
    """Images per second of decode + PyTorch + the format's bare runtime call (`Format.floor`), on the same
    images: decode and PyTorch one image at a time, then the runtime over the decoded images, back to back."""
    import numpy as np
    import torch

    from workbench.formats import get
    from workbench.images import fit_image, load_image
    from workbench.models import load_model
    from workbench.preprocess import Preprocess
    from workbench.session import Session

    torch.manual_seed(0)
    module = load_model(MODEL, weights=None).module
    pre = Preprocess.preset("imagenet", size=(256, 256))
    paths = sorted(images.rglob("*.jpg"))[:n]
    fmt = get(timed_format())
    artifact = Session(module, paths[:1], preprocess=pre).export(fmt.name, out / f"bare{fmt.suffix}", overwrite=True)
    start = time.perf_counter()
    decoded = []
    with torch.inference_mode():
        for p in paths:
            px = fit_image(load_image(p), (256, 256)).transpose(2, 0, 1)[None].astype(np.float32)
            module(torch.from_numpy(pre.apply(px)))
            decoded.append(px)
    first = time.perf_counter() - start
    call = fmt.bare_call(artifact, np.ascontiguousarray(np.concatenate(decoded)))
    start = time.perf_counter()
    call()
    return len(paths) / (first + time.perf_counter() - start)


def run(settings) -> tuple[list[dict], list[dict]]:
    big = 200 if settings.quick else 2000
    work = settings.workdir / "bench_dataset"
    images = _folder(work / "images", big)
    rows, targets = [], []
    small_rss, small = _check(images, work / "small", 16)
    big_rss, one = _check(images, work / "big", big)
    rows.append(row(SECTION, "deeplabv3 256", "peak memory, 16 images", None, max_rss_mb=small_rss))
    rows.append(row(SECTION, "deeplabv3 256", f"peak memory, {big} images", None, max_rss_mb=big_rss))
    ratio = big_rss / small_rss
    targets.append(target(f"peak memory {big} vs 16 images", ratio, 1.5, "x"))
    n = min(64, big)
    _, two = _check(images, work / "two", n, workers=2)
    _, one_n = _check(images, work / "one", n, workers=1)
    bare = _bare(images, n, work / "one")
    rate1, rate2 = one_n["images_per_second"], two["images_per_second"]
    rows.append(row(SECTION, "deeplabv3 256", f"images/s, 1 worker ({n} images)", None, rate=rate1))
    rows.append(row(SECTION, "deeplabv3 256", f"images/s, 2 workers ({n} images)", None, rate=rate2))
    rows.append(row(SECTION, "deeplabv3 256", f"images/s, bare pipeline ({n} images)", None, rate=bare))
    rows.append(row(SECTION, "deeplabv3 256", "50,000 images at the 1-worker rate", None,
                    hours=50_000 / one["images_per_second"] / 3600))
    targets.append(target("bare pipeline rate / dataset rate (1 worker)", bare / rate1, 1 / 0.9, "x"))
    targets.append(target("1 worker rate / 2 workers rate", rate1 / rate2, 1 / 1.5, "x"))
    return rows, targets


# The sample photos that show an ImageNet class, by that class's name: an ImageFolder of their variations.
CLASSES = {"tabby": "cat_chelsea.jpg", "espresso": "coffee.jpg", "daisy": "flower.jpg", "palace": "china_palace.jpg",
           "missile": "rocket.jpg"}


def imagenet_folder(root: Path, n: int) -> Path:
    """An ImageFolder of `n` photos under ImageNet class names: crops, mirror images and exposure changes of the
    sample photo that shows each class (deterministic), for checking an ImageNet classifier on a whole set."""
    from PIL import Image, ImageEnhance, ImageOps

    photos = {c: Image.open(ROOT / "sample_images" / f).convert("RGB") for c, f in CLASSES.items()}
    for i in range(n):
        cls = list(CLASSES)[i % len(CLASSES)]
        img = photos[cls]
        w, h = img.size
        s = int(min(w, h) * (0.55 + 0.45 * ((i * 7) % 10) / 9))
        x, y = (i * 37) % max(1, w - s + 1), (i * 53) % max(1, h - s + 1)
        img = img.crop((x, y, x + s, y + s)).resize((256, 256))
        img = ImageOps.mirror(img) if i % 2 else img
        img = ImageEnhance.Brightness(img).enhance(0.3 + 1.2 * ((i * 13) % 11) / 10)
        (root / cls).mkdir(parents=True, exist_ok=True)
        img.save(root / cls / f"{cls}_{i:05d}.jpg", quality=90)
    return root


if __name__ == "__main__":
    from .common import Settings

    if sys.argv[1:2] == ["--imagenet-folder"]:  # python -m bench.dataset --imagenet-folder DIR N
        print(imagenet_folder(Path(sys.argv[2]), int(sys.argv[3])))
        sys.exit(0)
    s = Settings.make("--quick" in sys.argv, Path("/tmp"))
    r, t = run(s)
    print(json.dumps({"rows": r, "targets": t}, indent=2, default=str))
