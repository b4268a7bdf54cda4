"""Preprocess against torchvision and PIL on real photos, the Core ML ImageType fit, and its invariants."""

import dataclasses
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from torchvision import transforms

from workbench.errors import WorkbenchError
from workbench.preprocess import CAFFE_MEAN_BGR, IMAGENET_MEAN, IMAGENET_STD, PRESETS, Preprocess

PIXELS = np.arange(256, dtype=np.float64)  # every value a pixel channel can take


def _photo(samples, name="coffee.jpg") -> Image.Image:
    return Image.open(samples / name).convert("RGB")


def _pixels(img: Image.Image) -> np.ndarray:
    """A PIL image as the workbench's pixels: float32 (1, 3, H, W) RGB in 0-255."""
    return np.asarray(img, dtype=np.float32).transpose(2, 0, 1)[None]


def _brute_error(scale, bias, fit_scale, fit_bias) -> float:
    """Worst |x * fit_scale + fit_bias[c] - (x * scale[c] + bias[c])| over x in 0..255 and channels c."""
    return max(float(np.max(np.abs(PIXELS * fit_scale + fb - (PIXELS * sc + b))))
               for sc, b, fb in zip(scale, bias, fit_bias))


# -- against the references ------------------------------------------------------------------------

@pytest.mark.parametrize("mean,std", [(IMAGENET_MEAN, IMAGENET_STD), ((0.5,) * 3, (0.5,) * 3)],
                         ids=["imagenet", "half"])
def test_from_normalize_matches_torchvision_on_a_photo(samples, mean, std):
    img = _photo(samples)
    expected = transforms.Normalize(mean, std)(transforms.ToTensor()(img)).numpy()
    got = Preprocess.from_normalize(mean, std).apply(_pixels(img))
    assert got.shape == (1, 3, img.height, img.width)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got[0], expected, atol=1e-5, rtol=0,
                               err_msg="x/255 then (x - mean)/std differs from ToTensor + Normalize")


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_builds_and_applies(name):
    pre = Preprocess.preset(name)
    assert pre.name == name
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, 3, 5, 7)).astype(np.float32)
    out = pre.apply(pixels)
    channels = 1 if name.startswith("gray") else 3
    assert pre.channels == channels
    assert out.shape == (2, channels, 5, 7)
    assert out.dtype == np.float32
    assert np.isfinite(out).all()


def test_gray_raw_luma_matches_pil_convert_L(samples):
    img = _photo(samples, "astronaut.jpg")
    luma = Preprocess.preset("gray_raw").apply(_pixels(img))
    expected = np.asarray(img.convert("L"), dtype=np.float64)
    assert luma.shape == (1, 1, img.height, img.width)
    # PIL rounds its luma to whole grey levels; 1e-4 is float32 slack in the weighted sum
    np.testing.assert_allclose(luma[0, 0], expected, atol=0.5 + 1e-4, rtol=0)


def test_gray_preset_takes_one_channel_pixels_as_they_are():
    pixels = np.full((1, 1, 2, 2), 51.0, np.float32)
    np.testing.assert_allclose(Preprocess.preset("gray").apply(pixels), 0.2, atol=1e-7, rtol=0)


def test_caffe_flips_to_bgr_and_subtracts_the_bgr_mean():
    rgb = np.array([10.0, 20.0, 30.0], np.float32).reshape(1, 3, 1, 1)
    out = Preprocess.preset("caffe").apply(rgb).ravel()
    expected = np.array([30.0, 20.0, 10.0]) - np.array(CAFFE_MEAN_BGR)
    np.testing.assert_allclose(out, expected, atol=1e-4, rtol=0)


def test_rgb_preset_repeats_a_grayscale_image_on_three_channels():
    pixels = np.full((1, 1, 2, 2), 255.0, np.float32)
    out = Preprocess.preset("unit").apply(pixels)
    assert out.shape == (1, 3, 2, 2)
    np.testing.assert_allclose(out, 1.0, atol=1e-7, rtol=0)


def test_apply_rejects_pixels_of_the_wrong_shape():
    with pytest.raises(WorkbenchError, match=r"pixels must be \(N, 3, H, W\).*got shape \(3, 4, 4\)"):
        Preprocess.preset("unit").apply(np.zeros((3, 4, 4)))


# -- Core ML ImageType fit --------------------------------------------------------------------------

@pytest.mark.parametrize("name,scale,bias,layout", [
    ("unit", 1 / 255, (0.0, 0.0, 0.0), "RGB"),
    ("half", 1 / 127.5, (-1.0, -1.0, -1.0), "RGB"),
    ("raw", 1.0, (0.0, 0.0, 0.0), "RGB"),
    ("caffe", 1.0, tuple(-m for m in CAFFE_MEAN_BGR), "BGR"),
    ("gray", 1 / 255, (0.0,), "G"),
    ("gray_raw", 1.0, (0.0,), "G"),
])
def test_imagetype_fit_is_exact_for_a_scalar_scale(name, scale, bias, layout):
    fit = Preprocess.preset(name).imagetype_fit()
    assert fit.exact
    assert fit.max_error == 0.0
    assert fit.scale == scale
    assert fit.bias == bias
    assert fit.color_layout == layout
    assert fit.describe().startswith("exact: ImageType(scale=")


def test_imagetype_fit_for_imagenet_reports_the_brute_force_worst_case():
    pre = Preprocess.preset("imagenet")
    fit = pre.imagetype_fit()
    assert not fit.exact
    assert fit.describe().startswith("not exact")
    brute = _brute_error(pre.scale, pre.bias, fit.scale, fit.bias)
    np.testing.assert_allclose(fit.max_error, brute, rtol=1e-6, atol=0)

    # Apple's guide: one std of 0.226 for all channels and bias -mean/std per channel
    apple_scale = 1 / (0.226 * 255)
    apple_bias = [-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]
    apple = _brute_error(pre.scale, pre.bias, apple_scale, apple_bias)
    assert fit.max_error < apple, f"best fit {fit.max_error:.4f} is not better than Apple's {apple:.4f}"


def test_imagetype_fit_reports_the_error_of_nearly_equal_scales():
    # within float32 precision of one scale: "exact", and max_error still tells the truth
    pre = Preprocess.from_normalize(0.5, (0.5, 0.5 * (1 + 5e-7), 0.5))
    fit = pre.imagetype_fit()
    assert fit.exact
    assert fit.max_error > 0
    np.testing.assert_allclose(fit.max_error, _brute_error(pre.scale, pre.bias, fit.scale, fit.bias),
                               rtol=1e-6, atol=0)


def test_with_imagetype_returns_self_when_exact():
    pre = Preprocess.preset("half")
    assert pre.with_imagetype() is pre


def test_with_imagetype_approximation_uses_one_scale_and_drops_mean_std():
    pre = Preprocess.preset("imagenet", size=(224, 224))
    approx = pre.with_imagetype()
    fit = pre.imagetype_fit()
    assert approx.scale == (fit.scale,) * 3
    assert approx.bias == fit.bias
    assert approx.mean is None and approx.std is None
    assert approx.size == (224, 224)
    assert approx.name == "imagenet (scalar approximation)"
    assert "Normalize" not in approx.describe()


# -- validation -------------------------------------------------------------------------------------

@pytest.mark.parametrize("scale,match", [
    (float("nan"), r"scale \[nan, nan, nan\] is not finite"),
    (float("inf"), r"scale \[inf, inf, inf\] is not finite"),
    (0.0, r"scale \[0, 0, 0\] contains 0.*use a non-zero scale"),
    ((1.0, 1.0), r"scale has 2 values but the input has 3 channel\(s\); give 1 or 3"),
])
def test_bad_scale_is_refused(scale, match):
    with pytest.raises(WorkbenchError, match=match):
        Preprocess(scale=scale, bias=0.0)


def test_non_finite_bias_is_refused():
    with pytest.raises(WorkbenchError, match=r"bias \[0, nan, 0\] is not finite"):
        Preprocess(scale=1.0, bias=(0.0, float("nan"), 0.0))


def test_bias_with_the_wrong_channel_count_is_refused_for_grayscale():
    with pytest.raises(WorkbenchError, match=r"bias has 3 values but the input has 1 channel\(s\)"):
        Preprocess(scale=1.0, bias=(0.0, 0.0, 0.0), grayscale=True)


@pytest.mark.parametrize("std", [(0.2, 0.0, 0.2), (0.2, float("inf"), 0.2)])
def test_zero_or_infinite_std_is_refused(std):
    with pytest.raises(WorkbenchError, match=r"std \[.*\] must be finite and non-zero"):
        Preprocess.from_normalize(IMAGENET_MEAN, std)


def test_mean_with_the_wrong_channel_count_is_refused():
    with pytest.raises(WorkbenchError, match=r"mean has 2 values but the input has 3 channel"):
        Preprocess.from_normalize((0.5, 0.5), 0.5)


def test_unknown_preset_lists_the_presets():
    with pytest.raises(WorkbenchError, match=r"unknown preset 'imagenette'; choose one of: unit, half, imagenet"):
        Preprocess.preset("imagenette")


@pytest.mark.parametrize("kw,match", [
    ({"size": (224,)}, r"input size \(224,\) must be \(height, width\)"),
    ({"size": (0, 224)}, r"input size \(0, 224\) must be \(height, width\) with positive values"),
    ({"fit": "zoom"}, r"fit 'zoom' is not one of 'crop', 'letterbox', 'stretch'"),
])
def test_bad_size_or_fit_is_refused(kw, match):
    with pytest.raises(WorkbenchError, match=match):
        Preprocess.preset("unit", **kw)


# -- values and translations ------------------------------------------------------------------------

def test_to_dict_from_dict_round_trip():
    pre = Preprocess.preset("imagenet", size=(224, 224), resize=256, fit="letterbox")
    data = pre.to_dict()
    assert data["mean"] == list(IMAGENET_MEAN)
    assert data["size"] == [224, 224]
    assert Preprocess.from_dict(data) == pre


def test_from_dict_refuses_unknown_fields():
    data = {**Preprocess.preset("unit").to_dict(), "colour": "RGB"}
    with pytest.raises(WorkbenchError, match=r"unknown preprocessing fields \['colour'\]"):
        Preprocess.from_dict(data)


def test_replace_of_scale_drops_mean_and_std():
    pre = Preprocess.preset("imagenet")
    changed = pre.replace(scale=1 / 255)
    assert changed.scale == (1 / 255,) * 3
    assert changed.bias == pre.bias
    assert changed.mean is None and changed.std is None
    assert changed.name == "custom"
    # a change that is not scale or bias keeps the provenance
    assert pre.replace(size=(10, 10)).mean == IMAGENET_MEAN


def test_preset_with_a_scale_drops_mean_and_std():
    assert Preprocess.preset("imagenet", scale=1 / 255).mean is None


@pytest.mark.parametrize("name", list(PRESETS))
def test_mean_norm_gives_the_same_affine_map(name):
    pre = Preprocess.preset(name)
    mn = pre.mean_norm()
    assert mn["norm"] == pre.scale
    for mean, norm, scale, bias in zip(mn["mean"], mn["norm"], pre.scale, pre.bias):
        np.testing.assert_allclose((PIXELS - mean) * norm, PIXELS * scale + bias, atol=1e-9, rtol=1e-9)


def test_as_module_computes_apply_on_pixels_in_channel_order():
    pre = Preprocess.preset("imagenet")
    pixels = np.random.default_rng(1).uniform(0, 255, size=(1, 3, 4, 4)).astype(np.float32)
    with torch.no_grad():
        got = pre.as_module()(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, pre.apply(pixels), atol=1e-5, rtol=0)


def test_preprocess_is_frozen():
    pre = Preprocess.preset("unit")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pre.scale = (1.0, 1.0, 1.0)
    assert pre.scale == (1 / 255,) * 3


# -- properties ---------------------------------------------------------------------------------------

unit = st.floats(0.0, 1.0, allow_nan=False)
positive = st.floats(0.05, 1.0, allow_nan=False)
means = st.tuples(unit, unit, unit)
stds = st.tuples(positive, positive, positive)


@settings(max_examples=50, deadline=None)
@given(mean=means, std=stds)
def test_property_from_normalize_round_trips(mean, std):
    pre = Preprocess.from_normalize(mean, std)
    assert Preprocess.from_dict(pre.to_dict()) == pre


@settings(max_examples=50, deadline=None)
@given(mean=means, std=stds)
def test_property_imagetype_max_error_is_the_worst_case(mean, std):
    pre = Preprocess.from_normalize(mean, std)
    fit = pre.imagetype_fit()
    brute = _brute_error(pre.scale, pre.bias, fit.scale, fit.bias)
    assert brute <= fit.max_error + 1e-9
    assert math.isclose(brute, fit.max_error, rel_tol=1e-6, abs_tol=1e-12)


@settings(max_examples=50, deadline=None)
@given(mean=means, std=stds)
def test_property_imagetype_approximation_stays_within_max_error(mean, std):
    pre = Preprocess.from_normalize(mean, std)
    pixels = np.broadcast_to(PIXELS.astype(np.float32).reshape(1, 1, 1, 256), (1, 3, 1, 256))
    diff = np.abs(pre.with_imagetype().apply(pixels) - pre.apply(pixels)).max()
    # 1e-4: float32 rounding of x * scale + bias with biases up to mean/std = 20
    assert diff <= pre.imagetype_fit().max_error + 1e-4


# -- timm's pretrained_cfg --------------------------------------------------------------------------------

def test_from_timm_reads_mean_std_size_interpolation_and_crop_pct():
    cfg = {"architecture": "mobilevit_xs", "tag": "cvnets_in1k", "input_size": (3, 256, 256),
           "interpolation": "bicubic", "crop_pct": 0.9, "crop_mode": "center", "mean": (0.0, 0.0, 0.0),
           "std": (1.0, 1.0, 1.0)}
    pre = Preprocess.from_timm(cfg)
    assert pre.size == (256, 256) and pre.resize == 284 and pre.interpolation == "bicubic" and pre.fit == "crop"
    assert pre.scale == pytest.approx((1 / 255,) * 3) and pre.bias == pytest.approx((0.0,) * 3)
    assert pre.name == "timm mobilevit_xs.cvnets_in1k pretrained_cfg"
    assert Preprocess.from_timm({**cfg, "crop_pct": 1.0}).resize is None  # resize == size: no separate resize
    assert Preprocess.from_timm({**cfg, "crop_mode": "squash"}).fit == "stretch"


def test_interpolation_is_checked():
    with pytest.raises(WorkbenchError, match="interpolation 'nearest' is not one of 'bilinear', 'bicubic'"):
        Preprocess.preset("unit", interpolation="nearest")
