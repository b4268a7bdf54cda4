"""3-D convolution and pooling, cropResize and NonMaximumSuppression, on the MIL kernels."""

from __future__ import annotations

import numpy as np
from coremltools.proto import NeuralNetwork_pb2 as _nn

from ..ops._util import scalar
from ..registry import kernel
from . import add_convolution, layer, sampling_mode, weights


def _pads_3d(p, kind_enum) -> dict:
    kind = kind_enum.Name(p.paddingType)
    if kind == "CUSTOM":
        return {"pad_type": "custom", "pad": np.asarray([p.customPaddingFront, p.customPaddingBack, p.customPaddingTop,
                                                         p.customPaddingBottom, p.customPaddingLeft,
                                                         p.customPaddingRight])}
    return {"pad_type": kind.lower()}


@layer("convolution3d")
def _conv3d(b, name, p, inputs, outputs):
    """Weights (out, in / groups, D, H, W); a deconvolution's (in, out / groups, D, H, W)."""
    k = (p.kernelDepth, p.kernelHeight, p.kernelWidth)
    groups = p.nGroups or 1
    shape = (p.inputChannels, p.outputChannels // groups, *k) if p.isDeconvolution else (
        p.outputChannels, p.inputChannels // groups, *k)
    static = {"weight": weights(p.weights, shape), "bias": weights(p.bias, (p.outputChannels,)) if p.hasBias else None,
              "strides": np.asarray([p.strideDepth or 1, p.strideHeight or 1, p.strideWidth or 1]),
              "dilations": np.asarray([p.dilationDepth or 1, p.dilationHeight or 1, p.dilationWidth or 1]),
              "groups": groups}
    static.update(_pads_3d(p, _nn.Convolution3DLayerParams.PaddingType))
    add_convolution(b, name, p, inputs, outputs, static)


@layer("pooling3d")
def _pool3d(b, name, p, inputs, outputs):
    kind = _nn.Pooling3DLayerParams.PoolingType3D.Name(p.type)
    static = {"kernel_sizes": np.asarray([p.kernelDepth, p.kernelHeight, p.kernelWidth]),
              "strides": np.asarray([p.strideDepth or 1, p.strideHeight or 1, p.strideWidth or 1])}
    static.update(_pads_3d(p, _nn.Pooling3DLayerParams.Pooling3DPaddingType))
    if kind == "AVERAGE":
        static["exclude_padding_from_average"] = bool(p.countExcludePadding)
        b.add(name, "avg_pool", inputs, outputs, static)
    else:
        b.add(name, "max_pool", inputs, outputs, static)


@layer("globalPooling3d")
def _global_pool3d(b, name, p, inputs, outputs):
    kind = _nn.GlobalPooling3DLayerParams.GlobalPoolingType3D.Name(p.type)
    b.add(name, "reduce_max" if kind == "MAX" else "reduce_mean", inputs, outputs,
          {"axes": np.asarray([-3, -2, -1]), "keep_dims": True})


@layer("cropResize")
def _crop_resize(b, name, p, inputs, outputs):
    """x (1, B, C, H, W) or (B, C, H, W), roi (N, 1, 4 or 5, 1, 1) -> (N, B or 1, C, h, w)."""
    crop = kernel("crop_resize")
    h, w = (list(p.targetSize) + [1, 1])[:2]
    boxes = _nn.BoxCoordinatesMode.Coordinates.Name(p.boxIndicesMode.boxMode)  # MIL uses the same names
    sampling = sampling_mode(p.mode.samplingMethod)

    def fn(x, roi):
        image = x.reshape(-1, *x.shape[-3:])
        return crop(image, roi=roi, target_height=h, target_width=w,
                    normalized_coordinates=bool(p.normalizedCoordinates), spatial_scale=float(p.spatialScale) or 1.0,
                    box_coordinate_mode=boxes, sampling_mode=sampling)

    b.add(name, "crop_resize", inputs, outputs, dynamic=[("x", inputs[0]), ("roi", inputs[1])], fn=fn)


@layer("NonMaximumSuppression")
def _nms(b, name, p, inputs, outputs):
    """Inputs boxes (B, N, 4) and scores (B, N, C), then optionally the IoU threshold, the score threshold
    and the box count; outputs boxes, scores, indices (-1 padded, as floats) and counts."""
    nms = kernel("non_maximum_suppression")

    def fn(boxes, scores, iou=None, score=None, count=None):
        out_boxes, out_scores, index, counts = nms(
            boxes, scores, float(scalar(iou)) if iou is not None else float(p.iouThreshold),
            int(scalar(count)) if count is not None else int(p.maxBoxes),
            float(scalar(score)) if score is not None else float(p.scoreThreshold), bool(p.perClassSuppression))
        return out_boxes, out_scores, index.float(), counts.float()

    b.add(name, "non_maximum_suppression", inputs, outputs,
          dynamic=[(a, r) for a, r in zip(["boxes", "scores", "iou", "score", "count"], inputs)], fn=fn)
