"""Checking an MNN model: MNN's own loader reads and verifies it."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError, first_line, require
from ..base import native_quiet


def load(path: Path):
    """An MNN.Interpreter of `path`; a WorkbenchError naming the file and the fix if MNN cannot read it."""
    with native_quiet():
        MNN = require("MNN", "MNN")
    try:
        with native_quiet():
            return MNN.Interpreter(str(path))
    except Exception as exc:
        raise WorkbenchError(f"MNN cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                             "Export it again") from exc


def check_mnn(path: Path) -> str:
    interp = load(path)
    with native_quiet():
        session = interp.createSession({"numThread": 1, "backend": "CPU"})
    inputs = {k: v.getShape() for k, v in interp.getSessionInputAll(session).items()}
    outputs = {k: v.getShape() for k, v in interp.getSessionOutputAll(session).items()}
    return f"MNN model: inputs {inputs}, outputs {outputs}"
