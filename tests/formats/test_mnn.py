"""MNN: its converter runs in process on the ONNX export (never `mnnconvert`, which pip-installs and phones
home), MNN runs it and applies the preprocessing with its own CVImageProcess mean/normal; parity with PyTorch
on the sample images; files checked on load."""

import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import SuperResolutionNet

FP32 = 1e-4  # of the reference's range


def spread(session, outputs):
    """The worst |converted - PyTorch| over every output, as a fraction of the reference's range."""
    return max(float(np.abs(outputs[k] - v).max() / np.ptp(v)) for k, v in session.reference.items())


_events = None


def _audit(event, args):
    if _events is not None and event in ("socket.connect", "subprocess.Popen", "os.system", "os.posix_spawn",
                                         "os.exec", "os.spawn"):
        _events.append((event, args[1] if event in ("socket.connect", "subprocess.Popen") else args[0]))
        if event == "socket.connect":
            raise ConnectionRefusedError("this test refuses the network")


sys.addaudithook(_audit)


def watched_export(session, *args, **kwargs):
    """session.export, with every process it spawned and connection it tried (connections refused)."""
    global _events
    _events = []
    try:
        return session.export(*args, **kwargs), _events
    finally:
        _events = None


@pytest.fixture(scope="module")
def session():
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(48, 48)),
                task="classification", runtime_options={"mnn": {"threads": 1}})
    yield s
    s.close()


@pytest.fixture(scope="module")
def super_resolution():
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(ROOT / "notebooks/weights/super_resolution_x3.pth", map_location="cpu",
                                     weights_only=True))
    # 96x96: MNN's Winograd convolutions, which the runner turns off for fp32, start above 32x32
    s = Session(model.eval(), SAMPLES, preprocess=Preprocess.preset("gray", size=(96, 96)),
                task=ImageToImage(output_range=(0.0, 1.0)))
    yield s
    s.close()


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    return watched_export(session, "mnn", tmp_path_factory.mktemp("mnn") / "m.mnn")


def test_baked_export_matches_pytorch_with_mnn_applying_the_exact_preprocessing(session, baked):
    artifact, _ = baked
    assert artifact.preprocess == session.preprocess and artifact.precision == "fp32"
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


def test_baked_artifact_refuses_other_preprocessing(session, baked):
    with pytest.raises(WorkbenchError, match="applies the preprocessing it was exported with .*export again"):
        session.run("mnn", Preprocess.preset("half", size=(48, 48)))


def test_live_export_takes_the_tensor_and_the_preprocessing_given_at_run(session, tmp_path):
    live = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = live.export("mnn", tmp_path / "live.mnn", bake=False)
    assert artifact.preprocess is None
    outputs = live.run("mnn", session.preprocess)
    assert spread(live, outputs) <= FP32
    with pytest.raises(WorkbenchError, match="takes the model's input tensor"):
        live.run("mnn")


def test_bgr_caffe_preprocessing_is_applied_by_mnn_from_rgb_pixels(tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("caffe", size=(48, 48)),
                task="classification")
    s.export("mnn", tmp_path / "caffe.mnn")
    assert spread(s, s.run("mnn")) <= FP32


def test_super_resolution_grayscale_image_to_image(super_resolution, tmp_path):
    artifact = super_resolution.export("mnn", tmp_path / "sr.mnn")
    assert "on 0-255 grayscale pixels" in artifact.notes[0]
    outputs = super_resolution.run("mnn")
    assert outputs["output"].shape == super_resolution.reference["output"].shape
    assert spread(super_resolution, outputs) <= FP32


def test_fp16_is_a_labelled_choice_within_the_fp16_tolerance(session, tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = s.export("mnn", tmp_path / "half.mnn", precision="fp16")
    assert artifact.precision == "fp16" and any("fp16" in n for n in artifact.notes)
    assert artifact.path.stat().st_size < session.artifacts["mnn"].path.stat().st_size
    outputs = s.run("mnn")
    assert s.runner("mnn").label.endswith("(fp16)")
    assert s.compare("mnn", outputs).passed  # against fp16's tolerance
    assert spread(s, outputs) <= 3e-2


def test_a_truncated_file_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _ = baked
    assert load_model(str(artifact.path)).kind == "mnn" and formats.for_file(artifact.path) is formats.get("mnn")
    cut = tmp_path / "cut.mnn"
    cut.write_bytes(artifact.path.read_bytes()[:-64])
    with pytest.raises(WorkbenchError, match=r"MNN cannot load .*cut\.mnn \(truncated or corrupt\?\).*Export it again"):
        load_model(str(cut))
    runner = formats.runner_for(__import__("dataclasses").replace(artifact, path=cut))
    with pytest.raises(WorkbenchError, match=r"cut\.mnn"):
        runner.run(session.pixels)
