"""MNN's Python binding: the preprocessing applied by MNN itself (CVImageProcess mean/normal)."""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError, first_line
from ..common.mean_norm import MeanNormRunner

WINOGRAD_MEMORY_LEVEL = 3  # MNN::Interpreter::HintMode


class MnnRunner(MeanNormRunner):
    name = "mnn"
    label = "MNN"

    def __init__(self, artifact, *, threads: int = 1):
        super().__init__()
        self.artifact, self.preprocess, self.threads = artifact, artifact.preprocess, threads
        self.interp = None

    def _activate(self):
        import MNN

        from .validate import load, native_quiet

        self.MNN = MNN
        self.interp = load(self.artifact.path)
        precision = "low" if self.artifact.precision == "fp16" else "high"
        if self.artifact.precision != "fp16":
            # MNN's CPU backend picks Winograd convolutions on larger inputs, fp32 or not: 4e-4 off on the
            # super-resolution net at 96x96 (3e-6 without). Level 0 turns them off for fp32 parity.
            self.interp.setSessionHint(WINOGRAD_MEMORY_LEVEL, 0)
        with native_quiet():
            self.session = self.interp.createSession({"numThread": int(self.threads), "precision": precision,
                                                      "backend": "CPU"})
        self.input = self.interp.getSessionInput(self.session)
        outputs = self.interp.getSessionOutputAll(self.session)
        missing = [n for n in self.artifact.output_names if n not in outputs]
        if missing:
            raise WorkbenchError(f"{self.artifact.path} has no output {missing[0]!r} (it has {sorted(outputs)}); "
                                 "export it again")
        self.outputs = [outputs[n] for n in self.artifact.output_names]
        self.label = f"MNN {MNN.version()}" + (" (fp16)" if self.artifact.precision == "fp16" else "")

    def _deactivate(self):
        self.interp = self.session = self.input = self.outputs = None

    def _results(self) -> list[np.ndarray]:
        self.interp.runSession(self.session)
        results = []
        for out in self.outputs:
            shape = out.getShape()
            host = self.MNN.Tensor(shape, self.MNN.Halide_Type_Float, np.zeros(shape, np.float32),
                                   self.MNN.Tensor_DimensionType_Caffe)  # NCHW, whatever MNN keeps inside
            out.copyToHostTensor(host)
            # getNumpyData, not getData: getData builds a Python tuple (12 ms for a 288x288 output, against 0.01)
            results.append(np.array(host.getNumpyData(), np.float32).reshape(shape))
        return results

    def _collect(self, rows):
        return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(self.artifact.output_names)}

    def _run(self, inputs):
        x = np.ascontiguousarray(inputs, np.float32)
        rows = []
        try:
            for i in range(len(x)):
                tensor = self.MNN.Tensor(x[i:i + 1].shape, self.MNN.Halide_Type_Float, x[i:i + 1],
                                         self.MNN.Tensor_DimensionType_Caffe)
                self.input.copyFrom(tensor)
                rows.append(self._results())
        except Exception as exc:
            raise WorkbenchError(f"MNN failed on input {x.shape[1:]}: {first_line(exc)}") from exc
        return self._collect(rows)

    def _run_native(self, images, pre):
        MNN = self.MNN
        mn = pre.mean_norm()
        pad = (0.0,) * (4 - len(mn["mean"]))  # CVImageProcess takes four channels' worth
        gray = MNN.CV_ImageFormat_GRAY
        process = MNN.CVImageProcess({
            "sourceFormat": gray if pre.grayscale else MNN.CV_ImageFormat_RGB,
            "destFormat": gray if pre.grayscale else (MNN.CV_ImageFormat_BGR if pre.bgr else MNN.CV_ImageFormat_RGB),
            "mean": tuple(mn["mean"]) + pad, "normal": tuple(mn["norm"]) + pad})
        rows = []
        for img in images:
            h, w = img.shape[:2]
            process.convert(img, w, h, 0, self.input)
            rows.append(self._results())
        return self._collect(rows)
