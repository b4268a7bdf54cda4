"""Checking a TorchScript file: a zip archive holding TorchScript code, which torch can load."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

from ...errors import WorkbenchError, first_line


def is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in z.namelist())


def load(path: Path):
    """The TorchScript module in `path`, or a WorkbenchError saying it is not one or is damaged."""
    import torch

    if not is_torchscript(path):
        raise WorkbenchError(f"{path} is not a TorchScript archive (torch.jit.save writes one); export it again")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated": we know
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise WorkbenchError(
            f"{path} is a TorchScript archive that failed to load (truncated or corrupt?): {first_line(exc)}. "
            "Save or download it again") from exc


def check_torchscript(path: Path) -> None:
    load(path)
