"""Small conversions shared by the kernels."""

from __future__ import annotations

import numpy as np
import torch


def ints(value) -> list[int]:
    """A constant or tensor of integers as a Python list."""
    if isinstance(value, torch.Tensor):
        return [int(v) for v in value.reshape(-1).tolist()]
    return [int(v) for v in np.asarray(value).reshape(-1)]


def scalar(value):
    """A constant scalar (numpy, tensor or Python) as a Python number or bool."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.reshape(-1)[0].item()
    if isinstance(value, np.generic):
        return value.item()
    return value


def tensor(value) -> torch.Tensor:
    """A value as a torch tensor (float arrays are already tensors; integer constants become int64)."""
    if isinstance(value, torch.Tensor):
        return value
    arr = np.asarray(value)
    if arr.dtype == np.float64 or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(arr)).reshape(arr.shape)  # ascontiguousarray makes 0-d 1-d


def norm_axis(value, rank: int) -> int:
    a = int(scalar(value))
    return a + rank if a < 0 else a
