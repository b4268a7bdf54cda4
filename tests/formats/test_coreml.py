"""Core ML: typed output mappings, runner options, the locator behind the format, file checks."""

import numpy as np
import pytest

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.formats.base import ClassProbabilities, ImagePixels
from workbench.session import Session
from workbench.tasks import ImageToImage, softmax


def test_a_classifier_gives_probabilities_against_the_references_softmax(tmp_path):
    s = Session(tiny_classifier(num_classes=3), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)),
                task="classification", labels=["a", "b", "c"],
                runtime_options={"coreml": {"compute_precision": "fp32"}})
    artifact = s.export("coreml", tmp_path / "c.mlpackage", precision="fp32")
    (mapping,) = artifact.mappings
    assert isinstance(mapping, ClassProbabilities) and mapping.labels == ("a", "b", "c") and mapping.softmax
    main = s.task.main_output(s.outputs)
    np.testing.assert_allclose(s.expected("coreml")[main], softmax(s.outputs[main]), rtol=1e-6)
    assert s.compare("coreml", s.run("coreml")).passed
    assert "fp32" in s.runner("coreml").label  # compute_precision reached the interpreter


def test_an_image_output_is_compared_as_the_image_is():
    m = ImagePixels("y", scale=127.5, bias=127.5)  # tanh output: (y + 1) * 127.5
    ref = np.array([-2.0, -1.0, 0.0, 1.0, 3.0], np.float32)
    np.testing.assert_allclose(m.expected(ref), [-1, -1, 0, 1, 1])
    np.testing.assert_allclose(m.to_model_units(np.array([0.0, 255.0])), [-1, 1])
    assert ImageToImage(output_range=(-1, 1)).deprocess == (127.5, 127.5)


def test_the_locator_is_the_formats_and_needs_a_trace(tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)), task="classification")
    s.export("coreml", tmp_path / "t.mlpackage", precision="fp32")
    divergence = s.locate()
    assert divergence.first is None and divergence.matched > 0
    s.export("coreml", tmp_path / "e.mlpackage", precision="fp32", method="export")
    with pytest.raises(WorkbenchError, match="method='trace'"):
        s.locate()
    without = [f for f in formats.registry().values() if not f.locator]  # every format may have one by now
    for fmt in without[:1]:
        with pytest.raises(WorkbenchError, match=f"{fmt.title} has no op-by-op divergence locator"):
            fmt.locate()


def test_a_package_without_its_weights_is_refused_when_loaded(tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)), task="classification")
    artifact = s.export("coreml", tmp_path / "w.mlpackage")
    for weights in artifact.path.rglob("weight.bin"):
        weights.unlink()
    with pytest.raises(WorkbenchError, match="missing its weights"):
        load_model(str(artifact.path))
