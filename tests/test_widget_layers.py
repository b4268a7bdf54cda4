"""The widget's Layers tab: a format or a compressed variant compared with PyTorch layer by layer on one image,
in the background; the ranked table, the graph coloured by each layer's error, the picked layer outlined."""

import re

import pytest

from conftest import SAMPLES
from tests.layers_nets import hot_net
from workbench import Preprocess, Workbench, WorkbenchError, layers
from workbench.layers import Layer, Layers
from workbench.views import layers as view

PRE = Preprocess.preset("unit", size=(16, 16))


@pytest.fixture(scope="module")
def wb():
    """The net whose stem passes fp16's range, live in ONNX and MNN, with ONNX's fp16 variant ticked."""
    w = Workbench(hot_net(), images=SAMPLES, preprocess=PRE, task="classification", formats=("onnx", "mnn"),
                  variants={"onnx": ["fp16", "int8_dynamic"]})
    yield w
    w.close()


def compare(wb, candidate, image=0):
    wb.control("layers_which").value = candidate
    wb.control("layers_image").value = image
    wb.control("layers_run").click()
    wb.controller.layers.wait(120)
    assert wb.controller.layers.error is None, wb.controller.layers.error
    return wb.controller.layers.result


def test_the_choices_are_the_formats_with_a_locator_their_fp16_conversion_and_their_variants(wb):
    assert [v for _, v in wb.control("layers_which").options] == ["onnx", "mnn", "mnn at fp16", "onnx fp16",
                                                                   "onnx int8_dynamic"]
    assert [t for t, _ in wb.control("layers_which").options][2:4] == ["MNN at fp16", "ONNX fp16"]
    assert len(wb.control("layers_image").options) == len(wb.session.images)


def test_a_variant_that_overflows_fp16_is_drawn_with_its_first_overflowing_layer_picked(wb):
    found = compare(wb, "onnx fp16")
    assert found.overflow is not None and found.overflow.torch == "stem", found.describe()
    shown = wb.shown()
    assert "ONNX fp16 on image 1" in shown["layers"] and "fp16 overflow" in shown["layers"]
    assert wb.control("layers_table").value == "stem"  # the first layer over tolerance is picked
    assert "PyTorch module: stem" in shown["layers_picked"] and "not finite" in shown["layers_picked"]
    graph = shown["layers_graph"]
    boxes = re.findall(r"<g class='workbench-layer' data-torch='([^']+)' data-band='([^']+)'", graph)
    assert len(boxes) == found.matched >= 6
    bands = dict(boxes)
    assert bands["stem"] == "not finite (inf or NaN)"
    assert set(bands.values()) > {"not finite (inf or NaN)"}  # the rest has other colours
    assert f"stroke='{view.PICKED}' stroke-width='3'" in graph and "first over tolerance" in graph
    # the residual (block.relu#2 computed from block.c2 and act) arcs beside the column
    assert set(found.layer("block.relu#2").inputs) == {"block.c2", "act"}
    assert "<path d='M" in graph


def test_picking_a_row_outlines_that_layer_and_shows_its_figures(wb):
    compare(wb, "onnx fp16")
    wb.control("layers_order").value = "graph"
    assert [v for _, v in wb.control("layers_table").options][0] == "stem"  # in the graph's order
    wb.control("layers_table").value = "head"
    shown = wb.shown()
    assert "PyTorch module: head" in shown["layers_picked"]
    picked = re.search(r"data-torch='([^']+)'[^>]*><title>[^<]*</title><rect [^>]*stroke='#1f4e9c'",
                       shown["layers_graph"])
    assert picked and picked.group(1) == "head"
    wb.control("layers_order").value = "ranked"


def test_mnn_at_fp16_is_converted_once_beside_the_live_file_and_the_figures_say_when_they_are_stale(wb):
    found = compare(wb, "mnn at fp16", image=1)
    run = wb.controller.layers
    path = run._converted["mnn"].path
    assert found.precision == "fp16" and path.exists() and path.parent == wb.live.artifacts["mnn"].path.parent
    assert found.matched >= 3 and "MNN at fp16 on image 2" in wb.shown()["layers"]
    compare(wb, "mnn at fp16")
    assert run._converted["mnn"].path == path
    wb.preprocess = PRE.replace(scale=tuple(s * 1.1 for s in PRE.scale))
    try:
        assert "press Compare layers again" in wb.shown()["layers"]
    finally:
        wb.preprocess = PRE


def test_an_8_bit_variant_is_judged_against_the_compressed_tolerance_not_fp32s(wb):
    found = compare(wb, "onnx int8_dynamic")
    assert found.matched >= 3  # the quantized graph's own nodes (QuantizeLinear, ConvInteger...) stand for no module
    assert all(x.limit == pytest.approx(layers.COMPRESSED_TOLERANCE.rel) for x in found.layers if x.scale > 0)
    assert found.ranked()[0].growth > 1e-4  # int8 rounding is there to rank: where it adds the most comes first


def test_a_candidate_that_is_not_live_is_refused_with_the_choices(wb):
    with pytest.raises(WorkbenchError, match="cannot be compared layer by layer here; choose among onnx, mnn"):
        wb.controller.layers.start("coreml")


def test_with_no_format_live_the_tab_names_the_formats_that_have_a_locator(wb):
    from workbench.widgets.layers import LayersRun

    class Idle:  # a controller with nothing live
        running, variants = (), {}

    with pytest.raises(WorkbenchError, match=r"none: turn on a format that has one \(.*ONNX.*ExecuTorch") as e:
        LayersRun(Idle()).start("onnx")
    assert "ncnn" in str(e.value) and "LiteRT" in str(e.value)


def _layers(n, bad_at=None):
    out = []
    for k in range(n):
        error = 0.5 if k == bad_at else 1e-6
        out.append(Layer(k, f"n{k}", "Conv", f"v{k}", f"m{k}", (1, 4, 4, 4), error, 1e-3, error, 1.0, True, False, 1.0,
                         growth=error, inputs=(f"m{k - 1}",) if k else ()))
    return Layers("onnx", "ONNX", tuple(out), n)


def test_a_long_graph_is_drawn_around_the_picked_layer_under_a_strip_of_the_whole():
    found = _layers(100, bad_at=70)
    svg = view.graph_svg(found)  # picked: the first over tolerance
    drawn = re.findall(r"data-torch='(m\d+)'", svg)
    assert len(drawn) == 30 and "m70" in drawn and "m0" not in drawn
    assert "layers above" in svg and "layers below" in svg
    strip = view.strip_svg(found)
    assert strip.count("<rect") == 101  # a cell per layer and the window's frame
    assert "data-band='over 10x tolerance'" in svg and "within a tenth of tolerance" in svg
