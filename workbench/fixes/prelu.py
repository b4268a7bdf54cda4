"""PReLU with one alpha per channel, on a rank-2 or rank-3 input (MTCNN's ONet/RNet: Linear then PReLU(256)).

coremltools expands a rank-2 input to rank 3, and Core ML's prelu refuses rank 3 (and 5) unless every alpha
is the same: "rank 3 or rank 5 input is only supported when all the values of alpha are same". method='export'
fails the same way. On an (N, C, 1, 1) view the same PReLU converts and matches.
"""

from __future__ import annotations

import torch
from torch import nn

from . import module_fix, modules_of_type


class ChannelPReLU(nn.Module):
    """nn.PReLU that runs a rank-2 (N, C) or rank-3 (N, C, L) input as (N, C, 1, 1) / (N, C, L, 1)."""

    def __init__(self, prelu: nn.PReLU):
        super().__init__()
        self.weight = prelu.weight

    def forward(self, x):
        if x.dim() in (2, 3):
            four = x.reshape(x.shape + (1,) * (4 - x.dim()))
            return nn.functional.prelu(four, self.weight).reshape(x.shape)
        return nn.functional.prelu(x, self.weight)


def _per_channel(prelu: nn.PReLU) -> bool:
    w = prelu.weight.detach()
    return w.numel() > 1 and not torch.all(w == w.reshape(-1)[0])


@module_fix("prelu_rank2", gap="rank 3 or rank 5 input is only supported when all the values of alpha are same",
            note="per-channel PReLU runs on an (N, C, 1, 1) view (Core ML's prelu refuses rank 2/3 with "
                 "per-channel alpha)",
            find=lambda model: modules_of_type(model, nn.PReLU, _per_channel))
def replace(prelu: nn.PReLU) -> nn.Module:
    return ChannelPReLU(prelu)
