"""prelu_rank2: MTCNN ONet/RNet's Linear then per-channel PReLU converts, and gives PyTorch's outputs."""

import numpy as np
import pytest
import torch
from torch import nn

from workbench import fixes
from workbench.fixes.prelu import ChannelPReLU

from ._convert import raw_convert, workbench_convert

pytest.importorskip("coremltools")


class ONetHead(nn.Module):
    """ONet's tail: flatten, dense, PReLU(16) with per-channel alpha, dense."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.dense = nn.Linear(3 * 8 * 8, 16)
        self.prelu = nn.PReLU(16)
        self.out = nn.Linear(16, 4)
        with torch.no_grad():
            self.prelu.weight.uniform_(0.05, 0.5)  # trained alphas differ per channel

    def forward(self, x):
        return self.out(self.prelu(self.dense(x.flatten(1))))


@pytest.mark.parametrize("shape", [(2, 16), (2, 16, 5), (2, 16, 3, 3)])
def test_channel_prelu_equals_prelu(shape):
    prelu = nn.PReLU(16)
    with torch.no_grad():
        prelu.weight.uniform_(0.05, 0.5)
    x = torch.randn(shape)
    torch.testing.assert_close(ChannelPReLU(prelu)(x), prelu(x), atol=0, rtol=0)


def test_coremltools_alone_refuses_it():
    with pytest.raises(ValueError, match="rank 3 or rank 5 input is only supported when all the values of alpha"):
        raw_convert(ONetHead(), (1, 3, 8, 8))


def test_workbench_converts_it_and_matches(tmp_path):
    model = ONetHead()
    artifact, got, want = workbench_convert(model, (1, 3, 8, 8), tmp_path)
    assert any(n.startswith("workbench fix prelu_rank2:") and "(prelu)" in n for n in artifact.notes), artifact.notes
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg="Core ML program vs PyTorch")
    assert type(model.prelu) is nn.PReLU  # the user's model is untouched: the fix rewrote a copy


def test_shared_alpha_needs_no_fix():
    model = nn.Sequential(nn.Linear(4, 4), nn.PReLU()).eval()
    fixed, notes = fixes.apply(model)
    assert fixed is model and notes == ()
