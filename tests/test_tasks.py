"""Tasks: what an output means (classification, segmentation, image) and reading labels."""

import numpy as np
import pytest

from workbench.errors import WorkbenchError
from workbench.tasks import Classification, ImageToImage, Segmentation, Task, make_task, read_labels, softmax


def _logits() -> np.ndarray:
    return np.array([[2.0, -1.0, 0.5, 4.0], [-3.0, 1.0, 0.0, 0.2]])


# -- classification -------------------------------------------------------------------------------------

def test_is_logits_tells_logits_from_probabilities():
    task = Classification()
    assert task.is_logits(_logits())
    assert not task.is_logits(softmax(_logits()))
    # in [0, 1] but not summing to 1: still scores, not probabilities
    assert task.is_logits(np.array([[0.2, 0.3, 0.1]]))


def test_softmax_setting_overrides_the_guess():
    assert Classification(softmax=False).is_logits(_logits()) is False
    assert Classification(softmax=True).is_logits(softmax(_logits())) is True


def test_probabilities_sum_to_one():
    for scores in (_logits(), softmax(_logits())):
        probs = Classification().probabilities(scores)
        assert probs.shape == (2, 4)
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-12, rtol=0)
        assert (probs >= 0).all()
    # already probabilities: returned as they are, not softmaxed twice
    p = softmax(_logits())
    np.testing.assert_allclose(Classification().probabilities(p), p, atol=1e-12, rtol=0)


def test_top_returns_labels_in_order_with_probabilities():
    task = Classification(labels=("cat", "dog", "fish", "bird"), top_k=3)
    top = task.top(_logits())
    probs = softmax(_logits())
    assert [label for label, _ in top[0]] == ["bird", "cat", "fish"]
    assert [label for label, _ in top[1]] == ["dog", "bird", "fish"]
    np.testing.assert_allclose([p for _, p in top[0]], probs[0, [3, 0, 2]], atol=1e-12, rtol=0)
    assert task.top(_logits(), k=1) == [[("bird", pytest.approx(probs[0, 3], abs=1e-12))],
                                        [("dog", pytest.approx(probs[1, 1], abs=1e-12))]]


def test_top_without_labels_names_classes_by_index_and_caps_k():
    top = Classification(top_k=10).top(_logits())
    assert [label for label, _ in top[0]] == ["3", "0", "2", "1"]


def test_label_count_mismatch_is_refused():
    with pytest.raises(WorkbenchError, match=r"3 labels for 4 classes; the labels file must have one line per class"):
        Classification(labels=("a", "b", "c")).top(_logits())


def test_classification_metrics_on_a_batch():
    ref = _logits()
    cand = ref.copy()
    cand[1] = [-3.0, 0.1, 0.0, 0.2]  # top-1 moves from class 1 to class 3; class 1 stays in the top 5
    metrics = Classification().metrics(ref, cand)
    assert metrics["top1_agreement"] == 0.5
    assert metrics["top5_agreement"] == 1.0
    assert metrics["topk_overlap"] == 1.0


# -- segmentation -----------------------------------------------------------------------------------------

def test_segmentation_main_output_prefers_out():
    outputs = {"aux": None, "out": None}
    assert Segmentation().main_output(outputs) == "out"
    assert Segmentation(output="aux").main_output(outputs) == "aux"
    assert Segmentation().main_output({"logits": None, "other": None}) == "logits"


def test_main_output_that_does_not_exist_is_refused():
    with pytest.raises(WorkbenchError, match=r"the task expects an output 'out'; the model has \['logits'\]"):
        Classification(output="out").main_output({"logits": None})


def test_segmentation_mask_is_the_argmax_over_classes():
    scores = np.zeros((1, 3, 2, 2))
    scores[0, 0, 0, 0] = scores[0, 1, 0, 1] = scores[0, 2, 1, 0] = scores[0, 2, 1, 1] = 1.0
    mask = Segmentation.mask(scores)
    assert mask.shape == (1, 2, 2)
    np.testing.assert_array_equal(mask[0], [[0, 1], [2, 2]])


# -- image to image -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("output_range,deprocess", [
    ((0, 1), (255.0, 0.0)), ((-1, 1), (127.5, 127.5)), ((0, 255), (1.0, 0.0)),
])
def test_deprocess(output_range, deprocess):
    scale, bias = ImageToImage(output_range=output_range).deprocess
    assert scale == pytest.approx(deprocess[0], abs=1e-12)
    assert bias == pytest.approx(deprocess[1], abs=1e-12)


def test_to_images_gives_uint8_nhwc():
    out = np.zeros((2, 3, 4, 5))
    out[0, 0] = -1.0
    out[0, 1] = 0.0
    out[0, 2] = 1.0
    out[1] = 2.0  # beyond the range: clipped
    images = ImageToImage(output_range=(-1, 1)).to_images(out)
    assert images.dtype == np.uint8
    assert images.shape == (2, 4, 5, 3)
    np.testing.assert_array_equal(images[0, 0, 0], [0, 128, 255])  # 127.5 rounds half up
    assert (images[1] == 255).all()


@pytest.mark.parametrize("output_range", [(1, 1), (1, 0), (0, float("inf")), (0, 1, 2)])
def test_bad_output_range_is_refused(output_range):
    with pytest.raises(WorkbenchError, match=r"output_range .* must be \(low, high\) with low < high"):
        ImageToImage(output_range=output_range)


# -- make_task ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,cls", [("classification", Classification), ("segmentation", Segmentation),
                                      ("image", ImageToImage)])
def test_make_task_by_name(name, cls):
    task = make_task(name)
    assert type(task) is cls
    assert task.name == name


def test_make_task_passes_labels_and_options():
    task = make_task("classification", labels=["a", "b"], top_k=1)
    assert task.labels == ("a", "b")
    assert task.top_k == 1
    assert make_task("generic").name == "generic"


@pytest.mark.parametrize("shape,name", [
    ((2, 1000), "classification"), ((1, 21, 8, 8), "segmentation"), ((1, 3, 8, 8), "image"),
    ((1, 1, 8, 8), "image"), ((2, 7, 4), "generic"),
])
def test_make_task_guesses_from_the_output_shape(shape, name):
    task = make_task(None, outputs={"y": np.zeros(shape)})
    assert task.name == name
    assert isinstance(task, Task)


def test_unknown_task_is_refused_with_the_choices():
    with pytest.raises(WorkbenchError, match=r"unknown task 'keypoints'; choose one of classification, segmentation"):
        make_task("keypoints")


# -- labels files -----------------------------------------------------------------------------------------

def test_read_labels_reads_one_label_per_line(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("tench\ngoldfish\r\n great white shark \n\n  \n", encoding="utf-8")
    assert read_labels(path) == ["tench", "goldfish", "great white shark"]


@pytest.mark.parametrize("text", ["", "\n\n", "  \n \n"])
def test_empty_labels_file_is_refused(tmp_path, text):
    path = tmp_path / "labels.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(WorkbenchError, match=r"labels file .*labels.txt is empty; write one class name per line"):
        read_labels(path)


def test_missing_labels_file_is_refused(tmp_path):
    with pytest.raises(WorkbenchError, match=r"cannot read labels file .*missing.txt"):
        read_labels(tmp_path / "missing.txt")


def test_repeated_labels_are_told_apart_or_refused(tmp_path):
    """A Core ML classifier maps each label to one probability: a repeated name shifts every one after it."""
    from workbench.tasks import distinct_labels

    assert distinct_labels(["crane", "cat", "crane", "crane"]) == ["crane", "cat", "crane (2)", "crane (3)"]
    path = tmp_path / "labels.txt"
    path.write_text("crane\ncat\ncrane\n")
    with pytest.raises(WorkbenchError, match=r"names 'crane' twice \(lines 1 and 3\)"):
        read_labels(path)


def test_a_models_own_labels_are_distinct():
    from workbench import load_model

    loaded = load_model("torchvision:mobilenet_v2", weights="none")
    assert len(set(loaded.labels)) == len(loaded.labels) == 1000
