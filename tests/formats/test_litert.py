"""LiteRT: torch.export here, converted by litert-torch in the Android tools env, run by ai-edge-litert here,
the preprocessing in the graph. What every format shares: test_conformance.py (the tools env's isolation too)."""

from formatkit import FP32, classifier_session, spread

from workbench import load_model

FMT = "litert"


def test_runs_with_ai_edge_litert_and_describes_its_file(tmp_path):
    s = classifier_session()
    artifact = s.export(FMT, tmp_path / "m.tflite")
    assert spread(s, s.run(FMT)) <= FP32
    assert s.runner(FMT).label.startswith("LiteRT 2.")
    assert "inputs [[1, 3, 48, 48]]" in load_model(str(artifact.path)).notes[0]
    s.close()
