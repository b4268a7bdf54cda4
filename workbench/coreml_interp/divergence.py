"""The divergence locator: the first Core ML op whose output leaves PyTorch's, on one input.

Both sides run on the same input: the traced TorchScript module that was converted, with every
intermediate tensor made an output of its graph, and the interpreter with an observer on every op.
A MIL op is matched to a TorchScript value through its name (coremltools names ops after the traced
values: `input.5` becomes `input_5`, `42` becomes `var_42`, with suffixes such as `_cast_fp16` for
fp16 casts) and a shape check. Ops the converter fused or split have no counterpart and are skipped.
Every PyTorch value is copied where it is produced: an in-place op later in the graph (``out += x``,
``relu(inplace=True)``) would otherwise change the recorded value and the wrong op would be blamed.

An fp16 program overflows where a value passes fp16's largest finite number (65504): the locator names the
first op whose PyTorch value passes it, which is where the program's first inf comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..compare import Tolerance

FP16_MAX = 65504.0
_SUFFIXES = re.compile(r"(_cast_fp16|_cast_fp32|_to_fp16|_to_fp32|_has_output_shape)+$")


@dataclass(frozen=True)
class TensorStats:
    shape: tuple
    min: float
    max: float
    mean: float
    std: float

    @classmethod
    def of(cls, t: torch.Tensor) -> TensorStats:
        a = t.detach().double()
        return cls(tuple(t.shape), float(a.min()), float(a.max()), float(a.mean()), float(a.std()) if a.numel() > 1
                   else 0.0)

    def __str__(self):
        return f"{self.shape} min {self.min:.4g} max {self.max:.4g} mean {self.mean:.4g} std {self.std:.4g}"


@dataclass(frozen=True)
class OpMatch:
    index: int  # position among the program's ops
    op_type: str
    op_name: str
    output: str
    torch_name: str
    max_abs: float
    limit: float
    coreml: TensorStats
    torch: TensorStats

    @property
    def diverges(self) -> bool:
        return not self.max_abs <= self.limit


@dataclass(frozen=True)
class Divergence:
    """The locator's answer: `first` is the first diverging op (None: every matched op agrees).

    `overflow`: the first matched op whose PyTorch value passes fp16's 65504 (None: none does); `first_inf`:
    the first op (matched or not) whose Core ML output is not finite, as (index, op type, op name).
    """

    first: OpMatch | None
    last_good: OpMatch | None
    matched: int
    total: int
    overflow: OpMatch | None = None
    first_inf: tuple[int, str, str] | None = None

    def describe(self) -> str:
        head = f"matched {self.matched} of {self.total} Core ML ops to PyTorch values"
        lines = []
        if self.overflow is not None and self.first_inf is not None:
            o = self.overflow
            peak = max(abs(o.torch.min), abs(o.torch.max))
            lines.append(
                f"fp16 overflow: op {o.index + 1}, {o.op_type} {o.op_name!r}, is the first whose PyTorch value "
                f"exceeds fp16's range ({peak:.3g} > {FP16_MAX:g}); the first non-finite Core ML output is at op "
                f"{self.first_inf[0] + 1} ({self.first_inf[1]} {self.first_inf[2]!r}). Convert with precision "
                "fp32 (--precision fp32), or keep activations in range (trained weights, normalization)")
        if self.first is None:
            return "\n".join([f"{head}; none diverges beyond tolerance"] + lines)
        f = self.first
        lines[:0] = [f"{head}; first divergence at op {f.index + 1}: {f.op_type} {f.op_name!r} (PyTorch value "
                     f"{f.torch_name!r}): max abs {f.max_abs:.3g} > {f.limit:.3g}",
                     f"  Core ML: {f.coreml}", f"  PyTorch: {f.torch}"]
        if self.last_good is not None:
            g = self.last_good
            lines.append(f"  last op that agreed: {g.op_type} {g.op_name!r} (max abs {g.max_abs:.3g})")
        return "\n".join(lines)


def torch_values(traced, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every tensor a traced module computes on `x`, by its TorchScript debug name, as it was when produced
    (a copy is taken right after each node, before any later in-place op can change it)."""
    graph, params = torch._C._jit_pass_lower_graph(traced.graph, traced._c)
    produced = [(node, o) for node in graph.nodes() for o in node.outputs()
                if isinstance(o.type(), torch._C.TensorType)]
    values = []
    for node, value in produced:
        none = graph.create("prim::Constant")
        none.output().setType(torch._C.NoneType.get())
        copy = graph.create("aten::clone", [value, none.output()])
        copy.output().setType(value.type())
        none.insertAfter(node)
        copy.insertAfter(none)
        values.append(copy.output())
    for i in reversed(range(len(list(graph.outputs())))):
        graph.eraseOutput(i)
    pack = graph.create("prim::TupleConstruct", values)
    graph.appendNode(pack)
    pack.output().setType(torch._C.TupleType([v.type() for v in values]))
    graph.registerOutput(pack.output())
    fn = torch._C._create_function_from_graph("workbench_probe", graph)
    with torch.no_grad():
        outs = fn(x, *params)
    return {v.debugName(): o for (_, v), o in zip(produced, outs) if isinstance(o, torch.Tensor)}


def _dims(t: torch.Tensor) -> tuple[int, ...]:
    """A tensor's shape without its 1s: (1, K) and (1, K, 1, 1) are one layout, (1, 24, 64, 64) and
    (1, 64, 64, 24) are not."""
    return tuple(d for d in t.shape if d != 1)


def mil_name(torch_name: str) -> str:
    """The name coremltools gives a TorchScript value."""
    name = re.sub(r"\W", "_", torch_name)
    return f"var_{name}" if name[:1].isdigit() else name


def locate(traced, torch_input: torch.Tensor, interpreter, feed: dict,
           tolerance: Tolerance = Tolerance(rel=1e-4)) -> Divergence:
    """Run both sides on one input and find the first MIL op whose output diverges beyond `tolerance`
    (relative to the PyTorch value's scale, as in `compare`)."""
    reference = {mil_name(k): v for k, v in torch_values(traced, torch_input).items()}
    seen = []
    index = [0]
    first_inf = []

    def observe(op_type, op_name, outputs):
        names = [n for n, _ in interpreter.program.steps[index[0]].outputs]
        index[0] += 1
        if not first_inf and any(isinstance(v, torch.Tensor) and v.is_floating_point() and not torch.isfinite(v).all()
                                 for v in outputs):
            first_inf.append((index[0] - 1, op_type, op_name))
        for name, value in zip(names, outputs):
            key = _SUFFIXES.sub("", name)
            ref = reference.get(key)
            if ref is None or not isinstance(value, torch.Tensor) or _dims(ref) != _dims(value):
                continue  # same name, other layout (edgenext's channels-last add): not the same value
            seen.append((index[0] - 1, op_type, op_name, name, key, value.detach().clone(), ref))

    interpreter.predict(feed, observe=observe, image_outputs="array")
    first = last_good = overflow = None
    matched = []
    for i, op_type, op_name, name, key, value, ref in seen:
        r = ref.detach().double().reshape(-1)
        c = value.double().reshape(-1)
        scale = max(float(r.max() - r.min()), float(r.abs().max())) if r.numel() else 0.0
        limit = tolerance.limit(scale)
        max_abs = float((r - c).abs().max()) if torch.isfinite(c).all() else float("inf")
        m = OpMatch(i, op_type, op_name, name, key, max_abs, limit, TensorStats.of(value), TensorStats.of(ref))
        matched.append(m)
        if overflow is None and r.numel() and float(r.abs().max()) > FP16_MAX:
            overflow = m
        if m.diverges and first is None:
            first = m
        elif not m.diverges and first is None:
            last_good = m
    return Divergence(first, last_good, len(matched), len(interpreter.program.steps), overflow,
                      first_inf[0] if first_inf else None)
