"""The names that once collided: the new ones are the API, the old ones deprecated aliases of the same things."""

import importlib
import sys

import pytest

from conftest import tiny_classifier
from workbench import Preprocess
from workbench.session import Session


@pytest.fixture(scope="module")
def session(samples):
    return Session(tiny_classifier(), sorted(samples.glob("*.jpg"))[:2], preprocess=Preprocess.preset("imagenet"),
                   task="classification")


def test_outputs_and_training_preprocess_are_the_names_and_the_old_ones_warn(session):
    assert list(session.outputs) == ["output"] and session.outputs["output"].shape[0] == 2
    assert session.training_preprocess == Preprocess.preset("imagenet").replace(size=session.training_preprocess.size)
    with pytest.warns(DeprecationWarning, match="Session.outputs"):
        assert session.reference is session.outputs
    with pytest.warns(DeprecationWarning, match="training_preprocess"):
        assert session.preprocess is session.training_preprocess


def test_an_artifact_sets_reference_is_the_reference_and_locate_takes_the_format_first(session):
    session.export("coreml")
    assert session.exported.reference is session
    ordered = session.locate("coreml", 1)
    with pytest.warns(DeprecationWarning, match="locate"):
        old = session.locate(1)
    assert type(old) is type(ordered)


@pytest.mark.parametrize("old, new", [("workbench._files", "workbench.files"),
                                      ("workbench.widgets.workbench", "workbench.widgets.view")])
def test_renamed_modules_still_import_with_a_warning(old, new):
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    public = [n for n in dir(importlib.import_module(new)) if not n.startswith("_")]
    assert public and all(getattr(module, n) is getattr(importlib.import_module(new), n) for n in public)
