"""ops/random.py: the distributions' shapes, ranges and moments, and seeds that repeat their values.
(Values cannot match a device's: only the distributions are MIL's.)"""

import numpy as np
import pytest
from _mil import convert, mb, program

from workbench.coreml_interp import CoreMLInterpreter

N = 4000  # samples: a moment's standard error is about 1.6% of the spread


def _run(build, *inputs, repeat=1):
    x = inputs[0] if inputs else np.zeros(1, np.float32)
    model = convert(program(build if inputs else (lambda unused: build()), x))
    interp = CoreMLInterpreter(model)
    name = next(iter(model._mil_program.functions["main"].inputs))
    outs = [next(iter(interp.predict({name: x}).values())) for _ in range(repeat)]
    return outs if repeat > 1 else outs[0]


def test_uniform_range_and_moments():
    out = _run(lambda: mb.random_uniform(shape=np.array([N], np.int32), low=-1.0, high=3.0, seed=7))
    assert out.shape == (N,)
    assert out.min() >= -1.0 and out.max() < 3.0
    assert abs(out.mean() - 1.0) < 0.1 and abs(out.var() - 16 / 12) < 0.15


def test_normal_moments():
    out = _run(lambda: mb.random_normal(shape=np.array([2, N // 2], np.int32), mean=2.0, stddev=0.5, seed=3))
    assert out.shape == (2, N // 2)
    assert abs(out.mean() - 2.0) < 0.05 and abs(out.std() - 0.5) < 0.05


def test_bernoulli_values_and_rate():
    out = _run(lambda: mb.random_bernoulli(shape=np.array([N], np.int32), prob=0.3, seed=1))
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert abs(out.mean() - 0.3) < 0.05


@pytest.mark.parametrize("mode", ["probs", "logits"])
def test_categorical_draws_by_probability(mode):
    p = np.array([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], np.float32)
    x = p if mode == "probs" else np.log(np.maximum(p, 1e-30)).astype(np.float32)
    out = _run(lambda x: mb.random_categorical(x=x, mode=mode, size=400, seed=5), x)
    assert out.shape == (2, 400)
    assert (out[0] == 1).all(), "a certain class is always drawn"
    assert set(np.unique(out[1])) == {0.0, 2.0} and abs((out[1] == 0).mean() - 0.5) < 0.1


def test_a_seed_repeats_its_values_and_seed_minus_one_does_not():
    seeded = _run(lambda: mb.random_normal(shape=np.array([8], np.int32), seed=11), repeat=2)
    np.testing.assert_array_equal(seeded[0], seeded[1])
    other = _run(lambda: mb.random_normal(shape=np.array([8], np.int32), seed=12))
    assert not np.array_equal(seeded[0], other)
    free = _run(lambda: mb.random_normal(shape=np.array([8], np.int32)), repeat=2)
    assert not np.array_equal(free[0], free[1])
