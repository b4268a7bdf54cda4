"""TorchScript: a traced module, run by torch; its files checked when loaded."""

import pytest

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats
from workbench.formats.torchscript.validate import check_torchscript
from workbench.session import Session


def test_export_runs_and_matches_and_a_damaged_file_is_named(tmp_path):
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)),
                task="classification")
    artifact = s.export("torchscript", tmp_path / "m.pt")
    comparison = s.compare("torchscript", s.run("torchscript"))  # baked x/255 in the graph: float rounding only
    assert comparison.passed and comparison.worst()["max_abs"] < 1e-6
    check_torchscript(artifact.path)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(artifact.path.read_bytes()[:-300])
    with pytest.raises(WorkbenchError, match=r"cut\.pt"):
        check_torchscript(cut)
    assert formats.get("torchscript").live_options == {"check_trace": False}
