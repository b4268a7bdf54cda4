"""ncnn export: the model (without preprocessing: ncnn applies it) to ONNX, then pnnx to .ncnn.param/.bin."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from ...errors import WorkbenchError, require
from ...files import atomic_output
from ..base import Artifact, ExportSpec
from ..common.mean_norm import mean_norm_note, onnx_for
from .files import bin_path


def export_ncnn(spec: ExportSpec, path: Path, *, precision: str = "fp32", overwrite: bool = False) -> Artifact:
    """Write `spec` as NAME.ncnn.param + NAME.ncnn.bin (`path` is the .param). The preprocessing is not in
    the files: ncnn applies it (see the artifact's notes for the mean/norm to give it).

    Raises WorkbenchError when the ONNX export or pnnx fails, naming pnnx's last message.
    """
    pnnx = require("pnnx", "pnnx ncnn")
    path = Path(path)
    if not path.name.endswith(".param"):
        raise WorkbenchError(f"an ncnn model is NAME.ncnn.param + NAME.ncnn.bin; {path.name} does not end in "
                             ".param: name it {path.stem}.ncnn.param")
    weights = bin_path(path)
    for existing in (path, weights):  # both refused before either is written
        if existing.exists() and not overwrite:
            raise WorkbenchError(f"{existing} already exists; pass overwrite=True (CLI: --overwrite) to replace it")
    with tempfile.TemporaryDirectory(prefix="workbench-ncnn-") as tmp:
        folder = Path(tmp)
        onnx_path = onnx_for(spec, folder)
        shape = ",".join(map(str, spec.input_shape))
        # every output pnnx writes is named, so nothing lands beside the user's files
        command = [pnnx.EXEC_PATH, str(onnx_path), f"inputshape=[{shape}]", f"fp16={int(precision == 'fp16')}",
                   *(f"{k}={folder / v}" for k, v in (
                       ("ncnnparam", "m.ncnn.param"), ("ncnnbin", "m.ncnn.bin"), ("ncnnpy", "m_ncnn.py"),
                       ("pnnxparam", "m.pnnx.param"), ("pnnxbin", "m.pnnx.bin"), ("pnnxpy", "m_pnnx.py"),
                       ("pnnxonnx", "m.pnnx.onnx")))]
        proc = subprocess.run(command, capture_output=True, text=True, cwd=folder, stdin=subprocess.DEVNULL)
        param, binary = folder / "m.ncnn.param", folder / "m.ncnn.bin"
        if proc.returncode != 0 or not param.exists() or not binary.exists():
            lines = [ln.strip() for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
            raise WorkbenchError(f"pnnx could not convert the model to ncnn (exit code {proc.returncode}): "
                                 f"{lines[-1] if lines else 'no message'}")
        # the weights first: a reader that finds the new .param finds its .bin
        with atomic_output(weights, overwrite=overwrite) as out:
            out.write_bytes(binary.read_bytes())
        with atomic_output(path, overwrite=overwrite) as out:
            out.write_bytes(param.read_bytes())
    notes = [n for n in (mean_norm_note("ncnn", spec, "substract_mean_normalize"),) if n]
    if precision == "fp16":
        notes.append("fp16: weights stored in half precision, ncnn computes in it where the CPU can "
                     "(errors up to ~3e-3 of range); fp32 for parity")
    return Artifact("ncnn", path, spec.input_name, spec.output_names, spec.input_shape, spec.preprocess,
                    precision=precision, notes=tuple(notes))
