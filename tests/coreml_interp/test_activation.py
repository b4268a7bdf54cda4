"""ops/activation.py: every activation against numpy (from the MIL docstrings) and coremltools' value_inference."""

import math

import numpy as np
import pytest
from _mil import IOS15, IOS17, assert_close, mb, mil_value, rand, run_op

X = rand(1, 3, 4, 5, low=-4, high=4)
# fp32 kernels against float64 numpy: a few ulps of values up to ~10
ATOL, RTOL = 1e-5, 1e-5


def _sigmoid(x):
    return 1 / (1 + np.exp(-x.astype(np.float64)))


NUMPY = {
    "relu": (lambda x: mb.relu(x=x), lambda x: np.maximum(x, 0)),
    "relu6": (lambda x: mb.relu6(x=x), lambda x: np.clip(x, 0, 6)),
    "sigmoid": (lambda x: mb.sigmoid(x=x), _sigmoid),
    "tanh": (lambda x: mb.tanh(x=x), np.tanh),
    "silu": (lambda x: mb.silu(x=x), lambda x: x * _sigmoid(x)),
    "softplus": (lambda x: mb.softplus(x=x), lambda x: np.log1p(np.exp(x.astype(np.float64)))),
    "softsign": (lambda x: mb.softsign(x=x), lambda x: x / (1 + np.abs(x))),
    "leaky_relu": (lambda x: mb.leaky_relu(x=x, alpha=0.3), lambda x: np.where(x >= 0, x, 0.3 * x)),
    "elu": (lambda x: mb.elu(x=x, alpha=0.7), lambda x: np.where(x > 0, x, 0.7 * np.expm1(x.astype(np.float64)))),
    # "if x >= 0 return min(beta, x), otherwise return min(beta, alpha * x)"
    "clamped_relu": (lambda x: mb.clamped_relu(x=x, alpha=0.5, beta=2.5),
                     lambda x: np.where(x >= 0, np.minimum(2.5, x), np.minimum(2.5, 0.5 * x))),
    "linear_activation": (lambda x: mb.linear_activation(x=x, alpha=-1.5, beta=0.25), lambda x: -1.5 * x + 0.25),
    "scaled_tanh": (lambda x: mb.scaled_tanh(x=x, alpha=2.0, beta=0.5), lambda x: 2.0 * np.tanh(0.5 * x)),
    "sigmoid_hard": (lambda x: mb.sigmoid_hard(x=x, alpha=0.3, beta=0.4), lambda x: np.clip(0.3 * x + 0.4, 0, 1)),
    "thresholded_relu": (lambda x: mb.thresholded_relu(x=x, alpha=0.75), lambda x: np.where(x >= 0.75, x, 0)),
}


@pytest.mark.parametrize("op_type", sorted(NUMPY))
def test_activation_matches_numpy(op_type):
    build, reference = NUMPY[op_type]
    out = run_op(op_type, build, X)
    assert_close(out, reference(X), ATOL, RTOL, op_type)


@pytest.mark.parametrize("op_type", sorted(set(NUMPY) - {"silu"}))
def test_activation_matches_value_inference(op_type):
    build, _ = NUMPY[op_type]
    x = rand(2, 3, 4, seed=1, low=-4, high=4)
    assert_close(run_op(op_type, build, x), mil_value(build, x), ATOL, RTOL, op_type)


def test_thresholded_relu_keeps_alpha_itself():
    x = np.array([[0.5, 0.75, 1.0, -1.0]], np.float32)
    assert_close(run_op("thresholded_relu", lambda x: mb.thresholded_relu(x=x, alpha=0.75), x),
                 [[0, 0.75, 1.0, 0]], 0, 0)


@pytest.mark.parametrize("mode", ["EXACT", "TANH_APPROXIMATION", "SIGMOID_APPROXIMATION"])
def test_gelu_modes(mode):
    x = X.astype(np.float64)
    if mode == "EXACT":
        expected = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    elif mode == "TANH_APPROXIMATION":
        expected = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    else:
        expected = x * _sigmoid(1.702 * x)
    out = run_op("gelu", lambda x: mb.gelu(x=x, mode=mode), X)
    assert_close(out, expected, ATOL, RTOL, mode)
    assert_close(out, mil_value(lambda x: mb.gelu(x=x, mode=mode), X), ATOL, RTOL, mode)


@pytest.mark.parametrize("axis", [0, 1, -1, -2, 3])
def test_softmax_axes(axis):
    x = rand(2, 3, 4, 5, low=-5, high=5)
    e = np.exp(x - x.max(axis, keepdims=True))
    out = run_op("softmax", lambda x: mb.softmax(x=x, axis=axis), x)
    assert_close(out, e / e.sum(axis, keepdims=True), 1e-6, 1e-5, f"axis {axis}")


def test_softmax_default_axis_is_last():
    x = rand(2, 3, 4)
    e = np.exp(x)
    assert_close(run_op("softmax", lambda x: mb.softmax(x=x), x), e / e.sum(-1, keepdims=True), 1e-6, 1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 3, 4, 5), (1, 3, 2, 3, 4)])
def test_prelu_alpha_per_channel_axis_1(shape):
    x = rand(*shape, low=-3, high=3)
    # MIL allows distinct alphas for rank 4 only; ranks 3 and 5 need one value repeated
    alpha = np.array([0.1, 0.2, 0.3] if len(shape) == 4 else [0.25] * 3, np.float32)
    expected = np.where(x > 0, x, x * alpha.reshape([1, 3] + [1] * (len(shape) - 2)))
    out = run_op("prelu", lambda x: mb.prelu(x=x, alpha=alpha), x)
    assert_close(out, expected, 1e-6, 1e-6, f"shape {shape}")
    assert_close(out, mil_value(lambda x: mb.prelu(x=x, alpha=alpha), x), 1e-6, 1e-6)


def test_softplus_parametric_per_channel():
    alpha, beta = np.array([0.5, 1.0, 2.0], np.float32), np.array([2.0, 1.0, 0.5], np.float32)
    expected = alpha.reshape(1, 3, 1, 1) * np.log1p(np.exp(beta.reshape(1, 3, 1, 1) * X.astype(np.float64)))
    build = lambda x: mb.softplus_parametric(x=x, alpha=alpha, beta=beta)  # noqa: E731
    out = run_op("softplus_parametric", build, X)
    assert_close(out, expected, ATOL, RTOL)
    assert_close(out, mil_value(build, X), ATOL, RTOL)


@pytest.mark.parametrize("opset", [IOS15, IOS17])
def test_opsets_build_the_same_activation(opset):
    # iOS17 re-declares the alpha/beta activations (alpha may be fp16); the kernel is the same
    out = run_op("leaky_relu", lambda x: mb.leaky_relu(x=x, alpha=0.2), X, opset=opset)
    assert_close(out, np.where(X >= 0, X, 0.2 * X), 1e-6, 1e-6)
