"""Checking an ExecuTorch .pte: its header, then ExecuTorch's own loader (in the tools env)."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError

HERE = Path(__file__).resolve().parent  # the tools-env scripts beside this file


def check_header(path: Path) -> None:
    """A .pte is a flatbuffer with file identifier 'ET' + version at bytes 4-8."""
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8 or head[4:6] != b"ET":
        raise WorkbenchError(f"{path} is not an ExecuTorch program (no 'ET' identifier at byte 4; truncated or "
                             "another format?). Export it again")


def check_pte(path: Path) -> str:
    """Load `path` with ExecuTorch's runtime; a WorkbenchError naming the file if it cannot."""
    from ..common.tools_env import Worker

    check_header(path)
    worker = Worker(HERE / "_serve.py", [str(path)], what="ExecuTorch", packages="executorch")
    shapes = worker.reply
    worker.close()
    return f"ExecuTorch program: input {shapes['inputs']}, outputs {shapes['outputs']}"
