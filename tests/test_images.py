"""workbench.images: real files on disk in every shape a user hands us, and the one resize policy."""

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from workbench.errors import WorkbenchError
from workbench.images import MAX_PIXELS, SampleImage, fit_image, load_image, load_images, to_pixels

RED = (255, 0, 0)


def sample_paths(samples):
    return sorted(p for p in samples.iterdir() if p.suffix.lower() == ".jpg")


def png_header(path, width, height):
    """A PNG whose header claims width x height 8-bit grey, with a few bytes of pixel data: cheap to write,
    and any attempt to decode it fails as truncated, so a size refusal proves nothing was decoded."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def close_to(pixel, expected, atol):
    return all(abs(int(a) - int(b)) <= atol for a, b in zip(pixel, expected))


# -- load_image ------------------------------------------------------------------------------------------
def test_every_sample_photo_loads_as_8bit_rgb(samples):
    paths = sample_paths(samples)
    assert len(paths) >= 8
    for path in paths:
        img = load_image(path)
        assert img.mode == "RGB", path.name
        with Image.open(path) as raw:
            assert img.size == raw.size, path.name
        assert np.asarray(img).dtype == np.uint8


def test_exif_orientation_6_is_applied(tmp_path):
    # Stored 40 wide x 20 high with a red block top-left; orientation 6 means "rotate 90 degrees clockwise
    # to display", so the upright image is 20 x 40 with the block top-right.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste(Image.new("RGB", (10, 10), RED), (0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    stored.save(path, quality=95, exif=exif)

    img = load_image(path)

    assert img.size == (20, 40)
    assert close_to(img.getpixel((15, 4)), RED, atol=40), img.getpixel((15, 4))
    assert close_to(img.getpixel((4, 4)), (0, 0, 255), atol=40), img.getpixel((4, 4))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black must come out white, not black
    rgba.putpixel((1, 0), (0, 0, 0, 128))  # half transparent black over white: mid grey
    path = tmp_path / "alpha.png"
    rgba.save(path)

    img = load_image(path)

    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert close_to(img.getpixel((1, 0)), (127, 127, 127), atol=1), img.getpixel((1, 0))
    assert img.getpixel((3, 3)) == RED


def test_palette_with_transparency_is_composited_on_white(tmp_path):
    pal = Image.new("P", (3, 2), 1)
    pal.putpalette([0, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 6))
    pal.putpixel((0, 0), 0)
    path = tmp_path / "palette.png"
    pal.save(path, transparency=0)  # index 0 (black) is transparent
    with Image.open(path) as raw:
        assert raw.mode == "P" and "transparency" in raw.info

    img = load_image(path)

    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((2, 1)) == (0, 255, 0)


def test_grayscale_l_becomes_rgb_with_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (5, 3), 77).save(path)

    img = load_image(path)

    assert img.mode == "RGB"
    assert img.getpixel((2, 1)) == (77, 77, 77)


def test_16bit_png_is_scaled_to_8bit(tmp_path):
    a = np.zeros((3, 4), np.uint16)
    a[0, 0], a[0, 1] = 65535, 32768
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    with Image.open(path) as raw:
        assert raw.mode == "I;16"

    img = load_image(path)

    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert close_to(img.getpixel((1, 0)), (128, 128, 128), atol=1), img.getpixel((1, 0))
    assert img.getpixel((2, 2)) == (0, 0, 0)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    path = tmp_path / "print.jpg"
    Image.new("CMYK", (8, 6), (0, 255, 255, 0)).save(path, quality=95)  # full magenta + yellow = red
    with Image.open(path) as raw:
        assert raw.mode == "CMYK"

    img = load_image(path)

    assert img.mode == "RGB"
    assert close_to(img.getpixel((4, 3)), RED, atol=10), img.getpixel((4, 3))


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (6, 6), c) for c in (RED, (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3

    img = load_image(path)

    assert img.mode == "RGB"
    assert img.getpixel((3, 3)) == RED


def test_zero_byte_file_is_refused_as_empty(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(WorkbenchError, match=r"empty\.jpg is empty \(0 bytes\); replace it"):
        load_image(path)


def test_truncated_jpeg_is_refused_as_damaged(tmp_path, samples):
    data = (samples / "coffee.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkbenchError, match=r"half\.jpg is damaged or truncated.*re-save or replace it"):
        load_image(path)


def test_text_file_named_jpg_is_refused_as_not_an_image(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("label,score\ncat,0.9\n")
    with pytest.raises(WorkbenchError, match=r"notes\.jpg is not an image Pillow can read.*use JPEG or PNG"):
        load_image(path)


def test_an_unreadable_image_is_refused_the_same_after_ultralytics_is_imported(tmp_path):
    """ultralytics patches PIL.Image.open at import to install pi-heif on the first file Pillow cannot read: the
    user got ModuleNotFoundError: No module named 'pi_heif' once a detector had been loaded."""
    pytest.importorskip("ultralytics")
    from workbench.models import quiet_ultralytics

    quiet_ultralytics()
    path = tmp_path / "notes.jpg"
    path.write_text("label,score\ncat,0.9\n")
    with pytest.raises(WorkbenchError, match=r"notes\.jpg is not an image Pillow can read"):
        load_image(path)


def test_missing_image_is_named(tmp_path):
    with pytest.raises(WorkbenchError, match=r"nowhere\.jpg does not exist"):
        load_image(tmp_path / "nowhere.jpg")


def test_decompression_bomb_is_refused_by_size_without_decoding(tmp_path):
    # 400 MP: Pillow's own bomb check fires at open; the message must still say megapixels and the fix.
    path = png_header(tmp_path / "bomb.png", 20000, 20000)
    with pytest.raises(WorkbenchError, match=r"bomb\.png is above the 64 megapixel limit.*downscale it first"):
        load_image(path)


def test_image_above_the_limit_is_refused_with_its_size(tmp_path):
    # 72 MP: below Pillow's warning threshold, above ours; the header is read, the pixels never are.
    assert 9000 * 8000 > MAX_PIXELS
    path = png_header(tmp_path / "large.png", 9000, 8000)
    with pytest.raises(WorkbenchError, match=r"large\.png is 9000x8000 \(72 megapixels\).*downscale it first"):
        load_image(path)


# -- load_images -----------------------------------------------------------------------------------------
def test_folder_with_a_csv_warns_naming_it_and_loads_the_images(tmp_path, samples):
    for name in ("coffee.jpg", "rocket.jpg"):
        (tmp_path / name).write_bytes((samples / name).read_bytes())
    (tmp_path / "labels.csv").write_text("file,label\ncoffee.jpg,cup\n")

    with pytest.warns(UserWarning, match=r"labels\.csv \(not an image file type\)"):
        images = load_images(tmp_path)

    assert [s.name for s in images] == ["coffee", "rocket"]
    assert all(s.image.mode == "RGB" and s.path.parent == tmp_path for s in images)


def test_folder_skips_a_broken_image_with_a_warning_naming_it(tmp_path, samples):
    (tmp_path / "coffee.jpg").write_bytes((samples / "coffee.jpg").read_bytes())
    (tmp_path / "broken.png").write_bytes(b"")

    with pytest.warns(UserWarning, match=r"broken\.png \(.*empty"):
        images = load_images(tmp_path)

    assert [s.name for s in images] == ["coffee"]


def test_sample_folder_loads_every_photo_without_warning(samples, recwarn):
    images = load_images(samples)
    assert [s.name for s in images] == [p.stem for p in sample_paths(samples)]
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_empty_folder_is_refused(tmp_path):
    with pytest.raises(WorkbenchError, match=r"no readable image in .*; add JPEG or PNG photos"):
        load_images(tmp_path)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(WorkbenchError, match=r"image folder .*no_such_dir does not exist"):
        load_images(tmp_path / "no_such_dir")


def test_pil_images_are_converted_and_named():
    images = load_images([Image.new("L", (4, 4), 9), Image.new("RGBA", (4, 4), (0, 0, 0, 0))])
    assert [s.name for s in images] == ["image_0", "image_1"]
    assert images[0].image.getpixel((0, 0)) == (9, 9, 9)
    assert images[1].image.getpixel((0, 0)) == (255, 255, 255)


# -- fit_image / to_pixels -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cat_chelsea.jpg", "hubble_deep_field.jpg", "coffee.jpg", "astronaut.jpg"])
def test_crop_matches_torchvision_resize_256_center_crop_224(samples, name):
    from torchvision import transforms

    img = load_image(samples / name)
    expected = np.asarray(transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(img))

    got = fit_image(img, (224, 224), "crop", resize=256)

    assert got.shape == (224, 224, 3) and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - expected.astype(int)).max()
    assert diff <= 1, f"{name}: max difference {diff} grey levels from torchvision"


def test_crop_without_resize_covers_then_center_crops():
    img = Image.new("RGB", (300, 100), (0, 0, 255))
    img.paste(Image.new("RGB", (100, 100), RED), (100, 0))  # the red middle third is what a center crop keeps

    got = fit_image(img, (50, 50), "crop")

    assert got.shape == (50, 50, 3)
    assert close_to(got[1, 1], RED, atol=1) and close_to(got[48, 48], RED, atol=1), (got[1, 1], got[48, 48])


def test_letterbox_keeps_aspect_and_pads_with_black():
    img = Image.new("RGB", (200, 100), (255, 255, 255))  # 2:1 into a square: 64 x 32 band in the middle

    got = fit_image(img, (64, 64), "letterbox")

    assert got.shape == (64, 64, 3)
    rows = np.flatnonzero(got.max(axis=(1, 2)) > 0)
    assert (rows.min(), rows.max()) == (16, 47)
    assert np.all(got[:16] == 0) and np.all(got[48:] == 0)
    assert np.all(got[16:48] == 255)
    band_height, band_width = rows.max() - rows.min() + 1, got.shape[1]
    assert band_width / band_height == pytest.approx(200 / 100, abs=0.01)


def test_stretch_resizes_to_the_exact_size_ignoring_aspect(samples):
    img = load_image(samples / "coffee.jpg")
    got = fit_image(img, (48, 80), "stretch")
    assert got.shape == (48, 80, 3) and got.dtype == np.uint8


def test_to_pixels_is_float32_nchw_in_0_255(samples):
    images = load_images([samples / "coffee.jpg", samples / "astronaut.jpg", SampleImage("white", Image.new(
        "RGB", (10, 20), (255, 255, 255)))])

    pixels = to_pixels(images, (32, 40))
    assert pixels.dtype == np.float32
    assert pixels.shape == (3, 3, 32, 40)
    assert pixels.flags.c_contiguous  # every refresh does arithmetic on these: a strided view is 20x slower
    assert pixels.min() >= 0.0 and pixels.max() <= 255.0
    assert pixels.max() > 200.0  # 0-255 units, not 0-1
    np.testing.assert_array_equal(pixels[2], np.full((3, 32, 40), 255.0, np.float32))
    np.testing.assert_array_equal(pixels[0], fit_image(images[0].image, (32, 40)).transpose(2, 0, 1))
