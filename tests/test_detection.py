"""Detectors: YOLO- and SSD-style heads built in code, one Ultralytics model from its yaml, box-level agreement."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from workbench import Preprocess
from workbench.session import Session
from workbench.tasks import Detection, Detections, make_task
from workbench.tasks.detection import match, mean_ap

SIZE = 64


class YoloHead(nn.Module):
    """A YOLOv8/11-style head: (1, 4 + C, N) with cx, cy, w, h in input pixels and C sigmoid class scores, one
    box per cell of an 8x8 grid (stride 8)."""

    def __init__(self, classes=3):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 16, 3, stride=8, padding=1))
        self.box = nn.Conv2d(16, 4, 1)
        self.cls = nn.Conv2d(16, classes, 1)
        ys, xs = torch.meshgrid(torch.arange(SIZE // 8), torch.arange(SIZE // 8), indexing="ij")
        self.register_buffer("grid", torch.stack([xs, ys]).reshape(1, 2, -1).float() * 8 + 4)

    def forward(self, x):
        f = self.features(x)
        b = self.box(f).flatten(2)
        xy = self.grid + torch.tanh(b[:, :2]) * 4
        wh = 8 + 16 * torch.sigmoid(b[:, 2:])
        scores = torch.sigmoid(4 * self.cls(f).flatten(2))
        return torch.cat([xy, wh, scores], 1), {"feats": [f]}  # a side output, as Ultralytics' has


class SsdHead(nn.Module):
    """An SSD-style head: box deltas (1, N, 4) and class logits (1, N, 1 + C) over fixed anchors."""

    def __init__(self, classes=2):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=8, padding=1), nn.ReLU())
        self.box = nn.Conv2d(8, 4, 1)
        self.cls = nn.Conv2d(8, classes + 1, 1)

    def forward(self, x):
        f = self.features(x)
        return self.box(f).flatten(2).transpose(1, 2), 3 * self.cls(f).flatten(2).transpose(1, 2)


def ssd_anchors():
    ys, xs = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    return np.stack([xs.ravel() * 8 + 4, ys.ravel() * 8 + 4, np.full(64, 16), np.full(64, 16)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def yolo(samples):
    s = Session(YoloHead(), samples, preprocess=Preprocess.preset("unit", size=(SIZE, SIZE)),
                task=Detection(score_threshold=0.5), labels=["cat", "dog", "bird"])
    s.export("onnx")
    yield s
    s.close()


def test_a_yolo_head_is_decoded_and_onnx_finds_the_same_objects(yolo):
    assert yolo.task.name == "detection" and yolo.task.decoder_for(yolo.outputs) == "yolov8"
    boxes = yolo.task.detect(yolo.outputs)
    assert sum(len(b) for b in boxes) >= 8  # enough objects to lose one
    assert any("'output_1' is a dict, not a tensor: left out" in n for n in yolo.notes)
    c = yolo.compare("onnx", yolo.run("onnx"))
    w = c.worst()
    assert c.passed, c.failures
    assert w["det_precision"] == 1.0 and w["det_recall"] == 1.0 and w["det_class_flips"] == 0
    assert w["det_map"] == pytest.approx(1.0, abs=1e-6) and w["det_box_diff"] < 1e-3 and w["det_score_diff"] < 1e-4


def test_a_format_that_loses_a_box_fails_and_says_which(yolo):
    """A perturbed runner output: the best box of the first image scores nothing, another box moves off."""
    out = {k: v.copy() for k, v in yolo.run("onnx").items()}
    ref = yolo.task.detect(yolo.outputs)[0]
    pred = out["output_0"][0]  # (4 + C, N)
    centers = pred[:2].T
    best = int(np.argmin(np.abs(centers - (ref.boxes[0, :2] + ref.boxes[0, 2:]) / 2).sum(1)))
    pred[4:, best] = 0.0  # PyTorch's first box: gone
    c = yolo.compare("onnx", out)
    w = c.worst()
    assert not c.passed
    assert w["det_recall"] < 1.0 and w["det_lost"] == 1 and w["det_precision"] == 1.0
    lost = yolo.labels[int(ref.classes[0])]
    assert any(f"onnx on {yolo.images[0].name}: not the same objects: 1 of PyTorch's {len(ref)} boxes lost ({lost})"
               in f for f in c.failures), c.failures
    from workbench.views.boxes import side_by_side

    picture = side_by_side(yolo, {"onnx": out}, image=0)
    assert picture.lost["onnx"] == 1 and picture.extra["onnx"] == 0
    assert "1 lost" in picture.captions["onnx"]
    assert picture.image.size[0] >= 2 * SIZE  # PyTorch beside the format


def test_an_ssd_head_with_anchors(samples):
    task = Detection(decoder="ssd", anchors=ssd_anchors(), score_threshold=0.45)
    s = Session(SsdHead(), samples, preprocess=Preprocess.preset("unit", size=(SIZE, SIZE)), task=task)
    try:
        found = s.task.detect(s.outputs)
        assert sum(len(f) for f in found) > 0
        zero = {"output_0": np.zeros((1, 64, 4), np.float32), "output_1": np.zeros((1, 64, 3), np.float32)}
        boxes, _ = s.task.candidates(zero)[0]  # zero deltas are the anchors themselves
        assert np.allclose(boxes[9], [4, 4, 20, 20])
        report = s.check(["onnx"])
        assert report.passed and report.formats["onnx"].comparison.worst()["det_recall"] == 1.0
    finally:
        s.close()


def test_yolov5_decoding_and_one_nms_for_both_sides():
    # two overlapping boxes of one class (the lower is suppressed) and one of another class
    p = np.zeros((1, 3, 5 + 2), np.float32)
    p[0, 0] = [20, 20, 10, 10, 0.9, 0.9, 0.1]
    p[0, 1] = [21, 20, 10, 10, 0.8, 0.9, 0.1]
    p[0, 2] = [40, 40, 8, 8, 0.9, 0.0, 0.7]
    task = make_task("detection", labels=["a", "b"])
    assert task.decoder_for({"p": p}) == "yolov5"
    d = task.detect({"p": p})[0]
    assert len(d) == 2 and list(d.classes) == [0, 1]
    assert np.allclose(d.boxes[0], [15, 15, 25, 25]) and d.scores[0] == pytest.approx(0.81)


def test_box_agreement_figures():
    ref = Detections(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32), np.array([0.9, 0.8], np.float32),
                     np.array([0, 1]))
    same = match(ref, ref)
    assert same["precision"] == same["recall"] == same["map"] == 1.0 and same["box_diff"] == 0
    shifted = Detections(ref.boxes + [[2, 0, 2, 0], [0, 0, 0, 0]], ref.scores, ref.classes)  # IoU 0.67
    m = match(ref, shifted)
    assert m["recall"] == 1.0 and m["box_diff"] == 2 and m["map"] < 1.0
    flipped = Detections(ref.boxes, ref.scores, np.array([1, 1]))
    f = match(ref, flipped)
    assert f["class_flips"] == 1 and f["recall"] == 0.5 and f["lost"] == [0] and f["extra"] == [0]
    assert mean_ap(ref, Detections(ref.boxes[:0], ref.scores[:0], ref.classes[:0])) == 0.0


def test_a_borderline_box_is_neither_lost_nor_extra():
    ref = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.501], np.float32), np.array([0]))
    below = Detections(ref.boxes, np.array([0.499], np.float32), ref.classes)
    task = Detection(score_threshold=0.5)
    m = match(ref.above(0.5), below.above(0.5), ref, below.above(0.5 * (1 - task.score_margin)))
    assert m["lost"] == [] and m["extra"] == []
    # and the report says so: "0 boxes for PyTorch's 1" alone read as a lost box beside recall 1.000
    from workbench.cli import _detection_lines
    from workbench.tasks.detection import summary

    line = _detection_lines(summary([m]))[0]
    assert "0 boxes for PyTorch's 1 (and 1 just under the score threshold, matched there: borderline" in line


@pytest.fixture(scope="module")
def ultralytics_session(samples):
    if importlib.util.find_spec("ultralytics") is None:  # not importorskip: the workbench imports it, quietly
        pytest.skip("ultralytics is not installed (pip install -e '.[detect]')")
    s = Session("ultralytics:yolov8n.yaml", samples, size=(160, 160))
    yield s
    s.close()


def test_an_ultralytics_yaml_is_a_detector_with_random_weights_offline(ultralytics_session, tmp_path):
    s = ultralytics_session
    assert s.task.name == "detection" and s.task.decoder_for(s.outputs) == "yolov8"
    assert s.training_preprocess.fit == "letterbox" and s.training_preprocess.scale[0] == pytest.approx(1 / 255)
    assert s.labels[:2] == ("person", "bicycle") and len(s.labels) == 80
    assert any("random weights" in n for n in s.notes)
    report = s.check(["onnx"], tmp_path)
    onnx = report.formats["onnx"]
    assert onnx.passed, onnx.error or onnx.comparison.failures
    assert onnx.comparison.worst()["det_recall"] == 1.0


PHONE_HOME = textwrap.dedent("""
    import json, os, sys
    events = []
    def audit(event, args):
        if event in ("socket.connect", "socket.getaddrinfo", "subprocess.Popen", "urllib.Request"):
            events.append([event, str(args[:2])])
            if event == "socket.connect":
                raise ConnectionRefusedError("this test refuses the network")
    sys.addaudithook(audit)
    from workbench.models import load_model
    import torch
    m = load_model("ultralytics:yolov8n.yaml")
    with torch.no_grad():
        m.module(torch.rand(1, 3, 64, 64))
    from ultralytics.utils import SETTINGS
    json.dump({"events": events, "sync": SETTINGS["sync"], "file": str(SETTINGS.file)}, open(sys.argv[1], "w"))
""")


def test_ultralytics_sends_nothing_and_writes_no_settings_in_home(tmp_path):
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (pip install -e '.[detect]')")
    script, out = tmp_path / "phone_home.py", tmp_path / "out.json"
    script.write_text(PHONE_HOME)
    env = {k: v for k, v in os.environ.items() if not k.startswith("YOLO_")}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"))
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    # no connection, no name lookup, no process but ctypes' library lookup (find_library runs ldconfig -p)
    assert [e for e in doc["events"] if "ldconfig" not in e[1]] == [] and doc["sync"] is False
    assert not (tmp_path / "home").exists(), "Ultralytics wrote its settings in the user's home"
    assert proc.stdout == ""  # no model summary


def test_core_ml_with_nms_inside_finds_pytorchs_boxes_in_the_interpreter(yolo, tmp_path):
    """Issue 26.4: the pipeline apps ship for Vision (the model, then Core ML's NonMaximumSuppression), run off
    macOS by the interpreter (NMS included), gives the boxes PyTorch's outputs give after the same NMS."""
    import coremltools as ct
    from PIL import Image

    from workbench import CoreMLInterpreter
    from workbench.formats.coreml.nms import detections as nms_detections
    from workbench.formats.coreml.nms import export_with_nms

    artifact = export_with_nms(yolo.spec(), tmp_path / "yolo_nms.mlpackage", precision="fp32")
    models = ct.models.MLModel(str(artifact.path), skip_model_load=True).get_spec().pipeline.models
    assert [m.WhichOneof("Type") for m in models] == ["mlProgram", "nonMaximumSuppression"]
    assert list(models[1].nonMaximumSuppression.stringClassLabels.vector) == ["cat", "dog", "bird"]
    interp = CoreMLInterpreter(str(artifact.path))
    for i, ref in enumerate(yolo.task.detect(yolo.outputs)):
        px = np.clip(yolo.pixels[i], 0, 255).round().astype(np.uint8).transpose(1, 2, 0)
        boxes, scores, classes = nms_detections(interp.predict({artifact.input_name: Image.fromarray(px, "RGB")}))
        m = match(ref, Detections(boxes, scores, classes))
        assert len(ref) > 0 and m["lost"] == [] and m["extra"] == [], (i, m)
        assert m["box_diff"] < 1e-3 and m["class_flips"] == 0


def test_the_check_runs_core_ml_with_nms_inside_and_compares_its_boxes(samples, tmp_path, capsys):
    """`--nms True`: Core ML's file is the pipeline with NonMaximumSuppression, and the check judges its boxes
    (PyTorch's after the same threshold and NMS) as a detector's: the same objects, at fp16."""
    from workbench.cli import main

    path = tmp_path / "yolo.py"
    path.write_text(f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    "from test_detection import YoloHead\n\n\ndef build():\n    return YoloHead()\n")
    code = main(["check", f"{path}:build", "--images", str(samples), "--to", "coreml", "--size", str(SIZE),
                 str(SIZE), "--task", "detection", "--score-threshold", "0.5", "--nms", "True", "--json",
                 "--out", str(tmp_path / "out")])
    doc = json.loads(capsys.readouterr().out)
    coreml = doc["formats"]["coreml"]
    assert code == 0 and coreml["passed"] is True, coreml
    assert coreml["det_recall"] == 1.0 and coreml["det_precision"] == 1.0 and coreml["det_reference_boxes"] > 0
    assert any(n.startswith("NMS inside (Core ML NonMaximumSuppression") for n in coreml["notes"]), coreml["notes"]
    if sys.platform != "darwin":  # the interpreter says what it ran: both models, the program in fp16
        assert coreml["runtime"] == "Core ML interpreter (pipeline: ML program + NMS, fp16)", coreml["runtime"]


def test_a_box_only_under_the_threshold_on_both_sides_costs_no_map():
    """yolov8n's ONNX file once showed precision and recall 1.000 beside mAP 0.000: on an image where PyTorch's
    one box scored just under the threshold, the format's borderline box counted against an empty ground truth."""
    ref_low = Detections(np.array([[0, 0, 10, 10]], np.float32), np.array([0.49], np.float32), np.array([0]))
    none = Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
    m = match(none, none, ref_low, ref_low)
    assert m["lost"] == [] and m["extra"] == [] and m["map"] == 1.0
