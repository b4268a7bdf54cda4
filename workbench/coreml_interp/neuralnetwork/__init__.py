"""Core ML neural networks (.mlmodel, the iOS 11-14 format): layers translated to the MIL kernels.

Each layer of `spec.neuralNetwork` (or a classifier's or regressor's) becomes one step that calls the
kernel of the equivalent MIL op where the semantics are the same, so both formats share one set of
semantics and tests. Image preprocessing (`scaler`: x * channelScale + per-colour bias; `meanImage`)
becomes the first steps. Builders are registered per layer type (`layer`), one module per family:
this module (convolution, pooling, activations, inner product, batchnorm, softmax, padding, upsampling
and the first elementwise/shape layers), elementwise, tensor, linear, normalization, reduction, spatial,
recurrent, random and control_flow. Every layer of NeuralNetwork.proto runs except those in
UNSUPPORTED_LAYERS (custom layers, whose code only the app has).
"""

from __future__ import annotations

import numpy as np
import torch
from coremltools.proto import FeatureTypes_pb2 as _ft
from coremltools.proto import NeuralNetwork_pb2 as _nn

from ...errors import WorkbenchError
from ..ops.image_resizing import bilinear
from ..program import Program, Step, _plan_frees
from ..registry import kernel

# the protobuf enums, by name
_POOL = _nn.PoolingLayerParams.PoolingType.Value
_UNARY = _nn.UnaryFunctionLayerParams.Operation.Value
_COLOR = _ft.ImageFeatureType.ColorSpace.Value


def weights(params, shape=None, axis: int = 0) -> torch.Tensor:
    """A WeightParams message as a float32 tensor: float32, float16 or raw float32 storage, or weights
    quantized to 1-8 bits (packed most significant bit first, as coremltools' quantize_weights writes them,
    or int8 for int8DynamicQuantize layers), dequantized linearly (scale and bias per tensor or per channel
    along `axis`) or by lookup table. (A dynamically quantized layer's int8 activations are not emulated.)"""
    if params.HasField("quantization") and params.quantization.WhichOneof("QuantizationType"):
        return torch.from_numpy(_dequantize(params, shape, axis))
    if len(params.floatValue):
        arr = np.asarray(params.floatValue, np.float32)
    elif len(params.float16Value):
        arr = np.frombuffer(params.float16Value, np.float16).astype(np.float32)
    elif len(params.rawValue):
        arr = np.frombuffer(params.rawValue, np.float32).copy()
    else:
        raise WorkbenchError("a neural-network layer has a weight with no values; the model is malformed, re-export it")
    return torch.from_numpy(arr.reshape(shape) if shape is not None else arr)


def _dequantize(params, shape, axis: int) -> np.ndarray:
    q = params.quantization
    nbits = int(q.numberOfBits)
    signed = len(params.int8RawValue) > 0  # int8DynamicQuantize layers: signed codes, scale only
    raw = np.frombuffer(params.int8RawValue if signed else params.rawValue, np.int8 if signed else np.uint8)
    count = int(np.prod(shape)) if shape is not None else raw.size * 8 // nbits
    if nbits == 8:
        codes = raw[:count].astype(np.int64)
    else:
        bits = np.unpackbits(raw)[:count * nbits].reshape(count, nbits).astype(np.int64)
        codes = (bits << np.arange(nbits - 1, -1, -1)).sum(1)
    kind = q.WhichOneof("QuantizationType")
    if kind == "lookupTableQuantization":
        arr = np.asarray(q.lookupTableQuantization.floatValue, np.float32)[codes]
        return arr.reshape(shape) if shape is not None else arr
    if kind != "linearQuantization":
        raise WorkbenchError(f"a neural-network weight quantized as {kind!r}: expected linear or lookup-table "
                             "quantization; re-export the model")
    arr = codes.astype(np.float32).reshape(shape if shape is not None else (-1,))
    scale = np.asarray(q.linearQuantization.scale, np.float32)
    bias = np.asarray(q.linearQuantization.bias or [0.0], np.float32)
    per = [1] * arr.ndim
    per[axis if arr.ndim > 1 else 0] = -1
    scale = scale.reshape(per) if scale.size > 1 else scale.reshape(())
    bias = bias.reshape(per) if bias.size > 1 else bias.reshape(())
    return (arr * scale + bias).astype(np.float32)


class _Builder:
    """The steps of a network being compiled, and the blob names defined so far (inputs included)."""

    def __init__(self, known=()):
        self.steps: list[Step] = []
        self.known: set = set(known)

    def add(self, layer, op_type: str, inputs: list[str], outputs: list[str], static=None, dynamic=None, fn=None):
        dynamic = dynamic if dynamic is not None else [("x", inputs[0])]
        self.steps.append(Step(op_type, layer, fn or kernel(op_type), static or {}, dynamic,
                               [(o, False) for o in outputs]))
        self.known.update(outputs)


def _pads(valid_or_same, kind: str, kernel_size, strides, dilations=(1, 1)):
    """MIL pad_type and pad from a layer's ValidPadding / SamePadding."""
    if kind == "same":
        lower = valid_or_same.asymmetryMode == _nn.SamePadding.SamePaddingMode.Value("TOP_LEFT_HEAVY")
        return {"pad_type": "same_lower" if lower else "same"}
    amounts = list(valid_or_same.paddingAmounts.borderAmounts)
    pad = []
    for a in amounts or [None, None]:
        pad += [a.startEdgeSize, a.endEdgeSize] if a is not None else [0, 0]
    return {"pad_type": "custom", "pad": np.asarray(pad)}


def _convolution(b, name, p, inputs, outputs):
    k = list(p.kernelSize) or [3, 3]
    strides, dilations = list(p.stride) or [1, 1], list(p.dilationFactor) or [1, 1]
    groups = p.nGroups or 1
    if p.isDeconvolution:
        shape = (p.kernelChannels, p.outputChannels // groups, *k)
    else:
        shape = (p.outputChannels, p.kernelChannels, *k)
    static = {"weight": weights(p.weights, shape, axis=1 if p.isDeconvolution else 0),
              "strides": np.asarray(strides), "dilations": np.asarray(dilations),
              "groups": groups, "bias": weights(p.bias, (p.outputChannels,)) if p.hasBias else None}
    kind = p.WhichOneof("ConvolutionPaddingType")
    static.update(_pads(getattr(p, kind), kind, k, strides, dilations))
    add_convolution(b, name, p, inputs, outputs, static)


def add_convolution(b, name, p, inputs, outputs, static) -> None:
    """A (de)convolution layer as MIL's conv or conv_transpose, with the output shape it may fix."""
    if p.isDeconvolution:
        if len(p.outputShape):
            static["output_shape"] = np.asarray(list(p.outputShape))
        b.add(name, "conv_transpose", inputs, outputs, static)
    else:
        b.add(name, "conv", inputs, outputs, static)


_ACTIVATIONS = {"ReLU": "relu", "tanh": "tanh", "sigmoid": "sigmoid", "softsign": "softsign", "softplus": "softplus",
                "leakyReLU": "leaky_relu", "ELU": "elu", "thresholdedReLU": "thresholded_relu",
                "sigmoidHard": "sigmoid_hard", "linear": "linear_activation", "scaledTanh": "scaled_tanh",
                "PReLU": "prelu", "parametricSoftplus": "softplus_parametric"}


def _activation(b, name, p, inputs, outputs):
    which = p.WhichOneof("NonlinearityType")
    if which not in _ACTIVATIONS:
        raise WorkbenchError(f"neural-network activation {which!r} (layer {name!r}) is not supported by the "
                             "interpreter")
    params = getattr(p, which)
    static = {}
    if which == "PReLU":
        static["alpha"] = weights(params.alpha)
    elif which == "parametricSoftplus":
        static["alpha"], static["beta"] = weights(params.alpha), weights(params.beta)
    else:
        for field in ("alpha", "beta"):
            if hasattr(params, field):
                static[field] = float(getattr(params, field))
    b.add(name, _ACTIVATIONS[which], inputs, outputs, static)


def _pooling(b, name, p, inputs, outputs):
    kind = {_POOL("MAX"): "max_pool", _POOL("AVERAGE"): "avg_pool", _POOL("L2"): "l2_pool"}[p.type]
    if p.globalPooling:
        reduce = {"max_pool": "reduce_max", "avg_pool": "reduce_mean", "l2_pool": "reduce_l2_norm"}[kind]
        b.add(name, reduce, inputs, outputs, {"axes": np.asarray([-2, -1]), "keep_dims": True})
        return
    k, strides = list(p.kernelSize), list(p.stride) or [1, 1]
    static = {"kernel_sizes": np.asarray(k), "strides": np.asarray(strides)}
    which = p.WhichOneof("PoolingPaddingType")
    if which == "includeLastPixel":  # symmetric padding, the last partial window kept: ceil mode
        h, w = list(p.includeLastPixel.paddingAmounts) or [0, 0]
        static.update(pad_type="custom", pad=np.asarray([h, h, w, w]), ceil_mode=True)
    else:
        static.update(_pads(getattr(p, which), which, k, strides))
    if kind == "avg_pool":
        static["exclude_padding_from_average"] = bool(p.avgPoolExcludePadding)
    b.add(name, kind, inputs, outputs, static)


def _inner_product(b, name, p, inputs, outputs):
    w = weights(p.weights, (p.outputChannels, p.inputChannels))
    bias = weights(p.bias, (p.outputChannels,)) if p.hasBias else None
    dense = kernel("linear")

    def fn(x, weight, bias):
        if x.shape[-1] != weight.shape[1]:  # rank-5 style (.., C, 1, 1): flatten the last three axes
            x = x.reshape(*x.shape[:-3], -1)
        return dense(x, weight, bias)

    b.add(name, "linear", inputs, outputs, {"weight": w, "bias": bias}, fn=fn)


def _nary(op_type):
    reduce_fn = {"add": torch.add, "mul": torch.mul, "maximum": torch.maximum, "minimum": torch.minimum}[op_type]

    def build(b, name, p, inputs, outputs):
        alpha = float(getattr(p, "alpha", 0.0))

        def fn(values, alpha=alpha):
            out = values[0]
            for v in values[1:]:
                out = reduce_fn(out, v)
            if len(values) == 1:
                out = out + alpha if op_type == "add" else out * alpha if op_type == "mul" else out
            return out

        b.add(name, op_type, inputs, outputs, dynamic=[("values", list(inputs))], fn=fn)

    return build


def _binary(op_type):
    def build(b, name, p, inputs, outputs):
        b.add(name, op_type, inputs, outputs, dynamic=[("x", inputs[0]), ("y", inputs[1])])

    return build


def _concat(b, name, p, inputs, outputs):
    """Along the channels (axis -3), or along the sequence (axis -5, the first of a rank-5 blob)."""
    if p.sequenceConcat:
        concat = kernel("concat")
        b.add(name, "concat", inputs, outputs, dynamic=[("values", list(inputs))],
              fn=lambda values: concat(values, -5 if values[0].dim() >= 5 else 0))
        return
    b.add(name, "concat", inputs, outputs, {"axis": -3, "interleave": False}, dynamic=[("values", list(inputs))])


def _concat_nd(b, name, p, inputs, outputs):
    b.add(name, "concat", inputs, outputs, {"axis": p.axis, "interleave": bool(p.interleave)},
          dynamic=[("values", list(inputs))])


def _batchnorm(b, name, p, inputs, outputs):
    if p.computeMeanVar or p.instanceNormalization:
        c = (p.channels,)
        b.add(name, "instance_norm", inputs, outputs, {"gamma": weights(p.gamma, c), "beta": weights(p.beta, c),
                                                       "epsilon": p.epsilon})
        return
    c = (p.channels,)
    b.add(name, "batch_norm", inputs, outputs, {"mean": weights(p.mean, c), "variance": weights(p.variance, c),
                                                "gamma": weights(p.gamma, c), "beta": weights(p.beta, c),
                                                "epsilon": p.epsilon})


def _upsample(b, name, p, inputs, outputs):
    frac = list(p.fractionalScalingFactor)
    sh, sw = frac if frac else (list(p.scalingFactor) or [1, 1])
    if p.mode == _nn.UpsampleLayerParams.InterpolationMode.Value("NN"):  # nearest
        b.add(name, "upsample_nearest_neighbor", inputs, outputs,
              {"scale_factor_height": sh, "scale_factor_width": sw})
        return
    grid = _nn.UpsampleLayerParams.LinearUpsampleMode.Value
    mode = {grid("DEFAULT"): "DEFAULT", grid("ALIGN_CORNERS_TRUE"): "STRICT_ALIGN_CORNERS",
            grid("ALIGN_CORNERS_FALSE"): "UNALIGN_CORNERS"}[p.linearUpsampleMode]
    def fn(x, sh=sh, sw=sw, mode=mode):
        return bilinear(x, int(np.floor(x.shape[-2] * sh)), int(np.floor(x.shape[-1] * sw)), mode)

    b.add(name, "upsample_bilinear", inputs, outputs, fn=fn)


def sampling_mode(value) -> str:
    """A SamplingMode.Method as the MIL sampling_mode name."""
    method = _nn.SamplingMode.Method.Value
    return {method("STRICT_ALIGN_ENDPOINTS_MODE"): "STRICT_ALIGN_CORNERS",
            method("ALIGN_ENDPOINTS_MODE"): "ALIGN_CORNERS",
            method("UPSAMPLE_MODE"): "DEFAULT", method("ROI_ALIGN_MODE"): "OFFSET_CORNERS"}[value]


def _resize_bilinear(b, name, p, inputs, outputs):
    mode = sampling_mode(p.mode.samplingMethod)
    h, w = list(p.targetSize) or [1, 1]
    b.add(name, "resize_bilinear", inputs, outputs, {"target_size_height": h, "target_size_width": w,
                                                     "sampling_mode": mode})


def _reorganize(b, name, p, inputs, outputs):
    reorganize = _nn.ReorganizeDataLayerParams.ReorganizationType.Value
    op_type = {reorganize("SPACE_TO_DEPTH"): "space_to_depth", reorganize("DEPTH_TO_SPACE"): "depth_to_space",
               reorganize("PIXEL_SHUFFLE"): "pixel_shuffle"}[p.mode]
    key = "upscale_factor" if op_type == "pixel_shuffle" else "block_size"
    b.add(name, op_type, inputs, outputs, {key: p.blockSize})


def _reshape_static(b, name, p, inputs, outputs):
    b.add(name, "reshape", inputs, outputs, {"shape": np.asarray(list(p.targetShape))})


def _flatten_2d(b, name, p, inputs, outputs):
    b.add(name, "flatten2d", inputs, outputs, {"axis": p.axis})


def _softmax(b, name, p, inputs, outputs):
    b.add(name, "softmax", inputs, outputs, {"axis": -3})


def _softmax_nd(b, name, p, inputs, outputs):
    b.add(name, "softmax", inputs, outputs, {"axis": p.axis})


def _clip(b, name, p, inputs, outputs):
    b.add(name, "clip", inputs, outputs, {"alpha": p.minVal, "beta": p.maxVal})


def _slice(b, name, p, inputs, outputs):
    axis = {_nn.SliceLayerParams.SliceAxis.Value(a): i for a, i in (("CHANNEL_AXIS", -3), ("HEIGHT_AXIS", -2),
                                                                    ("WIDTH_AXIS", -1))}[p.axis]
    start, end, stride = p.startIndex, p.endIndex, p.stride or 1

    def fn(x):
        n = x.shape[axis]
        stop = end if end > 0 else n + end if end < 0 else n  # endIndex <= 0 counts from the end
        return x.narrow(axis, start, stop - start)[(slice(None),) * (x.dim() + axis) + (slice(None, None, stride),)]

    b.add(name, "slice_by_index", inputs, outputs, fn=fn)


def _slice_static(b, name, p, inputs, outputs):
    b.add(name, "slice_by_index", inputs, outputs, {
        "begin": np.asarray(list(p.beginIds)), "end": np.asarray(list(p.endIds)),
        "stride": np.asarray(list(p.strides)), "begin_mask": np.asarray(list(p.beginMasks)),
        "end_mask": np.asarray(list(p.endMasks)), "squeeze_mask": np.asarray(list(p.squeezeMasks) or
                                                                                [False] * len(p.beginIds))})


def _chw(params, shape) -> torch.Tensor:
    """A scale or bias layer's parameter, shaped [1], [C], [1, H, W] or [C, H, W] (NeuralNetwork.proto), as a
    tensor that broadcasts against the input's trailing [C, H, W] axes."""
    shape = [int(d) for d in shape] or [1]
    value = weights(params, (int(np.prod(shape)),))
    if len(shape) == 1:  # [1] for every element, or [C] per channel
        return value.reshape(()) if shape[0] == 1 else value.reshape(-1, 1, 1)
    return value.reshape(shape)


def _scale(b, name, p, inputs, outputs):
    s = _chw(p.scale, p.shapeScale)
    bias = _chw(p.bias, p.shapeBias) if p.hasBias else None

    def fn(x):
        y = x * s
        return y + bias if bias is not None else y

    b.add(name, "mul", inputs, outputs, fn=fn)


def _bias(b, name, p, inputs, outputs):
    bias = _chw(p.bias, p.shape)
    b.add(name, "add", inputs, outputs, fn=lambda x: x + bias)


def _unary(b, name, p, inputs, outputs):
    kinds = {_UNARY("SQRT"): torch.sqrt, _UNARY("RSQRT"): torch.rsqrt, _UNARY("INVERSE"): torch.reciprocal,
             _UNARY("EXP"): torch.exp, _UNARY("LOG"): torch.log, _UNARY("ABS"): torch.abs}
    shift, scale, alpha, eps = p.shift, p.scale or 1.0, p.alpha, p.epsilon or 1e-6

    def fn(x):
        z = x * scale + shift
        if p.type == _UNARY("POWER"):
            return torch.pow(z, alpha)
        if p.type == _UNARY("THRESHOLD"):
            return torch.clamp(z, min=alpha)
        if p.type in (_UNARY("RSQRT"), _UNARY("INVERSE"), _UNARY("LOG")):
            z = z + eps
        return kinds[p.type](z)

    b.add(name, "unary", inputs, outputs, fn=fn)


def _load_constant_nd(b, name, p, inputs, outputs):
    value = weights(p.data, tuple(p.shape))
    b.add(name, "const", inputs, outputs, dynamic=[], fn=lambda: value)


def _transpose(b, name, p, inputs, outputs):
    b.add(name, "transpose", inputs, outputs, {"perm": np.asarray(list(p.axes))})


def _squeeze(b, name, p, inputs, outputs):
    b.add(name, "squeeze", inputs, outputs, {} if p.squeezeAll else {"axes": np.asarray(list(p.axes))})


def _expand_dims(b, name, p, inputs, outputs):
    b.add(name, "expand_dims", inputs, outputs, {"axes": np.asarray(list(p.axes))})


def _padding(b, name, p, inputs, outputs):
    amounts = list(p.paddingAmounts.borderAmounts)
    pad = []
    for a in amounts:
        pad += [a.startEdgeSize, a.endEdgeSize]
    mode = {"constant": "constant", "reflection": "reflect", "replication": "replicate"}[p.WhichOneof("PaddingType")]
    static = {"pad": np.asarray(pad), "mode": mode}
    if mode == "constant":
        static["constant_val"] = p.constant.value
    b.add(name, "pad", inputs, outputs, static)


_LAYERS = {
    "convolution": _convolution, "activation": _activation, "pooling": _pooling, "innerProduct": _inner_product,
    "add": _nary("add"), "multiply": _nary("mul"), "max": _nary("maximum"), "min": _nary("minimum"),
    "addBroadcastable": _binary("add"), "multiplyBroadcastable": _binary("mul"),
    "subtractBroadcastable": _binary("sub"), "divideBroadcastable": _binary("real_div"),
    "concat": _concat, "concatND": _concat_nd, "batchnorm": _batchnorm, "upsample": _upsample,
    "resizeBilinear": _resize_bilinear, "reorganizeData": _reorganize, "reshapeStatic": _reshape_static,
    "flattenTo2D": _flatten_2d, "softmax": _softmax, "softmaxND": _softmax_nd, "clip": _clip, "slice": _slice,
    "sliceStatic": _slice_static, "scale": _scale, "bias": _bias, "unary": _unary,
    "loadConstantND": _load_constant_nd, "transpose": _transpose, "squeeze": _squeeze, "expandDims": _expand_dims,
    "padding": _padding,
}


# layers the interpreter does not run, and why (tests/coreml_interp/test_coverage.py checks the rest)
UNSUPPORTED_LAYERS = {
    "custom": "a custom layer runs the app's own Swift/Objective-C class (MLCustomLayer), which only the app has",
}


def layer(*names: str):
    """Register a builder for the neural-network layer types `names` (fields of NeuralNetworkLayer's
    'layer' oneof); duplicates are refused. A builder is build(b, name, params, inputs, outputs)."""

    def register(build):
        for n in names:
            if n in _LAYERS:
                raise RuntimeError(f"neural-network layer {n!r} is registered twice")
        for n in names:
            _LAYERS[n] = build
        return build

    return register


def supported_layers() -> list[str]:
    return sorted(_LAYERS)


def from_spec(spec) -> Program:
    """Compile a neural network (plain, classifier or regressor) spec into a Program."""
    kind = spec.WhichOneof("Type")
    nn = getattr(spec, kind)
    b = _Builder(f.name for f in spec.description.input)
    inputs = {}
    for feature in spec.description.input:
        inputs[feature.name] = "fp32"
    for pre in nn.preprocessing:
        _preprocessing(b, spec, pre)
    for layer in nn.layers:
        add_layer(b, layer)
    outputs = [f.name for f in spec.description.output]
    if kind == "neuralNetworkClassifier":
        _classifier(b, spec, nn, outputs)
    _plan_frees(b.steps, set(outputs))
    return Program(b.steps, inputs, outputs, f"neural network, specification version {spec.specificationVersion}")


def add_layer(b: _Builder, nn_layer) -> None:
    """Append the steps of one NeuralNetworkLayer to `b`."""
    which = nn_layer.WhichOneof("layer")
    if which in UNSUPPORTED_LAYERS:
        raise WorkbenchError(f"layer {nn_layer.name!r} is a {which} layer "
                             f"({getattr(nn_layer, which).className or 'unnamed class'}): {UNSUPPORTED_LAYERS[which]}; "
                             "custom layers need the app's own code, so check this model in the app on a device")
    if which not in _LAYERS:
        raise WorkbenchError(f"the Core ML interpreter does not implement neural-network layer {which!r} "
                             f"(layer {nn_layer.name!r}); supported: {', '.join(supported_layers())}")
    _LAYERS[which](b, nn_layer.name, getattr(nn_layer, which), list(nn_layer.input), list(nn_layer.output))


def _preprocessing(b: _Builder, spec, pre) -> None:
    name = pre.featureName or spec.description.input[0].name
    which = pre.WhichOneof("preprocessor")
    if which == "meanImage":  # the mean image, [C, H, W] flattened, subtracted
        feature = next(f for f in spec.description.input if f.name == name)
        t = feature.type.imageType
        mean = torch.tensor(list(pre.meanImage.meanImage), dtype=torch.float32).reshape(-1, t.height, t.width)
        b.add(f"{name}__mean_image", "sub", [name], [name], fn=lambda x: x - mean)
        return
    if which != "scaler":
        raise WorkbenchError(f"neural-network preprocessing {which!r} on input {name!r} is not supported; the "
                             "interpreter applies the scaler and the mean image")
    feature = next(f for f in spec.description.input if f.name == name)
    space = feature.type.imageType.colorSpace
    s = pre.scaler
    bias = {_COLOR("GRAYSCALE"): [s.grayBias], _COLOR("RGB"): [s.redBias, s.greenBias, s.blueBias],
            _COLOR("BGR"): [s.blueBias, s.greenBias, s.redBias]}.get(space, [s.grayBias])
    scale, bias_t = float(s.channelScale), torch.tensor(bias, dtype=torch.float32).reshape(1, -1, 1, 1)
    b.add(f"{name}__scaler", "scaler", [name], [name], fn=lambda x: x * scale + bias_t)


def _classifier(b: _Builder, spec, nn, outputs: list[str]) -> None:
    which = nn.WhichOneof("ClassLabels")
    labels = list(getattr(nn, which).vector) if which else []
    probs_out = spec.description.predictedProbabilitiesName
    label_out = spec.description.predictedFeatureName
    produced = {o for s in b.steps for o, _ in s.outputs}
    source = nn.labelProbabilityLayerName or (probs_out if probs_out in produced else b.steps[-1].outputs[0][0])
    classify = kernel("classify")
    b.steps.append(Step("classify", "classify", classify, {"classes": labels}, [("probabilities", source)],
                        [(label_out, False), (probs_out or "__probabilities__", False)]))


# the layer families register themselves; imported last, as they use the names above
from . import (  # noqa: E402,F401
    control_flow,
    elementwise,
    linear,
    normalization,
    random,
    recurrent,
    reduction,
    spatial,
    tensor,
)
