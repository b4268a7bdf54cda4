"""Where an ExecuTorch program leaves PyTorch, layer by layer: the values of a .pte's layers, read in the Android
tools env by ExecuTorch's own runtime (`_locate.py`), beside the PyTorch model with a hook on every module.

Which values are read. Both ways start from the file's source program: the module exported into the file in this
session (`Artifact.traced`: the preprocessing in front, in half precision for fp16), else the PyTorch model given,
wrapped as `export.py` wraps it; captured by torch.export and its decompositions run, so in-place ops are new
values (``y += x`` is an add after ``c2``'s convolution, which keeps ``c2``'s value).

- A file with no delegate (``delegate="portable"``, or XNNPACK took nothing): the file's own values. The runtime
  runs the file with ETDump and a debug buffer, where each kernel logs its output as it returns; the source
  program, lowered again the same way, names the file's instructions (ExecuTorch's debug handle map from each
  instruction to the edge-program node it was emitted from, the op telling apart the kernels one node became:
  linear's permute_copy and addmm). Only when its kernels are the file's in the file's order, and when ExecuTorch
  can read its ETDump back (ExecuTorch 1.5's flatc fails on the fp16 programs' tried); otherwise the twin below,
  lowered the same way, is used and `Layers.hidden` says why.
- A file with a delegate (XNNPACK, the default): inside the delegate the file shows nothing. ETDump logs the
  delegate call's inputs and outputs only, and XNNPACK's own events are timings (ExecuTorch 1.5). So each layer
  is a twin's value: the source program with each compared node's value made a program output (ExecuTorch's
  ``intermediate_output_tap``, the whole tensor), lowered with the XnnpackPartitioner as the file was, run by the
  same runtime on the same input: XNNPACK's own kernels on the same weights. The twin stands for the file only
  when its outputs are the file's (within `AGREE` of their scale; a WorkbenchError says what to do otherwise: a
  file exported from other weights). A value the file's XNNPACK fuses away the twin computes on its own: a
  convolution's output before the ReLU fused into it (the same arithmetic: the residual net's twin gives the
  file's outputs bit for bit, fp32 and fp16), or before a batch norm folded into it (ResNet-18's twin, a batch
  norm after each convolution, is 5e-7 of the outputs' scale off its fp32 file; 0 off its fp16 one).

How values are matched. Each node carries its module stack (``nn_module_stack``), relative to the exporters'
wrapper as `layers.reference_module` keys modules; a node ending its module's run of nodes computes that module's
output (`layers.scope_outputs`). A module whose last node emits no kernel (a view: flatten) has no value.

Not seen: an XNNPACK file's own values inside its delegate (only its outputs, which the twin's are checked
against); an int8 variant's layers (its quantized program is not kept, so no twin can be made).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ...layers import (
    Candidate,
    Layers,
    compare_layers,
    matched_inputs,
    module_outputs,
    precision_of,
    reference_module,
    require_module,
    scope_outputs,
)
from ..common.pytorch import export_program, half, saved_program
from ..common.tools_env import convert
from ._convert import op_name

HERE = Path(__file__).resolve().parent  # the tools-env scripts beside this file
WRAPPER = "workbench._torch.Exportable"  # the exporters' wrapper: module paths are relative to it
# the twin's outputs' largest gap from the file's, in units of their scale, for the twin to stand for the file
AGREE = {"fp32": 1e-5, "fp16": 1e-3}


@dataclass(frozen=True)
class Node:
    """One call of a program's graph: its name, op, module scope (outer to inner paths), input node names, and
    whether its value is a float tensor."""

    name: str
    op: str
    scope: tuple[str, ...]
    inputs: tuple[str, ...]
    tensor: bool


def scope(stack) -> tuple[str, ...]:
    """A node's module scope from its (path, class) stack: the paths under the exporters' wrapper (which fp16's
    half-precision wrapper holds as ``inner``), as `reference_module` keys its modules; () outside it."""
    pairs = [(p, c if isinstance(c, str) else f"{c.__module__}.{c.__qualname__}") for p, c in stack]
    root = next((p for p, c in pairs if c == WRAPPER), None)
    if root is None:
        return ()
    prefix = f"{root}." if root else ""
    return tuple(p[len(prefix):] for p, _ in pairs if p != root and p.startswith(prefix))


def program_nodes(program) -> list[Node]:
    import torch

    out = []
    for n in program.graph.nodes:
        if n.op != "call_function":
            continue
        stack = (n.meta.get("nn_module_stack") or {}).values()
        val = n.meta.get("val")
        out.append(Node(n.name, op_name(n.target), scope(stack), tuple(a.name for a in n.all_input_nodes),
                        isinstance(val, torch.Tensor) and val.is_floating_point()))
    return out


def module_keys(nodes: list[Node]) -> dict[str, str]:
    """{node name: the module key of the output it computes} for the nodes that end a module's run."""
    scoped = [n for n in nodes if n.scope]
    return {n.name: k for n, k in zip(scoped, scope_outputs([list(n.scope) for n in scoped])) if k is not None}


def candidates(nodes: list[Node], values: dict) -> list[Candidate]:
    """A candidate per node that ends a module's run and has a value, with the matched nodes it is computed
    from (the nearest ones up its inputs)."""
    keys = module_keys(nodes)
    matched = {n.name: keys[n.name] for n in nodes if n.name in keys and values.get(n.name) is not None}
    by_name = {n.name: n for n in nodes}
    sources = matched_inputs(lambda name: [i for i in by_name[name].inputs if i in matched or i in by_name],
                             matched)

    return [Candidate(i, n.name, n.op, n.name, matched[n.name], values[n.name], sources(n.name))
            for i, n in enumerate(nodes) if n.name in matched]


def gap(a: np.ndarray, b: np.ndarray) -> float:
    """The largest difference of two outputs in units of `b`'s scale: inf when their shapes or their non-finite
    values (where, and which) differ."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or any(not np.array_equal(f(a), f(b)) for f in (np.isnan, np.isposinf, np.isneginf)):
        return math.inf
    finite = np.isfinite(b)
    if not finite.any():
        return 0.0
    fa, fb = a[finite], b[finite]
    scale = max(float(fb.max() - fb.min()), float(np.abs(fb).max())) or 1.0
    return float(np.abs(fa - fb).max()) / scale


def source_of(artifact, module):
    """The module lowered into the file and what it is: the one exported in this session, else `module` wrapped
    as `export.py` wraps it."""
    if artifact.traced is not None:
        return artifact.traced[0], "the module exported into it in this session"
    from ..base import ExportSpec

    spec = ExportSpec(module=module, input_shape=tuple(artifact.input_shape), output_names=tuple(artifact.output_names),
                      input_name=artifact.input_name, preprocess=artifact.preprocess)
    model = spec.wrapped(bake=artifact.preprocess)
    return (half(model) if precision_of(artifact) == "fp16" else model), "the PyTorch model it is compared with"


def delegate_of(artifact) -> str:
    """How the file was lowered (`_convert.lower`), from its notes."""
    portable = any("portable kernels only" in n or "XNNPACK lowering failed" in n for n in artifact.notes)
    return "portable" if portable else "xnnpack"


def locate(artifact, runner, pixels, preprocess=None, tolerance=None, *, module=None) -> Layers:
    """Per-layer comparison of the ExecuTorch `artifact` with PyTorch's `module` on one image (`pixels`,
    (1, 3, H, W)), both given the same input: a `layers.Layers` (see the module's docstring for which values are
    the file's own and which a twin's). Raises WorkbenchError for an int8 variant, when the tools env is missing,
    and when a twin's outputs are not the file's."""
    import torch

    require_module(artifact, module)
    name = Path(artifact.path).name
    if any(n.startswith("int8") for n in artifact.notes):
        raise WorkbenchError(f"{name} is ExecuTorch's int8 variant, whose quantized program is not kept: its layers "
                             "cannot be read (inside XNNPACK) nor made again. Compare the fp32 export layer by layer")
    x = np.ascontiguousarray(runner.inputs(pixels, preprocess), np.float32)
    source, what = source_of(artifact, module)
    program = export_program(source, torch.from_numpy(x.copy()), what="ExecuTorch per-layer values (torch.export)")
    program = program.run_decompositions({})  # functional: an in-place op's value is a node of its own
    nodes = program_nodes(program)
    keys = module_keys(nodes)
    taps = [n.name for n in nodes if n.name in keys and n.tensor]
    with saved_program(program) as saved:
        result = convert(HERE / "_locate.py", {"program": str(saved), "pte": str(artifact.path), "input": x,
                                                "delegate": delegate_of(artifact), "taps": taps},
                         what="ExecuTorch per-layer values", packages="executorch")
    precision = precision_of(artifact)
    reference = module_outputs(reference_module(artifact, module), x)
    if "values" in result:  # the file's own values, from ETDump
        own = [Node(n["name"], n["op"], scope(n["stack"]), tuple(n["inputs"]), n["tensor"]) for n in result["nodes"]]
        return compare_layers(
            "executorch", "ExecuTorch (portable)", candidates(own, result["values"]), reference, total=len(own),
            tolerance=tolerance, precision=precision, notes=(
                f"values are {name}'s own: each kernel's output as ETDump logged it while ExecuTorch's runtime ran "
                f"the file ({result['instructions']} instructions), named by its source program ({what}) lowered "
                "again the same way",))
    if result.get("why"):  # a file with no delegate whose own values cannot be read
        title, unseen = "ExecuTorch (portable twin)", f"{name}'s own values cannot be read: {result['why']}"
    else:
        title = "ExecuTorch (XNNPACK twin)"
        unseen = (f"{name} shows no value inside its XNNPACK delegate (ExecuTorch's ETDump logs only the delegate "
                  "call's inputs and outputs)")
    off = max((gap(t, f) for t, f in zip(result["twin"], result["outputs"])), default=math.inf)
    if len(result["twin"]) != len(result["outputs"]) or not off <= AGREE[precision]:
        raise WorkbenchError(
            f"{unseen}, so its layers are read from a twin lowered the same way from {what}; but the twin's outputs "
            f"are {off:.3g} of their scale off the file's: the file was not exported from this model (other weights "
            "or options). Export the model to ExecuTorch in this session and locate that export, or export it with "
            "delegate='portable', whose layers are read from the file itself")
    return compare_layers(
        "executorch", title, candidates(nodes, result["taps"]), reference, total=len(nodes), tolerance=tolerance,
        precision=precision, hidden=f"{unseen}: the layers are the twin's",
        notes=(f"values from a twin of {name}: {what}, each compared node made a program output "
               "(intermediate_output_tap), lowered as the file was and run by ExecuTorch's runtime; its outputs "
               f"are the file's within {off:.2g} of their scale",))
