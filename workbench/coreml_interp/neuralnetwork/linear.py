"""batchedMatmul: numpy-broadcast matmul of two inputs, or of one input with a stored weight (and bias)."""

from __future__ import annotations

import torch

from ..registry import kernel
from . import layer, weights


@layer("batchedMatmul")
def _batched_matmul(b, name, p, inputs, outputs):
    matmul = kernel("matmul")
    if len(inputs) == 2:
        ta, tb = bool(p.transposeA), bool(p.transposeB)
        b.add(name, "matmul", inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])],
              fn=lambda x, y: matmul(x, y, ta, tb))
        return
    # stored (out, in), as coremltools' builder writes W (in, out) transposed
    w = weights(p.weights, (p.weightMatrixSecondDimension, p.weightMatrixFirstDimension)).t()
    bias = weights(p.bias, (p.weightMatrixSecondDimension,)) if p.hasBias else None
    ta = bool(p.transposeA)

    def fn(x):
        y = torch.matmul(x.transpose(-1, -2) if ta else x, w)
        return y + bias if bias is not None else y

    b.add(name, "matmul", inputs, outputs, fn=fn)
