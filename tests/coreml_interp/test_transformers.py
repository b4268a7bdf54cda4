"""ops/transformers.py: scaled_dot_product_attention against PyTorch's and coremltools' value_inference."""

import coremltools as ct
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _mil import assert_close, mb, mil_value, rand, run_op

IOS18 = ct.target.iOS18
# fp32 softmax and two matmuls over <= 6 terms
ATOL, RTOL = 1e-5, 1e-5


@pytest.mark.parametrize("mask", [None, "bool", "float"])
@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 4)], ids=["rank3", "rank4"])
def test_sdpa(shape, mask):
    q, k, v = rand(*shape), rand(*shape[:-2], 5, shape[-1], seed=1), rand(*shape[:-2], 5, 6, seed=2)
    kwargs, torch_mask = {}, None
    if mask == "bool":
        m = np.random.default_rng(3).uniform(size=(shape[-2], 5)) > 0.3
        m[:, 0] = True  # no row entirely masked
        kwargs["attn_mask"], torch_mask = m, torch.from_numpy(m)
    elif mask == "float":
        m = rand(shape[-2], 5, seed=4)
        kwargs["attn_mask"], torch_mask = m, torch.from_numpy(m)

    def build(q, k, v):
        return mb.scaled_dot_product_attention(query=q, key=k, value=v, **kwargs)

    out = run_op("scaled_dot_product_attention", build, q, k, v, opset=IOS18)
    expected = F.scaled_dot_product_attention(torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
                                              attn_mask=torch_mask).numpy()
    assert_close(out, expected, ATOL, RTOL, "against torch")
    assert_close(out, mil_value(build, q, k, v, opset=IOS18), ATOL, RTOL, "against value_inference")
