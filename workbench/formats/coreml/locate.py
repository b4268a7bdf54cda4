"""Where a Core ML program first leaves PyTorch: the interpreter beside the traced module, op by op."""

from __future__ import annotations

import numpy as np

from ...compare import DEFAULT_TOLERANCES, Tolerance
from ...errors import WorkbenchError


def locate(artifact, runner, pixels: np.ndarray, preprocess=None, tolerance: Tolerance | dict | None = None):
    """The first MIL op of `artifact` whose output leaves PyTorch's on one image (`pixels`, (1, 3, H, W)),
    both sides given the same input: a `coreml_interp.Divergence`. preprocess: what to apply in front of an
    artifact that takes the model's tensor. Needs the traced module the artifact was converted from."""
    import torch

    from ...coreml_interp.divergence import locate as run_locator
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
    return run_locator(traced, torch.from_numpy(np.ascontiguousarray(model_input)), runner.interpreter(), feed, tol)
