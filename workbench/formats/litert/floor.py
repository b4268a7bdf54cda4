"""LiteRT's bare call, for the bench: set_tensor, invoke, get_tensor, the input already in the layout and type
the model takes."""

from __future__ import annotations

import numpy as np


def taken(x: np.ndarray, detail: dict) -> np.ndarray:
    """`x` as a LiteRT input tensor takes it: a full-integer model's quantized (round(x / scale) + zero point),
    which an app does with its preprocessing, before the runtime."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    return np.clip(np.round(x / scale) + zero, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def floor(artifact, x, pixels=None, stack=None):
    from .validate import load

    interp = load(artifact.path, threads=1)
    detail = interp.get_input_details()[0]
    index, want = detail["index"], tuple(detail["shape"])
    outs = [d["index"] for d in interp.get_output_details()]
    rows = [x[i:i + 1] if x[i:i + 1].shape == want else x[i:i + 1].transpose(0, 2, 3, 1) for i in range(len(x))]
    rows = [np.ascontiguousarray(taken(r, detail)) for r in rows]  # in the layout and type the model takes

    def call():
        for r in rows:
            interp.set_tensor(index, r)
            interp.invoke()
            for o in outs:
                interp.get_tensor(o)

    return call
