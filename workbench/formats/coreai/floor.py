"""The bare Core AI runtime call, for the bench's refresh ratio: the asset compiled and its function loaded
once, then only the runtime's calls on inputs already preprocessed."""

from __future__ import annotations

import numpy as np


class Floor:
    """`floor()` runs the runtime on every row of the inputs; `close()` frees the compiled model (also a
    context manager)."""

    def __init__(self, artifact, inputs: np.ndarray):
        from . import _packages
        from .runner import CoreAIRunner

        self.runner = CoreAIRunner(artifact)
        self.runner.activate()
        rt = _packages.runtime()
        x = np.ascontiguousarray(inputs, np.float32)
        name = self.runner.input_name
        self.feeds = [{name: rt.NDArray(np.ascontiguousarray(x[i:i + 1]))} for i in range(len(x))]

    def __call__(self):
        run, function = self.runner.loop.run, self.runner.function
        return [run(function(feed)) for feed in self.feeds]

    def close(self) -> None:
        self.runner.deactivate()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def floor(artifact, inputs: np.ndarray) -> Floor:
    """The bare runtime call on `inputs` ((N, C, H, W), what the artifact takes), compiled once: call it to
    run, close it when done."""
    return Floor(artifact, inputs)
