"""A Core ML artifact on disk: an .mlpackage folder (an ML program) or an .mlmodel file (a neural network)."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError

NEURALNETWORK_TARGETS = frozenset({"iOS13", "iOS14", "macOS10_15", "macOS11"})


def files(path: Path, options: dict | None = None) -> list[Path]:
    """The artifact at `path`; given export options, what an export there writes: an iOS 13/14 target gives a
    neural network, written as NAME.mlmodel whatever `path`'s suffix."""
    if options is None:
        return [path]
    neuralnetwork = options.get("target", "iOS16") in NEURALNETWORK_TARGETS
    return [path.with_suffix(".mlmodel" if neuralnetwork else ".mlpackage")]


def netron_file(path: Path) -> Path:
    """The file Netron opens: an .mlpackage's model.mlmodel (Netron reads its weights beside it)."""
    if not path.is_dir():
        return path
    inner = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
    if not inner.is_file():
        raise WorkbenchError(f"{path} has no Data/com.apple.CoreML/model.mlmodel; is it an .mlpackage?")
    return inner
