"""ops/pool.py: max/avg/l2 pooling against a numpy window loop, over pad types, strides, ceil_mode and
exclude_padding_from_average."""

import numpy as np
import pytest
from _mil import assert_close, mb, rand, run_op
from test_conv import same_pads

# averages of <= 27 fp32 values below 3 against float64
ATOL, RTOL = 1e-5, 1e-5


def np_pool(x, kind, kernel, strides, pads, ceil_mode=False, exclude=False):
    """Each output is its window over the padded input. Padding is -inf for max (never wins), zeros for
    avg and l2; avg divides by the window's elements inside the padded input (with `exclude`: inside the
    real input). ceil_mode keeps a last partial window if it starts inside the input or left padding."""
    n = len(kernel)
    sizes = x.shape[2:]
    out = []
    for i in range(n):
        span = sizes[i] + pads[2 * i] + pads[2 * i + 1] - kernel[i]
        o = (span + (strides[i] - 1 if ceil_mode else 0)) // strides[i] + 1
        if ceil_mode and (o - 1) * strides[i] >= sizes[i] + pads[2 * i] and pads[2 * i] + pads[2 * i + 1] > 0:
            o -= 1
        out.append(o)
    y = np.zeros(x.shape[:2] + tuple(out))
    x = x.astype(np.float64)
    for pos in np.ndindex(*out):
        starts = [p * s - pads[2 * i] for i, (p, s) in enumerate(zip(pos, strides))]
        real = tuple(slice(max(b, 0), min(b + k, sizes[i])) for i, (b, k) in enumerate(zip(starts, kernel)))
        window = x[(slice(None), slice(None)) + real].reshape(*x.shape[:2], -1)
        index = (slice(None), slice(None)) + pos
        if kind == "max":
            y[index] = window.max(-1)
        elif kind == "l2":
            y[index] = np.sqrt((window ** 2).sum(-1))
        else:
            if exclude:
                count = window.shape[-1]
            else:
                count = np.prod([min(b + k, sizes[i] + pads[2 * i + 1]) - b
                                 for i, (b, k) in enumerate(zip(starts, kernel))])
            y[index] = window.sum(-1) / count
    return y


OPS = {"max": "max_pool", "avg": "avg_pool", "l2": "l2_pool"}
X = rand(1, 2, 7, 6, low=-3, high=3)


def _build(kind, kernel, strides, pad_type, pad=None, ceil_mode=False, exclude=None):
    kwargs = dict(kernel_sizes=kernel, strides=strides, pad_type=pad_type, ceil_mode=ceil_mode)
    if pad is not None:
        kwargs["pad"] = pad
    if exclude is not None:
        kwargs["exclude_padding_from_average"] = exclude
    return lambda x: getattr(mb, OPS[kind])(x=x, **kwargs)


@pytest.mark.parametrize("stride", [1, 2], ids=lambda s: f"s{s}")
@pytest.mark.parametrize("pad_type, pad", [("valid", None), ("same", None), ("same_lower", None),
                                           ("custom", [1, 1, 0, 1]), ("custom", [2, 0, 1, 1])],
                         ids=["valid", "same", "same_lower", "custom-a", "custom-b"])
@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
def test_pool_pad_types(kind, pad_type, pad, stride):
    kernel, strides = [3, 2], [stride, stride]
    out = run_op(OPS[kind], _build(kind, kernel, strides, pad_type, pad), X)
    if pad_type == "valid":
        pads = [0] * 4
    elif pad_type == "custom":
        pads = pad
    else:
        pads = same_pads(X.shape[2:], kernel, strides, [1, 1], lower=pad_type == "same_lower")
    assert_close(out, np_pool(X, kind, kernel, strides, pads), ATOL, RTOL, f"{kind} pads {pads}")


@pytest.mark.parametrize("exclude", [False, True], ids=["include-pad", "exclude-pad"])
@pytest.mark.parametrize("pad_type, pad", [("custom", [1, 1, 1, 1]), ("custom", [0, 2, 1, 0]), ("same", None)],
                         ids=["symmetric", "asymmetric", "same"])
def test_avg_pool_exclude_padding_from_average(pad_type, pad, exclude):
    x = rand(1, 3, 5, 6, low=0.5, high=2)  # positive, so a wrong divisor cannot cancel out
    kernel, strides = [3, 3], [2, 1]
    out = run_op("avg_pool", _build("avg", kernel, strides, pad_type, pad, exclude=exclude), x)
    pads = pad if pad is not None else same_pads(x.shape[2:], kernel, strides, [1, 1])
    assert_close(out, np_pool(x, "avg", kernel, strides, pads, exclude=exclude), ATOL, RTOL,
                 f"exclude={exclude} pads {pads}")


# [2, 2, ..]: padding over half the window, which torch's pooling refuses, so the kernel pads explicitly
@pytest.mark.parametrize("pad", [None, [1, 1, 0, 0], [2, 2, 1, 1]], ids=["valid", "custom", "custom-wide"])
@pytest.mark.parametrize("kind, exclude", [("max", None), ("avg", False), ("avg", True), ("l2", None)])
def test_ceil_mode_keeps_the_last_partial_window(kind, exclude, pad):
    x = rand(1, 2, 6, 8, low=0.5, high=2)  # 6 rows, window 3 stride 2: ceil adds a row, padded or not
    kernel, strides = [3, 3], [2, 2]
    pad_type = "valid" if pad is None else "custom"
    out = run_op(OPS[kind], _build(kind, kernel, strides, pad_type, pad, ceil_mode=True, exclude=exclude), x)
    expected = np_pool(x, kind, kernel, strides, pad or [0] * 4, ceil_mode=True, exclude=bool(exclude))
    if pad != [2, 2, 1, 1]:  # there the extra window would start in the end padding, so it is dropped
        assert out.shape[2] == np_pool(x, kind, kernel, strides, pad or [0] * 4).shape[2] + 1
    assert_close(out, expected, ATOL, RTOL, f"{kind} ceil_mode pads {pad}")


@pytest.mark.parametrize("kind", ["max", "avg", "l2"])
def test_pool_1d(kind):
    x1 = rand(2, 3, 9)
    out = run_op(OPS[kind], _build(kind, [3], [2], "custom", [1, 0]), x1)
    assert_close(out, np_pool(x1, kind, [3], [2], [1, 0]), ATOL, RTOL, f"{kind} 1d")


@pytest.mark.parametrize("kind", ["max", "avg"])  # MIL's l2_pool is 1-D and 2-D only
def test_pool_3d(kind):
    x3 = rand(1, 2, 4, 5, 3)
    out = run_op(OPS[kind], _build(kind, [2, 3, 2], [1, 2, 1], "same"), x3)
    pads = same_pads(x3.shape[2:], [2, 3, 2], [1, 2, 1], [1, 1, 1])
    assert_close(out, np_pool(x3, kind, [2, 3, 2], [1, 2, 1], pads), ATOL, RTOL, f"{kind} 3d")


def test_max_pool_padding_never_wins():
    x = -np.ones((1, 1, 3, 3), np.float32)  # all negative: zero padding would win a max
    out = run_op("max_pool", _build("max", [3, 3], [1, 1], "custom", [1, 1, 1, 1]), x)
    np.testing.assert_array_equal(out, -np.ones((1, 1, 3, 3), np.float32))
