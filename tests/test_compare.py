"""compare: metrics per output and image, tolerances, pass/fail and the failure lines."""

import json
import math

import numpy as np
import pytest

from workbench.compare import DEFAULT_TOLERANCES, Comparison, ReferenceFigures, Tolerance, compare, failed
from workbench.errors import WorkbenchError
from workbench.tasks import Classification, Segmentation


def _logits(n=3, k=5, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, k))


def _one_hot_scores(mask: np.ndarray, classes: int) -> np.ndarray:
    """Scores (1, K, H, W) whose argmax over K is `mask` (H, W)."""
    return (np.arange(classes).reshape(classes, 1, 1) == mask).astype(np.float64)[None]


def test_identical_outputs_pass_with_perfect_metrics():
    ref = {"logits": _logits()}
    result = compare(ref, {"logits": ref["logits"].copy()}, name="onnx")
    assert result.passed
    assert result.failures == []
    assert len(result.rows) == 3
    for row in result.rows:
        assert row.max_abs == 0.0
        assert row.mean_abs == 0.0
        assert row.psnr == math.inf
        assert row.cosine == pytest.approx(1.0, abs=1e-12)
        assert row.passed


@pytest.mark.parametrize("factor,passed", [(1 - 1e-6, True), (1 + 1e-6, False)])
def test_limit_is_atol_plus_rel_times_range(factor, passed):
    ref = np.array([[0.0, 1.0, 4.0, 2.0]])  # range 4
    tol = Tolerance(rel=1e-3, atol=1e-2)
    limit = 1e-2 + 1e-3 * 4.0
    cand = ref.copy()
    cand[0, 3] += limit * factor  # not the min or the max: the range stays 4
    result = compare({"y": ref}, {"y": cand}, tolerance=tol, images=["cat.jpg"], name="coreml")
    row = result.rows[0]
    assert row.range == 4.0
    assert row.limit == pytest.approx(limit, rel=1e-12)
    assert row.max_abs == pytest.approx(limit * factor, rel=1e-9)
    assert row.passed is passed
    assert result.passed is passed
    if passed:
        assert result.failures == []
    else:
        assert len(result.failures) == 1
        line = result.failures[0]
        assert line.startswith("coreml output 'y' on cat.jpg: max abs")
        assert "atol 0.01 + rel 0.001 x scale 4" in line


def test_near_constant_outputs_are_judged_by_their_magnitude():
    """A random-weight classifier's probabilities are ~1/K everywhere: their range is ~0, their size is not."""
    ref = np.full((1, 1000), 1e-3)
    ref[0, 0] += 1e-9
    fp16_like = ref * (1 + 4e-4)  # fp16 rounding of 0.001 is ~5e-7 absolute
    result = compare({"p": ref}, {"p": fp16_like}, tolerance=Tolerance(rel=1e-2))
    assert result.passed, result.failures
    assert result.rows[0].limit == pytest.approx(1e-5, rel=1e-3)
    assert not compare({"p": ref}, {"p": ref * 1.02}, tolerance=Tolerance(rel=1e-2)).passed


def test_tolerance_per_output_with_a_default():
    ref = {"tight": np.zeros((1, 4)), "loose": np.zeros((1, 4))}
    ref["tight"][0, 0] = ref["loose"][0, 0] = 1.0  # range 1
    cand = {k: v + 0.05 for k, v in ref.items()}
    tols = {"loose": Tolerance(rel=0.1), "": Tolerance(rel=0.01)}
    result = compare(ref, cand, tolerance=tols)
    by_output = {r.output: r for r in result.rows}
    assert by_output["loose"].passed
    assert by_output["loose"].limit == pytest.approx(0.1, rel=1e-12)
    assert not by_output["tight"].passed
    assert by_output["tight"].limit == pytest.approx(0.01, rel=1e-12)
    assert len(result.failures) == 1
    assert "output 'tight'" in result.failures[0]


def test_tolerance_mapping_without_default_falls_back_to_fp32():
    ref = {"a": np.array([[0.0, 1.0]]), "b": np.array([[0.0, 1.0]])}
    result = compare(ref, ref, tolerance={"a": Tolerance(rel=0.5)})
    by_output = {r.output: r for r in result.rows}
    assert by_output["a"].limit == pytest.approx(0.5, rel=1e-12)
    assert by_output["b"].limit == pytest.approx(DEFAULT_TOLERANCES["fp32"].rel, rel=1e-12)


def test_outputs_are_matched_by_position_when_names_differ():
    ref = {"logits": np.array([[0.0, 1.0]]), "features": np.array([[5.0, 6.0, 7.0]])}
    cand = {"var_12": np.array([[0.0, 1.0]]), "var_40": np.array([[5.0, 6.0, 9.0]])}
    result = compare(ref, cand, tolerance=Tolerance(rel=1e-6))
    assert [r.output for r in result.rows] == ["logits", "features"]
    assert result.rows[0].passed
    assert result.rows[1].max_abs == pytest.approx(2.0, abs=1e-12)
    assert "output 'features'" in result.failures[0]


def test_output_count_mismatch_names_both_sides():
    with pytest.raises(WorkbenchError, match=r"onnx has outputs \['x'\]; the reference has \['a', 'b'\]"):
        compare({"a": np.zeros((1, 2)), "b": np.zeros((1, 2))}, {"x": np.zeros((1, 2))}, name="onnx")


def test_shape_mismatch_names_the_output_and_both_shapes():
    with pytest.raises(WorkbenchError, match=r"output 'logits': tflite gives shape \(2, 4\), the reference \(2, 5\)"):
        compare({"logits": np.zeros((2, 5))}, {"logits": np.zeros((2, 4))}, name="tflite")


def test_n_k_against_n_k_1_1_is_reshaped_and_compared():
    ref = _logits(2, 4)
    cand = ref.reshape(2, 4, 1, 1).copy()
    cand[1, 2, 0, 0] += 0.5
    result = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1e-6))
    assert result.rows[0].passed
    assert result.rows[1].max_abs == pytest.approx(0.5, abs=1e-12)
    assert not result.rows[1].passed


def test_image_names_must_match_the_batch():
    with pytest.raises(WorkbenchError, match=r"1 image names for 2 images in output 'y'"):
        compare({"y": np.zeros((2, 3))}, {"y": np.zeros((2, 3))}, images=["a.jpg"])


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_candidate_fails(bad):
    ref = np.array([[0.0, 1.0, 2.0]])
    cand = ref.copy()
    cand[0, 1] = bad
    result = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1.0), images=["rocket.jpg"])
    assert not result.passed
    assert result.rows[0].max_abs == math.inf
    assert result.rows[0].psnr == -math.inf
    assert result.failures == ["candidate output 'y' on rocket.jpg: non-finite values"]
    # rows hold Python values: the CLI writes them as JSON
    assert json.loads(json.dumps(result.to_dict()))["rows"][0]["passed"] is False


def _flipped_logits():
    """Three images; the candidate's top-1 differs from the reference's on the second one only."""
    ref = np.array([[3.0, 1.0, 0.0], [2.0, 1.9, 0.0], [0.0, 1.0, 3.0]])
    cand = ref.copy()
    cand[1] = [1.9, 2.0, 0.0]
    return ref, cand


def test_classification_top1_agreement():
    ref, cand = _flipped_logits()
    result = compare({"logits": ref}, {"logits": cand}, task=Classification(), tolerance=Tolerance(rel=1.0),
                     images=["a.jpg", "b.jpg", "c.jpg"])
    assert result.passed  # no minimum asked for
    assert [r.task["top1_agreement"] for r in result.rows] == [1.0, 0.0, 1.0]
    assert result.worst()["top1_agreement"] == pytest.approx(2 / 3, abs=1e-4)
    assert result.worst()["top5_agreement"] == 1.0


def test_min_top1_fails_below_the_fraction_of_agreeing_images():
    ref, cand = _flipped_logits()
    names = ["a.jpg", "b.jpg", "c.jpg"]
    strict = compare({"logits": ref}, {"logits": cand}, task=Classification(), images=names,
                     tolerance=Tolerance(rel=1.0, min_top1=0.9))
    assert not strict.passed
    assert [r.passed for r in strict.rows] == [True, False, True]
    assert strict.failures == ["candidate output 'logits': top-1 agreement 67% < 90% over 3 images (differs on b.jpg)"]

    # the minimum is a fraction of the images, not a requirement on each one
    lenient = compare({"logits": ref}, {"logits": cand}, task=Classification(), images=names,
                      tolerance=Tolerance(rel=1.0, min_top1=0.6))
    assert lenient.passed


def test_segmentation_pixel_agreement_and_miou():
    ref_mask = np.array([[0, 0, 1, 1], [2, 2, 2, 2]])
    cand_mask = np.array([[0, 1, 1, 1], [2, 2, 2, 0]])
    ref, cand = _one_hot_scores(ref_mask, 3), _one_hot_scores(cand_mask, 3)
    # IoU per class: 0 -> 1/3, 1 -> 2/3, 2 -> 3/4
    expected_miou = (1 / 3 + 2 / 3 + 3 / 4) / 3

    metrics = Segmentation().metrics(ref, cand)
    assert metrics["pixel_agreement"] == pytest.approx(6 / 8, abs=1e-12)
    assert metrics["miou"] == pytest.approx(expected_miou, abs=1e-12)

    outputs_ref = {"out": ref, "aux": ref}
    outputs_cand = {"out": cand, "aux": cand}
    result = compare(outputs_ref, outputs_cand, task=Segmentation(), tolerance=Tolerance(rel=1.0))
    by_output = {r.output: r for r in result.rows}
    assert by_output["out"].task["miou"] == pytest.approx(expected_miou, abs=1e-12)
    assert by_output["aux"].task == {}  # task metrics only on the main output
    assert result.passed

    strict = compare(outputs_ref, outputs_cand, task=Segmentation(), images=["coffee.jpg"],
                     tolerance=Tolerance(rel=1.0, min_miou=0.9))
    assert not strict.passed
    assert strict.failures == ["candidate output 'out' on coffee.jpg: mIoU 0.583 < 0.900"]


def test_worst_takes_max_of_errors_and_min_of_psnr():
    ref = np.array([[0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    cand = ref.copy()
    cand[0, 1] += 0.1
    cand[1, 2] += 0.3
    result = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1.0))
    worst = result.worst()
    assert worst["max_abs"] == pytest.approx(0.3, abs=1e-12)
    assert worst["max_abs"] == max(r.max_abs for r in result.rows)
    assert worst["psnr"] == min(r.psnr for r in result.rows)
    # PSNR of the worse image: peak 3 (the range), MSE 0.3^2 / 4
    assert worst["psnr"] == pytest.approx(10 * math.log10(9 / (0.09 / 4)), abs=1e-9)
    assert worst["cosine"] == min(r.cosine for r in result.rows)


def test_comparison_to_dict_keys():
    ref, cand = _flipped_logits()
    data = compare({"logits": ref}, {"logits": cand}, task=Classification(), tolerance=Tolerance(rel=1.0)).to_dict()
    assert {"passed", "error", "failures", "rows", "max_abs", "mean_abs", "max_rel", "psnr", "cosine",
            "top1_agreement", "top5_agreement"} <= set(data)
    assert data["passed"] is True
    assert set(data["rows"][0]) == {"output", "image", "max_abs", "mean_abs", "max_rel", "psnr", "cosine",
                                    "range", "limit", "passed", "task"}


def test_failed_comparison_does_not_pass():
    result = failed("coreml", "conversion failed at op 'upsample_bicubic2d'")
    assert isinstance(result, Comparison)
    assert not result.passed
    assert result.error == "conversion failed at op 'upsample_bicubic2d'"
    assert result.worst() == {}
    assert result.to_dict()["passed"] is False


def test_batched_figures_equal_one_image_at_a_time():
    """compare() takes every image's figures in one pass over the batch; each must equal the textbook
    formula on that image alone, including an all-zero image and one with NaN."""
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(5, 3, 7, 9)).astype(np.float32)
    cand = ref + rng.normal(scale=1e-3, size=ref.shape).astype(np.float32)
    ref[2] = cand[2] = 0.0
    cand[3, 0, 0, 0] = np.nan
    cand[4] = ref[4]
    result = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1e-3))
    for i, row in enumerate(result.rows):
        r, c = ref[i].ravel().astype(np.float64), cand[i].ravel().astype(np.float64)
        if not np.isfinite(c).all():
            assert (row.max_abs, row.psnr, row.cosine, row.passed) == (math.inf, -math.inf, 0.0, False)
            continue
        d = np.abs(r - c)
        rng_i = r.max() - r.min()
        # differences are taken in float32, as the outputs come; sums accumulate in float64
        assert row.max_abs == pytest.approx(d.max(), rel=1e-6) and row.mean_abs == pytest.approx(d.mean(), rel=1e-6)
        assert row.range == rng_i and row.limit == pytest.approx(1e-3 * max(rng_i, np.abs(r).max()), rel=1e-12)
        mse = np.mean(d ** 2)
        assert row.psnr == (math.inf if mse == 0 else pytest.approx(10 * math.log10(rng_i ** 2 / mse), rel=1e-6))
        norms = np.linalg.norm(r) * np.linalg.norm(c)
        assert row.cosine == pytest.approx(1.0 if norms == 0 else np.dot(r, c) / norms, abs=1e-12)
        assert row.max_rel == pytest.approx((d / np.maximum(np.abs(r), 1e-6 * max(rng_i, 1e-12))).max(), rel=1e-6)


def test_cosine_is_exact_for_far_apart_and_tiny_outputs():
    """The dot product comes from |ref|^2 + |cand|^2 - |ref - cand|^2 only where that does not cancel: an
    orthogonal, an opposite, a tiny and a huge candidate each get the textbook cosine."""
    rng = np.random.default_rng(2)
    ref = rng.normal(size=(1, 5000))
    ortho = rng.normal(size=(1, 5000))
    ortho -= (ortho @ ref.T) / (ref @ ref.T) * ref
    cases = [ortho, -ref, 1e-9 * ref + 1e-12 * ortho, 1e9 * ref + ortho, ref + 1e-3 * ortho]
    for cand in cases:
        row = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1.0)).rows[0]
        want = float(np.dot(ref[0], cand[0]) / (np.linalg.norm(ref) * np.linalg.norm(cand)))
        assert row.cosine == pytest.approx(want, abs=1e-12)


def test_reference_figures_given_once_change_nothing():
    rng = np.random.default_rng(3)
    ref = {"y": rng.normal(size=(3, 2, 8, 8)).astype(np.float32)}
    cand = {"y": ref["y"] + rng.normal(scale=1e-2, size=(3, 2, 8, 8)).astype(np.float32)}
    figures = {"y": ReferenceFigures.of(ref["y"])}
    assert compare(ref, cand, reference_figures=figures).to_dict() == compare(ref, cand).to_dict()


def test_finite_float64_values_whose_squares_overflow_are_finite():
    ref = np.full((1, 4), 1e200)
    cand = ref * (1 + 1e-9)
    row = compare({"y": ref}, {"y": cand}, tolerance=Tolerance(rel=1e-6)).rows[0]
    assert row.passed and math.isfinite(row.max_abs)


def test_a_classifiers_probabilities_keep_pytorchs_top_class_when_its_scores_nearly_tie():
    """A format that adds the softmax is compared with softmax(PyTorch's logits): in float32 that rounds scores
    2e-9 apart to one value, so PyTorch's top class became class 0 and a format answering class 0 on every
    image showed top-1 agreement 1 (a random-weight mobilenet_v2's logits span about 1e-9)."""
    from workbench.formats.base import ClassProbabilities

    logits = np.full((1, 1000), 0.01, np.float32)
    logits[0, 417] += 2e-9
    assert logits.argmax() == 417
    expected = ClassProbabilities("output", softmax=True).expected(logits)
    assert expected.argmax() == 417 and abs(expected.sum() - 1) < 1e-12
