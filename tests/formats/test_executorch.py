"""ExecuTorch: torch.export here, lowered to a .pte (XNNPACK) and run by ExecuTorch's runtime in the Android
tools env; the preprocessing in the graph; parity with PyTorch on the sample images; files checked on load."""

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.formats.executorch import export as MODULE
from workbench.formats.executorch import tools
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import SuperResolutionNet

FMT, SUFFIX = "executorch", ".pte"

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
                task="classification")
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
    """The baked export, with what it spawned and tried (here) and what the tools env reported (there)."""
    results = []
    original = MODULE.convert

    def recording(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    for worker, _ in tools._warm.values():  # a converter left warm by an earlier test: this export starts one
        worker.close()
    tools._warm.clear()
    MODULE.convert = recording
    try:
        artifact, events = watched_export(session, FMT, tmp_path_factory.mktemp(FMT) / f"m{SUFFIX}")
    finally:
        MODULE.convert = original
    return artifact, events, results


def test_conversion_spawns_only_the_tools_env_which_gets_no_network(baked):
    _, events, results = baked
    assert [e for e, _ in events] == ["subprocess.Popen"], events
    command = events[0][1]
    assert Path(command[0]) == tools.tools_python() and Path(command[2]).name == "offline.py"
    assert Path(command[3]).name == "_convert.py" and command[4] == "--serve"
    assert len(results) == 1 and results[0]["network"] == []
    # there, only local tools: ctypes' library lookup (ldconfig) and ExecuTorch's flatbuffer compiler; no pip
    spawned = [Path(s.split(" ", 1)[1].strip("'")).name for s in results[0]["spawned"]]
    assert set(spawned) <= {"ldconfig", "flatc"}, results[0]["spawned"]


def test_the_tools_env_refuses_the_network():
    script = Path(__file__).parent / "_phone_home.py"
    script.write_text("import json, socket, sys\n"
                      "try:\n    socket.create_connection(('127.0.0.1', 9), timeout=2)\n    got = 'connected'\n"
                      "except OSError as exc:\n    got = str(exc)\n"
                      "json.dump({'got': got, 'network': network}, open(sys.argv[2], 'w'))\n")
    try:
        result = tools.run_tool(script, {}, what="phone home", packages=FMT)
    finally:
        script.unlink()
    assert "offline" in result["got"] and result["network"]


def test_baked_artifact_refuses_other_preprocessing(session, baked):
    with pytest.raises(WorkbenchError, match="has its preprocessing built in .*re-export it"):
        session.run(FMT, Preprocess.preset("half", size=(48, 48)))


def test_live_export_takes_the_tensor_and_the_preprocessing_given_at_run(session, tmp_path):
    live = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = live.export(FMT, tmp_path / f"live{SUFFIX}", bake=False)
    assert artifact.preprocess is None
    outputs = live.run(FMT, session.preprocess)
    assert spread(live, outputs) <= FP32
    with pytest.raises(WorkbenchError, match="takes the model's input tensor"):
        live.run(FMT)
    live.close()


def test_super_resolution_grayscale_image_to_image(super_resolution, tmp_path):
    super_resolution.export(FMT, tmp_path / f"sr{SUFFIX}")
    outputs = super_resolution.run(FMT)
    assert outputs["output"].shape == super_resolution.reference["output"].shape
    assert spread(super_resolution, outputs) <= FP32


def test_baked_export_matches_pytorch_with_the_preprocessing_in_the_graph(session, baked):
    artifact, _, _ = baked
    assert artifact.preprocess == session.preprocess and artifact.precision == "fp32"
    assert artifact.notes == ("XNNPACK runs the whole graph",)
    outputs = session.run(FMT)
    assert session.compare(FMT, outputs).passed
    assert spread(session, outputs) <= FP32, f"ExecuTorch fp32 off by {spread(session, outputs):.2e} of the range"
    assert session.runner(FMT).label == "ExecuTorch (XNNPACK)"


def test_fp16_on_the_portable_kernels_is_labelled(session, tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=session.preprocess, task="classification")
    artifact = s.export(FMT, tmp_path / "half.pte", precision="fp16", delegate="portable")
    assert artifact.precision == "fp16" and any("portable kernels only" in n for n in artifact.notes)
    outputs = s.run(FMT)
    assert s.runner(FMT).label == "ExecuTorch (portable) (fp16)"
    assert s.compare(FMT, outputs).passed  # against fp16's tolerance
    assert spread(s, outputs) <= 1e-2
    s.close()


def test_a_truncated_file_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _, _ = baked
    loaded = load_model(str(artifact.path))
    assert loaded.kind == FMT and "input [[1, 3, 48, 48]]" in loaded.notes[0]
    cut = tmp_path / "cut.pte"
    cut.write_bytes(artifact.path.read_bytes()[:-100])
    with pytest.raises(WorkbenchError, match=r"ExecuTorch cannot load .*cut\.pte \(truncated or corrupt\?\)"):
        load_model(str(cut))
    runner = formats.runner_for(dataclasses.replace(artifact, path=cut))
    with pytest.raises(WorkbenchError, match=r"cut\.pte"):
        runner.run(session.pixels)
    (tmp_path / "junk.pte").write_bytes(b"not a program")
    with pytest.raises(WorkbenchError, match=r"junk\.pte is not an ExecuTorch program"):
        load_model(str(tmp_path / "junk.pte"))


def test_a_missing_tools_env_says_how_to_build_it(session, tmp_path, monkeypatch):
    monkeypatch.setenv(tools.ENV_VAR, str(tmp_path / "no-python"))
    monkeypatch.setattr(tools, "_warm", {})
    with pytest.raises(WorkbenchError, match=r"the Android tools env is missing .*make \.venv/android/\.installed"):
        formats.export(session.spec(), FMT, tmp_path / "m.pte")
    assert not (tmp_path / "m.pte").exists()
