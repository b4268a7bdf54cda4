"""ONNX Runtime's bare call, for the bench: a session built once, configured and run as the runner runs it."""

from __future__ import annotations


def floor(artifact, x, pixels=None, stack=None):
    import onnxruntime as ort

    options = ort.SessionOptions()  # as the runner configures it: idle workers block rather than spin
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(artifact.path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: [session.run(None, {name: x[i:i + 1]}) for i in range(len(x))]  # exports fix batch 1


def bare_export(spec, path):
    """`torch.onnx.export(..., dynamo=True)` of the wrapped model (its preprocessing in front) and its save."""
    import warnings

    import torch

    model, x = spec.wrapped(bake=spec.preprocess), spec.example_input(pixels=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, external_data=False, verbose=False,
                                    input_names=[spec.input_name], output_names=list(spec.output_names))
    program.save(str(path))
