"""Where an MNN model leaves PyTorch, layer by layer: MNN's per-op callback (`runSessionWithCallBackInfo`) reads
every op's output, beside the PyTorch model with a hook on every module.

MNN converts the ONNX file torch's exporter writes and keeps its value names as op names, so an op is matched
to its PyTorch module through that ONNX file's module scopes (the same file is exported again, on the fly:
the exporter names values deterministically). MNN fuses an activation into the op before it (a Convolution
named ``conv2d`` outputs the ReLU after it): such an op stands for the activation's module, never for the
convolution's, whose value it does not give. Ops MNN adds (``Raster`` layout copies) are not compared.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from ...layers import Candidate, compare_layers, module_outputs, reference_module, require_module, scope_outputs

FUSED = {"Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish"}  # activations MNN may fold in


def onnx_keys(module, artifact):
    """The ONNX file MNN was converted from (exported again): {value name: module key}, the names MNN kept."""
    import onnx

    from ..base import ExportSpec
    from ..common.mean_norm import onnx_for
    from ..onnx.locate import node_scopes

    spec = ExportSpec(module=module, input_shape=tuple(artifact.input_shape), output_names=artifact.output_names,
                      input_name=artifact.input_name)
    with tempfile.TemporaryDirectory(prefix="workbench-") as tmp:
        model = onnx.load(str(onnx_for(dataclasses.replace(spec, preprocess=None), Path(tmp))))
    nodes = list(model.graph.node)
    scopes = node_scopes(model)
    kept = [i for i, s in enumerate(scopes) if s]
    keys = {nodes[i].output[0]: k for i, k in zip(kept, scope_outputs([scopes[i] for i in kept]))
            if k is not None and nodes[i].output}
    consumers: dict[str, list] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    return keys, consumers


def locate(artifact, runner, pixels, preprocess=None, tolerance=None, *, module=None):
    """Per-layer comparison of the MNN `artifact` with PyTorch's `module` on one image (`pixels`, (1, 3, H, W)):
    both take the model's tensor (the preprocessing MNN applies natively is applied in front of both)."""
    import MNN

    from ...layers import precision_of
    from .validate import load, native_quiet

    require_module(artifact, module)
    pre = preprocess or artifact.preprocess
    x = np.ascontiguousarray(pre.apply(pixels) if pre is not None else pixels, np.float32)
    keys, consumers = onnx_keys(module, artifact)
    interp = load(artifact.path)
    with native_quiet():
        session = interp.createSession({"numThread": 1, "precision": "low" if artifact.precision == "fp16" else
                                        "high", "backend": "CPU"})
    interp.getSessionInput(session).copyFrom(MNN.Tensor(x.shape, MNN.Halide_Type_Float, x,
                                                        MNN.Tensor_DimensionType_Caffe))
    ops: list[tuple[str, str, np.ndarray]] = []

    def begin(tensors, info):
        return True

    def end(tensors, info):
        if tensors:
            t = tensors[0]
            shape = t.getShape()
            host = MNN.Tensor(shape, MNN.Halide_Type_Float, np.zeros(shape, np.float32), MNN.Tensor_DimensionType_Caffe)
            t.copyToHostTensor(host)
            ops.append((info.getName(), info.getType(), np.array(host.getNumpyData(), np.float32).reshape(shape)))
        return True

    interp.runSessionWithCallBackInfo(session, begin, end)
    names = {name for name, _, _ in ops}
    candidates = []
    for index, (name, op, value) in enumerate(ops):
        stands = name
        while True:  # an activation fused in: the op's value is the activation's, under the activation's name
            after = [n for n in consumers.get(stands, []) if n.op_type in FUSED]
            if len(consumers.get(stands, [])) == 1 and after and after[0].output[0] not in names:
                stands = after[0].output[0]
            else:
                break
        if stands in keys:
            candidates.append(Candidate(index, name, op, stands, keys[stands], value))
    reference = module_outputs(reference_module(dataclasses.replace(artifact, preprocess=None), module), x)
    return compare_layers("mnn", "MNN", candidates, reference, total=len(ops), tolerance=tolerance,
                          precision=precision_of(artifact), unit="op")
