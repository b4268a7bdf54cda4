"""What formats share around torch: the trace Core ML and TorchScript convert, the torch.export program that
ExecuTorch and LiteRT lower, and the runner of an nn.Module (PyTorch's reference side, TorchScript files)."""

from __future__ import annotations

import contextlib
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ...diagnose import conversion_error
from ...errors import WorkbenchError, first_line
from ..base import ExportSpec, Runner, named_outputs, quiet


def trace(spec: ExportSpec, *, bake=None, post=None, check_trace: bool = True):
    """The spec's model traced, as Core ML's converter and this exporter use it.

    Returns (traced module, example input, notes); the notes carry the tracer's warnings, because a trace
    through data-dependent control flow keeps one branch and still matches on inputs that take it.
    check_trace: torch's own check (trace again, run both on the example input, compare), most of a trace's
    time (bench/first_render.py). Skip it only where the outputs are compared with PyTorch's right after.
    """
    import torch

    model = spec.wrapped(bake=bake, post=post)
    x = spec.example_input(pixels=bake is not None)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", torch.jit.TracerWarning)
            with torch.no_grad():
                traced = torch.jit.trace(model, x, strict=False, check_trace=check_trace)
    except Exception as exc:
        raise conversion_error("TorchScript trace", exc, module=spec.source) from exc
    notes = sorted({_trace_note(first_line(w.message)) for w in caught
                    if issubclass(w.category, torch.jit.TracerWarning)})
    return traced, x, tuple(notes)


def _trace_note(message: str) -> str:
    if message.startswith("Output nr"):  # torch's check ran the trace and the model: they disagree
        why = "the model's output changed between two runs on one input: is it random, or still in training mode?"
    else:
        why = "data-dependent control flow keeps one branch in the trace; check images that take the other"
    return f"trace warning: {message} ({why})"


def half(module):
    """`module` computing in float16 between a float32 input and float32 outputs (fp16 precision), as
    ExecuTorch and Core AI lower it."""
    import copy

    import torch

    class Half(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = copy.deepcopy(inner).half()

        def forward(self, x):
            return tuple(o.float() for o in self.inner(x.half()))

    return Half(module).eval()


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


class TorchRunner(Runner):
    """Runs an nn.Module (eager or scripted). The reference side of every comparison.

    `batch`: images per call; by default one per torch thread, so each image's activations stay in its
    core's cache (bench/refresh.py measures the difference).
    """

    name = "torch"
    label = "PyTorch"

    def __init__(self, module, *, output_names=None, label: str | None = None, batch: int | None = None):
        super().__init__()
        self.module, self.output_names, self.batch = module, output_names, batch
        if label:
            self.label = label

    def _run(self, inputs):
        import torch

        results = []
        batch = self.batch or torch.get_num_threads()
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch]))
                try:
                    out = self.module(x)
                except Exception as exc:
                    raise WorkbenchError(
                        f"{self.label} forward() failed on input {tuple(x.shape)}: {type(exc).__name__}: "
                        f"{first_line(exc)}. Check the input size and channels "
                        "the model expects") from exc
                results.append(named_outputs(out, self.output_names))
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}
