"""Reductions: the legacy `reduce` (over CHW, HW, C, H or W, keeping the axes) and the ND reduce layers."""

from __future__ import annotations

import numpy as np
import torch
from coremltools.proto import NeuralNetwork_pb2 as _nn

from ..registry import kernel
from . import layer

_AXES = {"CHW": [-3, -2, -1], "HW": [-2, -1], "C": [-3], "H": [-2], "W": [-1]}
_MODES = {"SUM": "reduce_sum", "AVG": "reduce_mean", "PROD": "reduce_prod", "SUMSQUARE": "reduce_sum_square",
          "L1": "reduce_l1_norm", "L2": "reduce_l2_norm", "MAX": "reduce_max", "MIN": "reduce_min"}


@layer("reduce")
def _reduce(b, name, p, inputs, outputs):
    mode = _nn.ReduceLayerParams.ReduceOperation.Name(p.mode)
    axes = _AXES[_nn.ReduceLayerParams.ReduceAxis.Name(p.axis)]
    if mode == "ARGMAX":
        argmax = kernel("reduce_argmax")
        b.add(name, "reduce_argmax", inputs, outputs, fn=lambda x: argmax(x, axes[0], True).float())
        return
    if mode == "LOGSUM":  # NeuralNetwork.proto: the sum of ln(x + epsilon), epsilon 1e-6 when unset
        eps = float(p.epsilon) or 1e-6
        b.add(name, "reduce_log_sum", inputs, outputs, fn=lambda x: torch.log(x + eps).sum(axes, keepdim=True))
        return
    b.add(name, _MODES[mode], inputs, outputs, {"axes": np.asarray(axes), "keep_dims": True})


def _reduce_nd(op_type):
    def build(b, name, p, inputs, outputs):
        static = {"keep_dims": bool(p.keepDims)}
        if not p.reduceAll:
            static["axes"] = np.asarray(list(p.axes))
        b.add(name, op_type, inputs, outputs, static)

    return build


for _layer, _op in {"reduceMean": "reduce_mean", "reduceSum": "reduce_sum", "reduceMax": "reduce_max",
                    "reduceMin": "reduce_min", "reduceL1": "reduce_l1_norm", "reduceL2": "reduce_l2_norm",
                    "reduceProd": "reduce_prod",
                    "reduceLogSum": "reduce_log_sum", "reduceSumSquare": "reduce_sum_square",
                    "reduceLogSumExp": "reduce_log_sum_exp"}.items():
    layer(_layer)(_reduce_nd(_op))
