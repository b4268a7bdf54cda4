"""Transformer blocks (ops/defs/iOS18/transformers.py): scaled_dot_product_attention.

softmax(Q K^T / sqrt(E) + mask) V over the last two axes, with any leading batch axes. A bool mask says
which positions take part (False becomes -inf); a float mask is added to the scores. A row whose every
position is masked out gives NaN, as in PyTorch and coremltools' value inference.
"""

from __future__ import annotations

import math

import torch

from ..registry import op
from ._util import tensor


@op("scaled_dot_product_attention", since=18)
def scaled_dot_product_attention(query, key, value, attn_mask=None):
    q, k, v = tensor(query), tensor(key), tensor(value)
    scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])
    if attn_mask is not None:
        mask = tensor(attn_mask)
        if mask.dtype == torch.bool:
            mask = torch.zeros(mask.shape).masked_fill(~mask, float("-inf"))
        scores = scores + mask.to(scores.dtype)
    return torch.matmul(torch.softmax(scores, -1), v)
