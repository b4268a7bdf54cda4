"""Checking a LiteRT .tflite: its flatbuffer identifier, then LiteRT's own loader (which verifies it)."""

from __future__ import annotations

import warnings
from pathlib import Path

from ...errors import WorkbenchError, first_line, require
from ..base import native_quiet


def load(path: Path, *, threads: int = 1, preserve_all_tensors: bool = False):
    """A LiteRT Interpreter of `path`, tensors allocated; a WorkbenchError naming the file if not.
    preserve_all_tensors: keep every intermediate tensor readable after `invoke` (the per-layer locator)."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise WorkbenchError(f"{path} is not a LiteRT/TFLite model (no 'TFL3' identifier at byte 4; truncated or "
                             "another format?). Export it again")
    require("ai_edge_litert", "ai-edge-litert")
    from ai_edge_litert.interpreter import Interpreter

    try:
        # native_quiet: "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on stderr; the warning that
        # preserving tensors is for debugging is what it is asked for here
        with native_quiet(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*experimental_preserve_all_tensors")
            interp = Interpreter(model_path=str(path), num_threads=int(threads),
                                 experimental_preserve_all_tensors=preserve_all_tensors)
            interp.allocate_tensors()
    except Exception as exc:
        raise WorkbenchError(f"LiteRT cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                             "Export it again") from exc
    return interp


def check_tflite(path: Path) -> str:
    interp = load(path)
    ins = [[int(v) for v in d["shape"]] for d in interp.get_input_details()]
    outs = [[int(v) for v in d["shape"]] for d in interp.get_output_details()]
    return f"LiteRT model: inputs {ins}, outputs {outs}"
