"""ExecuTorch export: torch.export here, lowering to a .pte in the Android tools env (XNNPACK first)."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

from ...diagnose import conversion_error
from ...files import atomic_output
from ..base import Artifact, ExportSpec, quiet
from .tools import HERE, convert

# Measured on the super-resolution net (32x32, the sample images): the graph is fp16 end to end and only the
# input and outputs are cast (exact for 0-255 pixels; widening at the end), so the error is the kernels'. On a
# CPU with fp16 arithmetic (AVX512-FP16 here, ARMv8.2 on phones) XNNPACK's fp16 convolutions accumulate in fp16:
# its first 5x5 convolution alone is 9.1e-4 of range off, exactly what summing its 25 taps in fp16 gives (torch's
# half sums in float32: 2.3e-4), and depth compounds it.
FP16_NOTE = ("fp16: XNNPACK computes in half precision and, on a CPU with fp16 arithmetic (phones since ARMv8.2; "
             "AVX512-FP16), accumulates its sums in half precision too: 2.7e-2 of range on the super-resolution "
             "net where torch's half (float32 sums) is 2.8e-3 and the portable kernels 5e-2. A limit of fp16 "
             "sums, not of the lowering (only the input and outputs are cast); expect it above the 1e-2 fp16 "
             "tolerance on deep nets; fp32 for parity")


@contextlib.contextmanager
def saved_program(program):
    """`program` saved to a temporary .pt2, for a converter in the tools env to load; removed after."""
    import torch

    with tempfile.TemporaryDirectory(prefix="workbench-program-") as tmp:
        saved = Path(tmp) / "program.pt2"
        torch.export.save(program, saved)
        yield saved


def export_program(module, x, *, what: str, source: str = ""):
    """`module` captured by torch.export on example input `x` (a WorkbenchError naming the op if not)."""
    import torch

    try:
        with warnings.catch_warnings(), quiet("torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                                              "torch.export"):
            warnings.simplefilter("ignore")
            return torch.export.export(module, (x,))
    except Exception as exc:
        raise conversion_error(what, exc, module=source) from exc


def half(module):
    """`module` computing in float16 between a float32 input and float32 outputs (fp16 precision)."""
    import copy

    import torch

    class Half(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = copy.deepcopy(inner).half()

        def forward(self, x):
            return tuple(o.float() for o in self.inner(x.half()))

    return Half(module).eval()


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
