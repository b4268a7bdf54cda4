"""ops/scatter_gather.py: gather, gather_along_axis, gather_nd (batch_dims) and the scatter ops in every mode,
against numpy loops and coremltools' value_inference where it has one."""

import numpy as np
import pytest
from _mil import IOS17, assert_close, check_exact, mb, rand, run_op, same


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_negative_indices(axis):
    x = rand(4, 5, 6)
    indices = np.array([[0, -1], [2, -3]], np.int32)
    check_exact("gather", lambda x: mb.gather(x=x, indices=indices, axis=axis), x,
           expected=np.take(x, indices, axis))


def test_gather_with_runtime_indices():
    x, indices = rand(5, 3), np.array([4, -5, 0, 2], np.int32)
    out = run_op("gather", lambda x, i: mb.gather(x=x, indices=i, axis=0), x, indices)
    same(out, np.take(x, indices, 0))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_along_axis(axis):
    x = rand(3, 4, 5)
    rng = np.random.default_rng(0)
    shape = list(x.shape)
    shape[axis] = 2
    indices = rng.integers(-x.shape[axis], x.shape[axis], shape).astype(np.int32)
    check_exact("gather_along_axis", lambda x: mb.gather_along_axis(x=x, indices=indices, axis=axis), x,
           expected=np.take_along_axis(x, np.where(indices < 0, indices + x.shape[axis], indices), axis))


@pytest.mark.parametrize("batch_dims, axis", [(1, 1), (1, 2), (2, 2)])
def test_gather_batch_dims(batch_dims, axis):
    x = rand(2, 3, 4, 5)
    rng = np.random.default_rng(1)
    indices = rng.integers(0, x.shape[axis], (2, 3, 2)[:batch_dims] + (2,)).astype(np.int32)
    # tf.gather with batch_dims: each batch element gathers from its own slice of x
    expected = np.stack([np.take(x.reshape(-1, *x.shape[batch_dims:])[i],
                                 indices.reshape(-1, *indices.shape[batch_dims:])[i], axis - batch_dims)
                         for i in range(int(np.prod(x.shape[:batch_dims])))])
    expected = expected.reshape(*x.shape[:batch_dims], *expected.shape[1:])
    out = run_op("gather", lambda x: mb.gather(x=x, indices=indices, axis=axis, batch_dims=batch_dims), x)
    same(out, expected)


def _np_gather_nd(x, indices, batch_dims=0):
    out = np.empty(indices.shape[:-1] + x.shape[batch_dims + indices.shape[-1]:], x.dtype)
    for pos in np.ndindex(*indices.shape[:-1]):
        out[pos] = x[pos[:batch_dims] + tuple(indices[pos])]
    return out


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_gather_nd(depth):
    x = rand(3, 4, 5)
    rng = np.random.default_rng(depth)
    indices = np.stack([rng.integers(-n, n, (2, 2)) for n in x.shape[:depth]], -1).astype(np.int32)
    out = run_op("gather_nd", lambda x: mb.gather_nd(x=x, indices=indices), x)
    same(out, _np_gather_nd(x, np.where(indices < 0, indices + np.array(x.shape[:depth]), indices)))


def test_gather_nd_batch_dims():
    x = rand(2, 4, 5)
    indices = np.array([[[1], [3]], [[0], [2]]], np.int32)  # per batch element, rows of x[b]
    out = run_op("gather_nd", lambda x: mb.gather_nd(x=x, indices=indices, batch_dims=1), x)
    same(out, _np_gather_nd(x, indices, 1))
    same(out[1, 0], x[1, 0])


def _np_combine(out, pos, u, mode):
    if mode == "update":
        out[pos] = u
    elif mode == "add":
        out[pos] += u
    elif mode == "sub":
        out[pos] -= u
    elif mode == "mul":
        out[pos] *= u
    elif mode == "div":
        out[pos] /= u
    elif mode == "max":
        out[pos] = np.maximum(out[pos], u)
    else:
        out[pos] = np.minimum(out[pos], u)


MODES = ["update", "add", "sub", "mul", "div", "max", "min"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("axis", [0, -1])
def test_scatter(mode, axis):
    data = rand(4, 3)
    # duplicate indices combine (update: no duplicates, whose order MIL leaves open)
    indices = np.array([1, -1, 1] if mode != "update" else [1, -1, 0], np.int32)
    shape = list(data.shape)
    shape[axis] = 3
    updates = rand(*shape, low=0.5, high=2.0, seed=1)
    expected = data.astype(np.float64).copy()
    for j, i in enumerate(indices):
        index = [slice(None)] * 2
        index[axis] = i
        src = [slice(None)] * 2
        src[axis] = j
        _np_combine(expected, tuple(index), updates[tuple(src)], mode)
    out = run_op("scatter", lambda d, u: mb.scatter(data=d, indices=indices, updates=u, axis=axis, mode=mode),
                 data, updates, opset=IOS17)
    assert_close(out, expected, 1e-6, 1e-6, f"scatter {mode}")


@pytest.mark.parametrize("mode", MODES)
def test_scatter_along_axis(mode):
    data = rand(3, 4)
    indices = np.array([[0, 1, 2, 0], [2, 1, 0, 1]], np.int32) if mode != "update" else np.array(
        [[0, 1, 2, 0], [2, 0, 1, 1]], np.int32)
    updates = rand(2, 4, low=0.5, high=2.0, seed=2)
    expected = data.astype(np.float64).copy()
    for i, j in np.ndindex(*indices.shape):
        _np_combine(expected, (indices[i, j], j), updates[i, j], mode)
    out = run_op("scatter_along_axis", lambda d, u: mb.scatter_along_axis(data=d, indices=indices, updates=u, axis=0,
                                                                          mode=mode), data, updates)
    assert_close(out, expected, 1e-6, 1e-6, f"scatter_along_axis {mode}")


@pytest.mark.parametrize("mode", MODES)
def test_scatter_nd(mode):
    data = rand(3, 4, 2)
    indices = np.array([[0, 1], [2, -1], [0, 1]], np.int32) if mode != "update" else np.array(
        [[0, 1], [2, -1], [1, 0]], np.int32)
    updates = rand(3, 2, low=0.5, high=2.0, seed=3)
    expected = data.astype(np.float64).copy()
    for i, idx in enumerate(indices):
        _np_combine(expected, tuple(idx), updates[i], mode)
    out = run_op("scatter_nd", lambda d, u: mb.scatter_nd(data=d, indices=indices, updates=u, mode=mode),
                 data, updates)
    assert_close(out, expected, 1e-6, 1e-6, f"scatter_nd {mode}")


def test_scatter_with_runtime_indices():
    data, updates = rand(5), rand(2, seed=1)
    indices = np.array([4, 0], np.int32)
    out = run_op("scatter", lambda d, i, u: mb.scatter(data=d, indices=i, updates=u, mode="update"), data, indices,
                 updates)
    expected = data.copy()
    expected[[4, 0]] = updates
    same(out, expected)
