"""ExecuTorch export: torch.export here, lowering to a .pte in the Android tools env (XNNPACK first)."""

from __future__ import annotations

from pathlib import Path

from ...files import atomic_output
from ..base import Artifact, ExportSpec
from ..common.pytorch import export_program, half, saved_program
from ..common.tools_env import convert

HERE = Path(__file__).resolve().parent  # the tools-env scripts beside this file

# The graph is fp16 end to end and only the input and outputs are cast (exact for 0-255 pixels; widening at the
# end), so the error is the kernels': on a CPU with fp16 arithmetic (AVX512-FP16, ARMv8.2 on phones) XNNPACK's
# fp16 convolutions accumulate in fp16, where torch's half sums in float32 (docs/formats.md has the figures).
FP16_NOTE = ("fp16: the model runs in half precision (only the input and outputs are cast). On a CPU with fp16 "
             "arithmetic (phones since ARMv8.2; AVX512-FP16) XNNPACK also sums in half precision, which can put deep "
             "nets beyond the 1e-2 fp16 tolerance, a limit of fp16 sums rather than of the lowering; what this "
             "machine gives is in the parity figures. fp32 for parity")



def export_executorch(spec: ExportSpec, path: Path, *, precision: str = "fp32", delegate: str = "xnnpack",
                      overwrite: bool = False) -> Artifact:
    """Write `spec` as an ExecuTorch program: the preprocessing (if any) in the graph, XNNPACK delegate
    where it takes the ops (the portable kernels run the rest; the notes say which).

    precision "fp16" runs the model in half precision (input and outputs stay float32). Raises
    WorkbenchError when torch.export or the lowering fails, or the tools env is missing.
    """
    model = spec.wrapped(bake=spec.preprocess)
    if precision == "fp16":
        model = half(model)
    x = spec.example_input(pixels=spec.preprocess is not None)
    program = export_program(model, x, what="ExecuTorch (torch.export)", source=spec.source)
    with saved_program(program) as saved, atomic_output(path, overwrite=overwrite) as out:
        result = convert(HERE / "_convert.py", {"program": str(saved), "out": str(out), "delegate": delegate},
                         what="ExecuTorch conversion", packages="executorch")
    notes = list(result["notes"])
    if precision == "fp16":
        notes.append(FP16_NOTE)
    # the exported module stays with the artifact (in memory): the int8 variant quantizes it
    return Artifact("executorch", path, spec.input_name, spec.output_names, tuple(x.shape), spec.preprocess,
                    precision=precision, notes=tuple(notes), traced=(model, spec.preprocess is not None))
