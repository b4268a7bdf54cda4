"""The format registry: every format declares its parts, and a new format appears everywhere by itself."""

import importlib
import json
from pathlib import Path

import pytest

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats
from workbench.formats import Format, Option

HERE = Path(__file__).parent


@pytest.mark.parametrize("name", sorted(formats.registry()))
def test_every_format_declares_its_exporter_runner_validator_and_has_a_test_file(name):
    fmt = formats.get(name)
    for part in ("exporter", "runner", "validator") + (("locator",) if fmt.locator else ()):
        assert callable(fmt._load(getattr(fmt, part))), f"{name}: {part} {getattr(fmt, part)!r} does not resolve"
    assert fmt.suffixes and all(s.startswith(".") for s in fmt.suffixes)
    assert fmt.default_precision in fmt.precisions
    assert fmt.title and fmt.runtime
    assert (HERE / f"test_{name}.py").is_file(), f"format {name!r} has no tests/formats/test_{name}.py"


def test_format_folders_import_nothing_heavy():
    """Declarations are read at start-up: a format's runtime loads only when it is used."""
    import subprocess
    import sys

    code = ("import sys, workbench.formats as f; f.registry(); heavy = ['onnxruntime', 'coremltools', 'executorch', "
            "'ncnn', 'MNN', 'ai_edge_litert', 'onnx']; print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_registering_a_name_twice_is_refused():
    fmt = formats.get("onnx")
    with pytest.raises(RuntimeError, match="registered twice"):
        formats.register(Format(name="onnx", title="x", runtime="x", suffixes=(".x",), package="x"))
    assert formats.get("onnx") is fmt


def test_unknown_names_and_options_are_refused_with_what_exists():
    with pytest.raises(WorkbenchError, match="unknown format 'onyx'; choose from onnx, coreml, torchscript"):
        formats.get("onyx")
    with pytest.raises(WorkbenchError, match="Core ML has no export option 'precison'; its options: target"):
        formats.get("coreml").check_export_options({"precison": "fp32"})
    with pytest.raises(WorkbenchError, match="compute_precision='fp8': choose one of"):
        formats.get("coreml").check_runtime_options({"compute_precision": "fp8"})


# -- a format that exists only in this test: it must appear in the CLI, the session and the widget ------------
def export_copy(spec, path, *, overwrite=False):
    """The test format's exporter: TorchScript's, under another name and suffix."""
    from dataclasses import replace

    from workbench.formats.torchscript.export import export_torchscript

    return replace(export_torchscript(spec, path, overwrite=overwrite), format="copy")


def run_copy(artifact):
    from workbench.formats.torchscript.runner import TorchScriptRunner

    runner = TorchScriptRunner(artifact)
    runner.label = "copy runtime"
    return runner


def validate_copy(path):
    from workbench.formats.torchscript.validate import check_torchscript

    check_torchscript(path)


@pytest.fixture
def copy_format():
    fmt = formats.register(Format(
        name="copy", title="Copy", runtime="copy runtime", suffixes=(".copy",), package=__name__,
        exporter=f"{__name__}:export_copy", runner=f"{__name__}:run_copy", validator=f"{__name__}:validate_copy",
        export_options=(Option("overwrite"),), order=99))
    yield fmt
    formats.unregister("copy")


def test_a_format_registered_in_a_test_appears_in_the_cli(copy_format, tmp_path, capsys):
    from workbench.cli import main

    assert main(["check", "x", "--to", "help"]) == 2
    assert "copy (Copy, .copy)" in capsys.readouterr().err
    assert main(["check", "x", "--to", ""]) == 2  # no format at all is a usage error, not a parity FAIL
    err = capsys.readouterr().err
    assert "--to names no format; the registered formats are: onnx (ONNX, .onnx)" in err and err.count("\n") == 1
    assert main(["check", "x", "--to", "onnx,onyx"]) == 2
    assert "unknown format 'onyx'" in capsys.readouterr().err
    model = tmp_path / "net.py"
    model.write_text("from workbench.zoo import SmallCNN\n"
                     "def make():\n    import torch; torch.manual_seed(0); return SmallCNN(num_classes=3, width=4)\n")
    code = main(["check", f"{model}:make", "--to", "onnx,copy", "--images", str(SAMPLES), "--size", "16", "16",
                 "--preset", "unit", "--task", "classification", "--out", str(tmp_path / "out"), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["formats"]["copy"]["passed"] is True
    written = Path(report["formats"]["copy"]["path"])
    assert report["formats"]["copy"]["runtime"] == "copy runtime" and written.suffix == ".copy" and written.is_file()


def test_a_format_registered_in_a_test_appears_in_the_session_and_the_widget(copy_format, tmp_path):
    from workbench import Workbench

    w = Workbench(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx", "copy"))
    try:
        assert w.status["copy"] == "ok" and w.comparison["copy"].passed
        assert "Copy" in w.shown()["metrics"] and "Copy" in [label for label, _ in w.control("graph").options]
        assert w.control("export:copy").value and w.control("live:copy").value
        report = w.session.check(["copy"], tmp_path)
        assert report.formats["copy"].passed and report.formats["copy"].artifact.path.suffix == ".copy"
    finally:
        w.close()
    loaded = importlib.import_module("workbench").load_model(str(report.formats["copy"].artifact.path))
    assert loaded.kind == "copy"  # load_model asks the registry who reads this suffix
