"""The bare Core AI runtime call, for the bench's refresh ratio: the asset compiled and its function loaded
once, then only the runtime's calls on inputs already preprocessed, on the runner's own event loop."""

from __future__ import annotations

import numpy as np


class Floor:
    """Calling it runs the runtime once per row of the inputs and returns the runtime's outputs (a dict of
    NDArrays per row); `close()` frees the compiled model (also a context manager)."""

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


def floor(artifact, inputs: np.ndarray, pixels=None, stack=None) -> Floor:
    """The bare runtime call on `inputs` ((N, C, H, W) float32, what the artifact takes: pixels for an asset with
    the preprocessing inside), compiled once: call it to run. `pixels` is not used (Core AI applies no
    preprocessing of its own); `stack` (an ExitStack), when given, closes it, else close it yourself."""
    call = Floor(artifact, inputs)
    if stack is not None:
        stack.callback(call.close)
    return call
