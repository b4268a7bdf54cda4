"""The widget's Dataset tab: a folder checked in the background while the sliders work, its worst images put
into the comparison, its figures in parity_report.json only when they hold for the preprocessing in force."""

import json

import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageOps

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, Workbench, WorkbenchError

LABELS = ["cat", "dog", "fish", "bird"]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An ImageFolder of 96 small photos, one subfolder per label, made from the sample images (crops, flips,
    exposure), plus one that is not an image."""
    root = tmp_path_factory.mktemp("photos")
    sources = sorted(SAMPLES.glob("*.jpg"))
    rng = np.random.default_rng(0)
    for k in range(96):
        im = Image.open(sources[k % len(sources)]).convert("RGB")
        w, h = im.size
        x, y = int(rng.integers(0, w // 3)), int(rng.integers(0, h // 3))
        im = im.crop((x, y, x + w // 2, y + h // 2)).resize((40, 40))
        if k % 2:
            im = ImageOps.mirror(im)
        im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.3, 1.6)))
        folder = root / LABELS[k % 4]
        folder.mkdir(exist_ok=True)
        im.save(folder / f"p{k:03d}.jpg")
    (root / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.fixture
def wb():
    w = Workbench(tiny_classifier(), images=SAMPLES, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                  task="classification", labels=LABELS, formats=("onnx", "torchscript"),
                  variants={"onnx": ["int8"]})
    yield w
    w.close()


def _run(wb, photos, **kwargs):
    wb.control("dataset_folder").value = str(photos)
    for name, box in kwargs.pop("ticks", {}).items():
        wb.control(f"dataset:{name}").value = box
    wb.control("dataset_run").click()
    assert wb.controller.dataset.running or wb.controller.dataset.finished
    return wb.controller.dataset


def test_a_run_fills_the_tab_and_the_worst_images_go_into_the_comparison(wb, photos):
    assert [n for n in wb.controller.dataset.choices()] == ["onnx", "torchscript", "onnx int8"]
    run = _run(wb, photos)
    run.wait(240)
    state = run.state()
    assert state["done"] == state["total"] == 97 and state["error"] is None and not state["running"]
    shown = wb.shown()["dataset"]
    assert "97 / 97 images" in shown and "done" in shown and "images/s" in shown
    for name in ("onnx", "torchscript", "onnx int8"):
        assert f">{name}<" in shown, f"no row for {name}"
    assert "broken" in json.dumps(run.result.to_dict()["skipped"])  # the bad file is named, the run went on
    assert wb._dataset.histogram.value[:4] == b"\x89PNG"
    acc = run.result.accuracy()
    assert acc["pytorch"]["images"] == 96  # ground truth from the subfolders, the broken file not counted

    # the worst images of int8 become the comparison's sample images, by name
    wb.control("dataset_which").value = "onnx int8"
    wb.control("dataset_count").value = 4
    wb.control("dataset_show").click()
    names = run.worst_images(4, "onnx int8")
    assert [i.name for i in wb.session.images] == names and all("/p" in n for n in names)  # "dog/p013"
    worst = {r["image"]: r["top1_agreement"] for r in run.result.worst(96, "onnx int8")}
    assert [worst[n] for n in names] == sorted(worst.values())[:4]  # the worst, worst first
    assert wb.shown()["errors"] == "" and "in the comparison" in wb.shown()["dataset"]
    assert set(wb.comparison) >= {"onnx", "torchscript"}  # the columns were computed on them
    wb.control("dataset_back").click()
    assert len(wb.session.images) == len(list(SAMPLES.glob("*.jpg")))


def test_a_slider_move_during_a_run_changes_nothing_in_it_and_the_tab_says_so(wb, photos, tmp_path):
    run = _run(wb, photos, ticks={"torchscript": False, "onnx int8": False})
    started_with = run.preprocess
    scale = wb.control("scale").value
    wb.control("scale").value = scale * 2  # while it runs: the sliders keep working
    assert wb.comparison["onnx"] is not None
    run.wait(240)
    assert run.preprocess == started_with and run.result.candidates == ["onnx"]
    assert run.stale() and "computed with" in wb.shown()["dataset"]
    assert wb._dataset.again_button.layout.display != "none"
    out = tmp_path / "stale"
    wb.controller.export(out, ["onnx"], confirmed=True)
    doc = json.loads((out / "parity_report.json").read_text())
    assert "another preprocessing" in doc["dataset"]["note"]

    wb.control("dataset_again").click()  # with the preprocessing in force now
    run.wait(240)
    assert not run.stale() and run.preprocess == wb.preprocess
    out = tmp_path / "fresh"
    wb.controller.export(out, ["onnx"], confirmed=True)
    doc = json.loads((out / "parity_report.json").read_text())
    assert doc["dataset"]["images"] == 97 and "onnx" in doc["dataset"]["candidates"]


def test_stop_ends_the_run_keeping_what_was_done(wb, photos):
    run = wb.controller.dataset
    run.listen(lambda what: wb.control("dataset_stop").click() if what == "progress" and run.done >= 32 else None)
    _run(wb, photos, ticks={"onnx int8": False})
    run.wait(120)
    state = run.state()
    assert 0 < state["done"] < state["total"] and state["stopped"], state
    assert "stopped" in wb.shown()["dataset"] and not wb.control("dataset_run").disabled


def test_the_export_panel_says_the_models_own_labels_go_into_the_files(wb):
    """Second new-user pass (issue 22): notebook 08's labels box was empty though the widget had labels."""
    assert wb.control("labels").placeholder == "its 4 labels (cat, dog, fish, …), or a labels.txt"


def test_bad_folders_are_said_beside_run_and_lose_nothing(wb, tmp_path):
    wb.control("dataset_folder").value = str(tmp_path / "nowhere")
    wb.control("dataset_run").click()
    assert "does not exist" in wb.shown()["beside:dataset_run"]
    assert not wb.controller.dataset.running and wb.controller.dataset.result is None
    assert wb.control("dataset_show").disabled
    with pytest.raises(WorkbenchError, match="run the dataset first"):
        wb.controller.dataset.show_worst()


def test_the_tabs_table_has_a_column_per_format_so_a_dozen_figures_fit_the_panel():
    from workbench.widgets.dataset import by_candidate

    rows, columns = by_candidate([{"candidate": "onnx", "checked": 3, "max abs": 0.00123456, "flips": None},
                                  {"candidate": "onnx int8", "checked": 3, "max abs": 0.5, "flips": 2}])
    assert columns == ["figure", "onnx", "onnx int8"]
    assert [r["figure"] for r in rows] == ["checked", "max abs", "flips"]
    assert rows[1] == {"figure": "max abs", "onnx": "0.001235", "onnx int8": "0.5"}
    assert rows[2] == {"figure": "flips", "onnx": "-", "onnx int8": "2"}


def test_a_classifiers_spread_shows_each_formats_flips_in_red():
    """One bar per format: a format that flips no image draws no red, one that flips half draws a red half."""
    import io
    from types import SimpleNamespace

    from workbench.widgets.dataset import histogram

    def red_pixels(figures):
        rows = {c: [{"status": "ok", "figure": f} for f in values] for c, values in figures.items()}
        png = histogram(SimpleNamespace(figure="top1_agreement", candidates=list(figures), rows=rows))
        px = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
        return int(((abs(px[..., 0] - 0xD6) < 8) & (abs(px[..., 1] - 0x27) < 8) & (abs(px[..., 2] - 0x28) < 8)).sum())

    assert red_pixels({"onnx": [1.0] * 10, "torchscript": [1.0] * 10}) == 0
    assert red_pixels({"onnx": [1.0] * 10, "onnx int8": [1.0] * 5 + [0.0] * 5}) > 1000
