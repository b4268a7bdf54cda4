"""Random sampling (ops/defs/iOS15/random.py): random_bernoulli, random_categorical, random_normal,
random_uniform.

The distributions are MIL's; the values cannot match a device bit for bit (Core ML's generator is not
PyTorch's). A `seed` other than -1 seeds a fresh generator on every call, so a seeded op gives the same
values on every predict, as a seeded op does on a device; seed -1 draws from PyTorch's global generator.
"""

from __future__ import annotations

import torch

from ..registry import op
from ._util import ints, scalar, tensor


def _generator(seed) -> torch.Generator | None:
    seed = int(scalar(seed))
    return None if seed == -1 else torch.Generator().manual_seed(seed)


@op("random_bernoulli")
def random_bernoulli(shape, prob=0.5, seed=-1):
    p = torch.full(ints(shape), float(scalar(prob)))
    return torch.bernoulli(p, generator=_generator(seed))


@op("random_normal")
def random_normal(shape, mean=0.0, stddev=1.0, seed=-1):
    z = torch.randn(ints(shape), generator=_generator(seed))
    return z * float(scalar(stddev)) + float(scalar(mean))


@op("random_uniform")
def random_uniform(shape, low=0.0, high=1.0, seed=-1):
    """Uniform on [low, high); low when high == low."""
    u = torch.rand(ints(shape), generator=_generator(seed))
    low, high = float(scalar(low)), float(scalar(high))
    return low + u * (high - low)


@op("random_categorical")
def random_categorical(x, mode="logits", size=1, seed=-1):
    """`size` class indices per distribution (the last axis), drawn with replacement, as floats."""
    x = tensor(x).float()
    probs = torch.softmax(x, -1) if scalar(mode) == "logits" else x / x.sum(-1, keepdim=True)
    flat = probs.reshape(-1, probs.shape[-1])
    draws = torch.multinomial(flat, int(scalar(size)), replacement=True, generator=_generator(seed))
    return draws.reshape(*x.shape[:-1], -1).to(torch.float32)
