"""TorchScript artifacts, run by torch (the module runner PyTorch's reference side uses too)."""

from __future__ import annotations

from ..common.pytorch import TorchRunner


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
