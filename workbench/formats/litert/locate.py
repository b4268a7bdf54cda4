"""Where a LiteRT model leaves PyTorch, layer by layer: LiteRT's interpreter with every intermediate tensor kept
(``experimental_preserve_all_tensors``) and read with ``get_tensor`` after one run, beside the PyTorch model
with a hook on every module.

Which values are read. The interpreter is made as the runner makes it (the default op resolver, so XNNPACK on,
the runner's threads). With every tensor kept, LiteRT 2.x still applies XNNPACK, one partition per op, so each
op's output is the value XNNPACK computed and the model's outputs are the runner's, bit for bit; an op XNNPACK
does not take runs on LiteRT's own kernel and is read the same way. A full-integer model's int8 tensors are
dequantized with their own scale and zero point. An fp16 export (litert-torch's fp16 recipe) stores its weights
in half precision and DEQUANTIZEs them to fp32: LiteRT computes in fp32 (XNNPACK too, unless it is forced to
fp16), so its error is the weights' rounding; it is compared with the fp16 tolerance (`layers.precision_of`).

How tensors are matched. litert-torch names each tensor after the torch.export node that made it: the node's
module stack, one ``<class>_<attribute>`` per module joined by ``/``, ending with ``;``
(``workbench._torch.Exportable/...ResidualNet_model/torch.nn.modules.conv.Conv2d_stem;``); a number after the
last ``;`` tells one module's tensors apart. When the converter fuses ops it joins their locations (``A;;B;``),
the fused op's root (the op computed last) first, and a constant shared by several ops (a ReLU's zero) may add
a location of its own (``act`` in ``block.c1``'s tensor). So an op stands for the module of the first location
of its output's name, found by walking the PyTorch module tree one ``<class>_<attribute>`` at a time (the class's
full name first, so a ``_`` inside a class or attribute name is not misread), and an op that ends its module's
run of ops computes that module's output (`layers.scope_outputs`); one whose tensor is another shape (the PAD
before a padded convolution) is not compared. An op with a fused activation (CONV_2D+RELU) stands for the
activation's module, never for a convolution, linear or batch norm, whose own value LiteRT does not compute; a
convolution with its batch norm folded in stands for the batch norm. The model's outputs lose their names
(``serving_default_output_0``): such an op is named by its weights' tensor (a fully connected head) when nothing
is fused into it, else, in a model with one output, stands for the whole model. Ops on constants only (an fp16
or int8 model's DEQUANTIZE of its weights) are not layers. LiteRT computes in NHWC: `layers.align` transposes a
value to PyTorch's NCHW. In-place ops are never blamed: LiteRT gives every op a tensor of its own, and PyTorch's
values are copied as each module returns (`layers.module_outputs`).

Not seen: a value LiteRT never computes (a convolution's output before the activation fused into it, an
in-place ``y += x`` fused with the ReLU after it: one ADD+RELU, which stands for the ReLU), and any subgraph but
the main one (control flow).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError, first_line
from ...layers import (
    Candidate,
    Layers,
    align,
    compare_layers,
    matched_inputs,
    module_outputs,
    precision_of,
    reference_module,
    require_module,
    scope_outputs,
)

# TFLite's ActivationFunctionType, as the flatbuffer stores a fused activation
ACTIVATIONS = {1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}


@dataclass(frozen=True)
class Op:
    """One operator of the main subgraph: its position, builtin name, fused activation ("" for none), and
    its input and output tensor indices (-1: an optional input left out)."""

    index: int
    name: str
    activation: str
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def kind(self) -> str:
        return f"{self.name}+{self.activation}" if self.activation else self.name


@dataclass(frozen=True)
class Graph:
    """A .tflite's main subgraph: its ops in execution order, its tensors' names, its inputs and outputs."""

    ops: tuple[Op, ...]
    names: tuple[str, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


def read_graph(path: Path) -> Graph:
    """The main subgraph of the .tflite at `path`, read from its flatbuffer (LiteRT's own schema); a
    WorkbenchError naming the file when it cannot be read."""
    from ai_edge_litert import schema_py_generated as fb

    operators = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    options = {v: k for k, v in vars(fb.BuiltinOptions).items() if not k.startswith("_")}
    try:
        model = fb.Model.GetRootAsModel(Path(path).read_bytes(), 0)
        sub = model.Subgraphs(0)
        ops = []
        for i in range(sub.OperatorsLength()):
            op = sub.Operators(i)
            code = model.OperatorCodes(op.OpcodeIndex())
            builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())  # the schema's rule for old files
            name = operators.get(builtin, str(builtin))
            if name == "CUSTOM" and code.CustomCode():
                name = code.CustomCode().decode()
            ops.append(Op(i, name, _activation(fb, op, options), tuple(int(t) for t in op.InputsAsNumpy()),
                          tuple(int(t) for t in op.OutputsAsNumpy())))
        names = tuple(sub.Tensors(j).Name().decode(errors="replace") for j in range(sub.TensorsLength()))
        return Graph(tuple(ops), names, tuple(int(t) for t in sub.InputsAsNumpy()),
                     tuple(int(t) for t in sub.OutputsAsNumpy()))
    except Exception as exc:
        raise WorkbenchError(f"cannot read the ops of {path} (a LiteRT flatbuffer?): {first_line(exc)}. "
                             "Export it again") from exc


def _activation(fb, op, options: dict) -> str:
    kind = op.BuiltinOptionsType()
    table = op.BuiltinOptions() if kind else None
    cls = getattr(fb, options.get(kind, ""), None)
    if table is None or cls is None or not hasattr(cls, "FusedActivationFunction"):
        return ""
    opts = cls()
    opts.Init(table.Bytes, table.Pos)
    return ACTIVATIONS.get(opts.FusedActivationFunction(), "")


def locations(name: str) -> list[str]:
    """The litert-torch locations in a tensor's name (``A;;B;1`` -> ``[A, B]``), the fused op's root first;
    [] for a name that carries none (a model input or output, ``arith.constant``)."""
    if ";" not in name:
        return []
    return [p for p in name[:name.rindex(";")].split(";") if p]


def _class_name(cls) -> str:
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


class ModuleTree:
    """The PyTorch modules a litert-torch location names: `resolve` walks a location (``<class>_<attribute>``
    per module, ``/``-joined, the wrapper's class first) down the module tree."""

    def __init__(self, root):
        self.root = root
        self.modules = dict(root.named_modules())
        self._seen: dict[str, str | None] = {}

    def resolve(self, location: str) -> str | None:
        """The path (``model.block.c2``) of the module `location` names, None when it names none here."""
        if location not in self._seen:
            self._seen[location] = self._walk(location)
        return self._seen[location]

    def _walk(self, location: str) -> str | None:
        parts = location.split("/")
        if parts and parts[0] == _class_name(type(self.root)):
            parts = parts[1:]
        node, path = self.root, []
        for part in parts:
            children = dict(node.named_children())
            # exact first: an attribute is what follows the class name (both may hold "_")
            found = [n for n, c in children.items() if part == f"{_class_name(type(c))}_{n}"]
            found = found or sorted((n for n in children if part.endswith("_" + n)), key=len, reverse=True)
            if not found:
                return None
            path.append(found[0])
            node = children[found[0]]
        return ".".join(path) or None


def _scope(path: str) -> list[str]:
    parts = path.split(".")
    return [".".join(parts[:k + 1]) for k in range(len(parts))]


def _first(name: str, tree: ModuleTree) -> str | None:
    """The module a tensor's name puts first (the fused op's root), None when it names none."""
    places = locations(name)
    return tree.resolve(places[0]) if places else None


def _never_activated(module) -> bool:
    """A module whose own output is never an activation's: an op with an activation fused in cannot stand for
    it."""
    from torch import nn

    return isinstance(module, (nn.modules.conv._ConvNd, nn.Linear, nn.modules.batchnorm._BatchNorm))


def op_modules(graph: Graph, tree: ModuleTree, single_output: bool) -> dict[int, str]:
    """The ops that compute a value at run time, each with the module path it stands for (see the module's
    docstring), in execution order; ops that stand for no module are left out."""
    computed = set(graph.inputs) | {t for op in graph.ops for t in op.outputs}
    found: dict[int, str] = {}
    for op in graph.ops:
        if not op.outputs or not any(t in computed for t in op.inputs if t >= 0):
            continue  # on constants only: a weight's DEQUANTIZE
        out = op.outputs[0]
        path = _first(graph.names[out], tree)
        if path is None and not op.activation:  # a model output: the weights it takes name its module
            weights = [t for t in op.inputs if t >= 0 and t not in computed]
            path = next((p for t in weights for p in [_first(graph.names[t], tree)] if p), None)
        if path is None and out in graph.outputs and single_output:
            path = "model"
        if path is None or (op.activation and _never_activated(tree.modules.get(path))):
            continue
        found[op.index] = path
    return found


def _short(name: str, tree: ModuleTree) -> str:
    """A tensor's name as its modules' paths (``block.relu;act;block.c1``), its own name when it has none."""
    places = locations(name)
    if not places:
        return name
    paths = [tree.resolve(p) or p.rsplit("/", 1)[-1] for p in places]
    return ";".join(p[len("model."):] if p.startswith("model.") else p for p in paths)


def _dequantized(value: np.ndarray, detail: dict) -> np.ndarray | None:
    """A tensor's value in float: an int8/uint8 tensor by its scale and zero point; None for one that holds
    no float value (int32 shapes, indices)."""
    if value.dtype.kind == "f":
        return value.astype(np.float32)
    scale, zero = detail["quantization"]
    if not scale:
        return None
    return ((value.astype(np.float32) - zero) * scale).astype(np.float32)


def tensor_values(path: Path, x: np.ndarray, wanted: list[int], threads: int = 1):
    """Run the .tflite at `path` once on `x` (NCHW float, transposed and quantized as the model takes it) with
    every tensor kept: ({tensor index: float value or None}, whether XNNPACK ran its ops)."""
    from .runner import _quantized
    from .validate import load

    interp = load(path, threads=threads, preserve_all_tensors=True)
    detail = interp.get_input_details()[0]
    one = np.ascontiguousarray(x, np.float32)
    if one.shape != tuple(detail["shape"]) and one.transpose(0, 2, 3, 1).shape == tuple(detail["shape"]):
        one = np.ascontiguousarray(one.transpose(0, 2, 3, 1))  # an NHWC model
    try:
        interp.set_tensor(detail["index"], _quantized(one, detail))
        interp.invoke()
    except Exception as exc:
        raise WorkbenchError(f"LiteRT failed on {Path(path).name} with every tensor kept: {first_line(exc)}") \
            from exc
    details = {d["index"]: d for d in interp.get_tensor_details()}
    values = {}
    for t in wanted:
        try:
            values[t] = _dequantized(interp.get_tensor(t), details[t])
        except (ValueError, KeyError):  # not kept (inside a delegate's own partition)
            values[t] = None
    try:  # private, so only a note: the delegate's nodes come after the model's own in LiteRT's node list
        delegated = any(d["op_name"] == "DELEGATE" for d in interp._get_ops_details())
    except Exception:
        delegated = None
    return values, delegated


def locate(artifact, runner, pixels, preprocess=None, tolerance=None, *, module=None) -> Layers:
    """Per-layer comparison of the LiteRT `artifact` with PyTorch's `module` on one image (`pixels`,
    (1, 3, H, W)), both given the same input (the preprocessing is in both graphs): a `layers.Layers`, one op
    per layer. runner: the artifact's runner (its input handling and threads). Raises WorkbenchError when
    `module` is missing or LiteRT cannot read or run the file."""
    require_module(artifact, module)
    x = runner.inputs(pixels, preprocess)
    wrapper = reference_module(artifact, module)
    tree = ModuleTree(wrapper)
    graph = read_graph(artifact.path)
    reference = module_outputs(wrapper, x)
    stands = op_modules(graph, tree, single_output=len(graph.outputs) == 1 and "model" in reference)
    order = list(stands)
    keys = dict(zip(order, scope_outputs([_scope(stands[i]) for i in order])))
    matched = {i: k for i, k in keys.items() if k is not None}
    ops = {op.index: op for op in graph.ops}
    values, delegated = tensor_values(artifact.path, x, [ops[i].outputs[0] for i in matched],
                                      getattr(runner, "threads", 1))
    # an op that ends its module's run with another tensor (the PAD before a convolution with padding) is not
    # that module's output: it is no layer, and the layers after it are computed from the ones before it
    matched = {i: k for i, k in matched.items() if k in reference and values.get(ops[i].outputs[0]) is not None
               and align(values[ops[i].outputs[0]], reference[k]) is not None}
    producer = {t: op.index for op in graph.ops for t in op.outputs}
    sources = matched_inputs(lambda i: [producer[t] for t in ops[i].inputs if t in producer], matched)

    candidates = []
    for i, key in matched.items():
        out = ops[i].outputs[0]
        candidates.append(Candidate(i, _short(graph.names[out], tree), ops[i].kind, graph.names[out], key,
                                    values.get(out), sources(i)))
    precision = precision_of(artifact)
    notes = []
    if delegated is not None:
        notes.append("values read from XNNPACK, one partition per op, as the runner runs it" if delegated else
                     "values read from LiteRT's own kernels (XNNPACK took no op)")
    if precision == "fp16":
        notes.append("fp16: weights stored in half precision, computed in fp32 (LiteRT dequantizes them)")
    hidden = ("the value before an activation LiteRT fused into the op before it (a convolution's own output; "
              "such an op stands for the activation's module)") if any(op.activation for op in graph.ops) else ""
    return compare_layers("litert", "LiteRT", candidates, reference, total=len(graph.ops), tolerance=tolerance,
                          precision=precision, unit="op", notes=notes, hidden=hidden)
