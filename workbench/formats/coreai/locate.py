"""Where a Core AI program first leaves PyTorch: Apple's comparator (coreai_torch.debugging) op by op, each
difference named by the PyTorch module that made the op and the source line that called it.

The artifact's decomposed torch.export program (kept in memory by the export) is converted again in Apple's
DEBUG mode, which records which Core AI op computes which PyTorch node; Apple's comparator then runs the
program in torch's FX interpreter and in the Core AI runtime with its intermediate logger on the same input,
and hands each mapped pair to the check here, which judges it as `compare` judges outputs (the tolerance
relative to the PyTorch value's scale). Apple's own factory for it (`create_comparator_for_programs`) asks
for macOS-only specialization options, so the same parts are put together here, with the runtime loaded the
way it loads on Linux.
"""

from __future__ import annotations

import math
import re
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...compare import DEFAULT_TOLERANCES, FP16_MAX, Tolerance
from ...errors import WorkbenchError, first_line
from ...layers import Layer, Layers
from ._loop import Loop, native_quiet

_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')
_WRAPPERS = ("inner.", "model.")  # common.pytorch.half's and Exportable's attributes around the user's model


def module_of(node) -> tuple[str, str]:
    """(the module's name in the user's model, its class name) of a torch.export node; ("", "") at the top."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return "", ""
    path, kind = list(stack.values())[-1]
    for prefix in _WRAPPERS:
        path = path[len(prefix):] if path.startswith(prefix) else path
    if path in ("inner", "model"):
        return "", ""
    if path == "pre" or path.startswith("pre."):
        return "pre", "the preprocessing put in the graph"
    kind = getattr(kind, "__name__", None) or str(kind).rsplit(".", 1)[-1].strip("'>")
    return path, kind


def source_of(node) -> str:
    """The innermost source line of the node's stack that is the user's, not torch's or the workbench's."""
    trace = node.meta.get("stack_trace") or ""
    frames = _FRAME.findall(trace)
    mine = [f for f in frames if "/torch/" not in f[0] and "/workbench/_torch.py" not in f[0]
            and "/workbench/formats/" not in f[0]]
    if not (mine or frames):
        return ""
    file, line, func, code = (mine or frames)[-1]
    return f"{file}:{line} in {func}: {code.strip()}"


def locate(artifact, runner, pixels: np.ndarray, preprocess=None, tolerance: Tolerance | dict | None = None, *,
           module=None) -> Layers:
    """Per-op comparison of `artifact`'s Core AI program with its PyTorch program on one image (`pixels`,
    (1, 3, H, W)), both sides given the same input: a `layers.Layers` whose layers are the PyTorch ops that
    have a Core AI value, each named by the module that made it (`Layer.torch`) and the source line that
    called it (`Layer.source`). preprocess: what to apply in front of an artifact that takes the model's
    tensor. Needs the program the artifact was exported from in this session (`Artifact.traced`); `module` is
    not needed (the program holds the PyTorch side)."""
    if artifact.traced is None:
        raise WorkbenchError(f"{artifact.path} was not exported in this session (loaded from disk, or a compressed "
                             "variant): export it again to locate where it diverges")
    from . import _packages
    from .export import convert

    program, _ = artifact.traced
    x = np.ascontiguousarray(runner.inputs(pixels[:1], preprocess), np.float32)
    if isinstance(tolerance, dict):
        tolerance = tolerance.get("", None)
    tol = tolerance or DEFAULT_TOLERANCES[artifact.precision]
    debug_program = convert(program, artifact.input_name, artifact.output_names, debug=True)
    _packages.runtime()
    loop = Loop()
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-coreai-locate-") as tmp:
            checks, total = loop.run(_compare(program, debug_program, Path(tmp), artifact.input_name, x, tol))
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"Core AI's comparator failed on {artifact.path}: {type(exc).__name__}: "
                             f"{first_line(exc)}") from exc
    finally:
        loop.close()
    layers, worst = [], 0.0
    for c in sorted(checks, key=lambda c: c.index):
        layers.append(replace(c, growth=c.error - worst if math.isfinite(c.error) else math.inf))
        worst = max(worst, c.error)
    notes = ("Apple's comparator pairs each PyTorch op with the Core AI op that computes it; ops without a Core "
             "AI value were fused into another op or dropped",)
    return Layers("coreai", "Core AI", tuple(layers), total, artifact.precision, "op", notes)


async def _compare(program, debug_program, tmp: Path, input_name: str, x: np.ndarray, tol: Tolerance):
    from coreai.runtime import AIModel
    from coreai_torch.debugging import comparator as cmp
    from coreai_torch.debugging.graph import create_graph_from_coreai_program, create_graph_from_exported_program
    from coreai_torch.debugging.inspector import CachingInspector, CoreAIInspector, TorchFXInspector

    from ..base import quiet

    asset = debug_program.save_asset(tmp / "debug.aimodel")
    built = tmp / "debug.aimodelx"
    built.mkdir()
    asset._write_odix(built, enable_debug_info=True)  # what executable() does on Linux, with the debug map
    model = await AIModel.load(built)
    id_map = cmp._create_id_map_from_coreai_program(debug_program, program)
    source = cmp.DebugGraph(graph=create_graph_from_exported_program(program),
                            inspector=CachingInspector(TorchFXInspector(exported_program=program)))
    target = cmp.DebugGraph(graph=create_graph_from_coreai_program(module=debug_program._module._mlir_module,
                                                                   entry_point="main"),
                            inspector=CachingInspector(CoreAIInspector(model=model, function_name="main")))
    comparator = cmp.Comparator(source, target, id_map, show_progress=False)
    order = {n.name: i for i, n in enumerate(n for n in program.graph.nodes if n.op == "call_function")}
    checks: dict[str, Layer] = {}

    def check(source_node, target_node, source_outputs, target_outputs):
        if not source_outputs or not target_outputs or source_outputs[0] is None or target_outputs[0] is None:
            return cmp.Comparator.Status.UNKNOWN
        ref = np.asarray(source_outputs[0], np.float64)
        got = np.asarray(target_outputs[0], np.float64)
        if ref.shape != got.shape:
            if ref.size != got.size:
                return cmp.Comparator.Status.UNKNOWN
            got = got.reshape(ref.shape)  # (1, K) beside (K,): one layout, other shape
        scale = max(float(np.ptp(ref)), float(np.abs(ref).max())) if ref.size else 0.0
        finite = bool(np.isfinite(got).all())
        max_abs = float(np.abs(ref - got).max()) if finite and ref.size else (0.0 if finite else math.inf)
        unit = scale if scale > 0 else 1.0
        module, _ = module_of(source_node)
        peak = float(np.abs(ref).max()) if ref.size else 0.0
        layer = Layer(order.get(source_node.name, -1), source_node.name, str(source_node.target),
                      str(target_node).strip().splitlines()[0][:160], module,
                      tuple(ref.shape), max_abs / unit, tol.limit(scale) / unit, max_abs, scale, finite,
                      peak > FP16_MAX, peak, source=source_of(source_node))
        checks[source_node.name] = layer
        return cmp.Comparator.Status.FAIL if layer.diverges else cmp.Comparator.Status.PASS

    with quiet("coreai_torch", "coreai"), native_quiet():
        await comparator.compare(check, {input_name: x})
    return list(checks.values()), len(order)
