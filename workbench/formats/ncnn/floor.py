"""ncnn's bare call, for the bench: the extractor on each image's tensor (a Mat from it, each output read
back), or, for an artifact with the preprocessing inside, on the 8-bit pixels with ncnn's own mean/norm."""

from __future__ import annotations

import numpy as np

from ..common.mean_norm import eight_bit


def floor(artifact, x, pixels=None, stack=None):
    import ncnn

    from .validate import load

    pre = artifact.preprocess
    images = eight_bit(pixels, pre) if pre is not None and pixels is not None else None  # the camera's 8 bits
    net = load(artifact.path, fp16=artifact.precision == "fp16", threads=1)  # as the runner's default
    name, outs = net.input_names()[0], list(net.output_names())

    def extract(mat):
        ex = net.create_extractor()
        ex.input(name, mat)
        return [np.array(ex.extract(o)[1]) for o in outs]

    if images is not None:
        mn = pre.mean_norm()
        kind = (ncnn.Mat.PixelType.PIXEL_GRAY if pre.grayscale else
                ncnn.Mat.PixelType.PIXEL_RGB2BGR if pre.bgr else ncnn.Mat.PixelType.PIXEL_RGB)
        mean, norm = list(mn["mean"]), list(mn["norm"])

        def native():
            for img in images:
                mat = ncnn.Mat.from_pixels(img, kind, img.shape[1], img.shape[0])
                mat.substract_mean_normalize(mean, norm)
                extract(mat)

        return native
    rows = [np.ascontiguousarray(x[i]) for i in range(len(x))]
    return lambda: [extract(ncnn.Mat(r)) for r in rows]
