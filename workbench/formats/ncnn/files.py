"""An ncnn model on disk: NAME.ncnn.param (the graph: the artifact's path) and NAME.ncnn.bin (the weights)."""

from __future__ import annotations

from pathlib import Path


def bin_path(param: Path) -> Path:
    """NAME.ncnn.param's weights: NAME.ncnn.bin beside it."""
    return param.with_name(param.name[:-len(".param")] + ".bin" if param.name.endswith(".param")
                           else param.name + ".bin")


def files(path: Path, options: dict | None = None) -> list[Path]:
    """The .param and its .bin (an export writes both)."""
    return [path, bin_path(path)]
