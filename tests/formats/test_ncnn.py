"""ncnn: pnnx converts the ONNX export, ncnn runs it and applies the preprocessing with its own
from_pixels + substract_mean_normalize; parity with PyTorch on the sample images; files checked on load."""

import sys
from pathlib import Path

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
                task="classification", runtime_options={"ncnn": {"threads": 1}})
    yield s
    s.close()


@pytest.fixture(scope="module")
def super_resolution():
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(ROOT / "notebooks/weights/super_resolution_x3.pth", map_location="cpu",
                                     weights_only=True))
    s = Session(model.eval(), SAMPLES, preprocess=Preprocess.preset("gray", size=(32, 32)),
                task=ImageToImage(output_range=(0.0, 1.0)))
    yield s
    s.close()


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    return watched_export(session, "ncnn", tmp_path_factory.mktemp("ncnn") / "m.ncnn.param")


def test_baked_export_matches_pytorch_with_ncnn_applying_the_exact_preprocessing(session, baked):
    artifact, _ = baked
    assert artifact.path.name == "m.ncnn.param" and (artifact.path.parent / "m.ncnn.bin").is_file()
    assert artifact.preprocess == session.preprocess and artifact.precision == "fp32"
    assert "substract_mean_normalize(mean=[123.675, 116.28, 103.53], norm=[0.0171248, 0.017507, 0.0174292])" \
        in artifact.notes[0]
    outputs = session.run("ncnn")
    assert session.compare("ncnn", outputs).passed
    assert spread(session, outputs) <= FP32, f"ncnn fp32 off by {spread(session, outputs):.2e} of the range"
    assert session.runner("ncnn").label.startswith("ncnn 1.")


def test_conversion_spawns_only_pnnx_and_opens_no_socket(baked):
    _, events = baked
    import pnnx

    assert [e for e, _ in events] == ["subprocess.Popen"], events
    assert Path(events[0][1][0]) == Path(pnnx.EXEC_PATH)


def test_baked_artifact_refuses_other_preprocessing(session, baked):
    with pytest.raises(WorkbenchError, match="applies the preprocessing it was exported with .*export again"):
        session.run("ncnn", Preprocess.preset("half", size=(48, 48)))


def test_live_export_takes_the_tensor_and_the_preprocessing_given_at_run(session, tmp_path):
    live = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = live.export("ncnn", tmp_path / "live.ncnn.param", bake=False)
    assert artifact.preprocess is None
    outputs = live.run("ncnn", session.preprocess)
    assert spread(live, outputs) <= FP32
    with pytest.raises(WorkbenchError, match="takes the model's input tensor"):
        live.run("ncnn")


def test_bgr_caffe_preprocessing_is_applied_by_ncnn_from_rgb_pixels(tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("caffe", size=(48, 48)),
                task="classification")
    s.export("ncnn", tmp_path / "caffe.ncnn.param")
    assert spread(s, s.run("ncnn")) <= FP32


def test_super_resolution_grayscale_image_to_image(super_resolution, tmp_path):
    artifact = super_resolution.export("ncnn", tmp_path / "sr.ncnn.param")
    assert "on 0-255 grayscale pixels" in artifact.notes[0]
    outputs = super_resolution.run("ncnn")
    assert outputs["output"].shape == super_resolution.reference["output"].shape
    assert spread(super_resolution, outputs) <= FP32


def test_fp16_is_a_labelled_choice_within_the_fp16_tolerance(session, tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = s.export("ncnn", tmp_path / "half.ncnn.param", precision="fp16")
    assert artifact.precision == "fp16" and any("fp16" in n for n in artifact.notes)
    outputs = s.run("ncnn")
    assert s.runner("ncnn").label.endswith("(fp16)")
    assert s.compare("ncnn", outputs).passed  # against fp16's tolerance
    assert spread(s, outputs) <= 1e-2


def test_a_truncated_bin_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _ = baked
    good = artifact.path
    assert load_model(str(good)).kind == "ncnn" and formats.for_file(good) is formats.get("ncnn")
    cut = tmp_path / "cut.ncnn.param"
    cut.write_bytes(good.read_bytes())
    (tmp_path / "cut.ncnn.bin").write_bytes((good.parent / "m.ncnn.bin").read_bytes()[:200])
    with pytest.raises(WorkbenchError, match=r"cannot load the weights .*cut\.ncnn\.bin .*export it again"):
        load_model(str(cut))
    runner = formats.runner_for(__import__("dataclasses").replace(artifact, path=cut))
    with pytest.raises(WorkbenchError, match=r"cut\.ncnn\.bin"):
        runner.run(session.pixels)
    (tmp_path / "cut.ncnn.bin").unlink()
    with pytest.raises(WorkbenchError, match=r"weights cut\.ncnn\.bin are missing"):
        load_model(str(cut))


def test_an_existing_param_or_bin_is_refused_before_anything_is_written(session, baked, tmp_path):
    artifact, _ = baked
    (tmp_path / "x.ncnn.param").write_text("mine")
    with pytest.raises(WorkbenchError, match=r"x\.ncnn\.param already exists; pass overwrite=True"):
        formats.export(session.spec(), "ncnn", tmp_path / "x.ncnn.param")
    assert not (tmp_path / "x.ncnn.bin").exists() and (tmp_path / "x.ncnn.param").read_text() == "mine"
