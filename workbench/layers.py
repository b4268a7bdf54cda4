"""Per-layer divergence: where a converted model leaves PyTorch, layer by layer, in every format.

Each format's locator (``formats/<name>/locate.py``, declared as ``Format.locator``) runs its converted model on
one input with its intermediate values exposed, names the PyTorch module each value stands for, and hands the
pairs to `compare_layers`, which returns one `Layers`: per layer its error in units of that tensor's own scale
(its range, or its largest magnitude when larger, as `compare` measures outputs), whether it is finite and
whether its PyTorch value passes fp16's largest number; the first layer over tolerance, the layer whose error
grows the most, and the first layer that overflows fp16.

The PyTorch side is `module_outputs`: the model run with a forward hook on every module, each output copied
when its module returns, so an in-place op later in the forward (``y += x``, ``ReLU(inplace=True)``) cannot
change the value recorded for the module before it, and is never blamed for a value it did not compute. A
module called twice (torchvision's ResNet blocks call one ``relu`` twice) is keyed ``name``, then ``name#2``.

Converted values are matched to modules through the module scope the converter keeps (ONNX's
``pkg.torch.onnx.name_scopes``, TorchScript's module hierarchy, ...): `scope_outputs` takes the converted
nodes in order, each with its scope, and gives each node that ends a module's run of nodes that module's key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .compare import DEFAULT_TOLERANCES, FP16_MAX, Tolerance


@dataclass(frozen=True)
class Layer:
    """One converted value matched to a PyTorch module's output.

    index: its node's position in the converted graph; name, op: the node; output: the converted value's name;
    torch: the PyTorch module it matches (its path in the model, ``#2`` for a second call).
    error: max abs difference in units of the PyTorch value's scale (inf when the converted value is not finite);
    limit: the tolerance in the same units; growth: how much error this layer adds to the largest error of the
    layers before it (its inputs where the format knows them).
    """

    index: int
    name: str
    op: str
    output: str
    torch: str
    shape: tuple
    error: float
    limit: float
    max_abs: float
    scale: float
    finite: bool
    overflow: bool  # the PyTorch value passes fp16's largest finite number (65504)
    peak: float  # the PyTorch value's largest magnitude
    growth: float = 0.0
    source: str = ""  # the user's source line that made it, where the format records it (Core AI)
    inputs: tuple[str, ...] = ()  # the matched layers (their `torch` names) it is computed from: the graph's edges

    @property
    def diverges(self) -> bool:
        return not self.error <= self.limit

    # the names the Core ML locator's answer had
    op_type = property(lambda self: self.op)
    op_name = property(lambda self: self.name)
    torch_name = property(lambda self: self.torch)

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "op": self.op, "output": self.output, "torch": self.torch,
                "shape": list(self.shape), "error": _num(self.error), "limit": _num(self.limit),
                "max_abs": _num(self.max_abs), "scale": _num(self.scale), "finite": self.finite,
                "overflow": self.overflow, "peak": _num(self.peak), "growth": _num(self.growth),
                "diverges": self.diverges, "inputs": list(self.inputs),
                **({"source": self.source} if self.source else {})}


@dataclass(frozen=True)
class Layers:
    """A format's per-layer comparison with PyTorch on one image.

    layers: the matched layers in the converted graph's order; total: the converted graph's nodes (those not
    matched have no PyTorch module output to compare with: fused, split, or inside a module). hidden: what the
    format cannot show (inside a delegate, ...).
    """

    format: str
    title: str
    layers: tuple[Layer, ...]
    total: int
    precision: str = "fp32"
    unit: str = "node"
    notes: tuple[str, ...] = ()
    hidden: str = ""
    extra: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def matched(self) -> int:
        return len(self.layers)

    @property
    def first(self) -> Layer | None:
        """The first layer over tolerance."""
        return next((x for x in self.layers if x.diverges), None)

    @property
    def last_good(self) -> Layer | None:
        """The last layer within tolerance before `first`."""
        good = None
        for x in self.layers:
            if x.diverges:
                return good
            good = x
        return None

    @property
    def growth(self) -> Layer | None:
        """The layer whose error grows the most (None: none adds error)."""
        best = max(self.layers, key=lambda x: x.growth, default=None)
        return best if best is not None and best.growth > 0 else None

    @property
    def overflow(self) -> Layer | None:
        """The first layer that overflows fp16: whose PyTorch value passes 65504 in an fp16 model or where a
        non-finite value appears (None: none)."""
        nonfinite = self.first_nonfinite
        if self.precision != "fp16" and nonfinite is None:
            return None
        return next((x for x in self.layers if x.overflow), None) or nonfinite

    @property
    def first_nonfinite(self) -> Layer | None:
        return next((x for x in self.layers if not x.finite), None)

    def ranked(self) -> list[Layer]:
        """The layers by the error they add, largest first (where to look, or which layers to keep in float)."""
        return sorted(self.layers, key=lambda x: (-x.growth, x.index))

    def layer(self, torch_name: str) -> Layer:
        for x in self.layers:
            if x.torch == torch_name:
                return x
        raise KeyError(torch_name)

    def describe(self) -> str:
        head = f"{self.title}: matched {self.matched} of {self.total} {self.unit}s to PyTorch modules"
        lines = []
        if self.first is None:
            lines.append(f"{head}; none diverges beyond tolerance")
        else:
            f = self.first
            lines.append(f"{head}; first divergence at {self.unit} {f.index + 1}: {f.op} {f.name!r} (PyTorch "
                         f"{f.torch!r}): error {f.error:.3g} of its scale > {f.limit:.3g} (max abs {f.max_abs:.3g})")
            if f.source:
                lines.append(f"  source: {f.source}")
            g = self.last_good
            if g is not None:
                lines.append(f"  last layer that agreed: {g.op} {g.name!r} (PyTorch {g.torch!r}, error {g.error:.3g})")
        grow = self.growth
        if grow is not None and (self.first is None or grow is not self.first):
            lines.append(f"  the error grows most at {grow.op} {grow.name!r} (PyTorch {grow.torch!r}): "
                         f"+{grow.growth:.3g} to {grow.error:.3g} of its scale")
        o = self.overflow
        if o is not None:
            bad = self.first_nonfinite
            where = (f"; the first non-finite value is at {self.unit} {bad.index + 1} ({bad.op} {bad.name!r})"
                     if bad is not None else "")
            lines.append(f"fp16 overflow: op {o.index + 1}, {o.op} {o.name!r} (PyTorch {o.torch!r}), is the first "
                         f"whose PyTorch value exceeds fp16's range ({o.peak:.3g} > {FP16_MAX:g}){where}. Convert with "
                         "precision fp32 (--precision fp32), or keep activations in range (trained weights, "
                         "normalization)")
        if self.hidden:
            lines.append(f"  not seen: {self.hidden}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        def pick(x):
            return None if x is None else x.torch

        return {"format": self.format, "matched": self.matched, "total": self.total, "precision": self.precision,
                "first": pick(self.first), "growth": pick(self.growth), "overflow": pick(self.overflow),
                "hidden": self.hidden, "notes": list(self.notes), "layers": [x.to_dict() for x in self.layers]}


def _num(v: float):
    return v if math.isfinite(v) else str(v)


def module_outputs(module, x) -> dict[str, np.ndarray]:
    """Every module's output when `module` runs on `x` (a tensor or array), by its path in `module` (``#2`` for
    a second call), copied as each module returns (before any later in-place op can change it). Modules whose
    output is not one tensor (a tuple, a dict) are left out."""
    import torch

    values, calls, handles = {}, {}, []

    def hook(name):
        def record(_module, _inputs, output):
            if isinstance(output, torch.Tensor) and output.is_floating_point():
                calls[name] = calls.get(name, 0) + 1
                key = name if calls[name] == 1 else f"{name}#{calls[name]}"
                values[key] = output.detach().to(torch.float64).numpy().copy()
        return record

    for name, sub in module.named_modules():
        if name:
            handles.append(sub.register_forward_hook(hook(name)))
    try:
        with torch.no_grad():
            module(torch.as_tensor(np.ascontiguousarray(x, np.float32)))
    finally:
        for h in handles:
            h.remove()
    return values


def reference_module(artifact, module):
    """The PyTorch side of `artifact`: `module` with the artifact's preprocessing in front (when it takes
    pixels), as exporters wrap it, so both sides take the same input. Module paths start with ``model.``."""
    from ._torch import Exportable

    pre = artifact.preprocess.as_module() if artifact.preprocess is not None else None
    return Exportable(module, artifact.output_names, pre).eval()


def scope_outputs(scopes: Sequence[Sequence[str]]) -> list[str | None]:
    """For converted nodes in order, each with its module scope (outer to inner module paths), the module
    each node is the output of: the innermost module whose run of consecutive nodes ends at that node (a
    module's last node computes its output), keyed as `module_outputs` keys it (``#2`` for a second call);
    None for a node inside a module that is not its last (a residual ``add`` before the block's ``relu``)."""
    out: list[str | None] = []
    calls: dict[str, int] = {}
    for i, scope in enumerate(scopes):
        following = set(scopes[i + 1]) if i + 1 < len(scopes) else set()
        ends = [p for p in scope if p not in following]
        key = None
        for p in ends:  # outer to inner: every module whose run ends here is called once more
            calls[p] = calls.get(p, 0) + 1
            key = p if calls[p] == 1 else f"{p}#{calls[p]}"
        out.append(key if ends and ends[-1] == scope[-1] else None)
    return out


def matched_inputs(inputs_of, matched) -> Callable:
    """For a converted graph, `inputs_of(node)`: the nodes a node reads; `matched`: {node: torch key} of the
    nodes compared. Returns `sources(node)`: the matched layers it is computed from, the nearest matched nodes up
    its inputs (a `Candidate`'s `after`), each node walked once."""
    memo: dict = {}

    def sources(node) -> tuple[str, ...]:
        if node not in memo:
            memo[node] = ()
            found = []
            for j in inputs_of(node):
                found += [matched[j]] if j in matched else list(sources(j))
            memo[node] = tuple(dict.fromkeys(found))
        return memo[node]

    return sources


@dataclass
class Candidate:
    """A converted value to compare: its node's position, name, op, value name, the PyTorch module key it
    stands for, and the value itself (None: it could not be read). after: the torch keys of the matched
    layers it is computed from, where the format knows its graph (else the layer before it)."""

    index: int
    name: str
    op: str
    output: str
    torch: str
    value: np.ndarray | None
    after: tuple[str, ...] | None = None


def _dims(shape) -> tuple[int, ...]:
    return tuple(d for d in shape if d != 1)


def align(value: np.ndarray, ref: np.ndarray, transpose: bool = True) -> np.ndarray | None:
    """`value` in `ref`'s layout: the same numbers reshaped (leading/trailing 1s), or (`transpose`) a
    channels-last tensor transposed to channels-first; None when it is not the same tensor."""
    value = np.asarray(value)
    if value.shape == ref.shape:
        return value
    if _dims(value.shape) == _dims(ref.shape):
        return value.reshape(ref.shape)
    if not transpose:
        return None
    if value.ndim == ref.ndim == 4 and value.shape == (ref.shape[0], ref.shape[2], ref.shape[3], ref.shape[1]):
        return value.transpose(0, 3, 1, 2)
    if value.ndim == 3 and ref.ndim == 4 and ref.shape[0] == 1 and value.shape == ref.shape[1:]:
        return value[None]
    return None


def compare_layers(fmt: str, title: str, candidates: Sequence[Candidate], reference: dict[str, np.ndarray], *,
                   total: int, tolerance: Tolerance | dict | None = None, precision: str = "fp32",
                   unit: str = "node", notes: Sequence[str] = (), hidden: str = "", strip: str = "model.",
                   transpose: bool = True) -> Layers:
    """Compare each candidate with the PyTorch value of its module (`reference`, from `module_outputs`): a
    `Layers`. Candidates whose module has no value, or whose shape is another tensor's, are left out.
    tolerance: relative to each value's scale, as `compare` takes it (default: the precision's). transpose: a
    channels-last value may stand for a channels-first module output (a runtime that computes in NHWC)."""
    if isinstance(tolerance, dict):
        tolerance = tolerance.get("")
    tol = tolerance or DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])
    layers: list[Layer] = []
    errors: dict[str, float] = {}
    keys: list[str] = []  # the matched layers' torch keys, in order

    def short(key: str) -> str:
        return key[len(strip):] if strip and key.startswith(strip) else key

    for c in candidates:
        ref = reference.get(c.torch)
        if ref is None or c.value is None:
            continue
        value = align(c.value, ref, transpose)
        if value is None:
            continue
        r, v = ref.astype(np.float64), value.astype(np.float64)
        scale = max(float(r.max() - r.min()), float(np.abs(r).max())) if r.size else 0.0
        finite = bool(np.isfinite(v).all())
        max_abs = float(np.abs(r - v).max()) if finite and r.size else (0.0 if finite else math.inf)
        unit_scale = scale if scale > 0 else 1.0
        error = max_abs / unit_scale
        inputs = [k for k in (c.after or ()) if k in errors]
        if c.after is None and layers:
            inputs = [keys[-1]]
        before = [errors[k] for k in inputs]
        growth = error - max(before, default=0.0) if math.isfinite(error) else math.inf
        peak = float(np.abs(r).max()) if r.size else 0.0
        layer = Layer(c.index, c.name, c.op, c.output, short(c.torch), tuple(ref.shape), error,
                      tol.limit(scale) / unit_scale, max_abs, scale, finite, peak > FP16_MAX, peak, growth,
                      inputs=tuple(short(k) for k in inputs))
        errors[c.torch] = error
        keys.append(c.torch)
        layers.append(layer)
    return Layers(fmt, title, tuple(layers), total, precision, unit, tuple(notes), hidden)


# A compressed variant's layers (8-bit and fewer, pruned) are judged against this, not fp32's 1e-4: an 8-bit op
# rounds to about 1/256 of its range, and that grows through a net to a few hundredths of a layer's scale (a
# well-calibrated int8 classifier's worst layer here: 0.075), so a tenth marks a layer that loses far more than
# rounding. The ranking by error added, which layers to keep in float, does not depend on it.
COMPRESSED_TOLERANCE = Tolerance(rel=0.1)


def locate(reference, artifact, runner, image: int = 0, tolerance=None, preprocess=None, *,
           compressed: bool = False) -> Layers:
    """`artifact`'s per-layer comparison with `reference`'s model (a `session.Reference`) on its sample image
    `image`, through the artifact format's locator; `runner`: the artifact's runner (built, not yet active is
    fine). Works for an exported artifact and a compressed variant alike; `compressed`: a variant that is not
    fp16, judged against `COMPRESSED_TOLERANCE` unless `tolerance` is given."""
    from . import formats
    from .errors import WorkbenchError

    n = len(reference.images)
    if not 0 <= image < n:
        raise WorkbenchError(f"image {image} is out of range: there are {n} sample images")
    if tolerance is None and compressed and precision_of(artifact) != "fp16":
        tolerance = COMPRESSED_TOLERANCE
    return formats.get(artifact.format).locate(artifact, runner, reference.pixels[image:image + 1], preprocess,
                                               tolerance, module=reference.spec(bake=False).module)


def precision_of(artifact) -> str:
    """fp16 when the artifact computes in float16 (its precision, or a compressed variant's name), else fp32."""
    if getattr(artifact, "precision", "fp32") == "fp16":
        return "fp16"
    return "fp16" if "fp16" in str(getattr(artifact, "path", "")).lower() else "fp32"


def require_module(artifact, module) -> None:
    from .errors import WorkbenchError

    if module is None:
        raise WorkbenchError(f"the per-layer comparison of {artifact.path} needs the PyTorch model it was exported "
                             "from: call Session.locate(format) (or pass module=)")


def torchscript_modules(script) -> dict[str, str]:
    """A TorchScript module's values by debug name -> the module each is the output of (see `scope_outputs`),
    from its inlined graph's module hierarchy (``model(Sequential).0(Conv2d)`` is ``model.0``)."""
    import re

    import torch

    produced = []
    for node in script.inlined_graph.nodes():
        outs = [o for o in node.outputs() if isinstance(o.type(), torch._C.TensorType)]
        if not outs or node.kind() in ("prim::Constant", "prim::GetAttr"):
            continue
        path = re.sub(r"\([^()]*\)", "", node.getModuleHierarchy() or "")
        parts = [p for p in path.split(".") if p] if path else []
        scope = [".".join(parts[:k + 1]) for k in range(len(parts))]
        produced.append((outs[0].debugName(), scope))
    with_scope = [(n, s) for n, s in produced if s]
    keys = scope_outputs([s for _, s in with_scope])
    return {n: k for (n, _), k in zip(with_scope, keys) if k is not None}


def attach(session, report, tolerance=None, progress=None) -> dict[str, Layers]:
    """`workbench check --layers`: the per-layer comparison of each failing format of `report` and of each
    compressed variant it ran, on the session's first image, for formats that have a locator. Each format's
    `divergence` becomes its description, and each variant's; returns them by
    ``format`` or ``format variant``. A locator that cannot run says why in its place."""
    from . import formats
    from .errors import WorkbenchError

    found: dict[str, Layers] = {}

    def run(key, artifact, runner, compressed=False):
        if progress:
            progress(key, "locate")
        try:
            found[key] = locate(session, artifact, runner, tolerance=tolerance, compressed=compressed)
            return found[key].describe()
        except WorkbenchError as exc:
            return f"no per-layer comparison: {exc}"

    for name, result in report.formats.items():
        fmt = formats.get(name)
        if not fmt.locator or result.artifact is None:
            continue
        if result.comparison is not None and not result.comparison.passed:
            result.divergence = run(name, result.artifact, session.runner(name))
        for variant, v in result.variants.items():
            if v.artifact is None or v.comparison is None:
                continue
            runner = fmt.make_runner(v.artifact, **session.exported.runtime_options.get(name, {}))
            try:
                v.divergence = run(f"{name} {variant}", v.artifact, runner, compressed=True)
            finally:
                runner.deactivate()
    report.layers = found
    return found

