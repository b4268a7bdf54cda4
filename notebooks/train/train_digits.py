"""Train `workbench.zoo.SmallCNN(num_classes=10, in_channels=1, width=16)` on scikit-learn's digits.

Notebook 03 loads what this writes: `notebooks/weights/digits_cnn.pth` (a state_dict),
`notebooks/weights/digits_labels.txt` (0..9, one per line) and six held-out test digits as PNG files in
`notebooks/digit_images/` (its sample images). The seed (a CIFAR-10 AlexNet converted to a Core ML
classifier with labels) trained on a dataset that needs a download; `load_digits()` ships inside
scikit-learn, so this runs offline.

Run from the repository root (CPU, about 15 seconds), with scikit-learn installed (the `train` extra):

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python notebooks/train/train_digits.py

Input: `load_digits()` gives 8x8 images with values 0-16 (white digit on black). Each is scaled to 0-255
and upscaled to 32x32 with PIL bilinear, so the model takes a 32x32 grayscale image with x/255
preprocessing: the workbench's `Preprocess.preset("gray", size=(32, 32))`. The PNG files are those exact
32x32 images, so the workbench feeds the model what it was trained on. Train/test split 80/20,
stratified, fixed seed; Adam; 15 epochs (one-cycle schedule) with random shifts of up to 2 pixels.

Reached on this machine (torch 2.14.1, 2 CPU cores): test accuracy 99.72% (359/360), printed at the end.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from workbench.zoo import SmallCNN

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "notebooks" / "weights"
DIGITS = ROOT / "notebooks" / "digit_images"
SIZE = 32
SHOWN = (0, 2, 3, 5, 7, 9)  # the classes of the six test digits saved as PNG


def to_image(digit: np.ndarray) -> Image.Image:
    """An 8x8 digit (0-16) as a 32x32 grayscale image (0-255), upscaled with PIL bilinear."""
    small = Image.fromarray(np.uint8(np.round(digit * 255.0 / 16.0)), mode="L")
    return small.resize((SIZE, SIZE), Image.BILINEAR)


def tensor(images: list[Image.Image]) -> torch.Tensor:
    """The model input: (N, 1, 32, 32) float32, x/255 (the "gray" preset)."""
    return torch.from_numpy(np.stack([np.asarray(i, np.float32) / 255.0 for i in images])[:, None])


def shift(x: torch.Tensor, max_shift: int = 2) -> torch.Tensor:
    """Random translations of up to `max_shift` pixels (zero padding), one per image."""
    n = x.shape[0]
    padded = torch.nn.functional.pad(x, [max_shift] * 4)
    dx = torch.randint(0, 2 * max_shift + 1, (n,))
    dy = torch.randint(0, 2 * max_shift + 1, (n,))
    return torch.stack([padded[i, :, dy[i]:dy[i] + SIZE, dx[i]:dx[i] + SIZE] for i in range(n)])


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    args = parser.parse_args()

    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    digits = load_digits()
    images = [to_image(d) for d in digits.images]
    idx_train, idx_test = train_test_split(np.arange(len(images)), test_size=0.2, random_state=0,
                                           stratify=digits.target)
    x_train, y_train = tensor([images[i] for i in idx_train]), torch.from_numpy(digits.target[idx_train])
    x_test, y_test = tensor([images[i] for i in idx_test]), torch.from_numpy(digits.target[idx_test])
    print(f"{len(idx_train)} training and {len(idx_test)} test digits, {SIZE}x{SIZE} grayscale, x/255")

    model = SmallCNN(num_classes=10, in_channels=1, width=16)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps = args.epochs * ((len(x_train) + args.batch - 1) // args.batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=args.lr, total_steps=steps)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(x_train))
        total = 0.0
        for b in range(0, len(order), args.batch):
            batch = order[b:b + args.batch]
            loss = loss_fn(model(shift(x_train[batch])), y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}  loss {total / len(x_train):.4f}  test accuracy "
              f"{accuracy(model, x_test, y_test):.2%}  ({time.perf_counter() - start:.0f} s)", flush=True)

    acc = accuracy(model, x_test, y_test)
    correct = int(round(acc * len(y_test)))
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), WEIGHTS / "digits_cnn.pth")
    (WEIGHTS / "digits_labels.txt").write_text("".join(f"{k}\n" for k in range(10)), encoding="utf-8")

    # Six test digits (never trained on) as the notebook's sample images: the first test digit of each class.
    DIGITS.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        predicted = model(x_test).argmax(1)
    for label in SHOWN:
        j = int(np.flatnonzero(digits.target[idx_test] == label)[0])
        name = f"digit_{label}_0.png"
        images[idx_test[j]].save(DIGITS / name)
        print(f"wrote {DIGITS.relative_to(ROOT) / name} (load_digits index {idx_test[j]}, "
              f"predicted {int(predicted[j])})")
    print(f"test accuracy {acc:.2%} ({correct}/{len(y_test)}); saved {WEIGHTS.relative_to(ROOT)}/digits_cnn.pth "
          f"({(WEIGHTS / 'digits_cnn.pth').stat().st_size / 1024:.0f} KB) in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
