"""addcmul: timm convnextv2's GlobalResponseNorm (addcmul, and addcdiv beside it) converts and matches."""

import numpy as np
import pytest
import torch
from torch import nn

from ._convert import raw_convert, workbench_convert

pytest.importorskip("coremltools")


class GRN(nn.Module):
    """ConvNeXt-V2's global response norm, channels last, as timm writes it; then an addcdiv with a value."""

    def __init__(self, channels=4):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, channels, 1)
        self.weight = nn.Parameter(torch.rand(channels))
        self.bias = nn.Parameter(torch.rand(channels))

    def forward(self, x):
        x = self.conv(x).permute(0, 2, 3, 1)
        gx = x.norm(p=2, dim=(1, 2), keepdim=True)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + 1e-6)
        x = x + torch.addcmul(self.bias, self.weight, x * nx)
        x = torch.addcdiv(x, x, nx + 2.0, value=0.5)
        return x.permute(0, 3, 1, 2)


def test_coremltools_alone_has_no_addcmul():
    with pytest.raises(NotImplementedError, match="convert function for op 'addcmul' not implemented"):
        raw_convert(GRN(), (1, 3, 5, 6))


def test_workbench_converts_it_and_matches(tmp_path):
    artifact, got, want = workbench_convert(GRN(), (1, 3, 5, 6), tmp_path)
    assert any(n.startswith("workbench fix addcmul:") for n in artifact.notes), artifact.notes
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg="Core ML program vs PyTorch")
