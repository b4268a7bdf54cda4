"""ExecuTorch's per-layer locator (workbench/formats/executorch/locate.py): the residual net with in-place ops
(tests/layers_nets.py) lowered to a .pte. Inside XNNPACK's delegate a file shows no value, so an XNNPACK file's
layers are a tapped twin's, checked against the file's outputs; a portable file's are its own, from ETDump. A
faithful file diverges nowhere, a file exported with one layer's weights changed is named at that layer, and an
fp16 file of the net whose stem passes 65504 is named at the stem."""

import dataclasses

import pytest
import torch

from tests.conftest import SAMPLES
from tests.layers_nets import hot_net, residual_net
from workbench import WorkbenchError, formats, layers
from workbench.formats.common import tools_env
from workbench.preprocess import Preprocess
from workbench.session import Session

try:
    tools_env.tools_python("executorch")
except WorkbenchError as exc:
    pytest.skip(str(exc), allow_module_level=True)

FMT = "executorch"
PRE = Preprocess.preset("unit", size=(16, 16))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """The faithful net, exported with XNNPACK: PyTorch's side of every test here."""
    s = Session(residual_net(), SAMPLES, preprocess=PRE, task="classification")
    s.export(FMT, tmp_path_factory.mktemp("et-layers") / "net.pte")
    yield s
    s.close()


@pytest.fixture(scope="module")
def other(tmp_path_factory):
    """A session of the net with block.c2's weights scaled by 1.5, and a folder: its exports are files of other
    weights."""
    bad = residual_net()
    with torch.no_grad():
        bad.block.c2.weight.mul_(1.5)
    s = Session(bad, SAMPLES, preprocess=PRE, task="classification")
    yield s, tmp_path_factory.mktemp("et-other")
    s.close()


@pytest.fixture(scope="module")
def bad_xnnpack(other):
    s, folder = other
    return s.export(FMT, folder / "bad.pte")


def test_a_faithful_xnnpack_file_with_in_place_ops_diverges_nowhere(session):
    found = session.locate(FMT)
    names = {x.torch for x in found.layers}
    assert {"stem", "act", "block.c1", "block.relu", "block.c2", "block.relu#2", "head"} <= names, names
    assert found.first is None, found.describe()
    # relu_ and += are new values in the functional program: c2's own output is compared, not c2 + x
    assert all(x.error < 1e-5 for x in found.layers), [(x.torch, x.error) for x in found.layers]
    assert found.layer("block.c2").op == "conv2d" and found.layer("block.relu#2").op == "relu"
    assert found.title == "ExecuTorch (XNNPACK twin)" and "no value inside its XNNPACK delegate" in found.hidden
    assert "none diverges" in found.describe() and "outputs are the file's within 0 " in found.notes[0]


def test_an_xnnpack_file_exported_with_one_layer_changed_is_named_there(session, bad_xnnpack):
    found = layers.locate(session, bad_xnnpack, formats.runner_for(bad_xnnpack))  # the faithful net: PyTorch's side
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.first.op == "conv2d" and found.first.error > 1e-2
    assert found.growth.torch == "block.c2"  # where the error appears, not the layers it flows into
    assert found.layer("block.c1").error < 1e-5 and found.layer("stem").error < 1e-5


def test_an_xnnpack_file_whose_twin_computes_other_outputs_is_refused(session, bad_xnnpack):
    loaded = dataclasses.replace(bad_xnnpack, traced=None)  # as a .pte loaded from a file comes: no source module
    with pytest.raises(WorkbenchError, match=r"bad\.pte shows no value inside its XNNPACK delegate .*a twin lowered "
                                             r"the same way from the PyTorch model it is compared with; but the "
                                             r"twin's outputs are .* off the file's: the file was not exported"):
        layers.locate(session, loaded, formats.runner_for(loaded))


def test_a_portable_file_is_read_from_its_own_etdump_and_named_at_the_changed_layer(session, other):
    s, folder = other
    artifact = s.export(FMT, folder / "bad-portable.pte", delegate="portable")
    loaded = dataclasses.replace(artifact, traced=None)  # the twin would be the faithful net: only the file knows
    found = layers.locate(session, loaded, formats.runner_for(loaded))
    assert found.title == "ExecuTorch (portable)" and not found.hidden
    assert "own: each kernel's output as ETDump logged it" in found.notes[0]
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.first.op == "convolution" and found.layer("block.c1").error < 1e-5


def test_an_fp16_file_is_named_at_the_first_layer_that_overflows(tmp_path):
    s = Session(hot_net(), SAMPLES, preprocess=PRE, task="classification")
    s.export(FMT, tmp_path / "hot.pte", precision="fp16")
    found = s.locate(FMT)
    s.close()
    assert found.precision == "fp16"
    assert found.overflow is not None and found.overflow.torch == "stem", found.describe()
    assert found.overflow.peak > 65504 and not found.layer("stem").finite
    assert found.layer("pre").finite and not found.layer("pre").overflow  # the layer before it is in range
    assert "fp16 overflow: op" in found.describe() and "(PyTorch 'stem')" in found.describe()


def test_the_int8_variant_says_its_layers_cannot_be_read(session):
    int8 = dataclasses.replace(session.artifacts[FMT], notes=("int8: 8-bit weights", "XNNPACK runs the whole graph"))
    with pytest.raises(WorkbenchError, match=r"int8 variant, whose quantized program is not kept.*Compare the fp32 "
                                             r"export layer by layer"):
        layers.locate(session, int8, session.runner(FMT))
