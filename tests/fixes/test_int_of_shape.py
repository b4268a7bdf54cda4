"""int_of_shape: a transformer-style block with int() of a traced shape (timm mobilevit/efficientvit,
torchvision swin_t/maxvit_t) converts to Core ML whatever numpy is installed, and matches PyTorch."""

import numpy as np
import pytest
import torch
from torch import nn

from ._convert import raw_convert, workbench_convert

pytest.importorskip("coremltools")
NUMPY_24 = tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4)


class Patches(nn.Module):
    """mobilevit's unfolding: [B, C, H, W] -> [B * C * n_h, n_w, p_h, p_w] -> tokens, mixed, and back. The
    products of traced sizes (B * C * n_h) reach the converter as int() of a one-element value."""

    def __init__(self, channels=8, patch=2):
        super().__init__()
        self.patch = patch
        self.mix = nn.Linear(channels, channels)

    def forward(self, x):
        b, c, h, w = x.shape
        p = self.patch
        nh, nw = h // p, w // p
        t = x.reshape(b * c * nh, p, nw, p).transpose(1, 2)
        t = t.reshape(b, c, nh * nw, p * p).transpose(1, 3).reshape(b * p * p, nh * nw, -1)
        t = self.mix(t)
        t = t.reshape(b, p * p, nh * nw, -1).transpose(1, 3).reshape(b * c * nh, nw, p, p)
        return t.transpose(1, 2).reshape(b, c, h, w)


class TokenMixer(nn.Module):
    """A transformer-style stage as timm's mobilevit writes it (the unfolding sits in a submodule)."""

    def __init__(self, channels=8):
        super().__init__()
        torch.manual_seed(0)
        self.stem = nn.Conv2d(3, channels, 1)
        self.block = Patches(channels)

    def forward(self, x):
        return self.block(self.stem(x))


@pytest.mark.skipif(not NUMPY_24, reason="coremltools 9.0 converts int() of a shape under numpy < 2.4")
def test_coremltools_alone_fails_under_numpy_24():
    with pytest.raises(TypeError, match="only 0-dimensional arrays can be converted to Python scalars"):
        raw_convert(TokenMixer(), (1, 3, 4, 4))


def test_workbench_converts_it_and_matches(tmp_path):
    artifact, got, want = workbench_convert(TokenMixer(), (1, 3, 4, 4), tmp_path)
    np.testing.assert_allclose(got.reshape(want.shape), want, atol=1e-4, err_msg="Core ML program vs PyTorch")
    fixed = any(n.startswith("workbench fix int_of_shape:") for n in artifact.notes)
    assert fixed == NUMPY_24, artifact.notes  # the fix says it ran only where it was needed
