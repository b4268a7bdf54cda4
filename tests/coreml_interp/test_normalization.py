"""ops/normalization.py: batch_norm, instance_norm, layer_norm (axes), l2_norm, local_response_norm."""

import numpy as np
import pytest
from _mil import assert_close, mb, mil_value, rand, run_op

# normalized values of order 1, means/variances over <= 60 fp32 values, against float64
ATOL, RTOL = 2e-5, 1e-5


def _channel(v, rank):
    return v.reshape([1, -1] + [1] * (rank - 2))


@pytest.mark.parametrize("shape", [(2, 3, 5), (1, 3, 4, 5), (1, 3, 2, 3, 4)], ids=["rank3", "rank4", "rank5"])
@pytest.mark.parametrize("affine", [True, False], ids=["gamma-beta", "plain"])
def test_batch_norm(shape, affine):
    x = rand(*shape)
    mean, var = rand(3, seed=1), rand(3, low=0.1, high=2, seed=2)
    gamma, beta = rand(3, seed=3), rand(3, seed=4)
    kwargs = dict(mean=mean, variance=var, epsilon=1e-3)
    if affine:
        kwargs.update(gamma=gamma, beta=beta)
    out = run_op("batch_norm", lambda x: mb.batch_norm(x=x, **kwargs), x)
    r = len(shape)
    expected = (x - _channel(mean, r)) / np.sqrt(_channel(var, r) + 1e-3)
    if affine:
        expected = expected * _channel(gamma, r) + _channel(beta, r)
    assert_close(out, expected, ATOL, RTOL)


@pytest.mark.parametrize("shape", [(2, 3, 7), (2, 3, 4, 5)], ids=["rank3", "rank4"])
def test_instance_norm(shape):
    x = rand(*shape, low=-1, high=3)
    gamma, beta = rand(3, seed=3), rand(3, seed=4)
    out = run_op("instance_norm", lambda x: mb.instance_norm(x=x, gamma=gamma, beta=beta, epsilon=1e-4), x)
    axes = tuple(range(2, len(shape)))
    x64 = x.astype(np.float64)
    normalized = (x64 - x64.mean(axes, keepdims=True)) / np.sqrt(x64.var(axes, keepdims=True) + 1e-4)
    assert_close(out, normalized * _channel(gamma, len(shape)) + _channel(beta, len(shape)), ATOL, RTOL)


# (axes=None, "all axes" by default, cannot be built: coremltools fails to make a const of its range)
@pytest.mark.parametrize("axes", [[-1], [2, 3], [1], [1, 3], [0, 1, 2, 3]],
                         ids=["last", "last-two", "channel", "non-contiguous", "all"])
def test_layer_norm_axes(axes):
    x = rand(2, 3, 4, 5, low=-1, high=3)
    normalized = [x.shape[a] for a in range(4) if a in [b % 4 for b in axes]]
    gamma, beta = rand(*normalized, seed=3), rand(*normalized, seed=4)
    kwargs = dict(axes=axes, gamma=gamma, beta=beta, epsilon=1e-4)
    build = lambda x: mb.layer_norm(x=x, **kwargs)  # noqa: E731
    out = run_op("layer_norm", build, x)
    keep = tuple(a % 4 for a in axes)
    x64 = x.astype(np.float64)
    shape = [x.shape[a] if a in keep else 1 for a in range(4)]
    expected = ((x64 - x64.mean(keep, keepdims=True)) / np.sqrt(x64.var(keep, keepdims=True) + 1e-4)
                * gamma.reshape(shape) + beta.reshape(shape))
    assert_close(out, expected, ATOL, RTOL, f"axes {axes}")
    assert_close(out, mil_value(build, x), ATOL, RTOL, f"axes {axes}: value_inference")


@pytest.mark.parametrize("axes", [[-1], [1, 3], [2, 3]], ids=["last", "non-contiguous", "last-two"])
@pytest.mark.parametrize("spread", [1e-3, 1e-2])
def test_layer_norm_of_values_far_from_zero(axes, spread):
    # 10 +- 1e-3: a float32 mean is off by half an ulp of 10 (5e-7), which (x - mean) / sqrt(var + eps) turns
    # into 2e-4; the statistics are computed in float64, so the result is the exact formula's to 1e-5
    x = (10 + rand(1, 3, 1, 2, low=-1, high=1) * spread).astype(np.float32)
    normalized = [x.shape[a] for a in range(4) if a in [b % 4 for b in axes]]
    gamma, beta = rand(*normalized, seed=3), rand(*normalized, seed=4)
    out = run_op("layer_norm", lambda x: mb.layer_norm(x=x, axes=axes, gamma=gamma, beta=beta, epsilon=1e-5), x)
    keep, x64 = tuple(a % 4 for a in axes), x.astype(np.float64)
    shape = [x.shape[a] if a in keep else 1 for a in range(4)]
    expected = ((x64 - x64.mean(keep, keepdims=True)) / np.sqrt(x64.var(keep, keepdims=True) + 1e-5)
                * gamma.reshape(shape) + beta.reshape(shape))
    assert_close(out, expected, 1e-5, 1e-5, f"axes {axes}")


@pytest.mark.parametrize("shape", [(3, 4, 5), (2, 3, 4, 5), (2, 2, 3, 4, 5)], ids=["rank3", "rank4", "rank5"])
def test_l2_norm_over_the_last_three_axes(shape):
    # MIL: the last three axes are normalized; leading ones are batch (rank 3: everything at once)
    x = rand(*shape)
    out = run_op("l2_norm", lambda x: mb.l2_norm(x=x, epsilon=1e-6), x)
    axes = tuple(range(len(shape) - 3, len(shape)))
    x64 = x.astype(np.float64)
    assert_close(out, x64 / np.sqrt((x64 ** 2).sum(axes, keepdims=True) + 1e-6), 1e-6, 1e-5)
    assert_close(out, mil_value(lambda x: mb.l2_norm(x=x, epsilon=1e-6), x), 1e-6, 1e-5)


def test_l2_norm_default_epsilon():
    x = np.full((1, 1, 1), 1e-3, np.float32)  # x / sqrt(1e-6 + 1e-6): the MIL default epsilon is 1e-6
    assert_close(run_op("l2_norm", lambda x: mb.l2_norm(x=x), x), [[[1e-3 / np.sqrt(2e-6)]]], 0, 1e-5)


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("shape", [(1, 6, 3, 4), (2, 6, 5)], ids=["rank4", "rank3"])
def test_local_response_norm(shape, size):
    x = rand(*shape)
    alpha, beta, k = 0.5, 0.75, 2.0
    out = run_op("local_response_norm", lambda x: mb.local_response_norm(
        x=x, size=size, alpha=alpha, beta=beta, k=k), x)
    # x_c / (k + alpha / size * sum of x_j^2 over the `size` channels centred on c)^beta
    sq = x.astype(np.float64) ** 2
    half = size // 2
    sums = np.stack([sq[:, max(0, c - half):c + half + 1].sum(1) for c in range(shape[1])], 1)
    assert_close(out, x / (k + alpha / size * sums) ** beta, ATOL, RTOL, f"size {size}")
