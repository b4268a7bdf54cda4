"""Random layers (the *Like, *Static and *Dynamic forms of uniform, normal and Bernoulli, and
categoricalDistribution) on the MIL random kernels: MIL's distributions, not a device's values."""

from __future__ import annotations

import numpy as np
import torch

from ..ops._util import ints
from ..registry import kernel
from . import layer


def _random(op_type, params):
    sample = kernel(op_type)

    def build_for(form):
        def build(b, name, p, inputs, outputs):
            kwargs = {k: float(getattr(p, attr)) for k, attr in params.items()}
            kwargs["seed"] = int(p.seed)
            if form == "Static":
                shape = np.asarray(list(p.outputShape))
                b.add(name, op_type, inputs, outputs, dynamic=[], fn=lambda: sample(shape, **kwargs))
            elif form == "Like":
                b.add(name, op_type, inputs, outputs, fn=lambda x: sample(np.asarray(x.shape), **kwargs))
            else:
                b.add(name, op_type, inputs, outputs, fn=lambda x: sample(np.asarray(ints(x)), **kwargs))

        return build

    return build_for


for _name, _op, _params in [("randomUniform", "random_uniform", {"low": "minVal", "high": "maxVal"}),
                            ("randomNormal", "random_normal", {"mean": "mean", "stddev": "stdDev"}),
                            ("randomBernoulli", "random_bernoulli", {"prob": "prob"})]:
    for _form in ("Like", "Static", "Dynamic"):
        layer(f"{_name}{_form}")(_random(_op, _params)(_form))


@layer("categoricalDistribution")
def _categorical(b, name, p, inputs, outputs):
    """numSamples class indices per distribution (the last axis) from logits / temperature, or from
    probabilities (eps keeps their logs finite)."""
    sample = kernel("random_categorical")
    logits, eps, temperature = bool(p.isLogits), float(p.eps), float(p.temperature) or 1.0

    def fn(x):
        z = x / temperature if logits else torch.log(x + eps) / temperature
        return sample(z, "logits", p.numSamples, int(p.seed))

    b.add(name, "random_categorical", inputs, outputs, fn=fn)
