"""Where an ONNX model leaves PyTorch, layer by layer: ONNX Runtime with every intermediate value made a graph
output (on a copy of the model), beside the PyTorch model with a hook on every module.

A node is matched to its PyTorch module through the module scope torch's exporter records on it
(``pkg.torch.onnx.name_scopes``, the torch.export-based exporter); a node ending a module's run of nodes computes
that module's output. Nodes a later step added (a compressed variant's Cast, QuantizeLinear/DequantizeLinear)
carry no scope and are not compared; their error shows in the next layer. The legacy TorchScript exporter
records no scopes: its files cannot be matched.
"""

from __future__ import annotations

import ast

import numpy as np

from ... import layers as _layers
from ...errors import WorkbenchError, first_line, require
from ...layers import (
    Candidate,
    Layers,
    compare_layers,
    matched_inputs,
    module_outputs,
    precision_of,
    reference_module,
)

SCOPES = "pkg.torch.onnx.name_scopes"


def node_scopes(model) -> list[list[str] | None]:
    """Per node of `model`'s graph, its module scope (outer to inner module paths, the wrapper's root left
    out), or None when the node carries none."""
    out = []
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        if SCOPES not in meta:
            out.append(None)
            continue
        try:
            scopes = ast.literal_eval(meta[SCOPES])
        except (ValueError, SyntaxError):
            out.append(None)
            continue
        out.append([s for s in scopes[1:-1] if s])  # '' is the root; the last is the node itself
    return out


def intermediate_values(model, wanted: list[str], x: np.ndarray, input_name: str, threads: int | None = None):
    """Run `model` (a ModelProto) with the values `wanted` made graph outputs: {name: array}."""
    onnx = require("onnx", "onnx")
    ort = require("onnxruntime", "onnxruntime")
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(probe)
    except Exception:  # a model shape inference cannot follow: ONNX Runtime needs only the element types
        inferred = probe
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    present = {o.name for o in probe.graph.output}
    exposed = []
    for name in wanted:
        if name in present:
            exposed.append(name)
        elif name in types and types[name].tensor_type.elem_type:
            value = onnx.ValueInfoProto(name=name)
            value.type.tensor_type.elem_type = types[name].tensor_type.elem_type
            probe.graph.output.append(value)
            exposed.append(name)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.add_session_config_entry("session.x64quantprecision", "1")  # as the runner runs it
    if threads:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
        got = session.run(exposed, {input_name: np.ascontiguousarray(x, np.float32)})
    except Exception as exc:
        raise WorkbenchError(f"ONNX Runtime cannot run the model with its intermediate values exposed: "
                             f"{first_line(exc)}") from exc
    return dict(zip(exposed, got))


def locate(artifact, runner=None, pixels=None, preprocess=None, tolerance=None, *, module=None):
    """Per-layer comparison of the ONNX `artifact` with PyTorch's `module` on one image (`pixels`, (1, 3, H, W)),
    both given the same input: a `layers.Layers`. preprocess: what to apply in front of an artifact that takes
    the model's tensor. A file whose nodes carry no module scopes (the legacy exporter's) matches no layer, and
    its `hidden` says why."""
    onnx = require("onnx", "onnx")
    _layers.require_module(artifact, module)
    x = runner.inputs(pixels, preprocess)
    model = onnx.load(str(artifact.path))
    scopes = node_scopes(model)
    kept = [i for i, s in enumerate(scopes) if s]
    if not kept:  # not an error: the widget locates every failing format, and this one has nothing to show
        return Layers("onnx", "ONNX", (), len(model.graph.node), precision_of(artifact), hidden=(
            f"{artifact.path.name}: its nodes carry no PyTorch module scopes ({SCOPES}), which only torch's "
            "torch.export-based exporter writes: export it without legacy=True to compare it layer by layer"))

    keys = dict(zip(kept, _layers.scope_outputs([scopes[i] for i in kept])))
    nodes = list(model.graph.node)
    wanted = {i: nodes[i].output[0] for i, k in keys.items() if k is not None and nodes[i].output}
    values = intermediate_values(model, list(wanted.values()), x, artifact.input_name, getattr(runner, "threads", None))
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    matched = {i: keys[i] for i in wanted if wanted[i] in values}
    sources = matched_inputs(lambda i: [producer[n] for n in nodes[i].input if n in producer], matched)

    candidates = [Candidate(i, nodes[i].name, nodes[i].op_type, wanted[i], key, values[wanted[i]], sources(i))
                  for i, key in matched.items()]
    reference = module_outputs(reference_module(artifact, module), x)
    precision = precision_of(artifact)
    if any(p.key == "workbench.compression" and p.value == "fp16" for p in model.metadata_props):
        precision = "fp16"
    return compare_layers("onnx", "ONNX", candidates, reference, total=len(nodes), tolerance=tolerance,
                          precision=precision)
