"""What a Core AI artifact is made of on disk (for sizes and clash checks)."""

from __future__ import annotations

from pathlib import Path


def files(path: str | Path) -> list[Path]:
    """Every file and folder of the `.aimodel` at `path`: the folder itself first, then what it holds
    (main.mlirb, main.hash, metadata.json, and any build Apple's tools left in it), sorted."""
    path = Path(path)
    if not path.is_dir():
        return [path] if path.exists() else []
    return [path, *sorted(p for p in path.rglob("*"))]
