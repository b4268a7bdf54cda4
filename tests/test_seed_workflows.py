"""Each seed tutorial's workflow carried through the core on small models: export to ONNX, Core ML and
TorchScript; ONNX and TorchScript compared with PyTorch on the sample images (fp32 max abs error at most
1e-4 of the output's range); the Core ML artifact checked in its spec and run by the interpreter (fp16,
within 1e-2 of the output's scale)."""

import json

import numpy as np
import pytest
import torch

from workbench import Preprocess
from workbench.compare import Tolerance
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import PitfallNet, SmallCNN, SuperResolutionNet, UnetGenerator

FP32 = Tolerance(rel=1e-4)
ALL = ("onnx", "coreml", "torchscript")
FP32_COREML = {"coreml": {"precision": "fp32"}}  # so one fp32 tolerance holds for every format


def coreml_spec(artifact):
    import coremltools as ct

    return ct.utils.load_spec(str(artifact.path))


def assert_parity(report, formats=("onnx", "torchscript")):
    for fmt in formats:
        result = report.formats[fmt]
        assert result.error is None, result.error
        assert result.passed, result.comparison.failures
        worst = result.comparison.worst()
        for row in result.comparison.rows:
            assert row.max_abs <= 1e-4 * row.range, (fmt, row)
        assert worst["cosine"] > 0.99999
    coreml = report.formats.get("coreml")
    if coreml is not None:
        assert coreml.error is None, coreml.error
        assert coreml.artifact.path.exists()
        assert coreml.passed, coreml.comparison.failures[:3]


def test_seed000_unet_generator_half_normalization_and_image_output(samples, tmp_path):
    torch.manual_seed(0)
    session = Session(UnetGenerator(num_downs=4).eval(), samples, preprocess=Preprocess.preset("half", size=(64, 64)),
                      task=ImageToImage(output_range=(-1.0, 1.0)))
    report = session.check(ALL, tmp_path, tolerance=FP32, options=FP32_COREML)
    assert_parity(report)
    spec = coreml_spec(report.formats["coreml"].artifact)
    # Normalize(0.5, 0.5) is exactly ImageType(scale=1/(255*0.5), bias=-1): no baking needed.
    pre = json.loads(spec.description.metadata.userDefined["workbench.preprocess"])
    assert pre["scale"] == pytest.approx([1 / 127.5] * 3) and pre["bias"] == pytest.approx([-1.0] * 3)
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.output[0].type.WhichOneof("Type") == "imageType"  # (x+1)*127.5 inside the graph


def test_seed001_classifier_with_labels(samples, tmp_path):
    torch.manual_seed(0)
    labels = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    session = Session(SmallCNN(10).eval(), samples, preprocess=Preprocess.preset("unit", size=(32, 32)),
                      task="classification", labels=labels)
    report = session.check(ALL, tmp_path, tolerance=Tolerance(rel=1e-4, min_top1=1.0), options=FP32_COREML)
    assert_parity(report)
    assert report.formats["onnx"].comparison.worst()["top1_agreement"] == 1.0
    spec = coreml_spec(report.formats["coreml"].artifact)
    assert spec.WhichOneof("Type") == "mlProgram"
    assert list(spec.mlProgram.functions)  # an ML program
    assert spec.description.predictedFeatureName == "classLabel"
    assert spec.description.metadata.userDefined["com.apple.coreml.model.preview.type"] == "imageClassifier"
    # The seed targeted iOS 13: the legacy neural network with a scaler preprocessing.
    legacy = session.export("coreml", tmp_path / "legacy.mlmodel", target="iOS13")
    assert legacy.path.suffix == ".mlmodel"
    assert set(legacy.output_names) == {"classLabel", "classLabel_probs"}  # the same names as the ML program
    nn_spec = coreml_spec(legacy)
    assert list(nn_spec.neuralNetworkClassifier.stringClassLabels.vector) == labels
    scaler = nn_spec.neuralNetworkClassifier.preprocessing[0].scaler
    assert scaler.channelScale == pytest.approx(1 / 255)


@pytest.mark.slow
def test_seed002_deeplabv3_segmentation_random_weights(samples, tmp_path):
    torch.manual_seed(0)
    session = Session("torchvision:deeplabv3_mobilenet_v3_large", samples, weights=None, size=(160, 160))
    assert session.task.name == "segmentation" and "person" in session.task.labels
    assert any("random weights" in n for n in session.notes)
    report = session.check(ALL, tmp_path, tolerance=Tolerance(rel=1e-4), options=FP32_COREML)
    assert_parity(report)
    worst = report.formats["torchscript"].comparison.worst()
    assert worst["miou"] == pytest.approx(1.0) and worst["pixel_agreement"] == pytest.approx(1.0)
    spec = coreml_spec(report.formats["coreml"].artifact)
    assert spec.description.metadata.userDefined["com.apple.coreml.model.preview.type"] == "imageSegmenter"


@pytest.mark.parametrize("upsample", ["bilinear", "bilinear_ac", "nearest", "transpose"])
def test_seed003_upsampling_and_ceil_mode(samples, tmp_path, upsample):
    torch.manual_seed(0)
    # 75x75 makes ceil_mode matter: 75 -> 38 with ceil_mode, 37 without.
    model = PitfallNet(upsample=upsample, ceil_mode=True).eval()
    session = Session(model, samples, preprocess=Preprocess.preset("imagenet", size=(75, 75)), task="image")
    report = session.check(ALL, tmp_path, tolerance=FP32, options=FP32_COREML)
    assert_parity(report)


def test_seed004_super_resolution_on_y_channel(samples, tmp_path):
    # the tutorial's trained weights: a random-weight net's output lies far outside (0, 1), which the workbench
    # now refuses as an image output of that range instead of clipping it silently
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(samples.parent / "notebooks/weights/super_resolution_x3.pth",
                                     map_location="cpu", weights_only=True))
    pre = Preprocess.preset("gray", size=(64, 64))
    session = Session(model.eval(), samples, preprocess=pre, task=ImageToImage(output_range=(0.0, 1.0)))
    assert session.outputs["output"].shape == (len(session.images), 1, 192, 192)
    report = session.check(ALL, tmp_path, tolerance=FP32, options=FP32_COREML)
    assert_parity(report)
    # The tutorial's own check: the exported model matches PyTorch to 3 decimals.
    np.testing.assert_almost_equal(session.outputs["output"], session.run("onnx")["output"], decimal=3)
    spec = coreml_spec(report.formats["coreml"].artifact)
    image = spec.description.input[0].type.imageType
    assert image.colorSpace == image.GRAYSCALE
    assert spec.description.output[0].type.imageType.colorSpace == image.GRAYSCALE
