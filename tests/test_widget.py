"""The Workbench widget built headless (no kernel, no browser): assert on its public state and on what its
controls show, which is what the browser draws."""

import json
import math

import pytest
import torch

from conftest import tiny_classifier
from workbench import Preprocess, Workbench, WorkbenchError
from workbench.compare import Tolerance
from workbench.preprocess import CAFFE_MEAN_BGR
from workbench.tasks import ImageToImage
from workbench.views import side_by_side
from workbench.widgets.controller import CUSTOM, MODEL
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
    assert wb.picture[:3] == b"\xff\xd8\xff"  # JPEG: redrawn on every move, encoded in milliseconds
    shown = wb.shown()
    # off macOS Core ML's column is the interpreter's, and says so with its precision
    assert "Core ML interpreter (ML program, fp16)" in shown["metrics"]
    assert "per-channel std" in shown["exactness"]  # ImageNet's std cannot be one scalar
    # the formats that carry it the same way are named together, each once (it listed all eight one by one)
    carries = shown["exactness"].split("an export carries it: ", 1)[1]
    assert "ncnn, MNN: exact, natively (mean/norm)" in carries and carries.count("ONNX") == 1, carries
    assert wb.control("export").description == "Export"
    assert all(f"converted in {wb.controller.seconds[f]:.1f} s" in shown["model"] for f in wb.formats)


def test_setting_preprocess_recomputes_before_returning(wb):
    wb.preprocess = wb.reference_preprocess  # exact: the converted side matches PyTorch
    exact = wb.comparison["onnx"].worst()
    assert wb.comparison["onnx"].passed and exact["max_abs"] < 1e-4
    wb.preprocess = wb.reference_preprocess.with_imagetype()  # Core ML's best scalar: visibly off
    approx = wb.comparison["onnx"].worst()
    assert approx["max_abs"] > 100 * max(exact["max_abs"], 1e-7)
    assert wb.converted_preprocess is wb.preprocess  # the unambiguous name of the same value


def test_the_status_line_says_when_the_values_in_force_are_not_the_models_own(wb):
    """Issue 22's second pass: after a drag to custom values every format FAILed beside a green "Every format
    carries the training preprocessing exactly", a line about the training values, not the ones in force."""
    base = wb.reference_preprocess.with_imagetype()
    wb.preprocess = base.replace(scale=(base.scale[0] * 1.37,) * 3, name="custom")  # no value a later test drags to
    assert "not the model's own" in wb.shown()["exactness"]
    wb.controller.match()
    assert "not the model's own" not in wb.shown()["exactness"] and "per-channel std" in wb.shown()["exactness"]


def test_the_old_handle_sent_back_clamped_into_the_new_range_does_not_undo_match(wb):
    """The browser test caught it one run in three: a scale typed beyond the slider's range (0.03), then Match,
    and the front end sent the old handle back at the new range's end, which was taken as a drag."""
    wb.control("scale_text").value = "0.03"
    assert wb.preprocess.scale[0] == pytest.approx(0.03)
    for _ in range(5):  # drags in between: the value the echo brings back was shown long ago
        wb.control("scale").value = wb.control("scale").value * 1.01
    wb.control("scale_text").value = "0.03"
    wb.control("match").click()
    matched = wb.preprocess
    slider = wb.control("scale")
    slider.value = slider.base ** slider.max  # what the front end sends: the old handle, clamped
    assert wb.preprocess == matched and wb.control("preset").value == MODEL


def test_core_ml_follows_the_controls_and_locates_a_failure(wb):
    wb.preprocess = wb.reference_preprocess
    assert wb.comparison["coreml"].passed, wb.comparison["coreml"].failures
    assert wb.divergence is None
    wb.preprocess = wb.reference_preprocess.replace(scale=tuple(s * 1.5 for s in wb.reference_preprocess.scale))
    assert not wb.comparison["coreml"].passed
    # the preprocessing differs from PyTorch's: that alone explains it, so the locator does not run
    assert wb.divergence is None
    assert "preprocessing differs from PyTorch's" in wb.shown()["metrics"]
    # with PyTorch's preprocessing but a tolerance nothing meets, the locator looks inside the program
    wb.live.compare = lambda fmt, out, tolerance=None, _c=wb.live.compare: _c(fmt, out, Tolerance(rel=0.0))
    try:
        wb.preprocess = wb.reference_preprocess
    finally:
        del wb.live.compare
    assert wb.divergence is not None and wb.divergence.matched > 0
    assert "op by op" in wb.shown()["metrics"]
    # and the Layers tab draws it, until a comparison is asked for there
    failing = {"coreml": "Core ML", "onnx": "ONNX", "torchscript": "TorchScript"}[wb.controller.divergence_format]
    assert f"{failing} fails its tolerance" in wb.shown()["layers"], wb.shown()["layers"]
    assert "class='workbench-layer'" in wb.shown()["layers_graph"]


def test_moving_a_slider_degrades_the_converted_output(wb):
    wb.controller.match()
    matched = wb.comparison["onnx"].worst()["max_abs"]
    scale = wb.control("scale")
    scale.value = scale.value * 1.5  # as the browser sends a drag
    moved = wb.comparison["onnx"].worst()
    assert moved["max_abs"] > 10 * matched
    assert wb.preprocess.scale[0] == pytest.approx(scale.value)
    assert wb.control("scale_text").value == repr(wb.preprocess.scale[0])  # the readout shows the exact value
    wb.control("bias0").value = wb.control("bias0").value + 1.0
    assert wb.comparison["onnx"].worst()["max_abs"] > moved["max_abs"] * 0.5
    assert wb.control("preset").value == CUSTOM  # values of no preset: the menu says so
    wb.control("match").click()
    assert wb.comparison["onnx"].worst()["max_abs"] == pytest.approx(matched)
    assert wb.control("preset").value == MODEL  # issue 13.3: after Match the menu names the model's own


def test_typed_values_apply_exactly_and_bad_text_keeps_the_last_good_state(wb):
    wb.controller.match()
    wb.control("scale_text").value = "0.00392156862745098"
    assert wb.preprocess.scale == (1 / 255,) * 3
    assert wb.control("scale_text").value == "0.00392156862745098"  # not 0.003917 (issue 13.3)
    before = wb.preprocess
    wb.control("bias1_text").value = "minus two"
    assert "not a number" in wb.shown()["errors"] and wb.preprocess == before
    assert wb.control("bias1_text").value == repr(before.bias[1])
    wb.controller.match()


def test_the_slider_echo_of_a_shown_value_changes_nothing(wb):
    wb.preprocess = Preprocess.preset("half", size=(48, 48))
    exact, recomputes = wb.preprocess, wb.controller.recomputes
    wb.control("scale").value = wb.control("scale").value  # what the browser sends back after drawing it
    wb.control("bias0").value = float(wb.control("bias0").value)
    assert wb.preprocess == exact and wb.controller.recomputes == recomputes
    wb.controller.match()


def test_caffe_preset_applies_its_exact_values_and_every_control_shows_them(wb):
    """Issue 13.1: the dropdown said caffe while the biases stayed at ImageNet's -2.1, pinned at the end."""
    wb.control("preset").value = "caffe"
    assert wb.preprocess.bias == tuple(-m for m in CAFFE_MEAN_BGR) and wb.preprocess.scale == (1.0,) * 3
    assert wb.preprocess.bgr and wb.control("bgr").value
    for i, b in enumerate(wb.preprocess.bias):
        slider = wb.control(f"bias{i}")
        assert slider.min <= slider.value <= slider.max and slider.value == b  # inside its range, not clipped
        assert float(wb.control(f"bias{i}_text").value) == b
    assert wb.control("preset").value == "caffe"
    wb.controller.match()


def test_bake_shows_the_baked_values_and_disables_what_no_longer_applies(wb):
    """Issue 13.3: ticking bake changed the preprocessing while the controls kept the old values, enabled."""
    wb.controller.match()
    before = wb.preprocess
    wb.control("bake").value = True
    assert wb.comparison["onnx"].passed and wb.preprocess == wb.reference_preprocess
    assert wb.control("scale_text").value == ", ".join(repr(s) for s in wb.reference_preprocess.scale)
    for name in ("scale", "scale_text", "bias0", "bias0_text", "bgr", "preset"):
        assert wb.control(name).disabled, name
    assert "baked into the model" in wb.shown()["reasons"]
    with pytest.raises(WorkbenchError, match="untick bake"):
        wb.controller.edit(scale=0.01)
    wb.control("bake").value = False
    assert wb.preprocess == before and not wb.control("scale").disabled


def test_bad_preprocess_keeps_the_last_good_state(wb):
    wb.controller.match()
    before, pic = wb.preprocess, wb.picture
    with pytest.raises(WorkbenchError, match="channel"):
        wb.preprocess = Preprocess.preset("gray")
    assert wb.preprocess == before and wb.picture == pic
    with pytest.raises(WorkbenchError, match="must be a Preprocess"):
        wb.preprocess = "imagenet"


def test_presets_dropdown_sets_values(wb):
    wb.control("preset").value = "half"
    assert wb.preprocess.scale[0] == pytest.approx(1 / 127.5) and wb.preprocess.bias == (-1.0, -1.0, -1.0)
    assert wb.control("scale").value == pytest.approx(1 / 127.5)
    assert not wb.comparison["onnx"].passed  # the model was trained with ImageNet's normalization
    wb.controller.match()


def test_busy_state_names_the_format_and_marks_old_columns(wb):
    """Issue 13.4: while a recompute runs the widget says so, format by format, and old columns are marked."""
    seen = []
    wb.controller.listen(lambda what: seen.append((what, wb.controller.busy, wb.shown()["busy"],
                                                    wb.shown()["metrics"].count("out of date"))))
    wb.preprocess = Preprocess.preset("unit", size=(48, 48))
    running = [b for what, b, _, _ in seen if what == "busy" and b and b.startswith("running ")]
    assert len(running) == 3 and running[0].endswith("(1/3)") and running[-1].endswith("(3/3)")
    assert {r.removeprefix("running ").rsplit(" (", 1)[0] for r in running} == {wb.controller.title(f)
                                                                                 for f in wb.formats}
    texts = [shown for what, b, shown, _ in seen if what == "busy" and b]
    assert all("out of date until replaced" in t for t in texts)
    stale_counts = [n for what, _, _, n in seen if what == "column"]
    assert stale_counts == sorted(stale_counts, reverse=True) and stale_counts[-1] == 0  # replaced one by one
    assert wb.controller.busy is None and wb.shown()["busy"] == ""
    wb.controller.match()


def test_tolerance_is_shown_beside_each_format(wb):
    """Issue 13.7: ONNX FAIL at 0.00385 beside Core ML PASS at 0.00398 needs each one's tolerance."""
    metrics = wb.shown()["metrics"]
    assert "1e-4 of scale (fp32" in metrics.replace("0.0001", "1e-4") and "0.01 of scale (fp16" in metrics


def test_every_image_can_be_paged_through(wb):
    """Issue 13.8: only 4 of the sample images were shown."""
    n = len(wb.session.images)
    assert n > 4 and wb.controller.pages == math.ceil(n / 4)
    assert f"images 1-4 of {n}" in wb.shown()["page"] and wb.control("previous").disabled
    first = wb.picture
    wb.control("next").click()
    assert f"images 5-{min(8, n)} of {n}" in wb.shown()["page"] and wb.picture != first
    wb.control("previous").click()
    assert wb.picture == first


def test_export_writes_what_is_in_force_and_reports_it(wb, tmp_path):
    """Issue 13.6: the report said the training mean/std while the files carried the slider values."""
    out = tmp_path / "exp"
    wb.control("folder").value = str(out)
    wb.preprocess = wb.reference_preprocess  # exact, per channel: what the files will carry
    wb.control("export").click()
    assert wb.shown()["confirm"] == ""  # every format passes: nothing to ask
    names = {p.name for p in out.iterdir()}
    assert {"SmallCNN.onnx", "SmallCNN.mlpackage", "SmallCNN.pt", "parity_report.json", "parity_report.png"} <= names
    report = json.loads((out / "parity_report.json").read_text())
    assert report["preprocess"]["scale"] == list(wb.preprocess.scale) and report["passed"] is True
    assert report["formats"]["onnx"]["preprocess"]["scale"] == list(wb.preprocess.scale)
    assert report["formats"]["onnx"]["path"].endswith("SmallCNN.onnx")
    assert not [n for n in names if n.startswith(".")]
    assert "written" in wb.shown()["written"] and "parity_report.json" in wb.shown()["written"]


def test_export_refusal_says_why_and_clears_the_last_list(wb, tmp_path):
    """Issue 13.5: with files there and overwrite unticked, Export did nothing, silently."""
    out = tmp_path / "again"
    wb.control("folder").value = str(out)
    wb.preprocess = wb.reference_preprocess
    wb.control("export").click()
    mtime = (out / "SmallCNN.onnx").stat().st_mtime_ns
    wb.control("export").click()
    written = wb.shown()["written"]
    assert "refused" in written and "already exists" in written and "overwrite" in written
    assert "parity_report.png</li>" not in written  # the previous export's list is gone
    assert (out / "SmallCNN.onnx").stat().st_mtime_ns == mtime
    assert not wb.control("export").disabled


def test_export_of_files_that_fail_parity_asks_first(wb, tmp_path):
    """Issue 13.6: Export in the default state wrote files failing parity, and said nothing."""
    out = tmp_path / "failing"
    wb.control("folder").value = str(out)
    wb.preprocess = Preprocess.preset("unit", size=(48, 48))  # wrong for an ImageNet model: every format fails
    wb.control("export").click()
    assert "fail parity" in wb.shown()["confirm"] and not out.exists()
    wb.control("confirm").click()
    assert (out / "SmallCNN.onnx").is_file() and "parity FAIL" in wb.shown()["written"]
    report = json.loads((out / "parity_report.json").read_text())
    # the report records what is inside the files: x/255, not the training mean/std
    assert report["preprocess"]["scale"] == [1 / 255] * 3 and report["passed"] is False
    assert report["training_preprocess"]["std"] == list(wb.reference_preprocess.std)
    wb.controller.match()


def test_labels_file_in_the_export_panel(wb, tmp_path):
    import coremltools as ct

    wb.preprocess = wb.reference_preprocess
    bad = tmp_path / "three.txt"
    bad.write_text("a\nb\nc\n")
    wb.control("labels").value = str(bad)
    wb.control("folder").value = str(tmp_path / "labelled")
    wb.control("export").click()
    assert "3 labels for a model with 10 classes" in wb.shown()["errors"]
    assert not (tmp_path / "labelled").exists()
    good = tmp_path / "ten.txt"
    good.write_text("".join(f"class {i}\n" for i in range(10)))
    wb.control("labels").value = str(good)
    wb.control("export").click()
    assert wb.shown()["errors"] == ""
    spec = ct.utils.load_spec(str(tmp_path / "labelled" / "SmallCNN.mlpackage"))
    assert spec.description.predictedFeatureName == "classLabel"
    wb.control("labels").value = ""


def test_export_leaves_the_live_runners_untouched(wb, tmp_path):
    """Issue 12: an export never rebuilds the live runners; the same objects serve refreshes after it."""
    runners = {f: wb.live.runner(f) for f in wb.formats}
    artifacts = dict(wb.live.artifacts)
    wb.control("folder").value = str(tmp_path / "untouched")
    wb.control("overwrite").value = True
    wb.preprocess = wb.reference_preprocess
    wb.control("export").click()
    wb.control("overwrite").value = False
    wb.preprocess = Preprocess.preset("half", size=(48, 48))
    assert {f: wb.live.runner(f) for f in wb.formats} == runners
    assert all(runners[f].active for f in wb.formats) and wb.live.artifacts == artifacts
    wb.controller.match()


def test_export_into_an_unwritable_folder_shows_the_error(wb):
    wb.controller.match()
    wb.control("folder").value = "/proc/workbench/exports"
    wb.control("export").click()
    assert "output folder" in wb.shown()["errors"]
    assert set(wb.comparison) == {"onnx", "coreml", "torchscript"}


def test_graph_buttons_name_formats_and_show_the_live_artifact(wb, tmp_path):
    """Issue 13.2: after the notebook exported an .mlmodel, the button called ONNX Runtime showed it."""
    import urllib.request

    wb.session.export("coreml", tmp_path / "nn.mlmodel", target="iOS13")  # as notebook 03 does
    graph = wb.control("graph")
    assert [label for label, _ in graph.options] == ["ONNX", "Core ML", "TorchScript"]
    graph.value = "onnx"
    assert wb.graph.path == wb.live.artifacts["onnx"].path
    page = urllib.request.urlopen(wb.graph.local_url, timeout=10).read().decode()
    assert "netron" in page.lower()
    server = wb.graph.port
    graph.value = "coreml"
    assert wb.graph.path.name == "model.mlmodel" and wb.graph.path.parent.parent.parent == wb.live.artifacts[
        "coreml"].path
    assert wb.graph.port == server  # toggling formats starts no new server (issue 13.10)


def test_reference_below_fp16_range_is_said(samples):
    """Issue 13.9: random weights giving logits near 1e-9 pass any preprocessing; the widget must say so."""
    model = tiny_classifier(num_classes=10)
    with torch.no_grad():
        model.classifier.weight.mul_(1e-9)
        model.classifier.bias.zero_()
    w = Workbench(model, samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)), task="classification",
                  formats=("onnx",))
    try:
        assert "below fp16" in w.shown()["warnings"]
    finally:
        w.close()


def test_grayscale_model_has_one_bias_labelled_luma(samples):
    """Issue 13.3: the grayscale model's single bias slider was labelled R."""
    w = Workbench(tiny_classifier(num_classes=4, in_channels=1), samples,
                  preprocess=Preprocess.preset("gray", size=(16, 16)), task="classification", formats=("onnx",))
    try:
        assert w.control("bias0").description == "Y (luma)"
        assert w.control("bgr").disabled and "no colour order" in w.shown()["reasons"]
        with pytest.raises(WorkbenchError, match="no control 'bias1'"):
            w.control("bias1")
    finally:
        w.close()


def test_image_to_image_model_with_tanh_output(samples):
    torch.manual_seed(0)
    w = Workbench(UnetGenerator(num_downs=3).eval(), samples, preprocess=Preprocess.preset("half", size=(32, 32)),
                  task=ImageToImage(output_range=(-1.0, 1.0)), formats=("onnx",))
    try:
        assert "exactly" in w.shown()["exactness"]  # Normalize(0.5, 0.5) is exact in ImageType
        assert w.comparison["onnx"].passed
        w.preprocess = Preprocess.preset("unit", size=(32, 32))  # the classic wrong guess: x/255
        assert not w.comparison["onnx"].passed
        assert w.comparison["onnx"].worst()["psnr"] < 40
    finally:
        w.close()


def test_adding_and_removing_a_live_format(samples):
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",))
    try:
        w.control("live:torchscript").value = True
        assert w.formats == ("onnx", "torchscript") and "torchscript" in w.comparison
        assert "TorchScript" in [label for label, _ in w.control("graph").options]
        w.control("live:torchscript").value = False
        assert w.formats == ("onnx",) and "torchscript" not in w.comparison
    finally:
        w.close()


def test_closing_stops_the_graph_server_and_removes_live_files(samples, tmp_path):
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",), export_folder=tmp_path / "mine")
    # a notebook names its own export folder (07 and 01 export the same net: the default would clash)
    assert w.control("folder").value == str(tmp_path / "mine")
    graph, artifact = w.graph, w.live.artifacts["onnx"]
    assert graph.alive and artifact.path.is_file()
    w.close()
    assert not graph.alive and not artifact.path.parent.exists()


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
    wb.controller.match()
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


def test_the_controller_imports_without_jupyter():
    import subprocess
    import sys

    code = ("import sys, workbench.widgets.controller; "
            "print(sorted(m for m in ('ipywidgets', 'IPython', 'ipykernel') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_your_own_images_from_the_widget(samples, tmp_path):
    """Issue 13: point the widget at your own images; the live runners stay, PyTorch's side is recomputed."""
    import shutil

    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("astronaut.jpg", "coffee.jpg"):
        shutil.copy(samples / name, mine / name)
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",))
    try:
        runner = w.live.runner("onnx")
        w.control("images").value = str(mine)
        w.control("load_images").click()
        assert [i.name for i in w.session.images] == ["astronaut", "coffee"]
        assert w.comparison["onnx"].passed and len(w.comparison["onnx"].rows) == 2
        assert w.live.runner("onnx") is runner and "images 1-2 of 2" in w.shown()["page"]
        c, s = w.controller, w.session  # the picture's kept tiles are the new images' and their PyTorch outputs'
        title = c.title("onnx")
        assert c.picture == side_by_side(s.pixels, ["astronaut", "coffee"], s.outputs, {title: c.outputs["onnx"]},
                                         s.task, {title: c.comparison["onnx"]}, image_format="jpeg")
        w.control("images").value = str(tmp_path / "nothing-here")
        w.control("load_images").click()
        assert "nothing-here" in w.shown()["errors"] and len(w.session.images) == 2  # the last good images stay
    finally:
        w.close()


def test_a_slow_format_converts_in_the_background_while_the_controls_work(samples):
    """Issue 15: adding a format to the live set converts it in a worker thread; the widget stays usable."""
    import asyncio

    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx",))

    async def tick_then_move():
        w.control("live:torchscript").value = True
        assert "converting to TorchScript" in w.status["torchscript"]
        assert "converting to TorchScript" in w.shown()["metrics"]
        w.preprocess = Preprocess.preset("raw", size=(16, 16))  # the controls work while it converts
        assert not w.comparison["onnx"].passed and "torchscript" not in w.comparison
        while w.status["torchscript"].startswith("converting"):
            await asyncio.sleep(0.05)
        await asyncio.sleep(0)  # the finishing callback runs on the loop

    try:
        asyncio.run(tick_then_move())
        assert w.status["torchscript"] == "ok" and "torchscript" in w.comparison
        assert not w.comparison["torchscript"].passed  # computed with the preprocessing in force (raw)
    finally:
        w.close()


def test_the_collector_keeps_running_while_the_widget_builds(samples, monkeypatch):
    """Issue 23.5: the build switched Python's cycle collector off for the whole process; now it freezes what
    each step built (full passes skip it) and the collector stays on, for the build and every other thread."""
    import gc

    import workbench.widgets.view as view

    seen = []
    step = view._BuildProgress.step
    monkeypatch.setattr(view._BuildProgress, "step", lambda self, what: (seen.append(
        (gc.isenabled(), gc.get_freeze_count())), step(self, what))[-1])
    w = Workbench(tiny_classifier(), samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                  task="classification", formats=("onnx",))
    w.close()
    assert seen and all(enabled for enabled, _ in seen), "the collector was off during the build"
    assert seen[-1][1] > 0, "nothing was frozen: the collector's full passes walked everything again"
    assert gc.get_freeze_count() == 0, "the build left objects frozen"


def test_a_dragged_value_has_no_float_noise_in_its_box(wb):
    """Issue 22.8: dragging Y showed 0.2999999999999998."""
    wb.controller.match()
    wb.control("bias0").value = 0.2999999999999998  # as a drag sends it
    assert wb.preprocess.bias[0] == 0.3 and wb.control("bias0_text").value == "0.3"
    wb.control("scale").value = 0.017301234567891  # a drag on the log slider
    assert wb.preprocess.scale[0] == 0.0173 and wb.control("scale_text").value == "0.0173"
    wb.control("bias0_text").value = "0.123456789"  # typed: kept as typed
    assert wb.preprocess.bias[0] == 0.123456789
    wb.controller.match()


def test_the_scale_slider_spans_a_fine_range_around_the_models_scale(wb):
    """Issue 22.9: the slider spanned 1e-4..10, so a 12 px drag doubled the scale."""
    import math

    wb.controller.match()
    scale, fit = wb.control("scale"), wb.reference_preprocess.imagetype_fit().scale
    assert 10 ** scale.min == pytest.approx(fit / 10 ** 0.6) and 10 ** scale.max == pytest.approx(fit * 10 ** 0.6)
    track = float(scale.layout.width.removesuffix("px")) - 150  # its description and margins take the rest
    assert 10 ** (12 * (scale.max - scale.min) / track) < 1.15, "12 px still move the scale by 15% or more"
    wb.control("scale_text").value = "1.0"  # typed far outside: the range follows the value in force
    assert scale.min < math.log10(1.0) < scale.max and scale.value == 1.0
    assert wb.control("scale_text").value == "1.0"
    wb.controller.match()
    assert 10 ** scale.min == pytest.approx(fit / 10 ** 0.6)


def test_a_drag_waiting_for_its_recompute_stays_in_its_box(wb):
    """Issue 22.9: for a second after release the box showed a value in between (the last one computed)."""
    wb.controller.match()
    in_force = wb.preprocess.scale[0]
    wb._coalescer._edits = {"scale": 0.0123}  # a drag read, its recompute not run yet
    try:
        wb._render("controls")
        assert wb.control("scale_text").value == "0.0123" and wb.control("scale").value == 0.0123
    finally:
        wb._coalescer.cancel()
    wb._render("controls")
    assert wb.control("scale_text").value == repr(in_force)


def test_a_chosen_preset_stays_chosen_when_another_has_its_values(samples):
    """Issue 22.10: choosing "gray" for a gray model snapped the menu back to "model's own (training)"."""
    w = Workbench(tiny_classifier(num_classes=4, in_channels=1), samples,
                  preprocess=Preprocess.preset("gray", size=(16, 16)), task="classification", formats=("onnx",))
    try:
        assert w.control("preset").value == MODEL
        w.control("preset").value = "gray"
        assert w.control("preset").value == "gray" and w.controller.preset == "gray"
        w.control("match").click()
        assert w.control("preset").value == MODEL
        w.control("bias0").value = 0.5
        assert w.control("preset").value == CUSTOM
    finally:
        w.close()


def test_the_parity_table_has_room_between_its_columns(wb):
    """Issue 22.15: "1.000000-" and "paritymax abs": cells and titles ran together."""
    wb.controller.match()
    metrics = wb.shown()["metrics"]
    assert "class='workbench-parity'" in metrics
    assert metrics.count("padding:3px 10px") >= 8 * (len(wb.formats) + 1)
    assert ">top-1 agreement</th>" in metrics and ">tolerance (max abs &lt;=)</th>" in metrics


def test_a_users_error_shows_beside_the_control_that_caused_it(wb):
    wb.controller.match()
    wb.control("bias1_text").value = "minus two"
    shown = wb.shown()
    assert "not a number" in shown["errors"] and "not a number" in shown["beside:bias1"]
    assert shown["beside:scale"] == ""
    wb.control("bias1_text").value = "0.5"  # the next action of that control clears it
    assert wb.shown()["beside:bias1"] == "" and wb.shown()["errors"] == ""
    wb.control("images").value = "/no/such/folder"
    wb.control("load_images").click()
    assert "/no/such/folder" in wb.shown()["beside:load_images"]
    wb.controller.match()


def test_a_bug_in_a_callback_is_logged_and_raised_under_the_test_flag(wb, monkeypatch, widget_bugs):
    """Issue 23.5: the error area swallowed every exception, so a bug showed only as HTML."""
    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    wb.controller.match()
    monkeypatch.setattr(wb.controller, "edit", broken)
    with pytest.raises(ZeroDivisionError, match="a bug"):  # tests/conftest.py sets the flag
        wb.control("bias1_text").value = "0.25"
    assert "internal error" in wb.shown()["errors"] and "internal error" in wb.shown()["beside:bias1"]
    assert [r.exc_info[0] for r in widget_bugs] == [ZeroDivisionError], "not logged with its traceback"
    monkeypatch.setattr(wb.controller, "show_page", broken)
    wb.control("next").click()  # ipywidgets swallows what a button raises: the log is what a test sees
    assert len(widget_bugs) == 2 and "a bug" in wb.shown()["errors"]
    monkeypatch.delenv("WORKBENCH_RAISE_CALLBACK_BUGS")
    wb.control("bias1_text").value = "0.5"  # a user's session: shown and logged, the widget carries on
    assert "a bug" in wb.shown()["errors"] and len(widget_bugs) == 3
    monkeypatch.undo()
    widget_bugs.clear()  # made on purpose
    wb.control("bias1_text").value = "two"
    assert "not a number" in wb.shown()["errors"] and not widget_bugs  # a user's error is not a bug
    wb.controller.match()


def test_pictures_are_shown_at_their_own_size(wb):
    """Issue 22.6: the pictures were stretched to the widget's width (680 -> 1,013 px), blurred."""
    import io

    from PIL import Image

    width = Image.open(io.BytesIO(wb.picture)).size[0]
    layout = wb._picture.layout
    assert (layout.width, layout.max_width, layout.height) == (f"{width}px", "100%", "auto")
