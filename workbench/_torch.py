"""Small torch modules the exporters wrap models in. Imported only where torch is needed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class Affine(nn.Module):
    """``x * scale[c] + bias[c]`` per channel of an (N, C, H, W) input."""

    def __init__(self, scale: Sequence[float], bias: Sequence[float]):
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float32).reshape(1, -1, 1, 1))
        self.register_buffer("bias", torch.tensor(bias, dtype=torch.float32).reshape(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.bias


class Exportable(nn.Module):
    """A model as exporters need it: optional normalization in front, outputs as a flat tuple after.

    `output_names` fixes the order of dict outputs (DeepLabV3's ``out``/``aux``); `post` maps each output
    (softmax for a Core ML classifier, deprocessing for an image output).
    """

    def __init__(self, model: nn.Module, output_names: Sequence[str], pre: nn.Module | None = None,
                 post: dict[str, nn.Module] | None = None):
        super().__init__()
        self.model = model
        self.pre = pre
        self.output_names = list(output_names)
        self.post = nn.ModuleDict(post or {})

    def forward(self, x):
        if self.pre is not None:
            x = self.pre(x)
        out = self.model(x)
        if isinstance(out, dict):
            outs = [out[name] for name in self.output_names]
        elif isinstance(out, (tuple, list)):
            outs = list(out)
        else:
            outs = [out]
        return tuple(self.post[n](o) if n in self.post else o for n, o in zip(self.output_names, outs))


class Deprocess(nn.Module):
    """Maps a model's image output to 0-255 pixels: ``y * scale + bias``, clamped."""

    def __init__(self, scale: float, bias: float):
        super().__init__()
        self.scale, self.bias = float(scale), float(bias)

    def forward(self, y):
        return torch.clamp(y * self.scale + self.bias, 0.0, 255.0)
