"""Train `workbench.zoo.SuperResolutionNet(upscale_factor=3)` on the photos in `sample_images/`.

The weights it writes, `notebooks/weights/super_resolution_x3.pth` (a state_dict, ~240 KB), are what
notebook 01 loads; the seed tutorial (PyTorch's "ONNX to Caffe2 and mobile" super-resolution example)
downloaded pretrained weights, which is not possible offline, so they are trained here instead.

Run from the repository root (CPU only; about 30 s on 2 idle cores, under 2 minutes on a busy machine):

    .venv/bin/python notebooks/train/train_super_resolution.py

What it does: the model sees the Y channel (PIL ``convert("YCbCr")``, channel 0, /255) as the
pytorch/examples super_resolution script does. Training pairs are random 48x48 crops (with flips) of every
sample photo but one, and of their half-size copies; the low-resolution input is the crop downscaled x3
with PIL BICUBIC, the target is the crop itself. MSE loss, Adam (lr 3e-4, cosine decay), batch 32, 800
steps, fixed seeds, so a rerun writes the same file. The net starts as bicubic upscaling
(`bicubic_init`, the architecture is unchanged) and learns what bicubic misses; `--init orthogonal`
trains from the model's own init instead. `cat_chelsea.jpg` is held out: the script prints the PSNR of
the model and of plain bicubic upscaling on it (whole 450x300 image, Y channel, 0-1 range).

Reached on this machine (torch 2.14.1, 2 CPU cores), held-out cat:
    bicubic init (default):  model 32.07 dB vs bicubic 31.53 dB (+0.54 dB)
    `--init orthogonal --steps 1200 --lr 1e-3` (3.5 minutes):  model 31.75 dB (+0.21 dB)
"""

from __future__ import annotations

import argparse
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.zoo import SuperResolutionNet

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "sample_images"
OUT = ROOT / "notebooks" / "weights" / "super_resolution_x3.pth"
FACTOR = 3
HELD_OUT = "cat_chelsea"


def luma(path: Path, scale: float = 1.0) -> Image.Image:
    """The Y channel of an image (mode "L"), optionally downscaled first (more texture per crop)."""
    img = Image.open(path).convert("RGB")
    if scale != 1.0:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BICUBIC)
    return img.convert("YCbCr").getchannel(0)


def pair(y: Image.Image) -> tuple[np.ndarray, np.ndarray]:
    """(low-res input, target) in 0-1 for a Y image whose sides are multiples of FACTOR."""
    small = y.resize((y.width // FACTOR, y.height // FACTOR), Image.BICUBIC)
    return np.asarray(small, np.float32) / 255, np.asarray(y, np.float32) / 255


def bicubic_taps() -> torch.Tensor:
    """(3, 5): PIL's bicubic x3 upscaling in 1-D. Output pixel 3i+r is sum_d taps[r, d+2] * input[i+d]."""
    impulse = np.zeros((1, 11), np.float32)
    impulse[0, 5] = 1
    up = np.asarray(Image.fromarray(impulse, "F").resize((33, 1), Image.BICUBIC))[0]
    return torch.tensor([[up[FACTOR * (5 - d) + r] for d in range(-2, 3)] for r in range(FACTOR)])


def bicubic_init(model: SuperResolutionNet, offset: float = 0.5) -> None:
    """Start the net as bicubic upscaling: training then learns only what bicubic misses.

    Channels 0-8 of conv1 compute the 9 sub-pixel phases of bicubic x3 (5x5 kernels, plus `offset` so the
    ReLUs pass them unchanged), conv2 and conv3 copy them, conv4 takes the offset back off and the pixel
    shuffle interleaves them. The other channels keep their orthogonal init; every weight stays trainable.
    Without this, the same training reaches bicubic's PSNR only after ~500 steps.
    """
    taps = bicubic_taps()
    n = FACTOR * FACTOR
    with torch.no_grad():
        for ry in range(FACTOR):
            for rx in range(FACTOR):
                model.conv1.weight[ry * FACTOR + rx, 0] = torch.outer(taps[ry], taps[rx])
        model.conv1.bias[:n] = offset
        for conv in (model.conv2, model.conv3):
            conv.weight[:n] = 0
            conv.weight[:, :n] = 0
            conv.bias[:n] = 0
            for c in range(n):
                conv.weight[c, c, 1, 1] = 1
        model.conv4.weight.zero_()
        for c in range(n):
            model.conv4.weight[c, c, 1, 1] = 1
        model.conv4.bias.fill_(-offset)


def crops(images: list[Image.Image], n: int, size: int, rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """n random (input, target) crop pairs of `size` x `size` target pixels, with random flips."""
    xs, ys = [], []
    for _ in range(n):
        img = rng.choice(images)
        left, top = rng.randrange(img.width - size + 1), rng.randrange(img.height - size + 1)
        crop = img.crop((left, top, left + size, top + size))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_TOP_BOTTOM)
        x, y = pair(crop)
        xs.append(x)
        ys.append(y)
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None])


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return 10 * math.log10(1.0 / mse)


def evaluate(model: torch.nn.Module, y: Image.Image) -> tuple[float, float]:
    """PSNR (dB, Y channel in 0-1) of the model and of bicubic upscaling on one whole image."""
    y = y.crop((0, 0, y.width - y.width % FACTOR, y.height - y.height % FACTOR))
    small, target = pair(y)
    bicubic = np.asarray(Image.fromarray(np.uint8(small * 255 + 0.5)).resize(y.size, Image.BICUBIC),
                         np.float32) / 255
    with torch.no_grad():
        out = model(torch.from_numpy(small)[None, None])[0, 0].clamp(0, 1).numpy()
    return psnr(out, target), psnr(bicubic, target)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--crop", type=int, default=48, help="target crop size (a multiple of 3)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--init", choices=("bicubic", "orthogonal"), default="bicubic",
                        help="start as bicubic upscaling (default) or from the model's own orthogonal init")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    if args.crop % FACTOR:
        parser.error(f"--crop must be a multiple of {FACTOR}")

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    rng = random.Random(0)

    paths = sorted(IMAGES.glob("*.jpg"))
    train = [luma(p, s) for p in paths if p.stem != HELD_OUT for s in (1.0, 0.5)]
    held_out = luma(IMAGES / f"{HELD_OUT}.jpg")
    print(f"training on {len(paths) - 1} photos (+ half-size copies), holding out {HELD_OUT}")

    model = SuperResolutionNet(upscale_factor=FACTOR)
    if args.init == "bicubic":
        bicubic_init(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)
    loss_fn = torch.nn.MSELoss()
    # A fixed pool of crops, redrawn every few hundred steps: cropping with PIL is slower than a step.
    pool_size, refresh = 4096, 400
    start = time.perf_counter()
    for step in range(args.steps):
        if step % refresh == 0:
            pool_x, pool_y = crops(train, pool_size, args.crop, rng)
        idx = torch.randint(0, pool_size, (args.batch,))
        model.train()
        loss = loss_fn(model(pool_x[idx]), pool_y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if (step + 1) % 200 == 0 or step + 1 == args.steps:
            model.eval()
            ours, bicubic = evaluate(model, held_out)
            print(f"step {step + 1:5d}  loss {loss.item():.5f}  {HELD_OUT}: model {ours:.2f} dB, "
                  f"bicubic {bicubic:.2f} dB  ({time.perf_counter() - start:.0f} s)", flush=True)

    model.eval()
    ours, bicubic = evaluate(model, held_out)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"held-out {HELD_OUT} (Y channel, x{FACTOR}): model PSNR {ours:.2f} dB, bicubic {bicubic:.2f} dB "
          f"({ours - bicubic:+.2f} dB)")
    print(f"saved {args.out} ({args.out.stat().st_size / 1024:.0f} KB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
