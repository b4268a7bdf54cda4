"""ops/quantization.py: quantize and dequantize (iOS17), one op at a time and in a model whose activations
coremltools.optimize.coreml quantized (calibrated with the interpreter, since Core ML's predict needs macOS)."""

import coremltools as ct
import coremltools.optimize.coreml as cto
import numpy as np
import pytest
import torch
from _mil import IOS17, assert_close, mb, mil_value, rand, run_op

from workbench.coreml_interp import CoreMLInterpreter


@pytest.mark.parametrize("dtype, zero_point", [("int8", None), ("uint8", np.uint8(128)), ("int8", np.int8(-3))])
def test_quantize_rounds_half_to_even_and_clips(dtype, zero_point):
    x = np.array([[-300.0, -2.5, -0.5, 0.5, 1.5, 2.5, 3.49, 300.0]], np.float32)
    kwargs = {"scale": np.float32(1.0), "output_dtype": dtype}
    if zero_point is not None:
        kwargs["zero_point"] = zero_point

    def build(x):
        return mb.dequantize(input=mb.quantize(input=x, **kwargs), scale=np.float32(1.0),
                             **({"zero_point": zero_point} if zero_point is not None else {}))

    out = run_op("quantize", build, x, opset=IOS17)
    low, high = (-128, 127) if dtype == "int8" else (0, 255)
    zp = 0 if zero_point is None else int(zero_point)
    expected = np.clip(np.round(x) + zp, low, high) - zp  # np.round: half to even, as MIL
    assert_close(out, expected, 0, 0)
    # coremltools' value_inference quantizes (dequantize has none): the same integers
    q = mil_value(lambda x: mb.quantize(input=x, **kwargs), x, opset=IOS17)
    assert q.dtype == np.dtype(dtype)
    assert_close(out, q.astype(np.float32) - zp, 0, 0, "against coremltools' value_inference")


def test_quantize_and_dequantize_per_channel():
    x = rand(2, 3, 4)
    scale = np.array([0.01, 0.05, 0.1], np.float32)
    zp = np.array([0, 10, -10], np.int8)

    def build(x):
        q = mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8")
        return mb.dequantize(input=q, scale=scale, zero_point=zp, axis=1)

    out = run_op("dequantize", build, x, opset=IOS17)
    s, z = scale.reshape(1, 3, 1), zp.reshape(1, 3, 1).astype(np.float32)
    expected = (np.clip(np.round(x / s) + z, -128, 127) - z) * s
    assert_close(out, expected, 1e-7, 1e-6)
    q = mil_value(lambda x: mb.quantize(input=x, scale=scale, zero_point=zp, axis=1, output_dtype="int8"), x,
                  opset=IOS17)
    assert_close(out, (q.astype(np.float32) - z) * s, 1e-7, 1e-6, "against coremltools' value_inference")
    assert np.abs(out - x).max() > 1e-3, "quantization should lose precision at these scales"


def _interpreter_stats(fpmodel, sample_data, calibration_op_group_size=-1):
    """Activation ranges per tensor, observed by the interpreter (what coremltools gets from predict on a Mac)."""
    interp = CoreMLInterpreter(fpmodel)
    names = {s.name: [n for n, _ in s.outputs] for s in interp.program.steps}
    stats = {}

    def observe(kind, name, outputs):
        for var, value in zip(names[name], outputs):
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                lo, hi = float(value.min()), float(value.max())
                old = stats.get(var, {"rmin": lo, "rmax": hi})
                stats[var] = {"rmin": min(lo, old["rmin"]), "rmax": max(hi, old["rmax"])}

    for data in sample_data:
        for k, v in data.items():
            stats[k] = {"rmin": float(v.min()), "rmax": float(v.max())}
        interp.predict(data, observe=observe)
    return stats


def test_activation_quantized_model_runs_close_to_the_float_model(monkeypatch, tmp_path):
    from coremltools.optimize.coreml import _post_training_quantization as ptq

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.ReLU()).eval()
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    model = ct.convert(torch.jit.trace(net, torch.from_numpy(x)), inputs=[ct.TensorType(name="x", shape=x.shape)],
                       convert_to="mlprogram", minimum_deployment_target=IOS17)
    monkeypatch.setattr(ptq, "_get_activation_calibration_stats", _interpreter_stats)
    config = cto.OptimizationConfig(global_config=cto.experimental.OpActivationLinearQuantizerConfig(
        mode="linear_symmetric"))
    quantized = cto.linear_quantize_activations(model, config, [{"x": x}])
    path = tmp_path / "a8.mlpackage"
    quantized.save(str(path))
    interp = CoreMLInterpreter(path, compute_precision="fp32")
    kinds = [s.op_type for s in interp.program.steps]
    assert "quantize" in kinds and "dequantize" in kinds, kinds
    out = next(iter(interp.predict({"x": x}).values()))
    expected = net(torch.from_numpy(x)).detach().numpy()
    # int8 activations: a few quantization steps (range / 255) of error
    step = np.ptp(expected) / 255
    assert np.abs(out - expected).max() < 8 * step
    assert np.abs(out - expected).max() > 1e-6, "the activations were not quantized"
