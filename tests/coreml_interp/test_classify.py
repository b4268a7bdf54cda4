"""ops/classify.py: a classifier program's label and {class: probability} outputs, string and integer classes."""

import coremltools as ct
import numpy as np
import pytest
from _mil import convert, mb, program, run_model


@pytest.mark.parametrize("classes", [["cat", "dog", "bird"], [10, 20, 30]], ids=["strings", "integers"])
def test_classify_label_and_probabilities(classes):
    x = np.array([[0.5, 2.0, -1.0]], np.float32)
    model = convert(program(lambda x: mb.softmax(x=x, axis=-1), x), classifier_config=ct.ClassifierConfig(classes))
    label, probs = run_model(model, "classify", x)
    e = np.exp(x[0] - x[0].max())
    expected = e / e.sum()
    assert label == classes[1]
    assert set(probs) == set(classes)
    np.testing.assert_allclose([probs[c] for c in classes], expected, atol=1e-6, rtol=1e-6)


def test_classify_takes_the_first_of_tied_maxima():
    x = np.array([[1.0, 3.0, 3.0]], np.float32)
    model = convert(program(lambda x: mb.softmax(x=x, axis=-1), x),
                    classifier_config=ct.ClassifierConfig(["a", "b", "c"]))
    label, probs = run_model(model, "classify", x)
    assert label == "b"
    assert probs["b"] == probs["c"]
