"""Core ML's bare call, for the bench: off macOS, the workbench's interpreter's `predict`, image by image."""

from __future__ import annotations


def floor(artifact, x, pixels=None, stack=None):
    from ...coreml_interp import CoreMLInterpreter

    interpreter = CoreMLInterpreter(str(artifact.path))
    return lambda: [interpreter.predict({artifact.input_name: x[i:i + 1]}) for i in range(len(x))]
