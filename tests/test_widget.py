"""The Workbench widget built headless (no kernel, no browser): assert on its state."""

import json
import math

import pytest
import torch

from conftest import tiny_classifier
from workbench import Preprocess, Workbench, WorkbenchError
from workbench.compare import Tolerance
from workbench.tasks import ImageToImage
from workbench.zoo import UnetGenerator


@pytest.fixture(scope="module")
def wb(samples):
    w = Workbench(tiny_classifier(num_classes=10), samples, preprocess=Preprocess.preset("imagenet", size=(48, 48)),
                  task="classification")
    yield w
    w.close()


def test_builds_every_panel_and_conversion(wb):
    assert wb.status == {"onnx": "ok", "coreml": "ok", "torchscript": "ok"}
    assert set(wb.comparison) == {"onnx", "coreml", "torchscript"}
    assert wb._picture.value[:3] == b"\xff\xd8\xff"  # JPEG: redrawn on every move, encoded in milliseconds
    # off macOS Core ML's column is the interpreter's, and says so with its precision
    assert "Core ML interpreter (ML program, fp16)" in wb._metrics.value
    assert "per-channel std" in wb._exactness.value  # ImageNet's std cannot be one scalar
    assert wb._export_button.description == "Export"
    model_panel = wb.children[2].children[0].value  # how long each conversion took, beside its status
    assert all(f"converted in {wb._seconds[f]:.1f} s" in model_panel for f in wb.formats)
    assert all(seconds > 0 for seconds in wb._seconds.values())


def test_setting_preprocess_recomputes_before_returning(wb):
    wb.preprocess = wb.reference_preprocess  # exact: the converted side matches PyTorch
    exact = wb.comparison["onnx"].worst()
    assert wb.comparison["onnx"].passed and exact["max_abs"] < 1e-4
    wb.preprocess = wb.reference_preprocess.with_imagetype()  # Core ML's best scalar: visibly off
    approx = wb.comparison["onnx"].worst()
    assert approx["max_abs"] > 100 * max(exact["max_abs"], 1e-7)
    assert wb.preprocess.scale == (wb.preprocess.scale[0],) * 3


def test_core_ml_follows_the_sliders_and_locates_a_failure(wb):
    wb.preprocess = wb.reference_preprocess
    assert wb.comparison["coreml"].passed, wb.comparison["coreml"].failures
    assert wb.divergence is None
    wb.preprocess = wb.reference_preprocess.replace(scale=tuple(s * 1.5 for s in wb.reference_preprocess.scale))
    assert not wb.comparison["coreml"].passed
    # the preprocessing differs from PyTorch's: that alone explains it, so the locator does not run
    assert wb.divergence is None
    assert "preprocessing differs from PyTorch's" in wb._metrics.value
    # with PyTorch's preprocessing but a tolerance nothing meets, the locator looks inside the program
    wb.session.compare = lambda fmt, out, tolerance=None, _c=wb.session.compare: _c(fmt, out, Tolerance(rel=0.0))
    try:
        wb.preprocess = wb.reference_preprocess
    finally:
        del wb.session.compare
    assert wb.divergence is not None and wb.divergence.matched > 0
    assert "op by op" in wb._metrics.value


def test_moving_a_slider_degrades_the_converted_output(wb):
    wb._on_match()
    matched = wb.comparison["onnx"].worst()["max_abs"]
    assert not wb._bake.value
    wb._scale.value = wb._scale.value * 1.5
    moved = wb.comparison["onnx"].worst()
    assert moved["max_abs"] > 10 * matched
    assert wb.preprocess.scale[0] == pytest.approx(wb._scale.value)
    wb._bias[0].value = wb._bias[0].value + 1.0
    assert wb.comparison["onnx"].worst()["max_abs"] > moved["max_abs"] * 0.5
    wb._on_match()
    assert wb.comparison["onnx"].worst()["max_abs"] == pytest.approx(matched)


def test_slider_rounding_echoed_back_keeps_the_exact_value(wb):
    wb.preprocess = Preprocess.preset("half", size=(48, 48))
    exact = wb.preprocess
    # What the browser sends back after displaying the values: each rounded to its slider's step.
    wb._scale.value = 10 ** (round(math.log10(exact.scale[0]) / wb._scale.step) * wb._scale.step)
    wb._bias[0].value = round(exact.bias[0] / wb._bias[0].step) * wb._bias[0].step
    assert wb.preprocess.scale == exact.scale and wb.preprocess.bias == exact.bias
    wb._preset.value = "__model__"


def test_bake_uses_the_exact_normalization(wb):
    wb._bake.value = True
    assert wb.comparison["onnx"].passed and wb.preprocess == wb.reference_preprocess
    wb._bake.value = False
    wb._on_match()


def test_bad_preprocess_keeps_the_last_good_state(wb):
    wb._on_match()
    before, pic = wb.preprocess, wb._picture.value
    with pytest.raises(WorkbenchError, match="channel"):
        wb.preprocess = Preprocess.preset("gray")
    assert wb.preprocess == before and wb._picture.value == pic
    with pytest.raises(WorkbenchError, match="must be a Preprocess"):
        wb.preprocess = "imagenet"


def test_presets_dropdown_sets_values(wb):
    wb._preset.value = "half"
    assert wb.preprocess.scale[0] == pytest.approx(1 / 127.5) and wb.preprocess.bias == (-1.0, -1.0, -1.0)
    assert wb._scale.value == pytest.approx(1 / 127.5)
    assert not wb.comparison["onnx"].passed  # the model was trained with ImageNet's normalization
    wb._preset.value = "__model__"


def test_export_writes_artifacts_and_report_and_refuses_to_overwrite(wb, tmp_path):
    out = tmp_path / "exp"
    wb._out.value = str(out)
    wb._on_match()
    wb._on_export()
    assert wb._errors.value == ""
    names = {p.name for p in out.iterdir()}
    assert {"SmallCNN.onnx", "SmallCNN.mlpackage", "SmallCNN.pt", "parity_report.json", "parity_report.png"} <= names
    report = json.loads((out / "parity_report.json").read_text())
    assert report["formats"]["onnx"]["path"].endswith("SmallCNN.onnx")
    assert not [n for n in names if n.startswith(".")]
    assert wb._progress.value == wb._progress.max and "written" in wb._written.value
    mtime = (out / "SmallCNN.onnx").stat().st_mtime_ns
    wb._on_export()  # again, without "overwrite": refused, nothing touched, the widget still works
    assert "already exists" in wb._errors.value and "overwrite" in wb._errors.value
    assert (out / "SmallCNN.onnx").stat().st_mtime_ns == mtime
    assert not wb._export_button.disabled
    wb._on_match()
    assert wb._errors.value == ""


def test_labels_file_in_the_export_panel(wb, tmp_path):
    import coremltools as ct

    bad = tmp_path / "three.txt"
    bad.write_text("a\nb\nc\n")
    wb._labels_file.value = str(bad)
    wb._out.value = str(tmp_path / "labelled")
    wb._on_export()
    assert "3 labels for a model with 10 classes" in wb._errors.value
    assert not (tmp_path / "labelled").exists()
    good = tmp_path / "ten.txt"
    good.write_text("".join(f"class {i}\n" for i in range(10)))
    wb._labels_file.value = str(good)
    wb._on_export()
    assert wb._errors.value == ""
    spec = ct.utils.load_spec(str(tmp_path / "labelled" / "SmallCNN.mlpackage"))
    assert spec.description.predictedFeatureName == "classLabel"
    assert "class 9" in str(spec.mlProgram) or "class 9" in str(spec)
    wb._labels_file.value = ""


def test_export_into_an_unwritable_folder_shows_the_error(wb):
    wb._out.value = "/proc/workbench/exports"
    wb._on_export()
    assert "output folder" in wb._errors.value
    assert set(wb.comparison) == {"onnx", "coreml", "torchscript"}


def test_graph_panel_serves_the_onnx_model_on_loopback(wb):
    import urllib.request

    graph = wb._graph
    assert graph is not None and graph.address[0] == "127.0.0.1"
    assert f"proxy/{graph.port}/" in wb._graph_view.value
    page = urllib.request.urlopen(graph.local_url, timeout=10).read().decode()
    assert "netron" in page.lower() and '<meta name="file" content="/data/' in page
    model = urllib.request.urlopen(graph.local_url + "data/" + graph.path.name, timeout=10).read()
    assert model == graph.path.read_bytes()
    wb._graph_choice.value = "coreml"
    assert wb._graph.path.name == "model.mlmodel" and not graph.alive


def test_image_to_image_model_with_tanh_output(samples):
    torch.manual_seed(0)
    w = Workbench(UnetGenerator(num_downs=3).eval(), samples, preprocess=Preprocess.preset("half", size=(32, 32)),
                  task=ImageToImage(output_range=(-1.0, 1.0)), formats=("onnx",))
    try:
        assert "exactly" in w._exactness.value  # Normalize(0.5, 0.5) is exact in ImageType
        assert w.comparison["onnx"].passed
        w.preprocess = Preprocess.preset("unit", size=(32, 32))  # the classic wrong guess: x/255
        assert not w.comparison["onnx"].passed
        assert w.comparison["onnx"].worst()["psnr"] < 40
    finally:
        w.close()


def test_closing_stops_the_graph_server_and_removes_live_files(samples):
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",))
    graph, workdir = w._graph, w._workdir
    assert graph.alive and any(workdir.iterdir())
    w.close()
    assert not graph.alive and not workdir.exists()


def test_exporting_through_the_session_does_not_freeze_the_sliders(samples, tmp_path):
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",))
    try:
        w.session.check(["onnx"], tmp_path)  # bakes x/255 into an exported artifact
        w.preprocess = Preprocess.preset("raw", size=(16, 16))  # x255 too bright: must show as a failure
        assert not w.comparison["onnx"].passed
        w.preprocess = Preprocess.preset("unit", size=(16, 16))
        assert w.comparison["onnx"].passed
    finally:
        w.close()


def test_drawing_leaves_the_notebooks_matplotlib_backend_alone(wb):
    import matplotlib

    backend = matplotlib.get_backend()
    wb._on_match()
    assert matplotlib.get_backend() == backend


def test_the_build_leaves_the_cycle_collector_as_it_found_it(wb, samples):
    import gc

    assert gc.isenabled()  # the module's workbench was built with it on: it is back on
    gc.disable()
    try:
        w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                      task="classification", formats=("onnx",))
        w.close()
        assert not gc.isenabled(), "the build turned on a collector the user had turned off"
    finally:
        gc.enable()
