"""What every Android format does the same way: parity live and baked, grayscale image-to-image, a labelled
fp16, refusing a preprocessing other than the one inside. Each format's own file tests what is its own."""

import dataclasses
import importlib
import re
from pathlib import Path

import pytest
from formatkit import (
    FP32,
    SAMPLES,
    classifier_session,
    session_fixture,
    spread,
    super_resolution_session,
    tiny_classifier,
    watched_export,
)

from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.formats.common import tools_env as tools
from workbench.session import Session

# format: (suffix, super-resolution input side, fp16 tolerance of the range). MNN's Winograd convolutions, which
# its runner turns off for fp32, start above 32x32: it is checked at 96x96.
FORMATS = {"executorch": (".pte", 32, 1e-2), "ncnn": (".ncnn.param", 32, 1e-2), "mnn": (".mnn", 96, 3e-2),
           "litert": (".tflite", 32, 1e-2)}


session = session_fixture()


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    """Every format exported once with the session's preprocessing inside."""
    folder = tmp_path_factory.mktemp("baked")
    return {fmt: session.export(fmt, folder / f"m{suffix}") for fmt, (suffix, _, _) in FORMATS.items()}


@pytest.mark.parametrize("fmt", FORMATS)
def test_baked_export_matches_pytorch_and_refuses_another_preprocessing(fmt, session, baked):
    assert baked[fmt].preprocess == session.training_preprocess and baked[fmt].precision == "fp32"
    outputs = session.run(fmt)
    assert session.compare(fmt, outputs).passed
    assert spread(session, outputs) <= FP32, f"{fmt} fp32 off by {spread(session, outputs):.2e} of the range"
    with pytest.raises(WorkbenchError, match="preprocessing .*(re-export it|export again)"):
        session.run(fmt, Preprocess.preset("half", size=(48, 48)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_live_export_takes_the_tensor_and_the_preprocessing_given_at_run(fmt, session, tmp_path):
    live = Session(tiny_classifier(), SAMPLES, preprocess=session.training_preprocess, task="classification")
    artifact = live.export(fmt, tmp_path / f"live{FORMATS[fmt][0]}", bake=False)
    assert artifact.preprocess is None
    assert spread(live, live.run(fmt, session.training_preprocess)) <= FP32
    with pytest.raises(WorkbenchError, match="takes the model's input tensor"):
        live.run(fmt)
    live.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_super_resolution_grayscale_image_to_image(fmt, tmp_path):
    suffix, side, _ = FORMATS[fmt]
    s = super_resolution_session(side)
    s.export(fmt, tmp_path / f"sr{suffix}")
    outputs = s.run(fmt)
    assert outputs["output"].shape == s.outputs["output"].shape
    assert spread(s, outputs) <= FP32
    s.close()


@pytest.mark.parametrize("fmt", [f for f in FORMATS if f != "executorch"])  # ExecuTorch's: its own file
def test_fp16_is_a_labelled_choice_within_the_fp16_tolerance(fmt, tmp_path):
    suffix, _, tolerance = FORMATS[fmt]
    s = classifier_session()
    artifact = s.export(fmt, tmp_path / f"half{suffix}", precision="fp16")
    assert artifact.precision == "fp16" and any("fp16" in n for n in artifact.notes)
    outputs = s.run(fmt)
    assert s.runner(fmt).label.endswith("(fp16)")
    assert s.compare(fmt, outputs).passed  # against fp16's tolerance
    assert spread(s, outputs) <= tolerance
    s.close()


# format: (how many bytes are cut off its file, what load_model says of it, what it says of bytes of another kind)
DAMAGED = {"executorch": (100, r"ExecuTorch cannot load .*cut\.pte \(truncated or corrupt\?\)",
                          r"junk\.pte is not an ExecuTorch program"),
           "mnn": (64, r"MNN cannot load .*cut\.mnn \(truncated or corrupt\?\).*Export it again", None),
           "litert": (100, r"LiteRT cannot load .*cut\.tflite \(truncated or corrupt\?\)",
                      r"junk\.tflite is not a LiteRT/TFLite model")}


@pytest.mark.parametrize("fmt", DAMAGED)  # ncnn's two files: its own file
def test_a_truncated_file_is_refused_when_loaded_and_when_run(fmt, session, baked, tmp_path):
    cut_bytes, damaged, other = DAMAGED[fmt]
    suffix, artifact = FORMATS[fmt][0], baked[fmt]
    assert load_model(str(artifact.path)).kind == fmt and formats.for_file(artifact.path) is formats.get(fmt)
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(artifact.path.read_bytes()[:-cut_bytes])
    with pytest.raises(WorkbenchError, match=damaged):
        load_model(str(cut))
    with pytest.raises(WorkbenchError, match=re.escape(cut.name)):
        formats.runner_for(dataclasses.replace(artifact, path=cut)).run(session.pixels)
    if other:
        (tmp_path / f"junk{suffix}").write_bytes(b"not a model at all")
        with pytest.raises(WorkbenchError, match=other):
            load_model(str(tmp_path / f"junk{suffix}"))


@pytest.mark.parametrize("fmt", ["executorch", "litert"])
def test_conversion_in_the_tools_env_spawns_only_it_and_it_gets_no_network(fmt, session, tmp_path):
    """ExecuTorch's and LiteRT's converters run in the Android tools env (.venv/android), offline."""
    module = importlib.import_module(f"workbench.formats.{fmt}.export")
    results, original = [], module.convert

    def recording(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    for worker, _ in tools._warm.values():  # a converter left warm by an earlier test: this export starts one
        worker.close()
    tools._warm.clear()
    module.convert = recording
    try:
        _, events = watched_export(session, fmt, tmp_path / f"watched{FORMATS[fmt][0]}")
    finally:
        module.convert = original
    assert [e for e, _ in events] == ["subprocess.Popen"], events
    command = events[0][1]
    assert Path(command[0]) == tools.tools_python() and Path(command[2]).name == "offline.py"
    assert Path(command[3]).name == "_convert.py" and command[4] == "--serve"
    assert len(results) == 1 and results[0]["network"] == []
    # there, only local tools: ctypes' library lookup (ldconfig) and ExecuTorch's flatbuffer compiler; no pip
    spawned = [Path(s.split(" ", 1)[1].strip("'")).name for s in results[0]["spawned"]]
    assert set(spawned) <= {"ldconfig", "flatc"}, results[0]["spawned"]
