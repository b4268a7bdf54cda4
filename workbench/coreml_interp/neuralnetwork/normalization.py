"""Normalization layers: mvn, l2normalize, lrn, layerNormalization (over the trailing axes)."""

from __future__ import annotations

import numpy as np
import torch

from . import layer, weights


@layer("mvn")
def _mvn(b, name, p, inputs, outputs):
    """Mean (and variance) over C, H, W together, or over H, W per channel."""
    axes = [-3, -2, -1] if p.acrossChannels else [-2, -1]
    eps, variance = float(p.epsilon), bool(p.normalizeVariance)

    def fn(x):  # in float64 like the MIL layer_norm kernel (ops/normalization.py says why)
        dtype, x = x.dtype, x.double()
        y = x - x.mean(axes, keepdim=True)
        if variance:
            y = y / torch.sqrt((y * y).mean(axes, keepdim=True) + eps)
        return y.to(dtype)

    b.add(name, "mvn", inputs, outputs, fn=fn)


@layer("l2normalize")
def _l2_normalize(b, name, p, inputs, outputs):
    b.add(name, "l2_norm", inputs, outputs, {"axes": np.asarray([-3, -2, -1]),
                                             "epsilon": float(p.epsilon) or 1e-6})  # 1e-6 when unset


@layer("lrn")
def _lrn(b, name, p, inputs, outputs):
    b.add(name, "local_response_norm", inputs, outputs, {"size": p.localSize, "alpha": p.alpha, "beta": p.beta,
                                                          "k": p.k})


@layer("layerNormalization")
def _layer_norm(b, name, p, inputs, outputs):
    shape = [int(v) for v in p.normalizedShape]
    gamma, beta = weights(p.gamma, shape), weights(p.beta, shape)
    b.add(name, "layer_norm", inputs, outputs, {"axes": np.arange(-len(shape), 0), "gamma": gamma, "beta": beta,
                                                 "epsilon": float(p.eps)})
