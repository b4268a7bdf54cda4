"""Where a Core ML program leaves PyTorch: the interpreter beside the traced module, op by op.

A MIL op is matched to a TorchScript value through its name (see `coreml_interp.divergence`); the value is
named after the PyTorch module whose output it is (the traced graph's module hierarchy), else after itself.
Both sides are the traced module's values, each copied where it is produced, so an in-place op later in the
graph is never blamed for a value it did not compute.
"""

from __future__ import annotations

import numpy as np

from ...compare import DEFAULT_TOLERANCES, Tolerance
from ...errors import WorkbenchError


def locate(artifact, runner, pixels: np.ndarray, preprocess=None, tolerance: Tolerance | dict | None = None,
           *, module=None):
    """Per-op comparison of `artifact`'s MIL program with the traced module it was converted from, on one image
    (`pixels`, (1, 3, H, W)), both sides given the same input: a `layers.Layers` (`first`: the first op over
    tolerance). preprocess: what to apply in front of an artifact that takes the model's tensor. module: unused
    (the traced module is PyTorch's side)."""
    import torch

    from ...coreml_interp.divergence import _SUFFIXES, mil_name, torch_values
    from ...layers import Candidate, compare_layers, torchscript_modules
    from .runner import image_feed

    if artifact.traced is None:
        raise WorkbenchError(f"{artifact.path} was not traced in this session (method='export', or loaded from "
                             "disk): export it with method='trace' to locate where it diverges")
    traced, takes_pixels = artifact.traced
    x = runner.inputs(pixels, preprocess)  # what the artifact takes: channel-ordered pixels or the tensor
    model_input = x if takes_pixels or artifact.preprocess is None else artifact.preprocess.apply(pixels)
    feed = {artifact.input_name: image_feed(x[0], artifact.preprocess)}
    if isinstance(tolerance, dict):
        tolerance = tolerance.get("", None)
    tol = tolerance or DEFAULT_TOLERANCES[artifact.precision]
    values = torch_values(traced, torch.from_numpy(np.ascontiguousarray(model_input)))
    modules = torchscript_modules(traced)
    reference, names = {}, {}
    for debug, value in values.items():
        key = mil_name(debug)
        names[key] = modules.get(debug, debug)
        reference[names[key]] = value.detach().double().numpy()
    interpreter = runner.interpreter()
    steps = interpreter.program.steps
    candidates, index = [], [0]

    def observe(op_type, op_name, outputs):
        outs = [n for n, _ in steps[index[0]].outputs]
        for name, value in zip(outs, outputs):
            key = _SUFFIXES.sub("", name)
            if key in names and isinstance(value, torch.Tensor) and value.is_floating_point():
                candidates.append(Candidate(index[0], op_name, op_type, name, names[key],
                                            value.detach().double().numpy().copy()))
        index[0] += 1

    interpreter.predict(feed, observe=observe, image_outputs="array")
    return compare_layers("coreml", "Core ML", candidates, reference, total=len(steps), tolerance=tol,
                          precision=artifact.precision, unit="op", strip="model.", transpose=False)
