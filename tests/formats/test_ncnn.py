"""ncnn: pnnx converts the ONNX export, ncnn runs it and applies the preprocessing with its own
from_pixels + substract_mean_normalize; files checked on load. What every format shares: test_conformance.py."""

import dataclasses
from pathlib import Path

import pytest
from formatkit import FP32, classifier_session, session_fixture, spread, watched_export

from workbench import WorkbenchError, formats, load_model

session = session_fixture({"ncnn": {"threads": 1}})


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    return watched_export(session, "ncnn", tmp_path_factory.mktemp("ncnn") / "m.ncnn.param")


def test_baked_export_matches_pytorch_with_ncnn_applying_the_exact_preprocessing(session, baked):
    artifact, _ = baked
    assert artifact.path.name == "m.ncnn.param" and (artifact.path.parent / "m.ncnn.bin").is_file()
    assert artifact.preprocess == session.training_preprocess and artifact.precision == "fp32"
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


def test_bgr_caffe_preprocessing_is_applied_by_ncnn_from_rgb_pixels(tmp_path):
    s = classifier_session(preset="caffe")
    s.export("ncnn", tmp_path / "caffe.ncnn.param")
    assert spread(s, s.run("ncnn")) <= FP32


def test_a_truncated_bin_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _ = baked
    good = artifact.path
    assert load_model(str(good)).kind == "ncnn" and formats.for_file(good) is formats.get("ncnn")
    cut = tmp_path / "cut.ncnn.param"
    cut.write_bytes(good.read_bytes())
    (tmp_path / "cut.ncnn.bin").write_bytes((good.parent / "m.ncnn.bin").read_bytes()[:200])
    with pytest.raises(WorkbenchError, match=r"cannot load the weights .*cut\.ncnn\.bin .*export it again"):
        load_model(str(cut))
    runner = formats.runner_for(dataclasses.replace(artifact, path=cut))
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
