"""MNN export: the model (without preprocessing: MNN applies it) to ONNX, then MNN's converter in process.

MNN's `mnnconvert` console script and `MNN.tools.mnnconvert` import a logger that runs `pip install` when
its SDK is missing and sends usage logs to a remote endpoint: the workbench calls the converter's native
entry point (`_tools.mnnconvert`) directly, which does neither.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ...errors import WorkbenchError, first_line, require
from ...files import atomic_output
from ..base import Artifact, ExportSpec, native_quiet
from ..common.mean_norm import mean_norm_note, onnx_for


def convert(source: Path, out: Path, *, fp16: bool = False, source_format: str = "ONNX",
            extra: tuple[str, ...] = ()) -> None:
    """MNN's converter on `source` (an ONNX export, or an .mnn with `source_format="MNN"`), writing `out` with
    the converter's `extra` flags; WorkbenchError when it fails."""
    with native_quiet():
        require("MNN", "MNN")
        import _tools  # MNN's converter, shipped in the MNN wheel; not MNN.tools (its logger phones home)

    what = "the ONNX export" if source_format == "ONNX" else str(source)
    argv = ["mnnconvert", "-f", source_format, "--modelFile", str(source), "--MNNModel", str(out),
            "--bizCode", "workbench"] + (["--fp16"] if fp16 else []) + list(extra)
    try:
        with native_quiet():
            ok = _tools.mnnconvert(argv)
    except Exception as exc:
        raise WorkbenchError(f"MNN's converter failed on {what}: {first_line(exc)}") from exc
    if not ok or not out.exists() or out.stat().st_size == 0:
        raise WorkbenchError(f"MNN's converter could not convert {what} (an op MNN lacks?); run MNN's converter "
                             "by hand on it to see its log")


def export_mnn(spec: ExportSpec, path: Path, *, precision: str = "fp32", overwrite: bool = False) -> Artifact:
    """Write `spec` as an .mnn model. The preprocessing is not in the file: MNN applies it (the artifact's
    notes give the mean/normal). Raises WorkbenchError when the ONNX export or the converter fails."""
    with tempfile.TemporaryDirectory(prefix="workbench-mnn-") as tmp:
        onnx_path = onnx_for(spec, Path(tmp))
        with atomic_output(path, overwrite=overwrite) as out:
            convert(onnx_path, out, fp16=precision == "fp16")
    notes = [n for n in (mean_norm_note("MNN", spec, "CVImageProcess", "normal"),) if n]
    if precision == "fp16":
        notes.append("fp16: weights stored in half precision (MNN's --fp16; errors up to ~3% of range); "
                     "fp32 for parity")
    return Artifact("mnn", Path(path), spec.input_name, spec.output_names, spec.input_shape, spec.preprocess,
                    precision=precision, notes=tuple(notes))
