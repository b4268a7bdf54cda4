"""ncnn's per-layer locator (workbench/formats/ncnn/locate.py): the residual net of tests/layers_nets.py exported
by pnnx, every blob read with ncnn's Extractor and matched to its PyTorch module through the ONNX graph pnnx
converted (pnnx keeps no names). Each test breaks one known layer of the ncnn file and checks the locator names
it, never the convolution an activation is folded into, nor the in-place residual add."""

import dataclasses
import json

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLES
from tests.layers_nets import residual_net
from workbench import formats, layers
from workbench.preprocess import Preprocess
from workbench.session import Session

pytest.importorskip("ncnn")
pytest.importorskip("pnnx")

PRE = Preprocess.preset("unit", size=(16, 16))


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = Session(residual_net(), SAMPLES, preprocess=PRE, task="classification")
    s.export("ncnn", tmp_path_factory.mktemp("ncnn_layers") / "net.ncnn.param")
    return s


@pytest.fixture(scope="module")
def faithful(session):
    return session.locate("ncnn")


def test_a_faithful_file_diverges_nowhere_and_a_folded_activation_stands_for_its_own_module(faithful):
    found = faithful
    names = {x.torch for x in found.layers}
    # pnnx folds act into stem's Convolution and block.relu into c1's: those blobs are the activations'
    assert {"act", "block.relu", "block.c2", "block.relu#2", "pool", "head"} <= names, names
    assert not {"stem", "block.c1"} & names, names
    assert "stem, block.c1" in found.hidden
    assert found.layer("act").op == "Convolution" and found.layer("block.c2").op == "Convolution"
    assert found.layer("head").op == "InnerProduct"
    # the residual y += x is no module's output: its BinaryOp is never compared, so never blamed
    assert all(x.op != "BinaryOp" and x.torch != "block" for x in found.layers), names
    assert found.first is None and found.precision == "fp32", found.describe()
    assert all(x.error < 1e-5 for x in found.layers), [(x.torch, x.error) for x in found.layers]
    assert found.unit == "layer" and found.total == 10 and not found.extra["fp16_compute"]
    assert "none diverges" in found.describe()


def _spliced(session, path, edit):
    """The session's ncnn file with its .bin rewritten by edit(bytes) at `path`, and its runner."""
    src = session.artifacts["ncnn"].path
    path.write_bytes(src.read_bytes())
    path.with_name(path.name[:-len(".param")] + ".bin").write_bytes(edit(
        src.with_name(src.name[:-len(".param")] + ".bin").read_bytes()))
    artifact = dataclasses.replace(session.artifacts["ncnn"], path=path)
    return artifact, formats.runner_for(artifact)


def test_a_wrong_constant_in_the_bin_is_named_at_its_layer(session, tmp_path):
    weight = residual_net().block.c2.weight.detach().numpy().astype(np.float32)

    def scale_c2(data):
        old = weight.tobytes()  # pnnx writes a conv's weights in PyTorch's (out, in, kh, kw) order, fp32
        assert data.count(old) == 1, "block.c2's weights are not in the .bin as PyTorch orders them"
        return data.replace(old, (weight * np.float32(1.5)).tobytes())

    artifact, runner = _spliced(session, tmp_path / "bad.ncnn.param", scale_c2)
    found = layers.locate(session, artifact, runner)
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.first.op == "Convolution" and found.first.name == "conv_5" and found.first.error > 1e-2
    assert found.growth.torch == "block.c2"  # where the error appears, not the layers it flows into
    assert found.layer("block.relu").error < 1e-5 and found.last_good.torch == "block.relu"
    assert "first divergence at layer 5: Convolution 'conv_5' (PyTorch 'block.c2')" in found.describe()
    assert found.to_dict()["first"] == "block.c2"


@pytest.fixture(scope="module")
def hot(tmp_path_factory):
    # hotter than hot_net: ncnn folds act into stem's convolution, so stem's own output (which passes fp16's
    # 65504 in hot_net) is never seen; at 3e5 act's passes it too
    s = Session(residual_net(stem_gain=3e5), SAMPLES, preprocess=PRE, task="classification")
    artifact = s.export("ncnn", tmp_path_factory.mktemp("ncnn_hot") / "hot.ncnn.param", precision="fp16")
    return layers.locate(s, artifact, formats.runner_for(artifact))


def test_an_fp16_file_names_its_first_layer_past_fp16s_range_and_says_where_ncnn_computed_in_it(hot):
    assert hot.precision == "fp16"
    assert hot.overflow is not None and hot.overflow.torch == "act", hot.describe()
    assert hot.overflow.peak > 65504 and "stem" in hot.hidden
    assert "fp16 overflow: op 2, Convolution 'convrelu_0' (PyTorch 'act')" in hot.describe()
    said = "computes blobs in half precision" if hot.extra["fp16_compute"] else "computes every blob in fp32"
    assert any(said in n for n in hot.notes), hot.notes


def test_where_ncnn_computes_in_fp16_the_overflowing_layer_is_not_finite(hot):
    if not hot.extra["fp16_compute"]:
        pytest.skip("ncnn computes in fp32 on this CPU whatever its fp16 options (x86); its fp16 path is ARM's")
    assert hot.first_nonfinite is not None and hot.first_nonfinite.torch == "act", hot.describe()


BROKEN = '''
import torch
from torch.nn import functional as F

from tests.layers_nets import residual_net


class Scaled(torch.nn.Conv2d):
    """A convolution exported with 1.5 times its weights: a converter's bug, made on purpose."""

    def forward(self, x):
        w = self.weight * 1.5 if torch.compiler.is_exporting() else self.weight
        return F.conv2d(x, w, self.bias, padding=1)


def broken_net():
    net = residual_net()
    scaled = Scaled(4, 4, 3, padding=1)
    scaled.load_state_dict(net.block.c2.state_dict())
    net.block.c2 = scaled
    return net.eval()
'''


def test_check_layers_names_the_broken_layer_of_an_ncnn_file_in_its_json(tmp_path, capsys):
    from workbench.cli import main

    (tmp_path / "broken.py").write_text(BROKEN)
    argv = ["check", f"{tmp_path / 'broken.py'}:broken_net", "--to", "ncnn", "--preset", "unit", "--size", "16",
            "16", "--task", "classification", "--images", str(ROOT / "sample_images"), "--out", str(tmp_path / "out"),
            "--layers", "--json"]
    assert main(argv) == 1  # the check fails: the file's c2 is not PyTorch's
    doc = json.loads(capsys.readouterr().out)
    figures = doc["formats"]["ncnn"]["layers"]
    assert figures["first"] == "block.c2" and figures["precision"] == "fp32", figures
    c2 = next(x for x in figures["layers"] if x["torch"] == "block.c2")
    assert c2["diverges"] and c2["op"] == "Convolution"
    assert all(not x["diverges"] for x in figures["layers"] if x["torch"] in ("act", "block.relu")), figures
    said = doc["formats"]["ncnn"]["divergence"]
    assert "first divergence at layer 5: Convolution 'conv_5' (PyTorch 'block.c2')" in said, said


def test_session_locate_refuses_an_ncnn_file_without_its_pytorch_model(session):
    from workbench import WorkbenchError

    artifact = session.artifacts["ncnn"]
    with pytest.raises(WorkbenchError, match=r"needs the PyTorch model it was exported from"):
        formats.get("ncnn").locate(artifact, formats.runner_for(artifact), session.pixels[:1])


def test_a_faithful_file_reads_the_values_the_runner_computes(session, faithful):
    # the locator's extractor is the runner's net: its last blob is the runner's output
    out = session.run("ncnn")["output"][:1]
    ref = session.outputs["output"][:1]
    assert abs(faithful.layer("head").max_abs - float(np.abs(out - ref).max())) < 1e-7
