"""Core ML interpreter parity on full models: torchvision's and the notebooks', on the sample photos.

At fp32 (exported and run) every output is within 1e-4 of its scale and top-1 agrees on every photo.
As declared (fp16) the outputs agree with the fp32 program within the fp16 tolerance, 1e-2 of the scale:
fp16 keeps 11 significant bits (relative rounding 2**-11 ~ 4.9e-4 per tensor), and the error compounds
over tens of layers; 1e-2 is what fp16 parity means in practice (workbench.compare.DEFAULT_TOLERANCES).
"""

import logging

import pytest
import torch
import torchvision

from workbench import ImageToImage, Preprocess
from workbench.compare import DEFAULT_TOLERANCES, compare
from workbench.formats.coreml.runner import CoreMLRunner
from workbench.images import SAMPLE_IMAGES
from workbench.session import Session
from workbench.tasks import read_labels
from workbench.zoo import PitfallNet, SmallCNN, SuperResolutionNet, UnetGenerator

pytest.importorskip("coremltools")
logging.getLogger("coremltools").setLevel(logging.ERROR)
NOTEBOOKS = SAMPLE_IMAGES.parent / "notebooks"
CLASSIFIERS = ["mobilenet_v2", "mobilenet_v3_large", "resnet18", "squeezenet1_1", "efficientnet_b0"]
SEGMENTERS = ["deeplabv3_mobilenet_v3_large", "fcn_resnet50"]


def _torchvision(name):
    torch.manual_seed(0)
    if name in SEGMENTERS:
        return getattr(torchvision.models.segmentation, name)(weights=None, weights_backbone=None).eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def _check_fp32(session, **options):
    session.export("coreml", precision="fp32", **options)
    runner = session.runner("coreml")
    result = session.compare("coreml", session.run("coreml"))
    assert runner.label.startswith("Core ML interpreter") and runner.label.endswith("fp32)")
    assert result.passed, result.failures[:3]
    worst = result.worst()
    if "top1_agreement" in worst:
        assert worst["top1_agreement"] == 1.0
    return result


@pytest.mark.slow
@pytest.mark.parametrize("name", CLASSIFIERS + SEGMENTERS)
def test_torchvision_models_at_fp32(name):
    """Random weights (offline); logits, not a classifier's softmax, so the comparison is not flattened."""
    session = Session(_torchvision(name), SAMPLE_IMAGES, preprocess=Preprocess.preset("imagenet"),
                      task="segmentation" if name in SEGMENTERS else "classification")
    _check_fp32(session)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet18", "squeezenet1_1", "deeplabv3_mobilenet_v3_large"])
def test_fp16_as_declared_agrees_with_fp32(name):
    """Not mobilenet_v2/v3 or efficientnet_b0 with random weights: their logits are 1e-8 to 1e-13, below
    fp16's smallest subnormal (6e-8), so fp16 flushes them to zero (as Core ML would; trained weights give
    logits of order 1)."""
    session = Session(_torchvision(name), sorted(SAMPLE_IMAGES.glob("*.jpg"))[:4],
                      preprocess=Preprocess.preset("imagenet"),
                      task="segmentation" if "deeplab" in name else "classification")
    fp32 = CoreMLRunner(session.export("coreml", precision="fp32")).run(session.pixels)
    half = session.export("coreml", precision="fp16")
    runner = CoreMLRunner(half)
    outputs = runner.run(session.pixels)
    assert runner.label.endswith("fp16)")
    result = compare(fp32, outputs, task=session.task, tolerance=DEFAULT_TOLERANCES["fp16"], name="fp16")
    assert result.passed, result.failures[:3]
    assert result.worst()["max_abs"] > 0  # fp16 really ran


def test_notebook_01_super_resolution():
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(NOTEBOOKS / "weights/super_resolution_x3.pth", weights_only=True))
    session = Session(model.eval(), SAMPLE_IMAGES, preprocess=Preprocess.preset("gray", size=(96, 96)),
                      task=ImageToImage(output_range=(0.0, 1.0)))
    _check_fp32(session)


def test_notebook_02_unet():
    torch.manual_seed(0)
    session = Session(UnetGenerator().eval(), SAMPLE_IMAGES, preprocess=Preprocess.preset("half", size=(128, 128)),
                      task=ImageToImage(output_range=(-1.0, 1.0)))
    _check_fp32(session)


@pytest.mark.parametrize("target", ["iOS16", "iOS13"])
def test_notebook_03_digits_classifier(target):
    labels = read_labels(NOTEBOOKS / "weights/digits_labels.txt")
    model = SmallCNN(num_classes=10, in_channels=1, width=16)
    model.load_state_dict(torch.load(NOTEBOOKS / "weights/digits_cnn.pth", weights_only=True))
    session = Session(model.eval(), NOTEBOOKS / "digit_images", preprocess=Preprocess.preset("gray", size=(32, 32)),
                      task="classification", labels=labels)
    result = _check_fp32(session, target=target)  # a Core ML classifier: probabilities in label order
    assert result.worst()["top1_agreement"] == 1.0


@pytest.mark.parametrize("upsample", ["bilinear", "bilinear_ac", "nearest", "transpose"])
def test_notebook_06_pitfalls(upsample):
    torch.manual_seed(0)
    session = Session(PitfallNet(upsample=upsample, ceil_mode=True).eval(), SAMPLE_IMAGES,
                      preprocess=Preprocess.preset("imagenet", size=(75, 75)), task="image")
    _check_fp32(session)
