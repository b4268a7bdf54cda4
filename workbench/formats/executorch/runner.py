"""ExecuTorch's runtime, in a worker process of the Android tools env (the program loaded once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import Runner
from ..common.tools_env import Worker

HERE = Path(__file__).resolve().parent  # the tools-env scripts beside this file


class ExecuTorchRunner(Runner):
    name = "executorch"
    label = "ExecuTorch"

    def __init__(self, artifact):
        super().__init__()
        self.artifact, self.preprocess = artifact, artifact.preprocess
        self.worker = None

    def _activate(self):
        from .validate import check_header

        check_header(self.artifact.path)
        self.worker = Worker(HERE / "_serve.py", [str(self.artifact.path)], what="ExecuTorch",
                             packages="executorch")
        portable = any("portable kernels only" in n or "portable kernels run the whole graph" in n
                       for n in self.artifact.notes)
        self.label = f"ExecuTorch ({'portable' if portable else 'XNNPACK'})" + (
            " (fp16)" if self.artifact.precision == "fp16" else "")

    def _deactivate(self):
        self.worker.close()
        self.worker = None

    def _run(self, inputs):
        outs = self.worker.request(np.ascontiguousarray(inputs, np.float32))
        return dict(zip(self.artifact.output_names, outs))
