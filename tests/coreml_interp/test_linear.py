"""ops/linear.py: linear (with and without bias, batched), matmul (transposes, broadcasting), einsum."""

import numpy as np
import pytest
from _mil import IOS17, assert_close, mb, mil_value, rand, run_op

# dot products of <= 8 fp32 values below 2 against float64
ATOL, RTOL = 1e-5, 1e-5


@pytest.mark.parametrize("shape", [(5,), (3, 5), (2, 3, 5)], ids=["rank1", "rank2", "rank3"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear(shape, bias):
    x, w, b = rand(*shape), rand(4, 5, seed=1), rand(4, seed=2)
    kwargs = {"weight": w, "bias": b} if bias else {"weight": w}
    build = lambda x: mb.linear(x=x, **kwargs)  # noqa: E731
    out = run_op("linear", build, x)
    assert_close(out, x.astype(np.float64) @ w.T + (b if bias else 0), ATOL, RTOL)
    assert_close(out, mil_value(build, x), ATOL, RTOL)


INT_W = np.random.default_rng(1).integers(-3, 4, (4, 5)).astype(np.int32)
INT_B = np.random.default_rng(2).integers(-3, 4, (4,)).astype(np.int32)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["fp16", "fp32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_linear_with_int32_weight_and_bias(dtype, bias):
    # iOS17: weight and bias (type domain U) may differ from x (T); the output has x's dtype
    x = rand(2, 3, 5).astype(dtype)
    kwargs = {"weight": INT_W, "bias": INT_B} if bias else {"weight": INT_W}
    out = run_op("linear", lambda x: mb.linear(x=x, **kwargs), x, opset=IOS17)
    assert out.dtype == dtype
    expected = x.astype(np.float64) @ INT_W.T + (INT_B if bias else 0)
    # fp16: the fp32 result rounded to fp16, half an ulp (2^-11 relative) of values below 35
    tol = 1e-3 if dtype == np.float16 else ATOL
    assert_close(out, expected, tol, tol)


@pytest.mark.parametrize("dtype", [np.float16, np.float32], ids=["fp16", "fp32"])
def test_matmul_with_an_int32_constant(dtype):
    # iOS17: one constant operand may have another dtype; the output has the run-time operand's
    x, y = rand(2, 3, 5).astype(dtype), np.ascontiguousarray(INT_W.T)
    out = run_op("matmul", lambda x: mb.matmul(x=x, y=y), x, opset=IOS17)
    assert out.dtype == dtype
    tol = 1e-3 if dtype == np.float16 else ATOL
    assert_close(out, x.astype(np.float64) @ y, tol, tol)


@pytest.mark.parametrize("transpose_y", [False, True], ids=["y", "yT"])
@pytest.mark.parametrize("transpose_x", [False, True], ids=["x", "xT"])
@pytest.mark.parametrize("shapes", [((3, 4), (4, 5)), ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (3, 4, 5))],
                         ids=["2d", "batch-x", "broadcast-batch"])
def test_matmul(shapes, transpose_x, transpose_y):
    a, b = rand(*shapes[0]), rand(*shapes[1], seed=1)
    # feed the transposed layout so that the op's transpose flags bring it back
    x = np.ascontiguousarray(np.swapaxes(a, -1, -2)) if transpose_x else a
    y = np.ascontiguousarray(np.swapaxes(b, -1, -2)) if transpose_y else b
    build = lambda x, y: mb.matmul(x=x, y=y, transpose_x=transpose_x, transpose_y=transpose_y)  # noqa: E731
    out = run_op("matmul", build, x, y)
    assert_close(out, np.matmul(a.astype(np.float64), b), ATOL, RTOL)
    assert_close(out, mil_value(build, x, y), ATOL, RTOL)


def test_matmul_vector_times_matrix():
    # (A 1-D x against a batched y is left out: coremltools 9's type inference declares (1, N) where its
    # docstring and numpy give (B, N), so the declared-shape check would fail on coremltools' side.)
    x, y = rand(4), rand(4, 3, seed=1)
    assert_close(run_op("matmul", lambda x, y: mb.matmul(x=x, y=y), x, y), np.matmul(x, y), ATOL, RTOL)


def test_matmul_with_constant_weight():
    x, w = rand(2, 3, 4), rand(4, 6, seed=1)
    assert_close(run_op("matmul", lambda x: mb.matmul(x=x, y=w), x), x @ w, ATOL, RTOL)


@pytest.mark.parametrize("equation, shapes", [
    ("nchw,nwhu->nchu", ((1, 2, 3, 4), (1, 4, 3, 5))),
    ("chw,whr->chr", ((2, 3, 4), (4, 3, 5))),
])
def test_einsum(equation, shapes):
    a, b = rand(*shapes[0]), rand(*shapes[1], seed=1)
    build = lambda a, b: mb.einsum(values=(a, b), equation=equation)  # noqa: E731
    out = run_op("einsum", build, a, b)
    assert_close(out, np.einsum(equation, a.astype(np.float64), b), ATOL, RTOL, equation)
    assert_close(out, mil_value(build, a, b), ATOL, RTOL, equation)
