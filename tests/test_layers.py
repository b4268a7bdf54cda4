"""Per-layer divergence (workbench.layers): each format's locator names the layer a converted file breaks.

One small residual net with in-place ops (``ReLU(inplace=True)``, ``y += x``) is exported once per format;
each test breaks one known layer in the converted file (a constant spliced in, weights that overflow fp16)
and checks that the locator names that layer first, and that the in-place ops are never blamed.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from tests.conftest import ROOT, SAMPLES
from tests.layers_nets import residual_net
from workbench import formats, layers
from workbench.preprocess import Preprocess
from workbench.session import Session

NETS = ROOT / "tests" / "layers_nets.py"  # a file the CLI loads as a user's would


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    out = tmp_path_factory.mktemp("layers")
    s = Session(residual_net(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)), task="classification")
    s.export("onnx", out / "net.onnx")
    s.export("torchscript", out / "net.pt")
    return s


def broken(session, fmt, path, edit):
    """The session's `fmt` artifact rewritten at `path` by `edit(src, dst)`, and its runner."""
    artifact = dataclasses.replace(session.artifacts[fmt], path=path, traced=None)
    edit(session.artifacts[fmt].path, path)
    return artifact, formats.runner_for(artifact)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_a_faithful_file_with_in_place_ops_diverges_nowhere(session, fmt):
    found = session.locate(fmt)
    names = {x.torch for x in found.layers}
    assert {"stem", "block.c1", "block.c2", "head"} <= names, names  # matched to modules by their scopes
    assert found.first is None, found.describe()  # relu_ and += copied where computed: nothing blamed
    assert all(x.error < 1e-5 for x in found.layers), [(x.torch, x.error) for x in found.layers]
    assert "none diverges" in found.describe()


def _onnx_scaled(name, factor):
    def edit(src, dst):
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(src))
        hits = [t for t in model.graph.initializer if name in t.name]
        assert hits, [t.name for t in model.graph.initializer]
        for t in hits:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t) * np.float32(factor), t.name))
        onnx.save(model, str(dst))
    return edit


def test_onnx_names_the_conv_whose_constant_was_spliced(session, tmp_path):
    artifact, runner = broken(session, "onnx", tmp_path / "bad.onnx", _onnx_scaled("block.c2.weight", 1.5))
    found = layers.locate(session, artifact, runner)
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.first.op == "Conv" and found.first.error > 1e-2
    assert found.growth.torch == "block.c2"  # where the error appears, not the layers it flows into
    assert found.layer("block.c1").error < 1e-5  # the layers before it agree
    assert "first divergence at node" in found.describe() and "'block.c2'" in found.describe()
    figures = found.to_dict()
    assert figures["first"] == "block.c2" and len(figures["layers"]) == found.matched


def test_onnx_fp16_overflow_is_named_at_the_first_layer_that_overflows(tmp_path):
    s = Session(residual_net(stem_gain=1e5), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)),
                task="classification")
    artifact = s.export("onnx", tmp_path / "hot.onnx")
    onnx_format = formats.get("onnx")
    half = onnx_format.compress("fp16", artifact, tmp_path / "hot.fp16.onnx")
    found = layers.locate(s, half, onnx_format.make_runner(half))
    assert found.precision == "fp16"
    assert found.overflow is not None and found.overflow.torch == "stem", found.describe()
    assert found.overflow.peak > 65504 and not found.layer("stem").finite
    assert "fp16 overflow: op" in found.describe() and "'stem'" in found.describe()


def test_torchscript_names_the_layer_whose_weights_were_changed(session, tmp_path):
    def edit(src, dst):
        script = torch.jit.load(str(src))
        with torch.no_grad():
            script.model.block.c1.weight.mul_(-1.0)
        torch.jit.save(script, str(dst))

    artifact, runner = broken(session, "torchscript", tmp_path / "bad.pt", edit)
    found = layers.locate(session, artifact, runner)
    assert found.first is not None and found.first.torch == "block.c1", found.describe()
    assert found.layer("stem").error < 1e-6
    assert found.first.op == "_convolution"


def test_a_legacy_onnx_file_without_scopes_says_why_it_matches_nothing(session, tmp_path):
    def edit(src, dst):
        import onnx

        model = onnx.load(str(src))
        for node in model.graph.node:
            del node.metadata_props[:]
        onnx.save(model, str(dst))

    artifact, runner = broken(session, "onnx", tmp_path / "bare.onnx", edit)
    found = layers.locate(session, artifact, runner)
    assert found.matched == 0 and found.first is None
    assert "without legacy=True" in found.describe()


def test_scope_outputs_gives_a_module_its_last_node_and_counts_calls():
    scopes = [["a"], ["b", "b.c1"], ["b", "b.relu"], ["b"], ["b", "b.relu"], ["d"]]
    assert layers.scope_outputs(scopes) == ["a", "b.c1", "b.relu", None, "b.relu#2", "d"]


def test_check_layers_names_the_first_overflowing_layer_of_a_variant_in_the_table_and_the_json(tmp_path, capsys):
    import json

    from workbench.cli import main

    argv = ["check", f"{NETS}:hot_net", "--to", "onnx", "--compress", "onnx:fp16", "--preset", "unit",
            "--size", "16", "16", "--task", "classification", "--images", str(SAMPLES), "--out", str(tmp_path / "out"),
            "--layers"]
    main(argv + ["--json"])
    doc = json.loads(capsys.readouterr().out)
    figures = doc["formats"]["onnx"]["variants"]["fp16"]["layers"]
    assert figures["overflow"] == "stem" and figures["precision"] == "fp16", figures
    stem = next(x for x in figures["layers"] if x["torch"] == "stem")
    assert stem["finite"] is False and stem["overflow"] is True and stem["peak"] > 65504
    assert "layers" not in doc["formats"]["onnx"]  # the fp32 file passes: nothing to locate
    main(argv + ["--overwrite"])
    table = capsys.readouterr().out
    assert "fp16 overflow: op" in table and "(PyTorch 'stem')" in table, table


def test_mnn_names_the_layer_exported_with_a_perturbed_weight_and_not_the_fused_conv(tmp_path):
    pytest.importorskip("MNN")
    pre = Preprocess.preset("unit", size=(16, 16))
    s = Session(residual_net(), SAMPLES, preprocess=pre, task="classification")
    clean = s.export("mnn", tmp_path / "net.mnn")
    found = layers.locate(s, clean, s.runner("mnn"))
    # MNN fuses act into stem's convolution: that op stands for act, and nothing is blamed
    assert "act" in {x.torch for x in found.layers} and "stem" not in {x.torch for x in found.layers}
    assert found.first is None, found.describe()
    bad = residual_net()
    with torch.no_grad():
        bad.block.c2.weight.mul_(1.5)
    other = Session(bad, SAMPLES, preprocess=pre, task="classification")
    artifact = other.export("mnn", tmp_path / "bad.mnn")
    found = layers.locate(s, artifact, formats.runner_for(artifact))  # s: the faithful model is PyTorch's side
    assert found.first is not None and found.first.torch == "block.c2", found.describe()
    assert found.growth.torch == found.first.torch
