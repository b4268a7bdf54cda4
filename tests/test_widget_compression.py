"""The widget's Compression tab, headless: variants ticked per live format, their size and figures against
PyTorch, rerun as the preprocessing moves, the images where they differ most, the chart, and Export writing
the chosen variants with their report."""

import json

import numpy as np
import pytest

from conftest import tiny_classifier
from workbench import Preprocess, Workbench, WorkbenchError
from workbench.widgets.controller import Controller


@pytest.fixture(scope="module")
def wb(samples):
    w = Workbench(tiny_classifier(num_classes=10), samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                  task="classification", formats=("onnx", "coreml"),
                  variants={"coreml": ["linear8"], "onnx": ["int8"]})
    yield w
    w.close()


def test_variants_given_at_build_run_with_their_size_and_figures(wb):
    c = wb.controller
    assert set(c.variants) == {("coreml", "linear8"), ("onnx", "int8")}
    for variant in c.variants.values():
        assert variant.status == "ok", variant.status
        r = variant.result
        assert 0 < r.size_ratio < 1.5 and r.size_bytes > 0
        figures = r.comparison.worst()
        assert 0.0 <= figures["top1_agreement"] <= 1.0 and np.isfinite(figures["max_abs"])
        assert variant.computed == wb.preprocess
    shown = wb.shown()["compression"]
    assert "Core ML linear8" in shown and "ONNX int8" in shown and "x</td>" in shown  # size against fp32
    assert "calibrated on" in shown and "with the preprocessing in force" in shown  # int8 read the images
    assert "weights only" in shown  # linear8 reads none
    assert wb.control("variant:coreml:linear8").value and wb.control("variant:onnx:int8").value
    assert not wb.control("variant:coreml:palettize4").value
    assert c.chart[:8] == b"\x89PNG\r\n\x1a\n"
    assert c.variant_picture[:3] == b"\xff\xd8\xff"


def test_formats_not_live_cannot_be_ticked_and_say_why(wb):
    choices = wb.controller.variant_choices()
    assert {"onnx", "coreml", "executorch"} <= set(choices)
    blocked = [wb.control(f"variant:{fmt}:{name}") for fmt, names in choices.items() if fmt not in wb.formats
               for name in names]
    assert blocked and all(box.disabled for box in blocked)
    assert "run ExecuTorch live first (tick it under 'run live')" in wb.shown()["compression"].replace("&#x27;", "'")
    with pytest.raises(WorkbenchError, match="run ExecuTorch live first"):
        wb.controller.add_variant("executorch", "int8")
    with pytest.raises(WorkbenchError, match="TorchScript has no compressed variant 'int8'"):
        wb.controller.add_variant("torchscript", "int8")


def test_unknown_or_not_live_variants_are_refused_before_any_work(samples):
    with pytest.raises(WorkbenchError, match="has no compressed variant 'int3'; its variants: "):
        Workbench(tiny_classifier(), samples, formats=("onnx",), variants={"onnx": ["int3"]})
    with pytest.raises(WorkbenchError, match="compressed variants of coreml, which is not live"):
        Workbench(tiny_classifier(), samples, formats=("onnx",), variants={"coreml": ["linear8"]})


def test_the_chart_is_drawn_only_while_its_tab_is_shown(wb):
    tabs = wb.control("tabs")
    tabs.selected_index = 2  # Compression
    before = wb.chart
    assert before == wb.controller.chart and before[:8] == b"\x89PNG\r\n\x1a\n"
    tabs.selected_index = 0
    wb.control("preset").value = "caffe"  # the uncompressed ONNX file's top-1 drops: the chart's figures change
    assert wb.chart == before  # not redrawn behind the user's back: a slider move costs no chart
    tabs.selected_index = 2
    assert wb.chart == wb.controller.chart != before  # drawn on showing, with the new figures
    wb.controller.match()


def test_a_slider_move_reruns_the_variants_and_flags_the_old_calibration(wb):
    c = wb.controller
    before = {k: v.result.comparison.worst()["max_abs"] for k, v in c.variants.items()}
    runs = c.recomputes
    wb.preprocess = wb.reference_preprocess.replace(scale=tuple(s * 1.3 for s in wb.reference_preprocess.scale))
    assert c.recomputes == runs + 1
    for key, variant in c.variants.items():
        assert variant.computed == wb.preprocess  # rerun with the preprocessing in force
        assert variant.result.comparison.worst()["max_abs"] != before[key]
    note = c.variant_note(c.variants["onnx", "int8"])
    assert note.startswith("calibrated with ") and "not the preprocessing in force" in note
    assert "recalibrate" in wb.shown()["compression"]
    wb.controller.match()
    assert "with the preprocessing in force" in c.variant_note(c.variants["onnx", "int8"])


def test_ticking_and_unticking_a_variant(wb):
    c = wb.controller
    wb.control("variant:coreml:palettize4").value = True  # no event loop here: it compresses at once
    variant = c.variants["coreml", "palettize4"]
    assert variant.status == "ok" and variant.result.size_ratio < 0.9
    assert "Core ML palettize4" in wb.shown()["compression"]
    wb.control("variant_shown").value = ("coreml", "palettize4")
    assert c.variant_shown == ("coreml", "palettize4")
    wb.control("variant:coreml:palettize4").value = False
    assert ("coreml", "palettize4") not in c.variants
    assert c.variant_shown != ("coreml", "palettize4")
    assert "Core ML palettize4" not in wb.shown()["compression"]


def test_the_images_that_differ_most_come_first(wb):
    c = wb.controller
    variant = c.variants["onnx", "int8"]
    order = c.differing_most(variant, count=len(wb.session.images))
    names = [i.name for i in wb.session.images]
    worst = {}
    for r in variant.result.comparison.rows:
        k = names.index(r.image)
        worst[k] = max(worst.get(k, (0.0, 0.0)), (1.0 - r.task.get("top1_agreement", 1.0), r.max_abs / r.range))
    assert [worst[k] for k in order] == sorted(worst.values(), reverse=True)


def test_stopping_a_live_format_drops_its_variants(samples):
    w = Workbench(tiny_classifier(), samples, formats=("onnx",), variants={"onnx": ["int8_dynamic"]})
    try:
        assert ("onnx", "int8_dynamic") in w.controller.variants
        w.control("live:onnx").value = False
        assert not w.controller.variants and w.controller.chart == b""
        assert w.control("variant:onnx:int8").disabled
    finally:
        w.close()


def test_export_writes_the_chosen_variants_with_the_report(wb, tmp_path):
    wb.controller.match()
    out = tmp_path / "export"
    outcome = wb.controller.export(out, ["onnx", "coreml"], confirmed=True)
    assert outcome.refused is None, outcome.refused
    written = {title: (path, verdict) for path, title, verdict in outcome.written}
    for title, suffix in (("ONNX int8", ".int8.onnx"), ("Core ML linear8", ".linear8.mlpackage")):
        path, verdict = written[title]
        assert path.endswith(suffix) and (out / path.rsplit("/", 1)[1]).exists()
        assert "x the size" in verdict and "top-1" in verdict
        # issue 22.3: the exported file's figures say what they are computed on (the tab's may be the logits')
        assert verdict.endswith(", on the model's output"), verdict
    report = json.loads((out / "parity_report.json").read_text())
    int8 = report["formats"]["onnx"]["variants"]["int8"]
    assert int8["calibration"]["warning"] is None  # calibrated with what the file carries
    assert int8["size_ratio"] < 1 and 0 <= int8["top1_agreement"] <= 1
    # a second export to the same folder refuses, naming a file, variants included
    again = wb.controller.export(out, ["onnx"], confirmed=True)
    assert again.refused and "already exists" in again.refused
    # without the variants only the formats are written
    alone = wb.controller.export(tmp_path / "plain", ["onnx"], confirmed=True, variants=False)
    assert not any(title == "ONNX int8" for _, title, _ in alone.written)


def test_the_export_button_with_variants_ticked_writes_every_file_and_fills_its_bar(wb, tmp_path):
    """Notebook 08's default: variants ticked. The progress names each step by its format's title (a variant's
    step once looked its text up as a format, and the export stopped after the first file)."""
    wb.controller.match()
    out = tmp_path / "button"
    wb.control("folder").value = str(out)
    for name, box in wb._export_formats.items():
        box.value = name in ("onnx", "coreml")
    wb.control("export").click()
    if wb.shown()["confirm"]:
        wb.control("confirm").click()
    shown = wb.shown()
    assert shown["errors"] == "" and shown["beside:export"] == "", shown["errors"]
    name = wb.session.name
    for file in (f"{name}.onnx", f"{name}.int8.onnx", f"{name}.mlpackage", f"{name}.linear8.mlpackage",
                 "parity_report.json", "parity_report.png"):
        assert (out / file).exists(), f"{file} was not written: {shown['written']}"
    bar = wb._progress
    assert bar.value == bar.max == wb.controller.export_steps(["onnx", "coreml"]) == 6 and bar.description == "done"


def test_an_export_stopped_midway_leaves_nothing_half_written(wb, tmp_path):
    """A stop (Ctrl-C, a full disk) after the first file: what this export wrote goes, so a retry starts clean."""
    out = tmp_path / "stopped"
    out.mkdir()
    (out / "keep.txt").write_text("the user's")
    steps = []

    def stop_at_the_second_export(what, step):
        steps.append((what, step))
        if step == "export" and len([s for s in steps if s[1] == "export"]) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        wb.controller.export(out, ["onnx", "coreml"], confirmed=True, progress=stop_at_the_second_export)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the .onnx written before the stop is gone
    retry = wb.controller.export(out, ["onnx", "coreml"], confirmed=True)
    assert retry.refused is None and (out / f"{wb.session.name}.onnx").exists() and (out / "keep.txt").exists()


def test_the_controller_needs_no_widget(samples):
    from workbench import Session

    session = Session(tiny_classifier(), samples, task="classification")
    c = Controller(session, formats=("onnx",), variants={"onnx": ["fp16"]})
    try:
        assert c.variants["onnx", "fp16"].status == "ok"
        assert "onnx" in c.compression_results() and "fp16" in c.compression_results()["onnx"].variants
    finally:
        c.close()


def test_the_tab_shows_the_figures_the_notebooks_table_shows(samples, tmp_path):
    """Issue 22.3: the widget said Core ML linear8 29.6 dB where notebook 08's table said 37.3 for the same
    net: the notebook's Core ML file (with labels) gave probabilities, the widget's logits. Checked the same
    way (no labels: the model's scores), the figures are the same; and each row says what it is computed on."""
    from workbench import Session
    from workbench.views import compression_table

    chosen = {"coreml": ["linear8"], "onnx": ["int8"]}
    w = Workbench(tiny_classifier(num_classes=10, in_channels=1), samples, task="classification",
                  preprocess=Preprocess.preset("gray", size=(32, 32)), formats=tuple(chosen), variants=chosen)
    session = Session(tiny_classifier(num_classes=10, in_channels=1), samples, task="classification",
                      preprocess=Preprocess.preset("gray", size=(32, 32)))
    labelled = Session(tiny_classifier(num_classes=10, in_channels=1), samples, task="classification",
                       preprocess=Preprocess.preset("gray", size=(32, 32)), labels=[str(k) for k in range(10)])
    try:
        table = {(r["format"], r["variant"]): r for r in compression_table(
            session.check(list(chosen), tmp_path / "a", compress=chosen).formats)}
        for (fmt, name), variant in w.controller.variants.items():
            mine, theirs = variant.result.comparison.worst(), table[fmt, name]
            for key in ("psnr", "max_abs", "top1_agreement"):
                assert mine[key] == pytest.approx(theirs[key], rel=1e-3, abs=1e-6), (fmt, name, key)
            assert theirs["compared_on"] == "the model's output"
        # what ONNX int8 is, and apart from it how it was calibrated, each said once (LiteRT's and ExecuTorch's
        # notes name their images and preprocessing, which the table's "what it is" repeated)
        assert "calibrated" not in table["onnx", "int8"]["what"] and "8 images" in table["onnx", "int8"]["calibration"]
        shown = w.shown()["compression"]
        assert shown.count("compared on: the model&#x27;s output") >= 4  # under each row, across the table
        with_labels = {(r["format"], r["variant"]): r for r in compression_table(
            labelled.check(["coreml"], tmp_path / "b", compress={"coreml": ["linear8"]}).formats)}
        # the file a user ships has a classifier's softmax: its figures are on probabilities, and say so
        assert with_labels["coreml", "linear8"]["compared_on"] == "probabilities (the file adds the softmax)"
    finally:
        w.close()
        session.close()
        labelled.close()


def test_the_tab_names_what_each_column_measures(wb):
    """Issues 22.5 and 22.14: "vs fp32" over a Core ML fp16 file; the "what" column repeated the variant."""
    shown = wb.shown()["compression"]
    assert ">vs uncompressed</th>" in shown and "vs fp32" not in shown
    assert "Core ML fp16 (uncompressed)" in shown and "ONNX fp32 (uncompressed)" in shown
    assert ">top-1 agreement</th>" in shown


def test_an_image_models_tab_shows_its_own_figures(samples):
    """Issue 22.13: an image model's Compression tab had empty top-1, top-5 and mIoU columns."""
    from workbench.tasks import ImageToImage

    torch_model = tiny_image_model()
    w = Workbench(torch_model, samples, preprocess=Preprocess.preset("gray", size=(24, 24)),
                  task=ImageToImage(output_range=(0.0, 1.0)), formats=("onnx",), variants={"onnx": ["int8_dynamic"]})
    try:
        shown = w.shown()["compression"]
        assert ">PSNR dB</th>" in shown and "ONNX int8_dynamic" in shown
        assert not any(f">{title}</th>" in shown for title in ("top-1 agreement", "top-5 agreement", "mIoU"))
    finally:
        w.close()


def tiny_image_model():
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 1, 3, padding=1), torch.nn.Sigmoid()).eval()
