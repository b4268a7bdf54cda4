"""Core ML's bare call, for the bench: off macOS, the workbench's interpreter's `predict`, image by image."""

from __future__ import annotations


def floor(artifact, x, pixels=None, stack=None):
    from ...coreml_interp import CoreMLInterpreter

    interpreter = CoreMLInterpreter(str(artifact.path))
    return lambda: [interpreter.predict({artifact.input_name: x[i:i + 1]}) for i in range(len(x))]


def bare_export(spec, path):
    """`torch.jit.trace` + `ct.convert` (an ML program, fp16, iOS16, an RGB ImageType passing pixels through:
    the preprocessing baked in front, as the workbench bakes ImageNet's per-channel std) + `save`."""
    import contextlib
    import io
    import warnings

    import coremltools as ct
    import torch

    model, x = spec.wrapped(bake=spec.preprocess), spec.example_input(pixels=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x, strict=False)
    image = ct.ImageType(name=spec.input_name, shape=spec.input_shape, scale=1.0,
                         bias=[0.0] * spec.preprocess.channels, color_layout=ct.colorlayout.RGB)
    with contextlib.redirect_stderr(io.StringIO()):  # its progress bars, which the workbench hides too
        mlmodel = ct.convert(traced, inputs=[image], outputs=[ct.TensorType(name=n) for n in spec.output_names],
                             convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                             minimum_deployment_target=ct.target.iOS16)
    mlmodel.save(str(path))
