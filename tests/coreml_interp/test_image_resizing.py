"""ops/image_resizing.py: bilinear and nearest resizing against the sampling grids written in the MIL docs."""

import numpy as np
import pytest
from _mil import IOS15, IOS16, assert_close, mb, rand, run_op

# interpolation weights in fp32 against float64
ATOL, RTOL = 1e-5, 1e-5
MODES = ["STRICT_ALIGN_CORNERS", "ALIGN_CORNERS", "DEFAULT", "OFFSET_CORNERS", "UNALIGN_CORNERS"]


def grid(n_in, n_out, mode):
    """resize_bilinear's grid_point[i] for each sampling_mode, from the iOS15 docstring."""
    i = np.arange(n_out, dtype=np.float64)
    if mode in ("STRICT_ALIGN_CORNERS", "ALIGN_CORNERS"):
        if n_out == 1:
            g = np.array([0.0 if mode == "STRICT_ALIGN_CORNERS" else (n_in - 1) / 2])
        else:
            g = i * (n_in - 1) / (n_out - 1)
    elif mode == "DEFAULT":
        g = i * ((n_in - n_in / n_out) / (n_out - 1) if n_out > 1 else 0.0)
    elif mode == "OFFSET_CORNERS":
        delta = max(1, n_in - 1) / n_out
        g = 0.5 * delta + i * delta
    elif mode == "UNALIGN_CORNERS":
        g = i * n_in / n_out + 0.5 * n_in / n_out - 0.5
    else:  # ASYMMETRIC: upsample_bilinear with align_corners and half_pixel_centers both False
        g = i * n_in / n_out
    return np.clip(g, 0, n_in - 1)


@pytest.mark.parametrize("n_out, mode, expected", [
    (5, "UNALIGN_CORNERS", [0., 0.1, 0.5, 0.9, 1.]),
    (5, "ALIGN_CORNERS", [0., 0.25, 0.5, 0.75, 1.]),
    (5, "DEFAULT", [0., 0.4, 0.8, 1., 1.]),
    (5, "OFFSET_CORNERS", [0.1, 0.3, 0.5, 0.7, 0.9]),
    (6, "UNALIGN_CORNERS", [0., 0., 0.33, 0.67, 1., 1.]),
    (6, "DEFAULT", [0., 0.33, 0.67, 1., 1., 1.]),
    (6, "OFFSET_CORNERS", [0.08, 0.25, 0.42, 0.58, 0.75, 0.92]),
])
def test_reference_grid_reproduces_the_docstring_examples(n_out, mode, expected):
    np.testing.assert_allclose(grid(2, n_out, mode), expected, atol=0.005)


def np_bilinear(x, height, width, mode):
    def along(a, axis, g):
        low = np.floor(g).astype(int)
        high = np.minimum(low + 1, a.shape[axis] - 1)
        w = (g - low).reshape([-1 if d == axis % a.ndim else 1 for d in range(a.ndim)])
        return np.take(a, low, axis) * (1 - w) + np.take(a, high, axis) * w

    y = along(x.astype(np.float64), -2, grid(x.shape[-2], height, mode))
    return along(y, -1, grid(x.shape[-1], width, mode))


@pytest.mark.parametrize("size", [(7, 9), (3, 2), (1, 1), (4, 1)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", MODES)
def test_resize_bilinear_sampling_modes(mode, size):
    x = rand(1, 2, 4, 5)
    out = run_op("resize_bilinear", lambda x: mb.resize_bilinear(
        x=x, target_size_height=size[0], target_size_width=size[1], sampling_mode=mode), x)
    assert_close(out, np_bilinear(x, *size, mode), ATOL, RTOL, f"{mode} to {size}")


@pytest.mark.parametrize("shape", [(3, 4, 5), (1, 2, 2, 4, 5)], ids=["rank3", "rank5"])
def test_resize_bilinear_other_ranks(shape):
    x = rand(*shape)
    out = run_op("resize_bilinear", lambda x: mb.resize_bilinear(
        x=x, target_size_height=6, target_size_width=3, sampling_mode="UNALIGN_CORNERS"), x)
    assert_close(out, np_bilinear(x, 6, 3, "UNALIGN_CORNERS"), ATOL, RTOL)


@pytest.mark.parametrize("scale", [(2, 3), (1.5, 2.5)], ids=["integer", "fractional"])
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("opset", [IOS15, IOS16], ids=["iOS15", "iOS16"])
def test_upsample_bilinear_align_corners(opset, align_corners, scale):
    x = rand(1, 2, 4, 5)
    out = run_op("upsample_bilinear", lambda x: mb.upsample_bilinear(
        x=x, scale_factor_height=scale[0], scale_factor_width=scale[1], align_corners=align_corners), x, opset=opset)
    height, width = int(np.floor(4 * scale[0])), int(np.floor(5 * scale[1]))
    # align_corners=True is STRICT_ALIGN_CORNERS; False is UNALIGN_CORNERS (the scale recomputed from sizes)
    mode = "STRICT_ALIGN_CORNERS" if align_corners else "UNALIGN_CORNERS"
    assert_close(out, np_bilinear(x, height, width, mode), ATOL, RTOL, f"align_corners={align_corners}")


@pytest.mark.parametrize("half_pixel_centers, mode", [(True, "UNALIGN_CORNERS"), (False, "ASYMMETRIC")])
def test_ios16_upsample_bilinear_half_pixel_centers(half_pixel_centers, mode):
    x = rand(1, 2, 3, 4)
    out = run_op("upsample_bilinear", lambda x: mb.upsample_bilinear(
        x=x, scale_factor_height=2.0, scale_factor_width=1.5, align_corners=False,
        half_pixel_centers=half_pixel_centers), x, opset=IOS16)
    assert_close(out, np_bilinear(x, 6, 6, mode), ATOL, RTOL, f"half_pixel_centers={half_pixel_centers}")


def test_asymmetric_grid_is_tf_default():
    # align_corners=False, half_pixel_centers=False is TF's legacy resize = resize_bilinear's DEFAULT grid
    assert np.allclose(grid(4, 6, "ASYMMETRIC"), grid(4, 6, "DEFAULT"))


@pytest.mark.parametrize("scale", [(2, 3), (1, 2)])
def test_upsample_nearest_neighbor_repeats(scale):
    x = rand(1, 2, 3, 4)
    out = run_op("upsample_nearest_neighbor", lambda x: mb.upsample_nearest_neighbor(
        x=x, scale_factor_height=scale[0], scale_factor_width=scale[1]), x)
    np.testing.assert_array_equal(out, x.repeat(scale[0], -2).repeat(scale[1], -1))


@pytest.mark.parametrize("shape", [(2, 3, 4), (1, 2, 3, 4)], ids=["rank3", "rank4"])
def test_resize_nearest_neighbor_integer_ratios(shape):
    # Integer upsampling only: the asymmetric (floor(i * in / out)) and half-pixel nearest grids agree
    # there, and the MIL docs do not say which one resize_nearest_neighbor uses for other ratios.
    x = rand(*shape)
    out = run_op("resize_nearest_neighbor", lambda x: mb.resize_nearest_neighbor(
        x=x, target_size_height=shape[-2] * 2, target_size_width=shape[-1] * 3), x)
    np.testing.assert_array_equal(out, x.repeat(2, -2).repeat(3, -1))


def test_crop():
    x = rand(1, 2, 6, 7)
    out = run_op("crop", lambda x: mb.crop(x=x, crop_height=[1, 2], crop_width=[0, 3]), x)
    np.testing.assert_array_equal(out, x[..., 1:4, 0:4])
