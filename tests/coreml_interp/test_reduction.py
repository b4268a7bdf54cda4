"""ops/reduction.py: every reduction over axes variants and keep_dims; argmax/argmin."""

import numpy as np
import pytest
from _mil import assert_close, mb, mil_value, rand, run_op

# sums of <= 60 fp32 values of order 1 against float64
ATOL, RTOL = 2e-5, 1e-5

NUMPY = {
    "reduce_mean": lambda x, a, k: x.mean(a, keepdims=k),
    "reduce_sum": lambda x, a, k: x.sum(a, keepdims=k),
    "reduce_prod": lambda x, a, k: x.prod(a, keepdims=k),
    "reduce_max": lambda x, a, k: x.max(a, keepdims=k),
    "reduce_min": lambda x, a, k: x.min(a, keepdims=k),
    "reduce_l1_norm": lambda x, a, k: np.abs(x).sum(a, keepdims=k),
    "reduce_l2_norm": lambda x, a, k: np.sqrt((x ** 2).sum(a, keepdims=k)),
    "reduce_sum_square": lambda x, a, k: (x ** 2).sum(a, keepdims=k),
    "reduce_log_sum": lambda x, a, k: np.log(x.sum(a, keepdims=k)),
    "reduce_log_sum_exp": lambda x, a, k: np.log(np.exp(x).sum(a, keepdims=k)),
}
AXES = [[1], [0, 2], [-1], [-3, -1], None]


@pytest.mark.parametrize("keep_dims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axes", AXES, ids=lambda a: "all" if a is None else str(a))
@pytest.mark.parametrize("op_type", sorted(NUMPY))
def test_reductions(op_type, axes, keep_dims):
    # positive values near 1: reduce_log_sum needs a positive sum, reduce_prod stays in range
    x = rand(2, 3, 4, low=0.5, high=1.5) if op_type in ("reduce_log_sum", "reduce_prod") else rand(2, 3, 4)
    kwargs = {"keep_dims": keep_dims} if axes is None else {"axes": axes, "keep_dims": keep_dims}
    build = lambda x: getattr(mb, op_type)(x=x, **kwargs)  # noqa: E731
    out = run_op(op_type, build, x)
    expected = NUMPY[op_type](x.astype(np.float64), None if axes is None else tuple(axes), keep_dims)
    assert np.shape(out) == np.shape(expected), f"{op_type} axes {axes}: shape {np.shape(out)}"
    assert_close(out, expected, ATOL, RTOL, f"{op_type} axes {axes} keep_dims {keep_dims}")
    assert_close(out, mil_value(build, x), ATOL, RTOL, f"{op_type} value_inference")


def test_keep_dims_defaults_to_false():
    x = rand(2, 3, 4)
    assert run_op("reduce_sum", lambda x: mb.reduce_sum(x=x, axes=[1]), x).shape == (2, 4)


@pytest.mark.parametrize("keep_dims", [False, True], ids=["drop", "keep"])
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("op_type, reference", [("reduce_argmax", np.argmax), ("reduce_argmin", np.argmin)])
def test_argmax_argmin(op_type, reference, axis, keep_dims):
    x = rand(3, 4, 5)
    out = run_op(op_type, lambda x: getattr(mb, op_type)(x=x, axis=axis, keep_dims=keep_dims), x)
    expected = reference(x, axis)
    if keep_dims:
        expected = np.expand_dims(expected, axis)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_argmax_ties_take_the_first_index():
    x = np.array([[1, 3, 3, 0], [2, 2, 2, 2]], np.float32)
    out = run_op("reduce_argmax", lambda x: mb.reduce_argmax(x=x, axis=1), x)
    np.testing.assert_array_equal(out, [1, 0])
    np.testing.assert_array_equal(out, mil_value(lambda x: mb.reduce_argmax(x=x, axis=1), x))
