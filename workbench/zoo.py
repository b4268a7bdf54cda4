"""Small models from the seed tutorials, defined here so notebooks, tests and users share one copy.

- `SuperResolutionNet`: PyTorch's example super-resolution net (the ONNX/Caffe2 tutorial), on the Y channel.
- `UnetGenerator`: a pix2pix-style U-Net generator with Normalize(0.5, 0.5) input and tanh output.
- `SmallCNN`: a compact image classifier (the CIFAR/AlexNet seed, scaled to what trains on a CPU).
- `PitfallNet`: upsampling and MaxPool2d(ceil_mode=True), the ops the conversion-pitfalls seed fought.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import init


class SuperResolutionNet(nn.Module):
    """From pytorch/examples super_resolution, as the seed tutorial uses it (1 channel in, upscale x r)."""

    def __init__(self, upscale_factor: int = 3):
        super().__init__()
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv2d(1, 64, 5, 1, 2)
        self.conv2 = nn.Conv2d(64, 64, 3, 1, 1)
        self.conv3 = nn.Conv2d(64, 32, 3, 1, 1)
        self.conv4 = nn.Conv2d(32, upscale_factor ** 2, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(upscale_factor)
        init.orthogonal_(self.conv1.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv2.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv3.weight, init.calculate_gain("relu"))
        init.orthogonal_(self.conv4.weight)

    def forward(self, x):
        x = self.relu(self.conv1(x))
        x = self.relu(self.conv2(x))
        x = self.relu(self.conv3(x))
        return self.pixel_shuffle(self.conv4(x))


class _Down(nn.Sequential):
    def __init__(self, cin, cout, norm=True):
        layers = [nn.Conv2d(cin, cout, 4, 2, 1, bias=not norm)]
        if norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.LeakyReLU(0.2))
        super().__init__(*layers)


class _Up(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class UnetGenerator(nn.Module):
    """A U-Net generator as in pix2pix (`UnetGenerator(3, 3, num_downs)` in the seed), kept small.

    Input: Normalize(0.5, 0.5) images in [-1, 1]; output: tanh, in [-1, 1]. Spatial size must be
    divisible by 2**num_downs.
    """

    def __init__(self, input_nc: int = 3, output_nc: int = 3, num_downs: int = 4, ngf: int = 16):
        super().__init__()
        chans = [min(ngf * 2 ** i, ngf * 8) for i in range(num_downs)]
        self.downs = nn.ModuleList(
            [_Down(input_nc, chans[0], norm=False)] + [_Down(chans[i - 1], chans[i]) for i in range(1, num_downs)])
        self.ups = nn.ModuleList(
            [_Up(chans[i] * (1 if i == num_downs - 1 else 2), chans[i - 1]) for i in range(num_downs - 1, 0, -1)])
        self.last = nn.ConvTranspose2d(chans[0] * 2, output_nc, 4, 2, 1)

    def forward(self, x):
        skips = []
        for down in self.downs:
            x = down(x)
            skips.append(x)
        skips.pop()
        for up in self.ups:
            x = torch.cat([up(x), skips.pop()], dim=1)
        return torch.tanh(self.last(x))


class SmallCNN(nn.Module):
    """A small classifier: three conv blocks and a linear head; `in_channels` 1 (digits) or 3."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width * 2, width * 4, 3, padding=1), nn.BatchNorm2d(width * 4), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(width * 4, num_classes)

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class PitfallNet(nn.Module):
    """Encoder-decoder with the ops the conversion-pitfalls seed had to rewrite.

    `ceil_mode`: MaxPool2d(ceil_mode=True) on odd sizes. `upsample`: "bilinear" (align_corners=False),
    "bilinear_ac" (align_corners=True), "nearest", "bicubic", or "transpose" (ConvTranspose2d, the seed's
    workaround). Output: a 1-channel saliency map in [0, 1] at the input size.
    """

    def __init__(self, upsample: str = "bilinear", ceil_mode: bool = True, width: int = 8):
        super().__init__()
        self.upsample = upsample
        self.enc1 = nn.Sequential(nn.Conv2d(3, width, 3, padding=1), nn.ReLU())
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=ceil_mode)
        self.enc2 = nn.Sequential(nn.Conv2d(width, width * 2, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(width * 2, width * 2, 2, 2) if upsample == "transpose" else None
        self.head = nn.Conv2d(width * 3, 1, 3, padding=1)

    def forward(self, x):
        a = self.enc1(x)
        b = self.enc2(self.pool(a))
        if self.up is not None:
            b = self.up(b)[..., : a.shape[2], : a.shape[3]]
        else:
            mode = "bilinear" if self.upsample.startswith("bilinear") else self.upsample
            kw = {"align_corners": self.upsample == "bilinear_ac"} if mode in ("bilinear", "bicubic") else {}
            b = nn.functional.interpolate(b, size=a.shape[2:], mode=mode, **kw)
        return torch.sigmoid(self.head(torch.cat([a, b], dim=1)))
