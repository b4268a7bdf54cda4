"""LiteRT's per-layer locator (workbench/formats/litert/locate.py): the residual net with in-place ops
(tests/layers_nets.py) exported by litert-torch, its tensors matched to modules by the module paths their names
carry; a faithful file diverges nowhere, a file exported with one layer's weights changed is named at that
layer, and so is the int8 variant's layer whose range is quantized too narrow."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from formatkit import calibration

from tests.conftest import SAMPLES
from tests.layers_nets import residual_net
from workbench import formats, layers
from workbench.compare import Tolerance
from workbench.preprocess import Preprocess
from workbench.session import Session

pytest.importorskip("ai_edge_litert", reason="LiteRT's runtime: pip install ai-edge-litert")

PRE = Preprocess.preset("unit", size=(16, 16))
INT8 = Tolerance(rel=0.1)  # int8's own rounding: the faithful int8 file's worst layer is 0.075 of its scale


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session(residual_net(), SAMPLES, preprocess=PRE, task="classification")
    s.export("litert", tmp_path_factory.mktemp("litert-layers") / "net.tflite")
    yield s
    s.close()


@pytest.fixture(scope="module")
def int8(session, tmp_path_factory):
    artifact = session.artifacts["litert"]
    return formats.get("litert").compress("int8", artifact, tmp_path_factory.mktemp("litert-int8") / "q.tflite",
                                          calibration=calibration(session, artifact))


def test_a_faithful_file_diverges_nowhere_and_the_in_place_residual_is_not_blamed(session):
    found = session.locate("litert")
    names = {x.torch for x in found.layers}
    assert {"act", "block.relu", "block.c2", "head"} <= names, names  # matched by the tensors' module paths
    assert not names & {"stem", "block.c1"}, names  # their ReLUs are fused in: those ops stand for the ReLUs
    assert found.layer("act").op == "CONV_2D+RELU" and found.layer("block.c2").op == "CONV_2D"
    assert found.first is None, found.describe()
    # c2's value is PyTorch's before `y += x` changed it in place; the add, fused with the ReLU, is the ReLU's
    assert all(x.error < 1e-5 for x in found.layers), [(x.torch, x.error) for x in found.layers]
    assert found.layer("block.relu#2").op == "ADD+RELU"
    assert found.layer("block.relu#2").inputs == ("block.c2", "act")  # the graph's edges, not the list's order
    assert "none diverges" in found.describe() and "XNNPACK" in found.describe()


def test_a_file_exported_with_block_c2_scaled_is_named_at_block_c2(session, tmp_path):
    bad = residual_net()
    with torch.no_grad():
        bad.block.c2.weight.mul_(1.5)
    other = Session(bad, SAMPLES, preprocess=PRE, task="classification")
    try:
        artifact = other.export("litert", tmp_path / "bad.tflite")
    finally:
        other.close()
    found = layers.locate(session, artifact, formats.runner_for(artifact))  # the faithful model is PyTorch's side
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.first.op == "CONV_2D" and found.first.error > 1e-2
    assert found.growth.torch == "block.c2"  # where the error appears, not the layers it flows into
    assert found.layer("block.relu").error < 1e-5 and found.layer("act").error < 1e-5
    assert "first divergence at op" in found.describe() and "(PyTorch 'block.c2')" in found.describe()


def _narrowed(src: Path, dst: Path, attribute: str, factor: float) -> None:
    """`src` with the quantization scale of the activation whose tensor names `attribute` multiplied by
    `factor`: the range calibrated for that one layer made narrower, so its values clip."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as fb

    model = fb.ModelT.InitFromPackedBuf(src.read_bytes(), 0)
    sub = model.subgraphs[0]
    hits = [sub.tensors[op.outputs[0]] for op in sub.operators
            if sub.tensors[op.outputs[0]].name.decode().rsplit(";", 1)[0].endswith(f"_{attribute}")]
    assert len(hits) == 1 and hits[0].quantization.scale is not None, [t.name for t in sub.tensors]
    hits[0].quantization.scale = [float(s) * factor for s in hits[0].quantization.scale]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    dst.write_bytes(builder.Output())


def test_the_int8_layer_quantized_on_too_narrow_a_range_is_named(session, int8, tmp_path):
    runner = formats.runner_for(int8)
    clean = layers.locate(session, int8, runner, tolerance=INT8)
    # int8 tensors read through their scale and zero point: every layer within int8's rounding
    assert clean.first is None and clean.matched >= 6, clean.describe()
    assert 1e-3 < max(x.error for x in clean.layers) < INT8.rel
    path = tmp_path / "narrow.tflite"
    _narrowed(int8.path, path, "c2", 0.25)
    narrow = dataclasses.replace(int8, path=path)
    found = layers.locate(session, narrow, formats.runner_for(narrow), tolerance=INT8)
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.growth.torch == "block.c2", found.describe()
    assert np.isclose(found.layer("block.relu").error, clean.layer("block.relu").error)  # before it: unchanged
