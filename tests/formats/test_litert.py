"""LiteRT: torch.export here, converted by litert-torch in the Android tools env, run by ai-edge-litert here,
the preprocessing in the graph; its compressed variants by ai-edge-quantizer in the tools env. What every format
shares: test_conformance.py (the tools env's isolation too)."""

from pathlib import Path

import numpy as np
import pytest
from formatkit import (
    FP32,
    agreement,
    calibration,
    recording_convert,
    session_fixture,
    spread,
    watched,
)

from workbench import WorkbenchError, formats, load_model
from workbench.formats.common import tools_env as tools
from workbench.formats.litert import compress

FMT = "litert"
VARIANTS = ("int8_dynamic", "int8_weights", "int8")


session = session_fixture(export=(FMT, "m.tflite"))


@pytest.fixture(scope="module")
def variants(session, tmp_path_factory):
    """Every variant, built once, with what the parent spawned and what the tools env tried."""
    mp = pytest.MonkeyPatch()
    results = recording_convert(compress, mp)
    out, artifact = tmp_path_factory.mktemp("litert-q"), session.artifacts[FMT]
    try:
        made = {v: watched(formats.get(FMT).compress, v, artifact, out / f"{v}.tflite",
                           calibration=calibration(session, artifact)) for v in VARIANTS}
    finally:
        mp.undo()
    return made, results


def test_runs_with_ai_edge_litert_and_describes_its_file(session):
    artifact = session.artifacts[FMT]
    assert spread(session, session.run(FMT)) <= FP32
    assert session.runner(FMT).label.startswith("LiteRT 2.")
    assert "inputs [[1, 3, 48, 48]]" in load_model(str(artifact.path)).notes[0]


def test_quantization_runs_offline_with_no_pip(variants):
    made, results = variants
    python = str(tools.tools_python())
    for variant, (_, events) in made.items():
        assert all(e == "subprocess.Popen" and str(a[0]) == python for e, a in events), (variant, events)
    assert len(results) == len(VARIANTS) and all(r["network"] == [] for r in results)
    spawned = {Path(s.split(" ", 1)[1].strip("'")).name for r in results for s in r["spawned"]}
    assert spawned <= {"ldconfig", "flatc"}, spawned


def test_every_variant_agrees_with_pytorch_within_its_bound(session, variants):
    made, _ = variants
    for variant, (artifact, _) in made.items():
        assert artifact.notes[0].startswith(f"{variant}: "), artifact.notes
        outputs = formats.runner_for(artifact).run(session.pixels)
        assert agreement(session, outputs) == 1.0, variant
        assert FP32 < spread(session, outputs) <= 0.05, (variant, spread(session, outputs))


def test_int8_is_full_integer_calibrated_and_the_runner_scales_its_tensors(session, variants):
    artifact = variants[0]["int8"][0]
    assert "calibrated on 8 images (astronaut" in artifact.notes[0] and "imagenet: Normalize" in artifact.notes[0]
    runner = formats.runner_for(artifact)
    runner.activate()
    assert np.dtype(runner.input["dtype"]) == np.int8 and all(np.dtype(d["dtype"]) == np.int8 for d in runner.outputs)
    scale, _ = runner.input["quantization"]
    assert 0.9 <= scale <= 1.1, "0-255 pixels in int8: about one step per pixel value"
    runner.deactivate()


def test_quantization_refuses_an_fp16_model_and_int8_without_images(session, tmp_path):
    import dataclasses

    artifact = session.artifacts[FMT]
    with pytest.raises(WorkbenchError, match="LiteRT int8 is static quantization: it needs calibration images"):
        formats.get(FMT).compress("int8", artifact, tmp_path / "q.tflite")
    with pytest.raises(WorkbenchError, match=r"starts from an fp32 model; .*m\.tflite is fp16"):
        half = dataclasses.replace(artifact, precision="fp16")
        formats.get(FMT).compress("int8_dynamic", half, tmp_path / "q.tflite")
    assert not list(tmp_path.iterdir())


def test_loading_prints_nothing_on_stderr(session):
    """Issue 22.11: "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." on the notebooks' pink stderr. In
    a fresh process: LiteRT may print it once per process only."""
    import subprocess
    import sys

    code = ("import sys; from workbench.formats.litert.validate import load; "
            "print(len(load(sys.argv[1]).get_input_details()))")
    run = subprocess.run([sys.executable, "-c", code, str(session.artifacts[FMT].path)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "1", run.stderr
    assert "XNNPACK" not in run.stderr and "INFO" not in run.stderr, run.stderr
