"""ops/conv.py: conv and conv_transpose against direct numpy loops, over pad types, strides, dilations, groups."""

import numpy as np
import pytest
from _mil import assert_close, mb, rand, run_op

# fp32 kernels (oneDNN/im2col, fp32 accumulation) against float64 loops: sums of <= 72 products of
# values below 2, so a few 1e-6 of rounding
ATOL, RTOL = 2e-5, 1e-5


def same_pads(sizes, kernel, strides, dilations, lower=False):
    """MIL "same": output ceil(in / stride); the odd padding element at the end ("same_lower": the start)."""
    pads = []
    for n, k, s, d in zip(sizes, kernel, strides, dilations):
        total = max((-(-n // s) - 1) * s + (k - 1) * d + 1 - n, 0)
        before = total - total // 2 if lower else total // 2
        pads += [before, total - before]
    return pads


def np_conv(x, w, b=None, strides=None, pads=None, dilations=None, groups=1):
    """Direct convolution: every output position is a dot product of its (dilated) window and the filter."""
    n = w.ndim - 2
    strides, dilations = strides or [1] * n, dilations or [1] * n
    pads = pads or [0] * (2 * n)
    x = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[2 * i], pads[2 * i + 1]) for i in range(n)])
    kernel = w.shape[2:]
    out = [(x.shape[2 + i] - (kernel[i] - 1) * dilations[i] - 1) // strides[i] + 1 for i in range(n)]
    cin, cout = x.shape[1] // groups, w.shape[0] // groups
    y = np.zeros((x.shape[0], w.shape[0], *out))
    for pos in np.ndindex(*out):
        window = x[(slice(None), slice(None)) + tuple(
            slice(p * s, p * s + (k - 1) * d + 1, d) for p, s, k, d in zip(pos, strides, kernel, dilations))]
        for g in range(groups):
            axes = list(range(1, n + 2))  # channels and window, summed
            y[(slice(None), slice(g * cout, (g + 1) * cout)) + pos] = np.tensordot(
                window[:, g * cin:(g + 1) * cin], w[g * cout:(g + 1) * cout].astype(np.float64), (axes, axes))
    if b is not None:
        y += b.reshape([-1] + [1] * n)
    return y


def np_conv_transpose(x, w, strides, dilations, groups, begin, target):
    """Scatter each input element times the filter into the full output, then crop `begin`.. +`target`
    (zeros where the target reaches past the full output)."""
    kernel = w.shape[2:]
    full = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(x.shape[2:], kernel, strides, dilations)]
    cin, cout = x.shape[1] // groups, w.shape[1]
    y = np.zeros([x.shape[0], cout * groups] + [max(f, b + t) for f, b, t in zip(full, begin, target)])
    for pos in np.ndindex(*x.shape[2:]):
        region = tuple(slice(p * s, p * s + (k - 1) * d + 1, d) for p, s, k, d in zip(pos, strides, kernel, dilations))
        for g in range(groups):
            y[(slice(None), slice(g * cout, (g + 1) * cout)) + region] += np.einsum(
                "nc,co...->no...", x[(slice(None), slice(g * cin, (g + 1) * cin)) + pos].astype(np.float64),
                w[g * cin:(g + 1) * cin].astype(np.float64))
    return y[(slice(None), slice(None)) + tuple(slice(b, b + t) for b, t in zip(begin, target))]


X = rand(1, 4, 7, 6)


@pytest.mark.parametrize("kernel", [3, 2], ids=lambda k: f"k{k}")
@pytest.mark.parametrize("dilation", [1, 2], ids=lambda d: f"d{d}")
@pytest.mark.parametrize("stride", [1, 2], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("pad_type", ["valid", "same", "same_lower", "custom"])
def test_conv2d_pad_types_strides_dilations(pad_type, stride, dilation, kernel):
    w, b = rand(3, 4, kernel, kernel + 1, seed=1), rand(3, seed=2)
    strides, dilations = [stride, stride], [dilation, 1]
    custom = [2, 0, 1, 3]  # asymmetric on purpose: begin/end of H, then W
    kwargs = dict(weight=w, bias=b, strides=strides, dilations=dilations, pad_type=pad_type)
    if pad_type == "custom":
        kwargs["pad"] = custom
    out = run_op("conv", lambda x: mb.conv(x=x, **kwargs), X)
    if pad_type == "custom":
        pads = custom
    elif pad_type == "valid":
        pads = [0] * 4
    else:
        pads = same_pads(X.shape[2:], w.shape[2:], strides, dilations, lower=pad_type == "same_lower")
    assert_close(out, np_conv(X, w, b, strides, pads, dilations), ATOL, RTOL, f"conv {pad_type} pads {pads}")


def test_same_and_same_lower_differ_only_in_where_the_odd_pad_goes():
    # a 2x2 kernel at stride 1 pads one row and column: "same" at the end, "same_lower" at the start
    x = rand(1, 1, 3, 3)
    w = np.ones((1, 1, 2, 2), np.float32)
    same = run_op("conv", lambda x: mb.conv(x=x, weight=w, pad_type="same"), x)
    lower = run_op("conv", lambda x: mb.conv(x=x, weight=w, pad_type="same_lower"), x)
    padded_end, padded_start = np.pad(x, [(0, 0), (0, 0), (0, 1), (0, 1)]), np.pad(x, [(0, 0), (0, 0), (1, 0), (1, 0)])
    box = lambda p: p[..., :-1, :-1] + p[..., 1:, :-1] + p[..., :-1, 1:] + p[..., 1:, 1:]  # noqa: E731
    assert_close(same, box(padded_end), 1e-6, 1e-6, "same")
    assert_close(lower, box(padded_start), 1e-6, 1e-6, "same_lower")


@pytest.mark.parametrize("groups, cout", [(1, 6), (2, 6), (4, 4), (4, 8)],
                         ids=["g1", "g2", "depthwise", "depthwise-x2"])
def test_conv_groups(groups, cout):
    w = rand(cout, 4 // groups, 3, 3, seed=3)
    out = run_op("conv", lambda x: mb.conv(x=x, weight=w, groups=groups, pad_type="same"), X)
    pads = same_pads(X.shape[2:], [3, 3], [1, 1], [1, 1])
    assert_close(out, np_conv(X, w, pads=pads, groups=groups), ATOL, RTOL, f"groups={groups}")


def test_conv1d_and_conv3d():
    x1, w1 = rand(2, 3, 9), rand(4, 3, 3, seed=1)
    out = run_op("conv", lambda x: mb.conv(x=x, weight=w1, strides=[2], pad_type="custom", pad=[1, 2]), x1)
    assert_close(out, np_conv(x1, w1, strides=[2], pads=[1, 2]), ATOL, RTOL, "conv1d")
    x3, w3 = rand(1, 2, 4, 5, 3), rand(3, 2, 2, 3, 1, seed=1)
    out = run_op("conv", lambda x: mb.conv(x=x, weight=w3, pad_type="same", strides=[1, 2, 1]), x3)
    pads = same_pads(x3.shape[2:], w3.shape[2:], [1, 2, 1], [1, 1, 1])
    assert_close(out, np_conv(x3, w3, strides=[1, 2, 1], pads=pads), ATOL, RTOL, "conv3d")


def test_conv_with_weight_as_a_runtime_input():
    w = rand(3, 4, 3, 3, seed=5)
    out = run_op("conv", lambda x, w: mb.conv(x=x, weight=w, pad_type="valid", strides=[2, 1]), X, w)
    assert_close(out, np_conv(X, w, strides=[2, 1]), ATOL, RTOL)


# conv_transpose: (in size, kernel, stride, dilation, pad_type, pad, output_shape spatial)
TRANSPOSE = {
    "valid": (4, 3, 2, 1, "valid", None, None),
    "valid-dilated": (4, 3, 1, 2, "valid", None, None),
    "custom": (4, 3, 2, 1, "custom", [1, 0, 0, 2], None),
    "same-k3s2": (4, 3, 2, 1, "same", None, None),
    "same-k4s2": (4, 4, 2, 1, "same", None, None),
    "same-k1s2": (4, 1, 2, 1, "same", None, None),  # kernel < stride: the last row is zeros
    "same-odd-output": (4, 3, 2, 1, "same", None, [7, 7]),  # undoes a same conv of a 7-pixel input
    "valid-output-beyond-full": (3, 3, 2, 1, "valid", None, [8, 8]),
}


@pytest.mark.parametrize("case", list(TRANSPOSE))
def test_conv_transpose(case):
    size, k, s, d, pad_type, pad, spatial = TRANSPOSE[case]
    x, w, b = rand(1, 2, size, size + 1), rand(2, 3, k, k, seed=1), rand(3, seed=2)
    full = [(n - 1) * s + (k - 1) * d + 1 for n in x.shape[2:]]
    kwargs = dict(weight=w, bias=b, strides=[s, s], dilations=[d, d], pad_type=pad_type)
    if pad is not None:
        kwargs["pad"] = pad
    if spatial is not None:
        spatial = [spatial[0], spatial[1] + 1]
        kwargs["output_shape"] = [1, 3] + spatial
    out = run_op("conv_transpose", lambda x: mb.conv_transpose(x=x, **kwargs), x)
    if pad_type == "custom":
        begin, target = pad[0::2], [f - pad[2 * i] - pad[2 * i + 1] for i, f in enumerate(full)]
    elif pad_type == "same":
        # TF's shape logic: the output is in * stride (or output_shape); crop the excess, odd one at the end
        target = spatial or [n * s for n in x.shape[2:]]
        begin = [max(f - t, 0) // 2 for f, t in zip(full, target)]
    else:
        begin, target = [0, 0], spatial or full
    expected = np_conv_transpose(x, w, [s, s], [d, d], 1, begin, target) + b.reshape(-1, 1, 1)
    assert_close(out, expected, ATOL, RTOL, case)


@pytest.mark.parametrize("groups", [2, 4], ids=["g2", "depthwise"])
def test_conv_transpose_groups(groups):
    x, w = rand(1, 4, 3, 3), rand(4, 2, 3, 3, seed=1)  # [C_in, C_out / groups, K, K]
    out = run_op("conv_transpose", lambda x: mb.conv_transpose(x=x, weight=w, strides=[2, 2], groups=groups), x)
    assert_close(out, np_conv_transpose(x, w, [2, 2], [1, 1], groups, [0, 0], [7, 7]), ATOL, RTOL)


def test_conv_transpose_1d():
    x, w = rand(2, 3, 5), rand(3, 2, 4, seed=1)
    out = run_op("conv_transpose", lambda x: mb.conv_transpose(x=x, weight=w, strides=[3], pad_type="custom",
                                                                pad=[2, 1]), x)
    assert_close(out, np_conv_transpose(x, w, [3], [1], 1, [2], [(5 - 1) * 3 + 4 - 3]), ATOL, RTOL)


@pytest.mark.parametrize("per_channel", [True, False])
def test_conv_quantized_linear(per_channel):
    x = rand(1, 2, 5, 5)
    q = np.random.default_rng(0).integers(0, 256, (3, 2, 3, 3)).astype(np.uint8)
    scale = np.array([0.01, 0.02, -0.015], np.float32) if per_channel else np.float32(0.01)
    offset = np.array([-1.0, 0.5, 0.2], np.float32) if per_channel else np.float32(-1.2)
    out = run_op("conv_quantized", lambda x: mb.conv_quantized(
        x=x, weight=q, quantization_type="linear", nbits=8, quant_scale=scale, quant_bias=offset,
        pad_type="same"), x)
    w = q * np.reshape(scale, (-1, 1, 1, 1)) + np.reshape(offset, (-1, 1, 1, 1))  # W = q * scale + bias
    assert_close(out, np_conv(x, w, pads=[1, 1, 1, 1]), ATOL, RTOL)
