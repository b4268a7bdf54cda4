"""PyTorch runners: the eager reference, and TorchScript artifacts."""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError, first_line
from ..base import Runner, named_outputs


class TorchRunner(Runner):
    """Runs an nn.Module (eager or scripted). The reference side of every comparison.

    `batch`: images per call; by default one per torch thread, so each image's activations stay in its
    core's cache (bench/refresh.py measures the difference).
    """

    name = "torch"
    label = "PyTorch"

    def __init__(self, module, *, output_names=None, label: str | None = None, batch: int | None = None):
        super().__init__()
        self.module, self.output_names, self.batch = module, output_names, batch
        if label:
            self.label = label

    def _run(self, inputs):
        import torch

        results = []
        batch = self.batch or torch.get_num_threads()
        with torch.inference_mode():
            for start in range(0, len(inputs), batch):
                x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + batch]))
                try:
                    out = self.module(x)
                except Exception as exc:
                    raise WorkbenchError(
                        f"{self.label} forward() failed on input {tuple(x.shape)}: {type(exc).__name__}: "
                        f"{first_line(exc)}. Check the input size and channels "
                        "the model expects") from exc
                results.append(named_outputs(out, self.output_names))
        return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


class TorchScriptRunner(TorchRunner):
    name = "torchscript"
    label = "TorchScript"

    def __init__(self, artifact):
        super().__init__(None, output_names=artifact.output_names)
        self.artifact, self.preprocess = artifact, artifact.preprocess

    def _activate(self):
        from .validate import load

        self.module = load(self.artifact.path).eval()

    def _deactivate(self):
        self.module = None
