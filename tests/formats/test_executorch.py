"""ExecuTorch: torch.export here, lowered to a .pte (XNNPACK) and run by ExecuTorch's runtime in the Android
tools env, the preprocessing in the graph. What every format shares: test_conformance.py."""

import dataclasses
from pathlib import Path

import pytest
from formatkit import (
    FP32,
    agreement,
    calibration,
    classifier_session,
    recording_convert,
    session_fixture,
    spread,
    watched,
)

from workbench import WorkbenchError, formats, load_model
from workbench.formats.common import tools_env as tools
from workbench.formats.executorch import compress
from workbench.preprocess import Preprocess

FMT = "executorch"


session = session_fixture(export=(FMT, "m.pte"))


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


def test_xnnpack_runs_the_whole_graph_and_says_so(session):
    artifact = session.artifacts[FMT]
    assert artifact.notes == ("XNNPACK runs the whole graph",)
    assert spread(session, session.run(FMT)) <= FP32
    assert session.runner(FMT).label == "ExecuTorch (XNNPACK)"
    assert "input [[1, 3, 48, 48]]" in load_model(str(artifact.path)).notes[0]


def test_fp16_on_the_portable_kernels_is_labelled(tmp_path):
    s = classifier_session()
    artifact = s.export(FMT, tmp_path / "half.pte", precision="fp16", delegate="portable")
    assert artifact.precision == "fp16" and any("portable kernels only" in n for n in artifact.notes)
    outputs = s.run(FMT)
    assert s.runner(FMT).label == "ExecuTorch (portable) (fp16)"
    assert s.compare(FMT, outputs).passed  # against fp16's tolerance
    assert spread(s, outputs) <= 1e-2
    s.close()


def test_a_missing_tools_env_says_how_to_build_it(session, tmp_path, monkeypatch):
    monkeypatch.setenv(tools.ENV_VAR, str(tmp_path / "no-python"))
    monkeypatch.setattr(tools, "_warm", {})
    with pytest.raises(WorkbenchError, match=r"the Android tools env is missing .*make \.venv/android/\.installed"):
        formats.export(session.spec(), FMT, tmp_path / "m.pte")
    assert not (tmp_path / "m.pte").exists()


# -- int8: PT2E quantization of the exported module, calibrated on the sample images ----------------------------
@pytest.fixture(scope="module")
def int8(session, tmp_path_factory):
    """The int8 variant, built once, with what the parent spawned and what the tools env tried."""
    mp = pytest.MonkeyPatch()
    results = recording_convert(compress, mp)
    try:
        artifact = session.artifacts[FMT]
        made, events = watched(formats.get(FMT).compress, "int8", artifact, tmp_path_factory.mktemp("int8") / "q.pte",
                               calibration=calibration(session, artifact))
    finally:
        mp.undo()
    return made, events, results


def test_int8_agrees_with_pytorch_and_records_its_calibration(session, int8):
    made, _, _ = int8
    outputs = formats.runner_for(made).run(session.pixels)
    assert agreement(session, outputs) == 1.0
    assert spread(session, outputs) <= 0.05, f"int8 off by {spread(session, outputs):.2e} of the range"
    assert spread(session, outputs) > FP32, "an int8 program computing exactly like fp32 was not quantized"
    assert made.notes[0].startswith("int8: 8-bit weights per output channel and 8-bit activations (PT2E")
    assert "calibrated on 8 images (astronaut, cat_chelsea" in made.notes[0] and "imagenet: Normalize" in made.notes[0]
    assert "XNNPACK runs the whole graph" in made.notes and made.traced is None


def test_int8_quantizes_offline_with_no_pip(int8):
    _, events, results = int8
    python = str(tools.tools_python())
    assert all(e == "subprocess.Popen" and str(a[0]) == python for e, a in events), events  # a warm converter at most
    assert len(results) == 1 and results[0]["network"] == []
    spawned = [Path(s.split(" ", 1)[1].strip("'")).name for s in results[0]["spawned"]]
    assert set(spawned) <= {"ldconfig", "flatc"}, results[0]["spawned"]


def test_int8_needs_the_module_and_calibration(session, tmp_path):
    artifact = session.artifacts[FMT]
    loaded = dataclasses.replace(artifact, traced=None)  # as a .pte loaded from a file comes
    with pytest.raises(WorkbenchError, match=r"int8 quantizes the PyTorch module .*m\.pte was exported from.*export "
                                             r"the model to ExecuTorch in this session first"):
        formats.get(FMT).compress("int8", loaded, tmp_path / "q.pte", calibration=calibration(session, artifact))
    with pytest.raises(WorkbenchError, match="ExecuTorch int8 is static quantization: it needs calibration images"):
        formats.get(FMT).compress("int8", artifact, tmp_path / "q.pte")
    half = dataclasses.replace(artifact, precision="fp16")
    with pytest.raises(WorkbenchError, match="quantizes an fp32 program; .* is fp16: export with precision='fp32'"):
        formats.get(FMT).compress("int8", half, tmp_path / "q.pte", calibration=calibration(session, artifact))
    assert not list(tmp_path.iterdir())


def test_int8_calibrated_with_another_preprocessing_names_both(session, int8, tmp_path):
    artifact = session.artifacts[FMT]
    bad = formats.get(FMT).compress("int8", artifact, tmp_path / "bad.pte",
                                    calibration=calibration(session, artifact, Preprocess.preset("raw", size=(48, 48))))
    warning = bad.notes[-1]
    assert warning.startswith("calibrated with preprocessing raw: x * [1, 1, 1]") and "imagenet: Normalize" in warning
    good, _, _ = int8
    assert not any(n.startswith("calibrated with") for n in good.notes)
    worse, better = (spread(session, formats.runner_for(a).run(session.pixels)) for a in (bad, good))
    assert worse > 5 * better, (worse, better)
