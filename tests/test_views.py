import html
import io
import math

import numpy as np
import pytest
from PIL import Image

from workbench.compare import Tolerance, compare
from workbench.tasks import Classification, ImageToImage, Segmentation
from workbench.views import pages, side_by_side
from workbench.views.picture import (
    _HEAT,
    _VOC,
    AXIS,
    DIFF,
    TEXT,
    TOP_DIFF,
    _bar_label,
    _font,
    _heatmap,
    _line_height,
    _plan,
    _swatch,
    _text_mask,
    _wrap,
)

BLUE = (0, 0, 255)


def _picture(image_format):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (2, 3, 24, 24)).astype(np.float32)
    ref = {"y": rng.uniform(0, 1, (2, 1, 24, 24)).astype(np.float32)}
    outputs = {"Core ML interpreter (ML program, fp16)": ref, "TorchScript": ref}
    return side_by_side(pixels, ["a", "b"], ref, outputs, ImageToImage(), image_format=image_format, tile=96)


def _images(n, seed=0):
    """n blue input images (to find their boxes), an image-to-image reference and a slightly off copy."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((n, 3, 24, 24), np.float32)
    pixels[:, 2] = 255
    ref = {"y": rng.uniform(0, 1, (n, 3, 24, 24)).astype(np.float32)}
    off = {"y": ref["y"] + rng.normal(0, 1e-3, ref["y"].shape).astype(np.float32)}
    return pixels, [f"img{i}" for i in range(n)], ref, {"ONNX Runtime (CPU)": off}


def _decode(data) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    """(first, last) of each run of True in a 1-D boolean array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(np.int8), [0]])))
    return list(zip(edges[::2], edges[1::2] - 1))


def _input_column(picture: np.ndarray, tile: int):
    """Row spans of the blue input pictures and of the dark caption text, in the input column."""
    column = picture[:, 8:8 + tile]
    blue = (column == BLUE).all(axis=2).sum(axis=1) > tile // 2
    text = (column.sum(axis=2) < 300).any(axis=1) & ~blue
    return _runs(blue), _runs(text)


@pytest.mark.parametrize("image_format, magic, mode", [("png", b"\x89PNG", "PNG"), ("jpeg", b"\xff\xd8\xff", "JPEG")])
def test_picture_encodes_as_asked(image_format, magic, mode):
    data = _picture(image_format)
    assert data.startswith(magic)
    picture = Image.open(io.BytesIO(data))
    assert picture.format == mode and picture.size[0] == 5 * (96 + 8) + 8  # input, PyTorch, 2 formats, diff


def test_unknown_picture_format_is_refused():
    with pytest.raises(ValueError, match="png.*jpeg"):
        _picture("gif")


def test_long_column_titles_wrap_inside_their_tile():
    lines = _wrap("Core ML interpreter (ML program, fp16)", 96).splitlines()
    assert len(lines) > 1 and " ".join(lines) == "Core ML interpreter (ML program, fp16)"
    assert all(_font().getlength(line) <= 96 for line in lines)


def test_captions_are_drawn_large_enough_to_read_at_natural_size():
    """Issue 22 (second pass): the captions were 9 px high (Pillow's own font at 11 px); the widget shows the
    picture at its natural size. DejaVu Sans at 13 px: 12 px or more from ascender to descender, the lines
    and the caption bands as tall, and the drawn glyphs of a caption as tall as the font says."""
    font = _font()
    assert font.size >= 12 and font.getname()[0] == "DejaVu Sans"
    top, bottom = font.getbbox("Ag|")[1::2]
    assert bottom - top >= 12 and _line_height() >= bottom - top + 2
    mask = np.asarray(_text_mask("PASS max|d| 0.0034"))
    rows = np.flatnonzero(mask.max(axis=1) > 128)
    assert rows[-1] - rows[0] + 1 >= 12, f"the drawn caption is {rows[-1] - rows[0] + 1} px high"
    pixels, names, ref, outputs = _images(2)
    comparisons = {"ONNX Runtime (CPU)": compare(ref, outputs["ONNX Runtime (CPU)"], images=names)}
    plan = _plan(pixels, names, ref, outputs, ImageToImage(), comparisons, count=None, tile=160)
    assert plan.head >= _line_height() + 6
    for row in plan.rows:
        lines = max(caption.count("\n") + 1 for caption, _ in row.captions)
        assert row.picture_top - row.top >= lines * _line_height(), "the captions run into the pictures"
        assert row.bottom - row.footer_top >= 8 + _line_height(), "the colour bar's labels are cut"


def test_a_word_wider_than_the_tile_is_broken_inside_it():
    lines = _wrap("IMG_20240101_123456_HDR_portrait.jpg", 60).splitlines()
    assert len(lines) > 1 and "".join(lines) == "IMG_20240101_123456_HDR_portrait.jpg"
    assert all(_font().getlength(line) <= 60 for line in lines)


def test_pages_cover_every_image_once():
    assert pages(6) == [range(0, 4), range(4, 6)]
    assert pages(8, per_page=4) == [range(0, 4), range(4, 8)]
    assert pages(0) == []
    with pytest.raises(ValueError, match="per_page"):
        pages(6, per_page=0)


@pytest.mark.parametrize("start, count, drawn", [(0, None, 6), (0, 4, 4), (4, 4, 2), (2, 3, 3)])
def test_every_image_of_the_page_is_drawn(start, count, drawn):
    pixels, names, ref, outputs = _images(6)
    data = side_by_side(pixels, names, ref, outputs, ImageToImage(), start=start, count=count, tile=64)
    boxes, _ = _input_column(_decode(data), 64)
    assert len(boxes) == drawn, f"{len(boxes)} input pictures drawn for images {start}..{start + drawn - 1}"
    plan = _plan(pixels, names, ref, outputs, ImageToImage(), None, start=start, count=count, tile=64)
    assert [r.name for r in plan.rows] == names[start:start + drawn]


def test_max_images_still_names_the_count():
    pixels, names, ref, outputs = _images(6)
    data = side_by_side(pixels, names, ref, outputs, ImageToImage(), max_images=5, tile=64)
    boxes, _ = _input_column(_decode(data), 64)
    assert len(boxes) == 5


def test_a_page_outside_the_images_is_refused():
    pixels, names, ref, outputs = _images(6)
    with pytest.raises(ValueError, match=r"start 6 is outside the 6 images; pages\(6\)"):
        side_by_side(pixels, names, ref, outputs, ImageToImage(), start=6)
    with pytest.raises(ValueError, match="count must be at least 1"):
        side_by_side(pixels, names, ref, outputs, ImageToImage(), count=0)


def test_a_page_says_which_images_it_shows():
    pixels, names, ref, outputs = _images(6)
    plan = _plan(pixels, names, ref, outputs, ImageToImage(), None, start=4, count=4, tile=160)
    assert plan.titles[0] == "input, images 5-6 of 6"
    assert _plan(pixels, names, ref, outputs, ImageToImage(), None, count=None, tile=160).titles[0] == "input"


def test_each_caption_lies_above_its_own_picture():
    pixels, names, ref, outputs = _images(4)
    comparisons = {"ONNX Runtime (CPU)": compare(ref, outputs["ONNX Runtime (CPU)"], images=names)}
    tile = 64
    picture = _decode(side_by_side(pixels, names, ref, outputs, ImageToImage(), comparisons, count=None, tile=tile))
    boxes, _ = _input_column(picture, tile)
    assert len(boxes) == 4
    for i, (top, _) in enumerate(boxes):
        above = boxes[i - 1][1] if i else -1
        mask = _text_mask(names[i])
        found = [y for y in range(above + 1, top - mask.height + 1) if _written(picture, names[i], (8, y), TEXT)]
        assert found, f"{names[i]!r} is not written between picture {i - 1} (ends at y={above}) and its own (y={top})"
    # the plan's bands: captions, then pictures, then the colour bar, each row below the last
    plan = _plan(pixels, names, ref, outputs, ImageToImage(), comparisons, count=None, tile=tile)
    for before, row in zip([None] + plan.rows, plan.rows):
        assert (before.bottom if before else plan.head) <= row.top < row.picture_top < row.footer_top < row.bottom
        assert row.picture_top - row.top >= row.captions[-1][0].count("\n") * 12
        assert row.captions[0][0] == row.name
        assert row.captions[2][0].split()[:2] == ["FAIL", "max|d|"]  # the fp32 tolerance against 1e-3 noise


def test_the_heatmap_gives_non_finite_differences_the_top_colour():
    diff = np.zeros((2, 20, 20), np.float32)
    diff[0, :10] = np.nan
    diff[1, 15, 15] = 2.0
    diff[1, 15, 16] = 1.0
    heat = np.asarray(_heatmap(diff, 20))
    assert (heat[:10] == _HEAT[255]).all() and (heat[15, 15] == _HEAT[255]).all()
    assert (heat[15, 16] == _HEAT[128]).all() and (heat[19, 0] == _HEAT[0]).all()
    assert (np.asarray(_heatmap(np.full((1, 4, 4), np.nan), 4)) == _HEAT[255]).all()
    assert (np.asarray(_heatmap(np.zeros((1, 4, 4)), 4)) == _HEAT[0]).all()


def test_kept_tiles_draw_the_same_picture_as_fresh_ones():
    """The widget keeps the input's and PyTorch's tiles between slider moves; only the formats' columns change."""
    pixels, names, ref, off = _images(3)
    cache: dict = {}
    first = side_by_side(pixels, names, ref, off, ImageToImage(), cache=cache)
    assert sorted({key[0] for key in cache}) == ["PyTorch", "input"] and len(cache) == 6
    moved = {label: {n: v + 0.05 for n, v in out.items()} for label, out in off.items()}
    again = side_by_side(pixels, names, ref, moved, ImageToImage(), cache=cache)
    assert again == side_by_side(pixels, names, ref, moved, ImageToImage()) and again != first


def test_the_heatmap_has_a_magma_colour_bar_labelled_with_its_range():
    pixels, names, ref, outputs = _images(2)
    tile = 96
    picture = _decode(side_by_side(pixels, names, ref, outputs, ImageToImage(), tile=tile))
    plan = _plan(pixels, names, ref, outputs, ImageToImage(), None, tile=tile)
    x, w = plan.columns[-1]
    for row in plan.rows:
        assert row.heatmap
        bar = picture[row.footer_top + 3 + 4, x:x + w]
        expected = _HEAT[np.linspace(0, 255, w).round().astype(int)]
        np.testing.assert_array_equal(bar, expected, err_msg="the colour bar is not magma from 0 to the max")
        assert (bar[0] == _HEAT[0]).all() and (bar[-1] == _HEAT[-1]).all()
        labels = picture[row.footer_top + 3 + 8:row.bottom, x:x + w]
        assert (labels.sum(axis=2) < 300).any(), "the colour bar has no numbers under it"


@pytest.mark.parametrize("low, high, scale", [(-3, 9, 12), (100, 101, 101)])  # the range; the largest magnitude
def test_the_difference_is_stated_against_compares_scale(low, high, scale):
    rng = np.random.default_rng(1)
    ref = {"y": (rng.uniform(low, high, (3, 3, 16, 16))).astype(np.float32)}
    cand = {"y": ref["y"] + rng.normal(0, 0.01, ref["y"].shape).astype(np.float32)}
    names = ["a", "b", "c"]
    pixels = rng.uniform(0, 255, (3, 3, 16, 16)).astype(np.float32)
    tol = Tolerance(rel=1e-3)
    rows = compare(ref, cand, images=names, tolerance=tol).rows
    plan = _plan(pixels, names, ref, {"fmt": cand}, ImageToImage(), None, count=None, tile=64)
    for row, metrics in zip(plan.rows, rows):
        assert row.max_abs == metrics.max_abs
        assert row.scale == pytest.approx(metrics.limit / tol.rel, rel=1e-12)
        assert row.scale == pytest.approx(scale, rel=0.02)
        assert f"max |d| {metrics.max_abs:.2g}" in row.captions[-1][0]
        assert f"= {metrics.max_abs / row.scale:.2g} of scale {row.scale:.3g}" in row.captions[-1][0]


def test_the_difference_column_shows_the_format_that_differs_most_on_each_image():
    """Issue 22.14: not the first format's difference when another differs more; the caption names it."""
    rng = np.random.default_rng(2)
    ref = {"y": rng.uniform(0, 1, (2, 1, 16, 16)).astype(np.float32)}
    close = {"y": ref["y"] + 1e-4}
    far = {"y": ref["y"].copy()}
    far["y"][1] += 0.05  # differs on the second image only, and there more than `close`
    pixels = rng.uniform(0, 255, (2, 3, 16, 16)).astype(np.float32)
    plan = _plan(pixels, ["a", "b"], ref, {"ONNX": close, "LiteRT": far}, ImageToImage(), None, count=None, tile=64)
    assert "differs most" in plan.titles[-1].replace("\n", " ")
    first, second = plan.rows
    assert first.captions[-1][0].startswith("ONNX:") and first.max_abs == pytest.approx(1e-4, rel=1e-2)
    assert second.captions[-1][0].startswith("LiteRT:") and second.max_abs == pytest.approx(0.05, rel=1e-3)
    alone = _plan(pixels, ["a", "b"], ref, {"ONNX": close}, ImageToImage(), None, count=None, tile=64)
    assert alone.titles[-1] == _wrap("|ONNX - PyTorch|", 64) and alone.rows[1].captions[-1][0].startswith("max |d|")


def test_the_difference_is_measured_against_pytorchs_output_as_the_format_gives_it():
    """Issue 22 (second pass): notebook 01's heatmap said max |d| 0.1 beside "PASS max|d| 0.0034": PyTorch's
    output runs past 1 where the converted image output is clipped, and the picture took the difference before
    clipping. With each format's expected output, it shows what `compare` measured."""
    rng = np.random.default_rng(3)
    ref = {"y": rng.uniform(-0.1, 1.1, (1, 1, 16, 16)).astype(np.float32)}
    clipped = {"y": np.clip(ref["y"], 0, 1)}
    out = {"y": clipped["y"] + 1e-3}
    pixels = rng.uniform(0, 255, (1, 3, 16, 16)).astype(np.float32)
    raw = _plan(pixels, ["a"], ref, {"Core ML": out}, ImageToImage(), None, count=None, tile=64)
    assert raw.rows[0].max_abs > 0.05  # before: the clipping counted as the format's difference
    plan = _plan(pixels, ["a"], ref, {"Core ML": out}, ImageToImage(), None, count=None, tile=64,
                 expected={"Core ML": clipped})
    assert plan.rows[0].max_abs == pytest.approx(1e-3, rel=1e-2)


def _segmentation(k=21):
    scores = np.zeros((1, k, 24, 24), np.float32)
    scores[0, 0] = 1
    scores[0, 15, 4:12, 4:12] = 2  # a person
    pixels = np.full((1, 3, 24, 24), 128, np.float32)
    return pixels, {"out": scores}, {"fmt": {"out": scores.copy()}}


def test_the_legend_names_the_classes_in_the_image():
    pixels, ref, outputs = _segmentation()
    labels = tuple(["background"] + [f"c{k}" for k in range(1, 15)] + ["person"] + [f"c{k}" for k in range(16, 21)])
    task = Segmentation(labels=labels)
    plan = _plan(pixels, ["p"], ref, outputs, task, None, tile=96)
    row = plan.rows[0]
    assert [name for name, _ in row.legend] == ["background", "person"]
    assert dict(row.legend)["person"] == tuple(_VOC[15])
    picture = _decode(side_by_side(pixels, ["p"], ref, outputs, task, image_format="png", tile=96))
    x0, x1 = plan.legend_span
    band = picture[row.footer_top:row.bottom, x0:x1]
    assert (band == _VOC[15]).all(axis=2).sum() >= 25, "no person swatch in the legend"


def test_without_labels_the_legend_says_class_k():
    pixels, ref, outputs = _segmentation()
    plan = _plan(pixels, ["p"], ref, outputs, Segmentation(), None, tile=96)
    assert [name for name, _ in plan.rows[0].legend] == ["class 0", "class 15"]


def _classifier(labels):
    scores = np.zeros((1, len(labels)), np.float32)
    scores[0, labels.index("Welsh springer spaniel")] = 5
    cand = scores + np.linspace(0, 0.01, len(labels), dtype=np.float32)
    return np.full((1, 3, 24, 24), 128, np.float32), {"logits": scores}, {"fmt": {"logits": cand}}


@pytest.mark.parametrize("tile", [96, 160])
def test_class_names_are_drawn_whole(tile):
    labels = ["tench", "Welsh springer spaniel", "goldfish"] + [f"class {k}" for k in range(3, 10)]
    pixels, ref, outputs = _classifier(labels)
    plan = _plan(pixels, ["dog"], ref, outputs, Classification(labels=tuple(labels)), None, tile=tile)
    x, width = plan.columns[1]
    room = width - _text_mask("0.99").width - 8
    assert _font().getlength("Welsh springer spaniel") <= room
    assert _bar_label("Welsh springer spaniel", room, (tile // 5 - 5) // _line_height()) == "Welsh springer spaniel"
    assert plan.rows[0].tiles[1].width == width
    for bars in plan.rows[0].tiles[1:3]:  # PyTorch's and the format's top-5: the top-1 is drawn whole
        assert _written(np.asarray(bars), "Welsh springer spaniel", (2, 1), TEXT)


def test_a_name_too_long_for_two_tiles_is_cut_visibly():
    label = "a" * 200
    text = _bar_label(label, 150, 1)
    assert text.endswith("...") and _font().getlength(text) <= 150


def _written(picture: np.ndarray, text: str, xy, colour) -> bool:
    """Whether `text` is drawn in `colour` with its top left at xy on a white background."""
    mask = _text_mask(text)
    expected = Image.new("RGB", mask.size, "white")
    expected.paste(colour, (0, 0, *mask.size), mask)
    x, y = xy
    return np.array_equal(picture[y:y + mask.height, x:x + mask.width], np.asarray(expected))


def test_the_classifier_difference_names_its_axes_and_the_classes_that_differ_most():
    labels = ["tench", "Welsh springer spaniel", "goldfish"] + [f"class {k}" for k in range(3, 10)]
    pixels, ref, outputs = _classifier(labels)
    plan = _plan(pixels, ["dog"], ref, outputs, Classification(labels=tuple(labels)), None, tile=160)
    chart, lh = np.asarray(plan.rows[0].tiles[-1]), _line_height()
    assert not plan.rows[0].heatmap and chart.shape[1] == plan.columns[-1][1]
    # the three most different classes (the top of the ramp added to the scores) are listed above the chart,
    # each behind a swatch of the dark colour of their bars (as tall as a capital): the legend of dark against
    # light bars
    top, side = _swatch()
    assert side >= 8
    for k, name in enumerate(["class 9", "class 8", "class 7"]):
        assert _written(chart, name, (side + 7, 2 + k * lh), TOP_DIFF), f"{name!r} is not on line {k} of the chart"
        swatch = chart[2 + k * lh + top:2 + k * lh + top + side, 3:3 + side]
        assert (swatch == TOP_DIFF).all(), f"no swatch before {name!r}"
    bars = chart[4 + 4 * lh + 2:160 - lh - 5, 3:-4].reshape(-1, 3)
    colours = {tuple(c) for c in bars}
    assert TOP_DIFF in colours and DIFF in colours, "the chart has no dark bars for the named classes beside light ones"
    assert _written(chart, "|d|", (3, 4 + 3 * lh), AXIS), "no y axis name"
    bottom, width = 160 - lh - 4, chart.shape[1]
    centre = (3 + width - 4) // 2 - _text_mask("class").width // 2
    assert _written(chart, "class", (centre, bottom + 1), AXIS), "no x axis name"


# -- compression chart and table --------------------------------------------------------------------------------

def _metrics(psnr, **task):
    from workbench.compare import OutputMetrics

    return OutputMetrics("y", "img0", max_abs=0.1, mean_abs=0.01, max_rel=0.1, psnr=psnr, cosine=0.99, range=1.0,
                         limit=1e-4, passed=True, task=task)


def _results(**task_figures):
    """Two formats with variants: figures given per (format, variant) as (size_bytes, psnr), the base first."""
    from types import SimpleNamespace

    from workbench.compare import Comparison
    from workbench.session import FormatResult, VariantResult

    def comparison(psnr, name):
        return Comparison(name, [_metrics(psnr, **task_figures)], [])

    coreml = FormatResult("coreml", artifact=SimpleNamespace(precision="fp16", path=None),
                          comparison=comparison(60.0, "coreml"))
    coreml.variants = {
        "linear8": VariantResult("linear8", comparison=comparison(37.5, "coreml linear8"), size_bytes=600,
                                 base_bytes=1000, artifact=SimpleNamespace(notes=("8-bit linear weights", "more"))),
        "int8": VariantResult("int8", comparison=comparison(12.0, "coreml int8"), size_bytes=700, base_bytes=1000,
                              artifact=SimpleNamespace(notes=(
                                  "int8: 8-bit weights and activations, ranges calibrated on 2 images (a, b) with "
                                  "preprocessing gray_raw: x * [1] + [0]",)),
                              calibration={"images": ["a", "b"], "preprocess": "gray_raw: x * [1] + [0]",
                                           "warning": "calibrated with preprocessing gray_raw, but the artifact "
                                                      "takes gray"}),
        "palettize2": VariantResult("palettize2", error="MIL op conv failed", base_bytes=1000),
    }
    onnx = FormatResult("onnx", artifact=SimpleNamespace(precision="fp32", path=None),
                        comparison=comparison(float("inf"), "onnx"))
    onnx.variants = {"fp16": VariantResult("fp16", comparison=comparison(66.0, "onnx fp16"), size_bytes=1100,
                                           base_bytes=2000)}
    plain = FormatResult("torchscript", comparison=comparison(120.0, "torchscript"))  # no variants: left out
    return {"coreml": coreml, "onnx": onnx, "torchscript": plain}


def test_the_points_are_each_variant_and_each_uncompressed_file():
    from workbench.views import compression_points

    key, points, missing = compression_points(_results(), ImageToImage())
    assert key == "psnr"
    assert [(p.label, p.size_bytes, round(p.ratio, 3), p.figure, p.base) for p in points] == [
        ("coreml fp16", 1000, 1.0, 60.0, True), ("coreml linear8", 600, 0.6, 37.5, False),
        ("coreml int8", 700, 0.7, 12.0, False), ("onnx fp32", 2000, 1.0, float("inf"), True),
        ("onnx fp16", 1100, 0.55, 66.0, False)]
    assert [p.miscalibrated for p in points] == [False, False, True, False, False]
    assert missing == ["coreml palettize2: MIL op conv failed"]


@pytest.mark.parametrize("task, figures, key", [
    (Classification(), {"top1_agreement": 0.5, "top5_agreement": 1.0}, "top1_agreement"),
    (Segmentation(), {"miou": 0.7, "pixel_agreement": 0.9}, "miou"),
    (ImageToImage(), {}, "psnr"),
    (Classification(), {}, "psnr"),  # a classifier whose comparison has no top-1: the figure it has
])
def test_the_figure_is_the_tasks_own_when_the_comparisons_have_it(task, figures, key):
    from workbench.views import compression_points

    chosen, points, _ = compression_points(_results(**figures), task)
    assert chosen == key
    expected = figures.get(key)
    assert all(p.figure == (expected if expected is not None else p.figure) for p in points)


def test_an_unknown_figure_is_refused():
    from workbench.views import compression_chart

    with pytest.raises(ValueError, match="figure must be one of"):
        compression_chart(_results(), ImageToImage(), figure="accuracy")
    with pytest.raises(ValueError, match="image_format"):
        compression_chart(_results(), ImageToImage(), image_format="gif")


@pytest.mark.parametrize("image_format, magic", [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8\xff")])
def test_the_chart_is_a_picture_of_a_sane_size(image_format, magic):
    import matplotlib

    from workbench.views import compression_chart

    backend = matplotlib.get_backend()
    data = compression_chart(_results(top1_agreement=1.0), Classification(), image_format=image_format)
    assert data.startswith(magic)
    picture = _decode(data)
    assert 400 <= picture.shape[1] <= 1600 and 300 <= picture.shape[0] <= 1200, picture.shape
    assert picture.std() > 5, "the chart is blank"
    assert matplotlib.get_backend() == backend, "drawing the chart changed the notebook's matplotlib backend"


def test_a_chart_with_nothing_to_draw_still_says_why():
    from workbench.views import compression_chart, compression_points

    results = _results()
    for v in results["coreml"].variants.values():
        v.error, v.comparison = "not built: the coreml export failed", None
    results["coreml"].comparison = None
    results["coreml"].error = "coreml export failed"
    _, points, missing = compression_points(results, ImageToImage())
    assert [p.label for p in points] == ["onnx fp32", "onnx fp16"]
    assert missing[0] == "coreml fp16: coreml export failed"
    assert len(missing) == 4
    assert _decode(compression_chart(results, ImageToImage())).std() > 5


def test_labels_placed_around_a_crowd_of_points_do_not_overlap():
    from workbench.views import place_labels

    # twelve points in a row two pixels apart (a classifier's variants all at 100% top-1), and two apart
    anchors = [(300 + 2 * i, 200) for i in range(12)] + [(100, 50), (500, 350)]
    sizes = [(110, 10)] * len(anchors)
    bounds = (0, 0, 700, 400)
    corners = place_labels(anchors, sizes, bounds)
    boxes = [(x, y, x + w, y + h) for (x, y), (w, h) in zip(corners, sizes)]
    for i, a in enumerate(boxes):
        assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3], a
        for b in boxes[i + 1:]:
            assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
    # a lone point's label sits right beside it
    x, y = corners[-2]
    assert 100 < x < 120 and abs(y + 5 - 50) <= 1


def test_the_table_has_a_row_per_file_with_the_calibration_warning():
    from workbench.views import compression_table, table_html

    rows = compression_table(_results(top1_agreement=1.0))
    assert [(r["format"], r["variant"]) for r in rows] == [
        ("coreml", "fp16 (uncompressed)"), ("coreml", "linear8"), ("coreml", "int8"), ("coreml", "palettize2"),
        ("onnx", "fp32 (uncompressed)"), ("onnx", "fp16")]
    assert rows[1]["size_mb"] == pytest.approx(600e-6) and rows[1]["ratio"] == pytest.approx(0.6)
    assert rows[1]["calibration"] is None and rows[1]["top1_agreement"] == 1.0
    assert rows[1]["what"] == "8-bit linear weights"
    # what it is, without the images and preprocessing its calibration line names (LiteRT's, ExecuTorch's notes)
    assert rows[2]["what"] == "8-bit weights and activations, ranges calibrated on the 2 images below"
    calibration = rows[2]["calibration"]
    assert calibration.startswith("2 images, gray_raw") and "WARNING: calibrated with" in calibration
    assert rows[3]["error"] == "MIL op conv failed" and rows[3]["passed"] is False and rows[3]["size_mb"] is None
    page = table_html(rows, ["format", "variant", "size_mb", "psnr", "error"])
    assert page.count("<tr") == 7 and ">PSNR dB</th>" in page
    assert ">identical<" in page and ">37.5<" in page and ">-<" in page


# notebook 08's figures (a run of 2026-12-01, Core AI's of 2026-12-04): (variant, KB, top-1 agreement, PSNR dB) per
# format, its file first. 21 variants and 6 files: 15 of them at 100% top-1 between 17 and 50 KB, five files at
# 100-116 KB, the 8-bit variants at 28-48 dB, and the five fp32 files above the PSNR cap (drawn at it, in a row).
_NOTEBOOK_08 = {
    "onnx": [("fp32", 116, 1.0, 126.6), ("int8_dynamic", 43.2, 1.0, 30.7), ("int8", 49.9, 0.667, 10.8),
             ("fp16", 69.3, 1.0, 66.2)],
    "coreml": [("fp16", 58.7, 1.0, 64.7), ("linear8", 36.6, 1, 37.3), ("linear8_block", 35.8, 1, 37.9),
               ("palettize8", 37.6, 1, 45.7), ("palettize6", 30.1, 1, 33.0), ("palettize4", 23.9, .833, 10.0),
               ("palettize2", 17.3, .167, 4.7), ("prune50", 38.6, .167, 7.1), ("int8", 42.5, 1, 36.2)],
    "coreai": [("fp32", 101, 1, 126.1), ("int8_weights", 30.4, 1, 29.5), ("int4_weights", 18.5, 0.5, 3.8),
               ("palettize8", 33.5, 1, 44.4), ("palettize4", 18.6, 1, 17.6)],
    "executorch": [("fp32", 102, 1, 129.7), ("int8", 34.5, 1, 30.3)],
    "mnn": [("fp32", 99.6, 1, 127.4), ("int8_weights", 30.4, 1, 48.1), ("int4_weights", 17.5, 1, 22.4)],
    "litert": [("fp32", 103, 1, 130.2), ("int8_dynamic", 33, 1, 28.9), ("int8_weights", 34.3, 1, 29.5),
               ("int8", 33.5, 1, 29.3)],
}


def _notebook_results(chosen=None):
    from types import SimpleNamespace

    from workbench.compare import Comparison
    from workbench.session import FormatResult, VariantResult

    def comparison(top1, psnr):
        return Comparison("c", [_metrics(psnr, top1_agreement=top1, top5_agreement=1.0)], [])

    results = {}
    for fmt, ((base, kb, top1, psnr), *variants) in _NOTEBOOK_08.items():
        if chosen is not None and fmt not in chosen:
            continue
        r = results[fmt] = FormatResult(fmt, artifact=SimpleNamespace(precision=base, path=None, mappings=()),
                                        comparison=comparison(top1, psnr))
        for name, vkb, vtop1, vpsnr in variants:
            if chosen is None or name in chosen[fmt]:
                r.variants[name] = VariantResult(name, comparison=comparison(vtop1, vpsnr), size_bytes=int(vkb * 1e3),
                                                 base_bytes=int(kb * 1e3))
    return results


@pytest.mark.parametrize("chosen, figure", [
    ({"coreml": ["linear8", "int8"], "onnx": ["int8"]}, None),  # the widget's chart: three variants
    (None, None), (None, "psnr"),  # notebook 08's: 27 files, with clusters at 100% and about 30 dB
])
def test_no_label_of_the_chart_covers_another_or_a_marker(chosen, figure):
    """Issue 22.6: the notebook's charts overlapped labels in their clusters."""
    from workbench.views.chart import LABEL_SIZE, _chart

    fig, drawn = _chart(_notebook_results(chosen), Classification(), figure)

    def overlap(a, b):
        return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))

    for i, label in enumerate(drawn.labels):
        assert drawn.frame[0] <= label[0] and label[2] <= drawn.frame[2], f"label {i} leaves the axes"
        for j, other in enumerate(drawn.labels[i + 1:], i + 1):
            assert overlap(label, other) <= 1, f"labels {i} and {j} overlap"
        for j, marker in enumerate(drawn.markers):
            assert overlap(label, marker) <= 1, f"label {i} covers marker {j}"
    assert LABEL_SIZE * fig.dpi / 72 >= 12, "labels under 12 px high at the chart's own size"
    if chosen is None:  # more points, a larger chart
        assert fig.get_size_inches()[1] > 5.6


@pytest.mark.parametrize("figure", [None, "psnr"])
def test_no_text_of_a_crowded_chart_overlaps_another_and_each_point_is_named(figure):
    """Issue 22 (second pass): with notebook 08's 21 variants the labels of a cluster were pushed apart along long,
    crossing leader lines. Measured as matplotlib renders it: no two texts (labels, numbers, key, legend, ticks,
    titles) overlap, none covers a marker, no leader line is long or runs through a text, every text is 12 px or more at
    the chart's own size, which the notebook and the widget show it at (at most 1000 px wide); each point has
    its label, or a number with its label in the key beside the chart."""
    from matplotlib.text import Text

    from workbench.views import compression_points
    from workbench.views.chart import _chart

    results = _notebook_results()
    fig, drawn = _chart(results, Classification(), figure)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    width, height = fig.canvas.get_width_height()
    assert width <= 1000, f"a {width} px chart is shown narrower than its own size"
    ax = fig.axes[0]
    legend = fig.legends[0]
    texts = [t for t in [*ax.texts, *ax.get_xticklabels(), *ax.get_yticklabels(), ax.xaxis.label, ax.yaxis.label,
                         *fig.texts, *legend.get_texts(), legend.get_title()] if t.get_visible() and t.get_text()]
    boxes = [Text.get_window_extent(t, renderer) for t in texts]  # an annotation's own extent holds its leader

    def overlap(a, b):
        return max(0, min(a.x1, b.x1) - max(a.x0, b.x0)) * max(0, min(a.y1, b.y1) - max(a.y0, b.y0))

    for k, (text, box) in enumerate(zip(texts, boxes)):
        assert 0 <= box.x0 and box.x1 <= width and 0 <= box.y0 and box.y1 <= height, f"{text.get_text()!r} is cut off"
        assert text.get_fontsize() * fig.dpi / 72 >= 12, f"{text.get_text()!r} is under 12 px high"
        for other, other_box in zip(texts[k + 1:], boxes[k + 1:]):
            assert overlap(box, other_box) <= 1, f"{text.get_text()!r} overlaps {other.get_text()!r}"
    labels = ax.texts
    assert len(labels) == 27 == len(drawn.markers), "a point without its label"
    for label, box in zip(labels, boxes):
        for j, (x0, y0, x1, y1) in enumerate(drawn.markers):
            assert overlap(box, type(box).from_extents(x0, y0, x1, y1)) <= 1, f"{label.get_text()!r} covers marker {j}"
        if label.arrow_patch is None:
            continue
        arrow = label.arrow_patch
        (px, py), (qx, qy) = arrow.get_transform().transform_path(arrow.get_path()).vertices[[0, -1]]
        assert math.dist((px, py), (qx, qy)) <= 60, f"{label.get_text()!r} is far from its point"
        along = [(px + (qx - px) * t, py + (qy - py) * t) for t in np.linspace(0.02, 0.98, 49)]
        for other, b in zip(texts, boxes):
            inside = any(b.x0 + 1 < x < b.x1 - 1 and b.y0 + 1 < y < b.y1 - 1 for x, y in along)
            assert other is label or not inside, f"the leader of {label.get_text()!r} runs through {other.get_text()!r}"
    # the numbered points: 1, 2, 3... from left to right, each in the key under its format with its label
    numbers = drawn.numbers
    assert numbers and sorted(numbers.values()) == list(range(1, len(numbers) + 1))
    assert [labels[i].get_text() for i in numbers] == [str(n) for n in numbers.values()]
    xs = [drawn.markers[i][0] for i in sorted(numbers, key=numbers.get)]
    assert xs == sorted(xs), "the numbers do not run from left to right"
    key = [t.get_text().replace("\u2007", " ").strip() for t in legend.get_texts()]
    _, points, _ = compression_points(results, Classification(), figure)
    headings = [k for k, entry in enumerate(key) if entry in results]
    for i, n in numbers.items():
        p = points[i]
        at = next((k for k, entry in enumerate(key) if entry.split("  ")[0] == str(n)), None)
        assert at is not None and key[at].split("  ", 1)[1].startswith(f"{p.variant} ("), (n, p.label, key)
        assert key[max(k for k in headings if k < at)] == p.format, f"{p.label} is not in the key under {p.format}"
    named = [labels[i].get_text() for i in range(len(labels)) if i not in numbers]
    assert all(t.split(" (")[0] in {p.label for p in points} for t in named), named


# -- result tables: one renderer each, HTML and text --------------------------------------------------------------

def _cells(page: str) -> list[list[str]]:
    """An HTML table's rows as lists of cell texts (tags dropped)."""
    import html
    import re

    rows = re.findall(r"<tr[^>]*>(.*?)</tr>", page, flags=re.S)
    return [[html.unescape(" ".join(re.sub(r"<[^>]+>", " ", c).split()))
             for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row, flags=re.S)] for row in rows]


def test_the_parity_table_pads_its_cells_and_shows_the_tasks_own_figure():
    """Issue 22.15: "1.000000-" (cosine ran into top-1) and "paritymax abs" (headers ran together)."""
    from workbench.compare import Comparison
    from workbench.session import FormatResult
    from workbench.views import parity_table

    ok = Comparison("onnx", [_metrics(80.0, top1_agreement=1.0)], [])
    classifier = {"onnx": FormatResult("onnx", comparison=ok, label="ONNX Runtime 1.32"),
                  "coreml": FormatResult("coreml", error="conversion failed: op foo")}
    table = parity_table(classifier, tolerances={"onnx": "1e-4 of scale"}, stale={"onnx"})
    page = table.html()
    head, row, failed = _cells(page)[:3]
    assert head == ["format", "parity", "max abs", "mean abs", "PSNR dB", "cosine", "top-1 agreement",
                    "tolerance (max abs <=)"]
    assert row == ["ONNX ONNX Runtime 1.32", "PASS out of date", "0.1", "0.01", "80.0", "0.990000", "1.000",
                   "1e-4 of scale"]
    assert failed == ["Core ML", "conversion failed: op foo"]
    assert page.count("padding:3px 10px") >= 8 and "white-space:nowrap" in page
    text = table.text().splitlines()
    assert text[0].split("  ")[0] == "format" and "parity  max abs" in text[0]
    for title, value in (("cosine", "0.990000"), ("top-1 agreement", "1.000"), ("PSNR dB", "80.0")):
        # figures right-aligned under their titles, two spaces at least between columns
        assert text[0].index(title) + len(title) == text[2].index(value) + len(value), (title, text[:3])
        assert text[2][text[2].index(value) - 2:text[2].index(value)] == "  "
    assert "  parity: out of date" in text
    image = {"onnx": FormatResult("onnx", comparison=Comparison("onnx", [_metrics(80.0)], []))}
    assert "top-1 agreement" not in parity_table(image).html()


def test_the_compression_view_says_what_each_figure_is_computed_on():
    """Issue 22.3, 22.5, 22.13, 22.14: "vs uncompressed" (not "vs fp32" for an fp16 file), an image model has no
    top-1 columns, the "what" column does not repeat the variant's name, and each row says what its figures
    are computed on."""
    from types import SimpleNamespace

    from workbench.formats.base import ClassProbabilities
    from workbench.views import compression_view

    results = _results()
    results["coreml"].artifact = SimpleNamespace(precision="fp16", path=None, mappings=(
        ClassProbabilities("y", ("a", "b"), softmax=True),))
    results["onnx"].variants["fp16"].artifact = SimpleNamespace(notes=("fp16: float16 weights",), mappings=())
    table = compression_view(results)
    rows = _cells(table.html())
    head = rows[0]
    assert "vs uncompressed" in head and "vs fp32" not in head
    assert not {"top-1 agreement", "top-5 agreement", "mIoU"} & set(head), head  # an image model's figures only
    by_name = {r[0]: dict(zip(head, r)) for r in rows[1:] if len(r) == len(head)}
    assert by_name["Core ML fp16 (uncompressed)"]["vs uncompressed"] == "1.00x"
    core_ml = table.html().split("Core ML fp16 (uncompressed)", 1)[1].split("ONNX", 1)[0]
    assert "compared on: probabilities (the file adds the softmax)" in html.unescape(core_ml)
    # what it is, under its row across the table (as a column it pushed the table past the widget's panel)
    assert "what it is: float16 weights" in table.html() and "fp16: float16" not in table.html()
    assert not {"what it is", "calibration", "compared on"} & set(head), head
    assert "compared on: the model's output" in html.unescape(table.html().split("ONNX fp16", 1)[1])
    assert "text-align:right" not in table.html().split("float16 weights")[0].rsplit("<td", 1)[1]
    classifier = compression_view(_results(top1_agreement=1.0, top5_agreement=1.0))
    assert {"top-1 agreement", "top-5 agreement"} <= set(_cells(classifier.html())[0])
