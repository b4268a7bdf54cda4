"""ONNX Runtime's bare call, for the bench: a session built once, configured and run as the runner runs it."""

from __future__ import annotations


def floor(artifact, x, pixels=None, stack=None):
    import onnxruntime as ort

    options = ort.SessionOptions()  # as the runner configures it: idle workers block rather than spin
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: [session.run(None, {name: x[i:i + 1]}) for i in range(len(x))]  # exports fix batch 1
