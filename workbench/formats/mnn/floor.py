"""MNN's bare call, for the bench: its session (input copied in, run, outputs copied out), or, for an artifact
with the preprocessing inside, the 8-bit pixels through MNN's own CVImageProcess mean/normal."""

from __future__ import annotations

import numpy as np

from ..common.mean_norm import eight_bit


def floor(artifact, x, pixels=None, stack=None):
    import MNN

    from .runner import WINOGRAD_MEMORY_LEVEL
    from .validate import load, native_quiet

    pre = artifact.preprocess
    images = eight_bit(pixels, pre) if pre is not None and pixels is not None else None  # the camera's 8 bits
    interp = load(artifact.path)
    if artifact.precision != "fp16":
        interp.setSessionHint(WINOGRAD_MEMORY_LEVEL, 0)  # the runner's fp32 setting: the same kernels
    with native_quiet():
        session = interp.createSession({"numThread": 1, "backend": "CPU",
                                        "precision": "low" if artifact.precision == "fp16" else "high"})
    inp = interp.getSessionInput(session)
    outputs = list(interp.getSessionOutputAll(session).values())
    hosts = [MNN.Tensor(o.getShape(), MNN.Halide_Type_Float, np.zeros(o.getShape(), np.float32),
                        MNN.Tensor_DimensionType_Caffe) for o in outputs]

    def results():
        interp.runSession(session)
        for out, host in zip(outputs, hosts):
            out.copyToHostTensor(host)
            np.array(host.getNumpyData())  # a copy, as a caller keeps it

    if images is not None:
        mn = pre.mean_norm()
        pad = (0.0,) * (4 - len(mn["mean"]))
        gray = MNN.CV_ImageFormat_GRAY
        process = MNN.CVImageProcess({
            "sourceFormat": gray if pre.grayscale else MNN.CV_ImageFormat_RGB,
            "destFormat": gray if pre.grayscale else (MNN.CV_ImageFormat_BGR if pre.bgr else MNN.CV_ImageFormat_RGB),
            "mean": tuple(mn["mean"]) + pad, "normal": tuple(mn["norm"]) + pad})

        def native():
            for img in images:
                process.convert(img, img.shape[1], img.shape[0], 0, inp)
                results()

        return native
    rows = [np.ascontiguousarray(x[i:i + 1]) for i in range(len(x))]

    def call():
        for r in rows:
            inp.copyFrom(MNN.Tensor(r.shape, MNN.Halide_Type_Float, r, MNN.Tensor_DimensionType_Caffe))
            results()

    return call
