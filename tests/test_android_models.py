"""The notebooks' models through the four Android formats at fp32 (issue 15): notebook 02's U-Net generator (tanh,
"half" preprocessing) and notebook 04's DeepLabV3, small. Each model is checked once per module
(`Session.check`: exported with the preprocessing inside, run, compared); every format must match PyTorch
within 1e-4 of the output's range, and the segmentation's pixels must agree. Notebook 01's super-resolution net
goes through the same formats in tests/formats/test_conformance.py.
"""

import numpy as np
import pytest
import torch

from conftest import SAMPLES
from workbench import ImageToImage, Preprocess, load_model
from workbench.session import Session
from workbench.zoo import UnetGenerator

FORMATS = ("executorch", "ncnn", "mnn", "litert")
FP32 = 1e-4  # of the reference's range
IMAGES = [SAMPLES / name for name in ("astronaut.jpg", "coffee.jpg", "rocket.jpg")]


def spread(session, fmt) -> float:
    """The worst |converted - PyTorch| over every output, as a fraction of the reference's range (the reference as
    the artifact gives it: an image output clipped to its range)."""
    outputs, expected = session.run(fmt), session.expected(fmt)
    return max(float(np.abs(outputs[k] - expected[k]).max() / np.ptp(v)) for k, v in session.outputs.items())


def deeplab():
    """torchvision's deeplabv3_mobilenet_v3_large, random weights, BatchNorm statistics from a batch of noise.

    With the default statistics (mean 0, variance 1) the random network's map is constant: every pixel the same
    class, the logits varying by 1e-8 across an image, so parity would hold whatever a format did. Statistics
    measured on the network's own activations carry the image through to logits that vary across it."""
    torch.manual_seed(0)
    loaded = load_model("torchvision:deeplabv3_mobilenet_v3_large", weights="none")
    norms = [m for m in loaded.module.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a plain average over what it sees
    loaded.module.train()
    with torch.no_grad():
        loaded.module(torch.randn(2, 3, 128, 128))  # the size the tests run at
    loaded.module.eval()
    return loaded


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    torch.manual_seed(0)
    s = Session(UnetGenerator(num_downs=4).eval(), IMAGES, preprocess=Preprocess.preset("half", size=(64, 64)),
                task=ImageToImage(output_range=(-1.0, 1.0)))
    report = s.check(FORMATS, tmp_path_factory.mktemp("unet"))
    yield s, report
    s.close()


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory):
    s = Session(deeplab(), IMAGES, size=(128, 128))
    report = s.check(FORMATS, tmp_path_factory.mktemp("deeplab"))
    yield s, report
    s.close()


@pytest.mark.parametrize("fmt", FORMATS)
def test_unet_generator_matches_pytorch_at_fp32(fmt, unet):
    s, report = unet
    result = report.formats[fmt]
    assert result.error is None, f"{fmt}: {result.error}"
    assert result.artifact.precision == "fp32" and result.artifact.preprocess == s.training_preprocess
    assert result.passed, f"{fmt}: {result.comparison.failures}"
    assert s.run(fmt)["output"].shape == s.outputs["output"].shape == (3, 3, 64, 64)
    off = spread(s, fmt)
    assert off <= FP32, f"{fmt} U-Net fp32 off by {off:.2e} of the output's range (tolerance {FP32:g})"


@pytest.mark.slow
def test_the_segmentation_reference_is_not_a_constant_map(segmentation):
    s, _ = segmentation
    masks = s.task.mask(s.outputs["out"])
    assert all(len(np.unique(m)) > 1 for m in masks), [np.unique(m).tolist() for m in masks]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_deeplabv3_matches_pytorch_at_fp32_pixel_for_pixel(fmt, segmentation):
    s, report = segmentation
    result = report.formats[fmt]
    assert result.error is None, f"{fmt}: {result.error}"
    assert result.artifact.precision == "fp32"
    assert result.passed, f"{fmt}: {result.comparison.failures}"
    off = spread(s, fmt)
    assert off <= FP32, f"{fmt} DeepLabV3 fp32 off by {off:.2e} of the logits' range (tolerance {FP32:g})"
    worst = result.comparison.worst()
    assert worst["pixel_agreement"] >= 0.9999 and worst["miou"] >= 0.999, \
        f"{fmt}: pixel agreement {worst['pixel_agreement']:.5f}, mIoU {worst['miou']:.5f}"
