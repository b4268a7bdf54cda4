"""Activations (coremltools ops/defs/iOS15/activation.py; iOS17 only widens the alpha/beta types)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..registry import op
from ._util import norm_axis, scalar, tensor


@op("relu")
def relu(x):
    return torch.relu(x)


@op("relu6")
def relu6(x):
    return x.clamp(0.0, 6.0)


@op("sigmoid")
def sigmoid(x):
    return torch.sigmoid(x)


@op("tanh")
def tanh(x):
    return torch.tanh(x)


@op("silu")
def silu(x):
    return F.silu(x)


@op("softplus")
def softplus(x):
    return F.softplus(x)


@op("softsign")
def softsign(x):
    return F.softsign(x)


@op("leaky_relu")
def leaky_relu(x, alpha=0.01):
    return F.leaky_relu(x, float(scalar(alpha)))


@op("elu")
def elu(x, alpha=1.0):
    return F.elu(x, float(scalar(alpha)))


@op("clamped_relu")
def clamped_relu(x, alpha=0.0, beta=6.0):
    alpha, beta = float(scalar(alpha)), float(scalar(beta))
    return x.clamp(0.0, beta) + (x.clamp(max=0.0) * alpha).clamp(max=beta)


@op("linear_activation")
def linear_activation(x, alpha=1.0, beta=0.0):
    return x * float(scalar(alpha)) + float(scalar(beta))


@op("scaled_tanh")
def scaled_tanh(x, alpha=1.0, beta=1.0):
    return float(scalar(alpha)) * torch.tanh(x * float(scalar(beta)))


@op("sigmoid_hard")
def sigmoid_hard(x, alpha=0.2, beta=0.5):
    return (x * float(scalar(alpha)) + float(scalar(beta))).clamp(0.0, 1.0)


@op("thresholded_relu")
def thresholded_relu(x, alpha=1.0):
    # "x if x >= alpha else 0"
    return torch.where(x >= float(scalar(alpha)), x, torch.zeros((), dtype=x.dtype))


@op("prelu")
def prelu(x, alpha):
    # alpha is per channel. MIL: channel axis 1 of [B, C, H, W], and ranks 3 and 5 only with one value
    # repeated, so those multiply by a scalar. Neural networks (which share this kernel) keep the channel
    # third from last: C of (C, H, W), (1, C, H, W) and (S, B, C, H, W).
    alpha = tensor(alpha).reshape(-1)
    if bool((alpha == alpha[0]).all()):
        return torch.where(x >= 0, x, x * alpha[0])
    shape = [1] * x.dim()
    shape[-3] = alpha.numel()
    return torch.where(x >= 0, x, x * alpha.reshape(shape))


@op("softplus_parametric")
def softplus_parametric(x, alpha, beta):
    shape = [1] * x.dim()
    shape[-3] = -1
    alpha, beta = tensor(alpha).reshape(shape), tensor(beta).reshape(shape)
    return alpha * F.softplus(beta * x)


@op("gelu")
def gelu(x, mode="EXACT"):
    mode = scalar(mode)
    if mode == "TANH_APPROXIMATION":
        return F.gelu(x, approximate="tanh")
    if mode == "SIGMOID_APPROXIMATION":
        return x * torch.sigmoid(1.702 * x)
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


@op("softmax")
def softmax(x, axis=-1):
    return torch.softmax(x, norm_axis(axis, x.dim()))
