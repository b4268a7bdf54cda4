"""ops/image_resizing.py: bilinear and nearest resizing against the sampling grids written in the MIL docs."""

import numpy as np
import pytest
from _mil import IOS15, IOS16, IOS17, assert_close, mb, rand, run_op

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


@pytest.mark.parametrize("mode", ["DEFAULT", "ALIGN_CORNERS", "UNALIGN_CORNERS"])
@pytest.mark.parametrize("shape, dims", [([1, 7, 9], 2), ([9], 1), ([0, 5], 2)], ids=["two-axes", "last-axis",
                                                                                       "zero-keeps"])
def test_ios17_resize_linear(mode, shape, dims):
    x = rand(1, 2, 4, 5)
    out = run_op("resize", lambda x: mb.resize(x=x, shape=np.array(shape, np.int32), resized_dims=np.uint32(dims),
                                               interpolation_mode="LINEAR", sampling_mode=mode), x, opset=IOS17)
    height = x.shape[2] if dims == 1 or shape[-2] == 0 else shape[-2]
    assert_close(out, np_bilinear(x, height, shape[-1], mode), ATOL, RTOL, f"resize {shape} {mode}")


def test_ios17_resize_nearest():
    x = rand(1, 2, 4, 5)
    out = run_op("resize", lambda x: mb.resize(x=x, shape=np.array([6, 10], np.int32), resized_dims=np.uint32(2),
                                               interpolation_mode="NEAREST_NEIGHBOR"), x, opset=IOS17)
    rows, cols = (np.arange(6) * 4 // 6), (np.arange(10) * 5 // 10)
    assert_close(out, x[:, :, rows][:, :, :, cols], 0, 0)


def np_crop(image, box, th, tw):
    """TF crop_and_resize (ALIGN_CORNERS): th x tw points from corner pixel (h0, w0) to (h1, w1), zero outside."""
    h0, w0, h1, w1 = box
    out = np.zeros((image.shape[0], th, tw))
    for i, j in np.ndindex(th, tw):
        y = h0 + i * (h1 - h0) / (th - 1)
        x = w0 + j * (w1 - w0) / (tw - 1)
        if not (0 <= y <= image.shape[1] - 1 and 0 <= x <= image.shape[2] - 1):
            continue
        y0, x0 = int(np.floor(y)), int(np.floor(x))
        y1, x1 = min(y0 + 1, image.shape[1] - 1), min(x0 + 1, image.shape[2] - 1)
        fy, fx = y - y0, x - x0
        out[:, i, j] = ((image[:, y0, x0] * (1 - fx) + image[:, y0, x1] * fx) * (1 - fy)
                        + (image[:, y1, x0] * (1 - fx) + image[:, y1, x1] * fx) * fy)
    return out


def test_ios17_crop_resize_boxes_and_indices():
    x = rand(2, 3, 6, 7)
    boxes = np.array([[0.5, 1.0, 4.0, 5.5], [1.0, 0.0, 5.0, 6.0], [-1.0, 2.0, 3.0, 8.0]], np.float32)
    index = np.array([1, 0, 1], np.int32)
    out = run_op("crop_resize", lambda x, b, i: mb.crop_resize(x=x, boxes=b, box_indices=i, target_height=4,
                                                                target_width=3, sampling_mode="ALIGN_CORNERS"),
                 x, boxes, index, opset=IOS17)
    expected = np.stack([np_crop(x[i], b, 4, 3) for i, b in zip(index, boxes)])
    assert_close(out, expected, ATOL, RTOL, "crop_resize against TF's crop_and_resize")


@pytest.mark.parametrize("mode", MODES)
def test_crop_resize_of_the_whole_image_is_resize_bilinear(mode):
    x = rand(1, 2, 5, 6)
    roi = np.array([0, 0, 4, 5], np.float32).reshape(1, 1, 4, 1, 1)  # the corner pixels: the whole image
    out = run_op("crop_resize", lambda x: mb.crop_resize(x=x, roi=roi, target_height=3, target_width=8,
                                                         sampling_mode=mode), x, opset=IOS16)
    assert out.shape == (1, 1, 2, 3, 8)
    assert_close(out[0], np_bilinear(x, 3, 8, mode), ATOL, RTOL, mode)


def test_crop_resize_roi_with_image_index_and_normalized_coordinates():
    x = rand(2, 1, 5, 5)
    roi = np.array([[1, 0.25, 0.0, 0.75, 1.0]], np.float32).reshape(1, 1, 5, 1, 1)
    # the docstring's (N, 1, C, h, w), which the kernel gives; coremltools' type inference declares
    # (N, B, C, h, w) for this roi too, so this case calls the kernel rather than a converted program
    import torch

    from workbench.coreml_interp.registry import kernel

    out = kernel("crop_resize")(x=torch.from_numpy(x), roi=torch.from_numpy(roi), target_height=3, target_width=3,
                                normalized_coordinates=True, sampling_mode="ALIGN_CORNERS").numpy()
    assert out.shape == (1, 1, 1, 3, 3)
    assert_close(out[0, 0], np_crop(x[1], [1.0, 0.0, 3.0, 4.0], 3, 3), ATOL, RTOL)


@pytest.mark.parametrize("align", [True, False])
@pytest.mark.parametrize("sampling, padding", [("bilinear", "constant"), ("bilinear", "border"),
                                               ("nearest", "constant"), ("nearest", "border")])
def test_resample_matches_grid_sample(sampling, padding, align):
    import torch
    import torch.nn.functional as F

    x = rand(2, 3, 4, 5)
    coords = rand(2, 3, 6, 2, low=-1.3, high=1.3, seed=1)
    out = run_op("resample", lambda x, c: mb.resample(x=x, coordinates=c, sampling_mode=sampling, padding_mode=padding,
                                                      padding_value=0.0, coordinates_mode="normalized_minus_one_to_one",
                                                      align_corners=align), x, coords)
    expected = F.grid_sample(torch.from_numpy(x), torch.from_numpy(coords), mode=sampling,
                             padding_mode={"constant": "zeros", "border": "border"}[padding], align_corners=align)
    assert_close(out, expected.numpy(), ATOL, RTOL, f"{sampling} {padding} align_corners={align}")


@pytest.mark.parametrize("padding, expected", [
    ("constant", [9, 9, 9, 1, 2, 3, 9, 9, 9]), ("border", [1, 1, 1, 1, 2, 3, 3, 3, 3]),
    ("reflection", [2, 3, 2, 1, 2, 3, 2, 1, 2]), ("symmetric", [3, 2, 1, 1, 2, 3, 3, 2, 1])])
def test_resample_padding_modes_docstring_examples(padding, expected):
    x = np.array([1, 2, 3], np.float32).reshape(1, 1, 1, 3)
    coords = np.stack([np.arange(-3, 6), np.zeros(9)], -1).astype(np.float32).reshape(1, 1, 9, 2)
    out = run_op("resample", lambda x, c: mb.resample(x=x, coordinates=c, sampling_mode="nearest", padding_mode=padding,
                                                      padding_value=9.0, coordinates_mode="unnormalized",
                                                      align_corners=True), x, coords)
    assert_close(out.reshape(-1), expected, 0, 0)


def test_affine_matches_affine_grid_and_grid_sample():
    import torch
    import torch.nn.functional as F

    x = rand(2, 3, 5, 6)
    theta = np.array([[0.8, -0.3, 0.1, 0.2, 0.9, -0.2], [1.1, 0.0, 0.3, 0.0, 1.0, 0.0]], np.float32)
    out = run_op("affine", lambda x, t: mb.affine(x=x, transform_matrix=t, output_height=4, output_width=7,
                                                  sampling_mode="bilinear", padding_mode="constant", padding_value=0.0,
                                                  coordinates_mode="normalized_minus_one_to_one", align_corners=True),
                 x, theta)
    grid = F.affine_grid(torch.from_numpy(theta).reshape(2, 2, 3), [2, 3, 4, 7], align_corners=True)
    expected = F.grid_sample(torch.from_numpy(x), grid, align_corners=True)
    assert_close(out, expected.numpy(), ATOL, RTOL)
