"""swapaxes: torchvision maxvit_t's SwapAxes module traces to aten::swapaxes, which coremltools cannot convert."""

import numpy as np
import pytest
import torch
from torch import nn

from ._convert import raw_convert, workbench_convert

pytest.importorskip("coremltools")


class SwapAxes(nn.Module):
    """As torchvision's maxvit: a module boundary keeps aten::swapaxes in the trace (inline, it becomes transpose)."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return torch.swapaxes(x, self.a, self.b)


class GridSwap(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 1)
        self.swap = SwapAxes(-2, -3)

    def forward(self, x):
        return self.swap(self.conv(x)) * 2


def test_coremltools_alone_has_no_swapaxes():
    with pytest.raises(NotImplementedError, match="convert function for op 'swapaxes' not implemented"):
        raw_convert(GridSwap(), (1, 3, 5, 6))


def test_workbench_converts_it_and_matches(tmp_path):
    artifact, got, want = workbench_convert(GridSwap(), (1, 3, 5, 6), tmp_path)
    assert any(n.startswith("workbench fix swapaxes:") for n in artifact.notes), artifact.notes
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-5, err_msg="Core ML program vs PyTorch")
