"""ExecuTorch: torch.export here, lowered to a .pte (XNNPACK) and run by ExecuTorch's runtime in the Android
tools env, the preprocessing in the graph. What every format shares: test_conformance.py."""

from pathlib import Path

import pytest
from formatkit import FP32, classifier_session, spread

from workbench import WorkbenchError, formats, load_model
from workbench.formats.executorch import tools

FMT = "executorch"


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = classifier_session()
    s.export(FMT, tmp_path_factory.mktemp(FMT) / "m.pte")
    yield s
    s.close()


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
