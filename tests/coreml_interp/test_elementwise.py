"""ops/elementwise.py: binary ops with numpy broadcasting, unary ops, epsilon defaults, cast."""

import coremltools as ct
import numpy as np
import pytest
from _mil import FP16, IOS15, IOS17, assert_close, convert, mb, mil_value, op_types, program, rand, run_model, run_op

from workbench.coreml_interp import CoreMLInterpreter

# fp32 kernels against float64 numpy
ATOL, RTOL = 1e-5, 1e-5

BROADCASTS = [((2, 3, 4), (2, 3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((1,), (2, 3)), ((3, 1, 1), (1, 5))]

ARITHMETIC = {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "real_div": np.true_divide,
    "floor_div": np.floor_divide, "mod": np.mod, "maximum": np.maximum, "minimum": np.minimum,
}
COMPARISON = {
    "equal": np.equal, "not_equal": np.not_equal, "greater": np.greater, "greater_equal": np.greater_equal,
    "less": np.less, "less_equal": np.less_equal,
}
LOGICAL = {"logical_and": np.logical_and, "logical_or": np.logical_or, "logical_xor": np.logical_xor}


def _divisor(shape, seed):
    # away from zero, both signs: floor_div and mod differ from C-style truncation only for negatives
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(np.float32)


@pytest.mark.parametrize("shapes", BROADCASTS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("op_type", sorted(ARITHMETIC))
def test_arithmetic_broadcasts_like_numpy(op_type, shapes):
    x, y = rand(*shapes[0], low=-4, high=4), _divisor(shapes[1], 1)
    out = run_op(op_type, lambda x, y: getattr(mb, op_type)(x=x, y=y), x, y)
    expected = ARITHMETIC[op_type](x.astype(np.float64), y.astype(np.float64))
    assert np.shape(out) == expected.shape
    # floor_div of float32 values near an integer boundary can floor differently from float64: compare in fp32
    if op_type in ("floor_div", "mod"):
        expected = ARITHMETIC[op_type](x, y)
    assert_close(out, expected, ATOL, RTOL, op_type)


@pytest.mark.parametrize("op_type", ["add", "sub", "mul", "floor_div", "mod", "maximum", "minimum"])
def test_integer_arithmetic(op_type):
    rng = np.random.default_rng(2)
    x = rng.integers(-20, 20, (3, 4)).astype(np.int32)
    y = (rng.integers(1, 6, (4,)) * rng.choice([-1, 1], 4)).astype(np.int32)
    out = run_op(op_type, lambda x, y: getattr(mb, op_type)(x=x, y=y), x, y)
    expected = ARITHMETIC[op_type](x, y)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected, err_msg=op_type)
    np.testing.assert_array_equal(out, mil_value(lambda x, y: getattr(mb, op_type)(x=x, y=y), x, y))


def test_pow_and_real_div_match_value_inference():
    x, y = rand(2, 3, low=0.1, high=3), rand(3, low=-2, high=2, seed=1)
    for op_type in ("pow", "real_div"):
        build = lambda x, y: getattr(mb, op_type)(x=x, y=y)  # noqa: E731, B023 (used within this iteration)
        assert_close(run_op(op_type, build, x, y), mil_value(build, x, y), ATOL, RTOL, op_type)


@pytest.mark.parametrize("op_type", sorted(COMPARISON))
def test_comparisons(op_type):
    x = np.array([[-1, 0, 1, 2], [2, 1, 0, -1], [0, 0, 5, 5]], np.float32)
    y = np.array([0, 0, 1, 5], np.float32)  # broadcast over rows, with ties
    out = run_op(op_type, lambda x, y: mb.cast(x=getattr(mb, op_type)(x=x, y=y), dtype="fp32"), x, y)
    np.testing.assert_array_equal(out, COMPARISON[op_type](x, y).astype(np.float32), err_msg=op_type)


@pytest.mark.parametrize("op_type", sorted(LOGICAL) + ["logical_not"])
def test_logical(op_type):
    x = np.array([[-1, 0, 1, 2]], np.float32)
    y = np.array([[1], [-1]], np.float32)

    def build(x, y):
        a, b = mb.greater(x=x, y=0.0), mb.greater(x=y, y=0.0)
        out = mb.logical_not(x=a) if op_type == "logical_not" else getattr(mb, op_type)(x=a, y=b)
        return mb.cast(x=out, dtype="fp32")

    out = run_op(op_type, build, x, y)
    a, b = x > 0, y > 0
    expected = np.logical_not(a) if op_type == "logical_not" else LOGICAL[op_type](a, b)
    np.testing.assert_array_equal(out, expected.astype(np.float32), err_msg=op_type)


# (input range, numpy reference) for each unary op
UNARY = {
    "abs": ((-3, 3), np.abs), "acos": ((-0.95, 0.95), np.arccos), "asin": ((-0.95, 0.95), np.arcsin),
    "atan": ((-5, 5), np.arctan), "atanh": ((-0.9, 0.9), np.arctanh), "ceil": ((-3, 3), np.ceil),
    "cos": ((-4, 4), np.cos), "cosh": ((-3, 3), np.cosh), "exp": ((-3, 3), np.exp), "exp2": ((-3, 3), np.exp2),
    "floor": ((-3, 3), np.floor), "sign": ((-3, 3), np.sign), "sin": ((-4, 4), np.sin), "sinh": ((-3, 3), np.sinh),
    "sqrt": ((0.01, 9), np.sqrt), "square": ((-3, 3), np.square), "tan": ((-1.2, 1.2), np.tan),
    "tanh": ((-3, 3), np.tanh),
}


@pytest.mark.parametrize("op_type", sorted(UNARY))
def test_unary(op_type):
    (low, high), reference = UNARY[op_type]
    x = rand(2, 3, 5, low=low, high=high)
    out = run_op(op_type, lambda x: getattr(mb, op_type)(x=x), x)
    assert_close(out, reference(x.astype(np.float64)), ATOL, RTOL, op_type)


def test_erf():
    x = rand(3, 7, low=-3, high=3)
    expected = mil_value(lambda x: mb.erf(x=x), x)  # coremltools: math.erf per element
    assert_close(run_op("erf", lambda x: mb.erf(x=x), x), expected, 1e-6, 1e-6)


def test_round_halves_to_even_like_numpy():
    x = np.array([[-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.4, -0.6]], np.float32)
    out = run_op("round", lambda x: mb.round(x=x), x)
    np.testing.assert_array_equal(out, np.round(x))
    np.testing.assert_array_equal(out, mil_value(lambda x: mb.round(x=x), x))


@pytest.mark.parametrize("op_type, default_epsilon, reference", [
    ("inverse", 1e-4, lambda x, e: 1 / (x + e)),
    ("log", 1e-45, lambda x, e: np.log(x + e)),
    ("rsqrt", 1e-12, lambda x, e: 1 / np.sqrt(x + e)),
])
@pytest.mark.parametrize("epsilon", [None, 0.5])
def test_epsilon_is_added_first(op_type, default_epsilon, reference, epsilon):
    x = rand(2, 6, low=0.05, high=4)
    kwargs = {} if epsilon is None else {"epsilon": epsilon}
    build = lambda x: getattr(mb, op_type)(x=x, **kwargs)  # noqa: E731
    out = run_op(op_type, build, x)
    expected = reference(x.astype(np.float64), default_epsilon if epsilon is None else epsilon)
    assert_close(out, expected, ATOL, RTOL, f"{op_type} epsilon={epsilon}")
    assert_close(out, mil_value(build, x), ATOL, RTOL, f"{op_type} value_inference")


def test_inverse_default_epsilon_is_visible_at_small_x():
    # 1/(1e-3 + 1e-4) = 909.09..., not 1000: the default epsilon 1e-4 matters
    x = np.array([[1e-3]], np.float32)
    assert_close(run_op("inverse", lambda x: mb.inverse(x=x), x), [[1 / 1.1e-3]], 0, 1e-5)


def test_threshold_and_clip():
    x = rand(3, 8, low=-3, high=3)
    assert_close(run_op("threshold", lambda x: mb.threshold(x=x, alpha=0.5), x), np.maximum(x, 0.5), 0, 0)
    assert_close(run_op("clip", lambda x: mb.clip(x=x, alpha=-1.0, beta=1.5), x), np.clip(x, -1.0, 1.5), 0, 0)


def test_cast_float_to_int_truncates_toward_zero():
    x = np.array([[-2.7, -1.2, -0.5, 0.0, 0.5, 1.9, 3.0]], np.float32)
    out = run_op("cast", lambda x: mb.cast(x=x, dtype="int32"), x)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, x.astype(np.int32))
    np.testing.assert_array_equal(out, mil_value(lambda x: mb.cast(x=x, dtype="int32"), x))


def test_cast_int_to_float_and_through_bool():
    x = np.array([[-3, 0, 2, 7]], np.int32)
    assert_close(run_op("cast", lambda x: mb.cast(x=x, dtype="fp32"), x), x.astype(np.float32), 0, 0)
    out = run_op("cast", lambda x: mb.cast(x=mb.cast(x=x, dtype="bool"), dtype="fp32"), x)
    np.testing.assert_array_equal(out, (x != 0).astype(np.float32))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16"])
def test_ios17_small_integer_casts(dtype):
    x = np.array([[0.0, 1.7, 5.2, 100.9]], np.float32)  # in range of every type
    out = run_op("cast", lambda x: mb.cast(x=mb.cast(x=x, dtype=dtype), dtype="fp32"), x, opset=IOS17)
    np.testing.assert_array_equal(out, np.trunc(x))


def test_ios15_binary_op():
    x, y = rand(2, 3), rand(3, seed=1)
    assert_close(run_op("add", lambda x, y: mb.add(x=x, y=y), x, y, opset=IOS15), x + y, 0, 0)


def test_fp16_program_rounds_every_op_and_fp32_removes_it():
    # Converted at FLOAT16, the program casts x to fp16, computes mul/add/sub/exp in fp16 (constants
    # stored as fp16: 0.1 -> 0.0999755859375) and casts back. The interpreter computes each op in fp32
    # from fp16-exact inputs and rounds the result to fp16 -- the numpy emulation below does the same.
    x = rand(1, 64, low=-8, high=8)
    prog = program(lambda x: (mb.sub(x=mb.add(x=mb.mul(x=x, y=0.1), y=100.0), y=100.0),
                              mb.exp(x=mb.mul(x=x, y=0.1))), x)
    model = convert(prog, precision=FP16, passes=ct.PassPipeline.DEFAULT)
    assert "cast" in op_types(model)
    assert CoreMLInterpreter(model).declared_precision == "fp16"

    f16, f32 = np.float16, np.float32
    c = f32(f16(0.1))
    xh = x.astype(f16).astype(f32)
    a = (xh * c).astype(f16).astype(f32)
    per_op = ((a + 100).astype(f16).astype(f32) - 100).astype(f16).astype(f32)
    y, z = run_model(model, "add", x)
    # mul/add/sub of fp16 values are exact in fp32 and then rounded once, as numpy rounds: bit-exact
    np.testing.assert_array_equal(y, per_op)
    # exp: torch's and numpy's fp32 exp may differ in the last fp32 bit, which can move the fp16 rounding
    # by at most one fp16 ulp (2**-10 relative)
    np.testing.assert_allclose(z, np.exp(a).astype(f16).astype(f32), rtol=2 ** -10, atol=0)
    # rounding after every op, not once at the end: 100 + a is on a 1/16 grid, so y is too
    assert np.abs(y - (x * c).astype(f16).astype(f32)).max() > 0.01
    np.testing.assert_array_equal(np.round(y * 16), y * 16)

    # compute_precision="fp32": no activation rounding; only the constants keep their fp16 storage
    y32, z32 = run_model(model, "add", x, compute_precision="fp32")
    x64 = x.astype(np.float64)
    # fp32 rounding of values near 100 is 2**-17 ~ 7.6e-6 per op
    np.testing.assert_allclose(y32, x64 * c, atol=3e-5, rtol=0)
    np.testing.assert_allclose(z32, np.exp(x64 * c), rtol=1e-6, atol=0)
    assert np.abs(y32 - y).max() > 0.01
