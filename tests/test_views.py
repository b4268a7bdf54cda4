import io

import numpy as np
import pytest
from PIL import Image

from workbench.tasks import ImageToImage
from workbench.views import _font, _wrap, side_by_side


def _picture(image_format):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(0, 255, (2, 3, 24, 24)).astype(np.float32)
    ref = {"y": rng.uniform(0, 1, (2, 1, 24, 24)).astype(np.float32)}
    outputs = {"Core ML interpreter (ML program, fp16)": ref, "TorchScript": ref}
    return side_by_side(pixels, ["a", "b"], ref, outputs, ImageToImage(), image_format=image_format, tile=96)


@pytest.mark.parametrize("image_format, magic, mode", [("png", b"\x89PNG", "PNG"), ("jpeg", b"\xff\xd8\xff", "JPEG")])
def test_picture_encodes_as_asked(image_format, magic, mode):
    data = _picture(image_format)
    assert data.startswith(magic)
    picture = Image.open(io.BytesIO(data))
    assert picture.format == mode and picture.size[0] == 5 * (96 + 8) + 8  # input, PyTorch, 2 formats, diff


def test_unknown_picture_format_is_refused():
    with pytest.raises(ValueError, match="png.*jpeg"):
        _picture("gif")


def test_long_column_titles_wrap_inside_their_tile():
    lines = _wrap("Core ML interpreter (ML program, fp16)", 96).splitlines()
    assert len(lines) > 1 and " ".join(lines) == "Core ML interpreter (ML program, fp16)"
    assert all(_font().getlength(line) <= 96 for line in lines)
