"""What a Core AI artifact is made of on disk (for sizes and clash checks): its `.aimodel` folder."""

from __future__ import annotations

from pathlib import Path


def files(path: str | Path, options: dict | None = None) -> list[Path]:
    """The `.aimodel` folder at `path`, which holds the whole asset (main.mlirb, main.hash, metadata.json).

    The folder alone, not its contents as well: sizes sum a folder's files, so listing them too would count them
    twice. Every export option writes the same folder at `path` (precision and compression change what is in it,
    not where), so `options` change nothing."""
    return [Path(path)]
