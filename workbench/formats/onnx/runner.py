"""ONNX Runtime on the CPU: one InferenceSession per artifact, built once."""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError, first_line, require
from ..base import Runner


class OnnxRunner(Runner):
    name = "onnx"
    label = "ONNX Runtime"

    def __init__(self, artifact, *, threads: int | None = None):
        super().__init__()
        self.artifact, self.preprocess, self.threads = artifact, artifact.preprocess, threads
        self.session = None

    def _activate(self):
        ort = require("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        # ORT's idle workers busy-wait by default; beside torch on few cores that spinning slows the next
        # runtime's run (bench/refresh.py). Block instead.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # On x86 CPUs without VNNI (AVX2, AVX-512 without VNNI: this machine) ONNX Runtime's fused int8 kernels
        # multiply u8 by s8 in pairs into int16, which saturates: notebook 08's static int8 digits net lost 2 of
        # 6 digits (max abs 3.4) where its QDQ graph, computed exactly, loses none (0.34). This option takes
        # the exact u8u8 kernels there (slower, int8 models only), so the figures are the file's, not the CPU's.
        options.add_session_config_entry("session.x64quantprecision", "1")
        if self.threads:
            options.intra_op_num_threads = self.threads
        try:
            self.session = ort.InferenceSession(str(self.artifact.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise WorkbenchError(f"ONNX Runtime cannot load {self.artifact.path}: {exc}") from exc
        self.label = f"ONNX Runtime {ort.__version__}"

    def _deactivate(self):
        self.session = None

    def _run(self, inputs):
        inp = self.session.get_inputs()[0]
        names = [o.name for o in self.session.get_outputs()]
        x = np.ascontiguousarray(inputs, np.float32)
        try:
            # Export fixes the batch at 1; run image by image so any batch works.
            rows = [self.session.run(names, {inp.name: x[i:i + 1]}) for i in range(len(x))]
        except Exception as exc:
            raise WorkbenchError(
                f"ONNX Runtime failed on input {x.shape[1:]} (the model takes {inp.shape}): "
                f"{first_line(exc)}") from exc
        return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(names)}
