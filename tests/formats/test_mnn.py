"""MNN: its converter runs in process on the ONNX export (never `mnnconvert`, which pip-installs and phones
home), MNN runs it and applies the preprocessing with its own CVImageProcess mean/normal; files checked on
load. What every format shares: test_conformance.py."""

import dataclasses
import sys

import pytest
import torch
from formatkit import FP32, agreement, classifier_session, session_fixture, spread, watched, watched_export
from torch import nn

from conftest import SAMPLES
from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.session import Session
from workbench.tasks import ImageToImage

session = session_fixture({"mnn": {"threads": 1}})


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    return watched_export(session, "mnn", tmp_path_factory.mktemp("mnn") / "m.mnn")


def test_baked_export_matches_pytorch_with_mnn_applying_the_exact_preprocessing(session, baked):
    artifact, _ = baked
    assert artifact.preprocess == session.training_preprocess and artifact.precision == "fp32"
    assert "CVImageProcess(mean=[123.675, 116.28, 103.53], normal=[0.0171248, 0.017507, 0.0174292])" \
        in artifact.notes[0]
    outputs = session.run("mnn")
    assert session.compare("mnn", outputs).passed
    assert spread(session, outputs) <= FP32, f"MNN fp32 off by {spread(session, outputs):.2e} of the range"
    assert session.runner("mnn").label.startswith("MNN 3.")


def test_conversion_runs_in_process_with_no_socket_and_never_imports_mnn_tools(baked):
    _, events = baked
    assert events == [], events  # no pip, no mnnconvert, no upload
    assert not [m for m in sys.modules if m.startswith(("MNN.tools", "aliyun"))]


def test_bgr_caffe_preprocessing_is_applied_by_mnn_from_rgb_pixels(tmp_path):
    s = classifier_session(preset="caffe")
    s.export("mnn", tmp_path / "caffe.mnn")
    assert spread(s, s.run("mnn")) <= FP32


def test_a_truncated_file_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _ = baked
    assert load_model(str(artifact.path)).kind == "mnn" and formats.for_file(artifact.path) is formats.get("mnn")
    cut = tmp_path / "cut.mnn"
    cut.write_bytes(artifact.path.read_bytes()[:-64])
    with pytest.raises(WorkbenchError, match=r"MNN cannot load .*cut\.mnn \(truncated or corrupt\?\).*Export it again"):
        load_model(str(cut))
    runner = formats.runner_for(dataclasses.replace(artifact, path=cut))
    with pytest.raises(WorkbenchError, match=r"cut\.mnn"):
        runner.run(session.pixels)


# -- weight quantization: MNN's converter re-reads the .mnn with --weightQuantBits ----------------------------
@pytest.fixture(scope="module")
def quantized(baked, tmp_path_factory):
    artifact, _ = baked
    out = tmp_path_factory.mktemp("mnn-q")
    return {v: watched(formats.get("mnn").compress, v, artifact, out / f"{v}.mnn")
            for v in ("int8_weights", "int4_weights")}


def test_weight_quantization_runs_in_process_with_no_socket_and_no_pip(quantized):
    for variant, (_, events) in quantized.items():
        assert events == [], (variant, events)
    assert not [m for m in sys.modules if m.startswith(("MNN.tools", "aliyun"))]


def test_quantized_weights_are_smaller_and_int4_costs_more_than_int8(session, baked, quantized):
    base = baked[0].path.stat().st_size
    sizes = {v: a.path.stat().st_size for v, (a, _) in quantized.items()}
    assert sizes["int8_weights"] < base and sizes["int4_weights"] < sizes["int8_weights"], (base, sizes)
    errors = {}
    for variant, (artifact, _) in quantized.items():
        assert artifact.notes[0].startswith(f"{variant}: ") and "CVImageProcess" in artifact.notes[1]
        outputs = formats.runner_for(artifact, threads=1).run(session.pixels)
        errors[variant] = spread(session, outputs)
        assert agreement(session, outputs) == 1.0, variant
    assert FP32 < errors["int8_weights"] <= 0.02, errors
    assert errors["int4_weights"] > errors["int8_weights"], errors


def outlier_net(width=32):
    """The super-resolution net's trouble in three convs: the middle one passes each channel through (centre
    tap 1.0) and holds 287 more weights of ~1e-3 a channel."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, width, 3, padding=1),
                        nn.ReLU(), nn.Conv2d(width, 1, 3, padding=1))
    with torch.no_grad():
        net[2].weight.normal_(0.0, 1e-3)
        net[2].weight[range(width), range(width), 1, 1] = 1.0
        net[2].bias.zero_()
    return net.eval()


def test_int8_weights_keep_near_zero_weights_near_zero_beside_outlier_taps(tmp_path):
    # 40 dB is an RMS error of 1% of the output's range. 8-bit weights with zero on the grid give 49 dB here;
    # MNN's plain --weightQuantBits 8 (an offset grid that misses zero: every ~1e-3 weight of a channel lands
    # on one point up to 2e-3 off, errors of one sign summed over 288 taps) gave 27.5 dB, HQQ's fitted offset 43.7
    s = Session(outlier_net(), SAMPLES, preprocess=Preprocess.preset("gray", size=(32, 32)),
                task=ImageToImage(output_range=(-1.0, 1.0)))
    base = s.export("mnn", tmp_path / "outlier.mnn")
    artifact = formats.get("mnn").compress("int8_weights", base, tmp_path / "outlier.int8.mnn")
    psnr = s.compare_artifact(artifact, formats.runner_for(artifact, threads=1).run(s.pixels)).worst()["psnr"]
    assert psnr >= 40.0, f"MNN int8_weights {psnr:.1f} dB PSNR against PyTorch on outlier weights (want >= 40)"
