"""LiteRT export: torch.export here, litert-torch in the Android tools env (see common/tools_env.py)."""

from __future__ import annotations

from pathlib import Path

from ...files import atomic_output
from ..base import Artifact, ExportSpec
from ..common.pytorch import export_program, saved_program
from ..common.tools_env import convert

HERE = Path(__file__).resolve().parent


def export_litert(spec: ExportSpec, path: Path, *, precision: str = "fp32", overwrite: bool = False) -> Artifact:
    """Write `spec` as a .tflite with the preprocessing (if any) in the graph, NCHW in and out as in PyTorch.

    precision "fp16" stores the weights in half precision. Raises WorkbenchError when torch.export or
    litert-torch fails, or the tools env is missing.
    """
    model = spec.wrapped(bake=spec.preprocess)
    x = spec.example_input(pixels=spec.preprocess is not None)
    program = export_program(model, x, what="LiteRT (torch.export)", source=spec.source)
    with saved_program(program) as saved, atomic_output(path, overwrite=overwrite) as out:
        result = convert(HERE / "_convert.py", {"program": str(saved), "out": str(out), "precision": precision},
                         what="LiteRT conversion (litert-torch)", packages="litert-torch")
    notes = list(result["notes"])
    if precision == "fp16":
        notes.append("fp16: weights stored in half precision; fp32 for parity")
    return Artifact("litert", Path(path), spec.input_name, spec.output_names, tuple(x.shape), spec.preprocess,
                    precision=precision, notes=tuple(notes))
