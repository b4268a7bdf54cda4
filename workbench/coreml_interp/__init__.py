"""The Core ML interpreter: run converted Core ML models on any OS.

`CoreMLInterpreter(model, compute_precision=None, function_name=None).predict(data, state=None)` behaves
like `MLModel.predict`; `make_state()` gives a stateful model's state. It runs ML programs (every MIL op
coremltools registers: compressed weights decompressed once at load, control flow, lists, state, random),
neural networks (every layer type but custom ones, quantized weights included) and pipelines of them
(with Core ML's non-maximum suppression model). Kernels live in `ops/`, one MIL op family per module,
registered by name (`registry.op`); neural-network layers in `neuralnetwork/`, one family per module.
"""

from .interpreter import CoreMLInterpreter
from .registry import known

__all__ = ["CoreMLInterpreter", "known"]
