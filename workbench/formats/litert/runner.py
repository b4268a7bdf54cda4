"""LiteRT's interpreter (ai-edge-litert), in process."""

from __future__ import annotations

import re

import numpy as np

from ...errors import WorkbenchError, first_line
from ..base import Runner


def _index(name: str) -> int:
    found = re.findall(r"\d+", name)
    return int(found[-1]) if found else 0


class LiteRTRunner(Runner):
    name = "litert"
    label = "LiteRT"

    def __init__(self, artifact, *, threads: int = 1):
        super().__init__()
        self.artifact, self.preprocess, self.threads = artifact, artifact.preprocess, threads
        self.interp = None

    def _activate(self):
        from .validate import load

        self.interp = load(self.artifact.path, threads=self.threads)
        self.input = self.interp.get_input_details()[0]
        # litert-torch names outputs output_0, output_1...: in the model's order
        self.outputs = sorted(self.interp.get_output_details(), key=lambda d: _index(d["name"]))
        if len(self.outputs) != len(self.artifact.output_names):
            raise WorkbenchError(f"{self.artifact.path} has {len(self.outputs)} outputs, the model "
                                 f"{len(self.artifact.output_names)}; export it again")
        try:
            from ai_edge_litert import __version__ as version
        except ImportError:
            version = ""
        self.label = f"LiteRT {version}".strip() + (" (fp16)" if self.artifact.precision == "fp16" else "")

    def _deactivate(self):
        self.interp = None

    def _run(self, inputs):
        x = np.ascontiguousarray(inputs, np.float32)
        want = tuple(self.input["shape"])
        rows = []
        try:
            for i in range(len(x)):
                one = x[i:i + 1]
                if one.shape != want and one.transpose(0, 2, 3, 1).shape == want:
                    one = np.ascontiguousarray(one.transpose(0, 2, 3, 1))  # an NHWC model
                self.interp.set_tensor(self.input["index"], _quantized(one, self.input))
                self.interp.invoke()
                rows.append([_dequantized(self.interp.get_tensor(d["index"]), d) for d in self.outputs])
        except Exception as exc:
            raise WorkbenchError(f"LiteRT failed on input {x.shape[1:]} (the model takes {list(want)}): "
                                 f"{first_line(exc)}") from exc
        return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(self.artifact.output_names)}


def _quantized(x: np.ndarray, detail: dict) -> np.ndarray:
    """`x` as the input tensor takes it: unchanged when float, else round(x / scale) + zero point, as an
    app feeds a full-integer model."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero, info.min, info.max).astype(dtype)


def _dequantized(q: np.ndarray, detail: dict) -> np.ndarray:
    """An output tensor in float: (q - zero point) * scale when it is integer."""
    if np.dtype(detail["dtype"]).kind == "f":
        return q.copy()
    scale, zero = detail["quantization"]
    return ((q.astype(np.float32) - zero) * scale).astype(np.float32)
