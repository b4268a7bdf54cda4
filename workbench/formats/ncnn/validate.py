"""Checking an ncnn model: NAME.ncnn.param (magic 7767517, then the layers) and NAME.ncnn.bin beside it,
each loaded by ncnn itself."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError, require
from .files import bin_path

MAGIC = "7767517"


def load(path: Path, *, fp16: bool = False, threads: int = 1):
    """An ncnn.Net holding `path` and its .bin; a WorkbenchError naming the file and the fix if not."""
    ncnn = require("ncnn", "ncnn")
    path = Path(path)
    weights = bin_path(path)
    try:
        first = path.read_text(errors="replace").split("\n", 1)[0].strip()
    except OSError as exc:
        raise WorkbenchError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if first != MAGIC:
        raise WorkbenchError(f"{path} is not an ncnn .param file (its first line is {first[:20]!r}, not the magic "
                             f"{MAGIC}); export it again")
    if not weights.is_file():
        raise WorkbenchError(f"{path}'s weights {weights.name} are missing from {path.parent}; copy the .bin next "
                             "to the .param, or export again")
    net = ncnn.Net()
    net.opt.num_threads = int(threads)
    for flag in ("use_fp16_packed", "use_fp16_storage", "use_fp16_arithmetic"):
        setattr(net.opt, flag, fp16)
    net.opt.use_bf16_storage = False
    if net.load_param(str(path)) != 0:
        raise WorkbenchError(f"ncnn cannot parse {path} (truncated or corrupt?); export it again")
    if net.load_model(str(weights)) != 0:
        raise WorkbenchError(f"ncnn cannot load the weights {weights} (truncated, or not this .param's?); "
                             "export it again")
    return net


def check_ncnn(path: Path) -> str:
    net = load(path)
    return f"ncnn model: inputs {list(net.input_names())}, outputs {list(net.output_names())}, weights in " \
           f"{bin_path(Path(path)).name}"
