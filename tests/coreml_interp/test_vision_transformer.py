"""A small vision transformer, built in code, through coremltools and the interpreter: patch embedding,
multi-head attention (scaled_dot_product_attention at iOS18), layer norm, GELU MLP, class token."""

import numpy as np
import pytest
import torch
from torch import nn

ct = pytest.importorskip("coremltools")


class Block(nn.Module):
    """A pre-norm transformer block as ViTs write it: attention through F.scaled_dot_product_attention."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, dim * 3), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, dim * 2), nn.GELU(), nn.Linear(dim * 2, dim))

    def forward(self, x):
        qkv = self.qkv(self.norm1(x)).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        x = x + self.proj(a.transpose(1, 2).flatten(2))
        return x + self.mlp(self.norm2(x))


class TinyViT(nn.Module):
    def __init__(self, size=32, patch=8, dim=32, heads=4, depth=2, classes=10):
        super().__init__()
        self.embed = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (size // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], dim=1) + self.pos
        return self.head(self.norm(self.blocks(x))[:, 0])


@pytest.mark.parametrize("target", ["iOS16", "iOS18"])  # iOS18 keeps attention as one sdpa op
def test_a_small_vision_transformer_matches_pytorch(target, tmp_path):
    from workbench import CoreMLInterpreter

    torch.manual_seed(0)
    model = TinyViT().eval()
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).numpy()
        traced = torch.jit.trace(model, x)
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                         compute_precision=ct.precision.FLOAT32,
                         minimum_deployment_target=getattr(ct.target, target))
    mlmodel.save(str(tmp_path / "vit.mlpackage"))
    ops = {op.op_type for op in mlmodel._mil_program.functions["main"].operations}
    if target == "iOS18":
        assert "scaled_dot_product_attention" in ops
    out = CoreMLInterpreter(tmp_path / "vit.mlpackage").predict({"x": x.numpy()})
    got = next(iter(out.values()))
    np.testing.assert_allclose(got.reshape(expected.shape), expected, atol=1e-4, rtol=1e-4)
