"""Checking an MNN model: MNN's own loader reads and verifies it."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from ...errors import WorkbenchError, first_line, require


@contextlib.contextmanager
def native_quiet():
    """MNN prints from C++ to the process's stdout ("The device supports: ...", "MNN use high precision"),
    which would land inside `workbench check --json`: file descriptors 1 and 2 go to /dev/null meanwhile."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved + [null]:
            os.close(fd)


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
