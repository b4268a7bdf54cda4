"""Where an ncnn model leaves PyTorch, layer by layer: ncnn's `Extractor.extract` reads every blob of the .param,
beside the PyTorch model with a hook on every module.

pnnx converts the ONNX file torch's exporter writes (see export.py) and keeps none of its names: reading it,
pnnx renames every node ``OpType_i`` and every value ``pnnx_i``, and the .param it writes names layers by kind
(``convrelu_0``, ``conv_5``) and blobs by number. So layers are matched through the graph: that ONNX file is
exported again on the fly (the exporter names and orders nodes deterministically) and walked beside the .param
from the input: each layer claims the first ONNX node of its kind (a Convolution: a Conv with its output channels
and kernel) computed from the ONNX values its bottom blobs stand for, and the node's module scope
(``pkg.torch.onnx.name_scopes``) names the PyTorch module, as for ONNX and MNN.

Fusions: a Convolution or InnerProduct with an activation folded in (param 9) stands for the activation's
output, never for the convolution's own, which ncnn does not give (`Layers.hidden` names such modules). An ONNX
node no layer claims (a BatchNormalization pnnx folded into the conv before it) belongs to the layer before it, a
reshape to the layer after it: a layer's blob stands for the value its consumers' nodes read. A layer whose blob no
matched layer reads (and that is not an output) is not compared: what it stands for is not known; a layer no ONNX
node of its kind matches is not compared, nor are the layers it feeds (a note counts them). The residual
``y += x`` inside a block is no module's output, and is never compared or blamed. Split and MemoryData layers
compute nothing to compare.

ncnn's Mat is CHW without the batch axis (`layers.align` puts it back). Each blob is copied as it is extracted, in
the .param's order, so an in-place layer after it cannot change the value read. The extractor is the runner's own
net, with its options (``opt.use_fp16_*``: on for an fp16 artifact, off for fp32), so the per-layer values are the
ones the runner computes. The precision reported is fp16 when those options ask for half precision; whether ncnn
computed any blob in it on this CPU (x86 builds keep most layers in fp32, ARM computes in fp16) is measured
against the same file run with them off, and said in a note and ``extra["fp16_compute"]``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError
from ...layers import Candidate, Layers, compare_layers, module_outputs, reference_module, require_module

_CONV = {"Conv"}
_DECONV = {"ConvTranspose"}
# the ONNX op a layer of each ncnn kind is converted from: the last op of the pattern when pnnx fuses several
# (Swish is x * sigmoid(x): its Mul). A kind not listed may come from any op.
HEADS: dict[str, set[str]] = {
    **{k: _CONV for k in ("Convolution", "ConvolutionDepthWise", "Convolution1D", "ConvolutionDepthWise1D",
                          "Convolution3D", "ConvolutionDepthWise3D", "DeformableConv2D")},
    **{k: _DECONV for k in ("Deconvolution", "DeconvolutionDepthWise", "Deconvolution1D",
                            "DeconvolutionDepthWise1D", "Deconvolution3D", "DeconvolutionDepthWise3D")},
    "InnerProduct": {"Gemm", "MatMul"}, "Gemm": {"Gemm", "MatMul"}, "MatMul": {"MatMul"},
    "BinaryOp": {"Add", "Sub", "Mul", "Div", "Max", "Min", "Pow", "Atan2", "Mod"},
    "Eltwise": {"Add", "Mul", "Max", "Sum"},
    "UnaryOp": {"Abs", "Neg", "Floor", "Ceil", "Sqrt", "Reciprocal", "Exp", "Log", "Sin", "Cos", "Tan", "Asin",
                "Acos", "Atan", "Tanh", "Round", "Trunc", "Mul", "Div", "Pow", "Erf"},
    "ReLU": {"Relu", "LeakyRelu"}, "Clip": {"Clip"}, "Sigmoid": {"Sigmoid"}, "TanH": {"Tanh"},
    "ELU": {"Elu"}, "SELU": {"Selu"}, "PReLU": {"PRelu"}, "Softplus": {"Softplus"}, "Erf": {"Erf"},
    "Exp": {"Exp"}, "Log": {"Log"}, "AbsVal": {"Abs"}, "Power": {"Pow"}, "Celu": {"Celu"},
    "HardSigmoid": {"HardSigmoid", "Clip", "Div", "Mul", "Add"}, "HardSwish": {"HardSwish", "Mul", "Div"},
    "Swish": {"Mul"}, "Mish": {"Mish", "Mul"}, "GELU": {"Gelu", "Mul"},
    "Pooling": {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"},
    "Pooling1D": {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"},
    "Pooling3D": {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean", "ReduceMax"},
    "Reduction": {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                  "ReduceLogSumExp", "ReduceSumSquare"},
    "Softmax": {"Softmax"}, "Concat": {"Concat"}, "Slice": {"Split", "Slice"}, "Crop": {"Slice"},
    "Reshape": {"Reshape", "Flatten", "Squeeze", "Unsqueeze"}, "Flatten": {"Reshape", "Flatten"},
    "Squeeze": {"Squeeze", "Reshape"}, "ExpandDims": {"Unsqueeze", "Reshape"}, "Permute": {"Transpose"},
    "Interp": {"Resize", "Upsample"}, "Padding": {"Pad"}, "BatchNorm": {"BatchNormalization"},
    "LayerNorm": {"LayerNormalization"}, "InstanceNorm": {"InstanceNormalization"},
    "GroupNorm": {"GroupNormalization"}, "PixelShuffle": {"DepthToSpace", "Reshape"},
    "Tile": {"Tile", "Expand"},
}
# ncnn's activation_type (param 9) of the layers that fold one in, and the ONNX ops it stands for
FOLDS = {k for k, v in HEADS.items() if v in (_CONV, _DECONV)} | {"InnerProduct"}
ACTIVATIONS = {1: {"Relu", "LeakyRelu"}, 2: {"LeakyRelu"}, 3: {"Clip", "Relu"}, 4: {"Sigmoid"},
               5: {"Mish", "Mul"}, 6: {"HardSwish", "Mul"}}
# ops that carry a value unchanged or only reshaped: one ncnn dropped belongs to the layer after it
LAYOUT = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout", "Cast", "Transpose"}
PASS = {"Input", "Split", "MemoryData"}  # layers that compute nothing to compare


@dataclass
class ParamLayer:
    """One line of an ncnn .param: its position, kind, name, bottom and top blobs and params (key -> text)."""

    index: int
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[int, str] = field(default_factory=dict)

    def param(self, key: int, default: int = 0) -> int:
        try:
            return int(self.params.get(key, default))
        except ValueError:
            return default


def read_param(path: Path) -> list[ParamLayer]:
    """The layers of an ncnn text .param (magic, counts, then one layer a line); WorkbenchError if malformed."""
    lines = [ln for ln in Path(path).read_text(errors="replace").splitlines() if ln.strip()]
    out = []
    for number, line in enumerate(lines[2:], start=3):
        parts = line.split()
        try:
            nb, nt = int(parts[2]), int(parts[3])
        except (IndexError, ValueError):
            raise WorkbenchError(f"{path}, line {number}: not an ncnn layer line ({line[:60]!r}); export it "
                                 "again") from None
        params = {}
        for token in parts[4 + nb + nt:]:
            key, _, value = token.partition("=")
            try:
                params[int(key)] = value
            except ValueError:
                continue
        out.append(ParamLayer(len(out), parts[0], parts[1], parts[4:4 + nb], parts[4 + nb:4 + nb + nt], params))
    return out


class OnnxGraph:
    """The ONNX file pnnx converted (exported again): its nodes, which values are data (computed from the input,
    not from constants or shapes), and each value's module key (see `layers.scope_outputs`)."""

    def __init__(self, model):
        from ...layers import scope_outputs
        from ..onnx.locate import node_scopes

        self.nodes = list(model.graph.node)
        inits = {t.name: tuple(t.dims) for t in model.graph.initializer}
        self.shapes = inits
        self.inputs = [v.name for v in model.graph.input if v.name not in inits]
        self.outputs = [v.name for v in model.graph.output]
        data = set(self.inputs)
        for n in self.nodes:  # Shape/Size give metadata pnnx folds into constants for the fixed input shape
            if n.op_type not in ("Shape", "Size") and any(i in data for i in n.input):
                data.update(o for o in n.output if o)
        self.dynamic = [[i for i in n.input if i in data] for n in self.nodes]
        self.producer = {o: i for i, n in enumerate(self.nodes) for o in n.output if o}
        scopes = node_scopes(model)
        kept = [i for i, s in enumerate(scopes) if s]
        self.keys = {self.nodes[i].output[0]: k for i, k in zip(kept, scope_outputs([scopes[i] for i in kept]))
                     if k is not None and self.nodes[i].output}
        self.scoped = bool(kept)

    def fits(self, layer: ParamLayer, i: int) -> bool:
        """Whether ONNX node i can be the node `layer` was converted from: its kind, and for a convolution or
        inner product, its output channels and kernel."""
        node = self.nodes[i]
        kinds = HEADS.get(layer.type)
        if kinds is not None and node.op_type not in kinds:
            return False
        weight = self.shapes.get(node.input[1]) if len(node.input) > 1 else None
        if weight is None or 0 not in layer.params:
            return True
        out = layer.param(0)
        if kinds is _CONV:
            kw = layer.param(1)
            kh = layer.param(11, kw)
            return weight[0] == out and weight[-1] == kw and (len(weight) < 4 or weight[-2] == kh)
        if kinds is _DECONV:
            group = layer.param(7, 1)
            return weight[1] * group == out
        if layer.type == "InnerProduct" and node.op_type in ("Gemm", "MatMul"):
            return out in weight
        return True


@dataclass
class Match:
    """The .param walked beside the ONNX graph: per blob the ONNX value it stands for, the blobs whose value
    is settled (a matched layer reads it, or it is an output), the ONNX node each layer was converted from, and
    the nodes claimed (by a layer, or folded into one)."""

    value: dict[str, str] = field(default_factory=dict)
    settled: dict[str, str] = field(default_factory=dict)
    unsure: set = field(default_factory=set)
    alias: dict[str, str] = field(default_factory=dict)  # a Split's tops: copies of its bottom
    heads: dict[int, int] = field(default_factory=dict)  # layer index -> its ONNX node
    claimed: set = field(default_factory=set)
    unmatched: list[ParamLayer] = field(default_factory=list)

    def root(self, blob: str) -> str:
        while blob in self.alias:
            blob = self.alias[blob]
        return blob

    def settle(self, blob: str, value: str) -> None:
        blob = self.root(blob)
        if self.settled.get(blob, value) != value:  # two consumers read different values: unknown
            self.unsure.add(blob)
        self.settled[blob] = self.value[blob] = value

    def stands(self, blob: str) -> str | None:
        blob = self.root(blob)
        return self.settled.get(blob) if blob not in self.unsure else None


def match(layers: list[ParamLayer], graph: OnnxGraph, outputs: list[str]) -> Match:
    """Walk the .param's `layers` beside `graph` from the input (see the module docstring); `outputs`: the
    ncnn net's output blobs, in the ONNX graph's output order."""
    m = Match()
    constants: set[str] = set()
    inputs = iter(graph.inputs)
    for layer in layers:
        if layer.type == "Input":
            for top in layer.tops:
                name = next(inputs, None)
                if name is not None:
                    m.value[top] = m.settled[top] = name
            continue
        if layer.type == "Split":
            for top in layer.tops:
                m.alias[top] = m.root(layer.bottoms[0])
            continue
        if not layer.bottoms or layer.type == "MemoryData":
            constants.update(layer.tops)
            continue
        bottoms = list(dict.fromkeys(m.root(b) for b in layer.bottoms if m.root(b) not in constants))
        head = _claim(layer, bottoms, graph, m) if all(b in m.value for b in bottoms) else None
        if head is None:
            m.unmatched.append(layer)
            continue
        node = graph.nodes[head]
        for k, top in enumerate(layer.tops):
            if k < len(node.output) and node.output[k]:
                m.value[top] = node.output[k]
        if layer.type in FOLDS and layer.param(9):  # the activation folded in: the blob is its output
            act = _next(graph, m.claimed, node.output[0], ACTIVATIONS.get(layer.param(9), set()))
            if act is None:
                m.unsure.update(layer.tops)
            else:
                m.value[layer.tops[0]] = graph.nodes[act].output[0]
    for blob, name in zip(outputs, graph.outputs):  # an output stands for the graph's output
        blob = m.root(blob)
        chain = _chain(graph, m.claimed, m.value[blob], name) if blob in m.value else None
        if chain is not None:
            m.claimed.update(chain)
            m.settle(blob, name)
    return m


def _claim(layer, bottoms, graph, m) -> int | None:
    """The ONNX node `layer` was converted from: the first unclaimed node of its kind computed from all its
    bottoms' values through nodes no layer claimed (None: there is none). Settles each bottom to the value that
    node reads: the nodes between are the bottom's layer's (folded in), but a reshape is this one's."""
    start = {m.value[b]: b for b in bottoms}
    first = min((graph.producer.get(v, -1) for v in start), default=-1) + 1
    found = _region(graph, m.claimed, start, first, lambda i: graph.fits(layer, i))
    if found is None:
        return None
    i, origin, made = found
    m.claimed.update(_ancestors(graph, i, made), {i})
    m.heads[layer.index] = i
    for b in bottoms:
        read = [v for v in graph.dynamic[i] if b in origin[v]]
        if m.value[b] in read:
            m.settle(b, m.value[b])
            continue
        chains = [c for c in (_back(graph, v, m.value[b], made) for v in read) if c is not None]
        if len(chains) != 1:
            m.unsure.add(b)
            continue
        stands = m.value[b]
        for j in chains[0]:
            if graph.nodes[j].op_type in LAYOUT:
                break
            stands = graph.nodes[j].output[0]
        m.settle(b, stands)
    return i


def _region(graph, claimed, start, first, wanted):
    """Scan the unclaimed nodes from `first` on that are computed from the values of `start` (value -> its
    blob) alone: the first `wanted` one computed from all of them, with each region value's blobs and the node
    that computes it; None if there is none."""
    everything = set(start.values())
    origin = {v: {b} for v, b in start.items()}
    made: dict[str, int] = {}
    for i in range(first, len(graph.nodes)):
        dyn = graph.dynamic[i]
        if i in claimed or not dyn or not all(v in origin for v in dyn):
            continue
        came = set().union(*(origin[v] for v in dyn))
        if came == everything and wanted(i):
            return i, origin, made
        for o in graph.nodes[i].output:
            if o:
                origin[o], made[o] = came, i
    return None


def _ancestors(graph, i, made) -> set[int]:
    """The region nodes (those in `made`) node i is computed from."""
    seen, todo = set(), list(graph.dynamic[i])
    while todo:
        j = made.get(todo.pop())
        if j is not None and j not in seen:
            seen.add(j)
            todo += graph.dynamic[j]
    return seen


def _back(graph, value, start, made) -> list[int] | None:
    """The chain of one-input region nodes from `start` to `value`, in order (None: no such chain)."""
    chain = []
    while value != start:
        j = made.get(value)
        if j is None or len(graph.dynamic[j]) != 1:
            return None
        chain.append(j)
        value = graph.dynamic[j][0]
    return chain[::-1]


def _chain(graph, claimed, start, end) -> list[int] | None:
    """The unclaimed one-input nodes from value `start` forward to value `end` (None: `end` is not reached so)."""
    chain, value = [], start
    while value != end:
        readers = [i for i, d in enumerate(graph.dynamic) if value in d and i not in claimed]
        if len(readers) != 1 or len(graph.dynamic[readers[0]]) != 1:
            return None
        chain.append(readers[0])
        value = graph.nodes[readers[0]].output[0]
    return chain


def _next(graph, claimed, start, kinds) -> int | None:
    """The first unclaimed node of `kinds` computed from value `start` alone, claimed with the nodes between."""
    found = _region(graph, claimed, {start: start}, graph.producer.get(start, -1) + 1,
                    lambda i: graph.nodes[i].op_type in kinds)
    if found is None:
        return None
    i, _, made = found
    claimed.update(_ancestors(graph, i, made), {i})
    return i


def onnx_model(module, artifact):
    """The ONNX file pnnx converted `artifact` from, exported again from `module` (without preprocessing)."""
    import onnx

    from ..base import ExportSpec
    from ..common.mean_norm import onnx_for

    spec = ExportSpec(module=module, input_shape=tuple(artifact.input_shape), output_names=artifact.output_names,
                      input_name=artifact.input_name)
    with tempfile.TemporaryDirectory(prefix="workbench-") as tmp:
        return onnx.load(str(onnx_for(spec, Path(tmp))))


def input_mat(ncnn, runner, pixels, preprocess):
    """The Mat the runner gives ncnn for `pixels`' first image: ncnn's own from_pixels + substract_mean_normalize
    on 8-bit pixels for an artifact with the preprocessing inside, else the preprocessed tensor."""
    from ..common.mean_norm import eight_bit
    from .runner import pixel_mat

    inside = runner.preprocess
    if inside is not None:
        runner.inputs(pixels, preprocess)  # refuses another preprocessing, as the runner's run does
        images = eight_bit(pixels[:1], inside)
        if images is not None:
            return pixel_mat(ncnn, images[0], inside)
    x = runner.inputs(pixels[:1], None if inside is not None else preprocess)
    return ncnn.Mat(np.ascontiguousarray(x[0], np.float32))


def blob_values(net, input_name: str, mat, layers: list[ParamLayer], path) -> dict[str, np.ndarray]:
    """Every computed blob of `net` on `mat`, by name, each copied as it is extracted. In the .param's order,
    so each extract runs one layer from blobs the extractor still holds (its light mode frees a blob only once
    the layer reading it has run)."""
    ex = net.create_extractor()
    ex.input(input_name, mat)
    values = {}
    for layer in layers:
        if layer.type in PASS:
            continue
        for top in layer.tops:
            ret, out = ex.extract(top)
            if ret != 0:
                raise WorkbenchError(f"ncnn failed to compute blob {top!r} ({layer.type} {layer.name!r}) of {path} "
                                     f"(code {ret}); check that the .bin is this .param's, or export it again")
            values[top] = np.array(out, np.float32)  # a copy: an in-place layer after it cannot change it
    return values


def locate(artifact, runner, pixels, preprocess=None, tolerance=None, *, module=None) -> Layers:
    """Per-layer comparison of the ncnn `artifact` with PyTorch's `module` on one image (`pixels`, (1, 3, H, W)): a
    `layers.Layers` over the .param's layers. `runner`: the artifact's NcnnRunner, whose net (with its options)
    computes the values; both sides take the tensor ncnn computes from (ncnn's own mean/norm of the 8-bit pixels
    for an artifact with the preprocessing inside). preprocess: what to apply in front of an artifact that takes
    the model's tensor. `extra["fp16_compute"]`: whether ncnn stored or computed any blob in half precision on
    this CPU (an fp16 artifact's options ask for it; x86 builds keep most layers in fp32, a phone's ARM does not).
    Raises WorkbenchError without `module`, or when ncnn cannot compute a blob."""
    import ncnn

    from ...layers import precision_of
    from .validate import load

    require_module(artifact, module)
    runner.activate()
    net = runner.net
    layers = read_param(artifact.path)
    graph = OnnxGraph(onnx_model(module, artifact))
    found = match(layers, graph, list(net.output_names()))
    mat = input_mat(ncnn, runner, pixels, preprocess)
    x = np.array(mat, np.float32)[None]  # what ncnn computes from: PyTorch's input too
    values = blob_values(net, runner.input_name, mat, layers, artifact.path)
    opt = net.opt
    asks = bool(opt.use_fp16_storage or opt.use_fp16_arithmetic or opt.use_bf16_storage)
    half = False
    if asks:  # the same file with the half-precision options off: any blob that differs was computed in half
        plain = load(artifact.path, fp16=False, threads=getattr(runner, "threads", 1))
        wide = blob_values(plain, runner.input_name, ncnn.Mat(np.ascontiguousarray(x[0])), layers, artifact.path)
        half = any(not np.array_equal(values[k], wide[k], equal_nan=True) for k in values)

    candidates, keys = [], {}
    for layer in layers:
        if layer.index not in found.heads:
            continue
        for top in layer.tops:
            stands = found.stands(top)
            key = graph.keys.get(stands) if stands is not None else None
            if key is not None and top in values:
                keys[top] = key
                candidates.append(Candidate(layer.index, layer.name, layer.type, top, key, values[top]))
    producer = {t: layer for layer in layers for t in layer.tops}

    def sources(layer, seen) -> list[str]:
        """The matched layers `layer` is computed from: the nearest ones up its bottoms."""
        out = []
        for b in layer.bottoms:
            if b in keys:
                out.append(keys[b])
            elif b in producer and producer[b].index not in seen:
                seen.add(producer[b].index)
                out += sources(producer[b], seen)
        return out

    for c in candidates:
        c.after = tuple(dict.fromkeys(sources(layers[c.index], set())))
    reference = module_outputs(reference_module(dataclasses.replace(artifact, preprocess=None), module), x)
    precision = "fp16" if asks or precision_of(artifact) == "fp16" else "fp32"
    compared = {c.torch for c in candidates}
    order = {}
    for j in sorted(found.claimed):
        key = graph.keys.get(graph.nodes[j].output[0])
        if key is not None and key not in compared and key in reference:
            order.setdefault(key.removeprefix("model."), j)
    notes = []
    if found.unmatched:
        kinds = sorted({x.type for x in found.unmatched})
        notes.append(f"{len(found.unmatched)} ncnn layers ({', '.join(kinds)}) could not be matched to the ONNX "
                     "graph pnnx converted; the layers they feed are not compared")
    if not graph.scoped:
        notes.append("the ONNX export carries no module scopes (pkg.torch.onnx.name_scopes): no layer can be named")
    if precision == "fp16":
        notes.append("ncnn stores or computes blobs in half precision on this CPU" if half else
                     "the weights are half precision, but ncnn computes every blob in fp32 on this CPU (on a phone's "
                     "ARM CPU it computes in fp16: an fp16 overflow named here would happen there)")
    names = list(order)[:8] + ([f"{len(order) - 8} more"] if len(order) > 8 else [])
    hidden = ("the outputs of modules ncnn computes inside another layer (an activation folded into its "
              f"convolution, ...): {', '.join(names)}") if order else ""
    found_layers = compare_layers("ncnn", "ncnn", candidates, reference, total=len(layers), tolerance=tolerance,
                                  precision=precision, unit="layer", notes=notes, hidden=hidden)
    return dataclasses.replace(found_layers, extra={"fp16_compute": half})
