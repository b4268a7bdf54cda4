"""The Core ML interpreter: run converted Core ML models on any OS.

`CoreMLInterpreter(model, compute_precision=None).predict(data)` behaves like `MLModel.predict`. Kernels
live in `ops/`, one MIL op family per module, registered by name (`registry.op`).
"""

from .interpreter import CoreMLInterpreter
from .registry import known

__all__ = ["CoreMLInterpreter", "known"]
