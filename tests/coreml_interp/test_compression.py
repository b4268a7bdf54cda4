"""ops/compression.py: models compressed by coremltools.optimize.coreml run, decompressed once at load.

Each compressed model is saved to an .mlpackage and loaded from the path (where the constexpr ops' outputs
have no value). The reference is the same small network in PyTorch with the weights coremltools itself
decompresses (`materialized_val_inference`, numpy code in coremltools); the kernels are also checked
one by one against coremltools' `decompress` on layouts the optimizer does not produce (vector LUTs,
blocks on several axes, iOS16 bit packing).
"""

import coremltools as ct
import coremltools.optimize.coreml as cto
import numpy as np
import pytest
import torch
from _mil import IOS16, IOS17, assert_close, convert, mb
from coremltools.converters.mil.mil import types
from coremltools.converters.mil.mil.ops.defs import iOS16 as defs16
from coremltools.converters.mil.mil.ops.defs import iOS18 as defs18

from workbench.coreml_interp import CoreMLInterpreter
from workbench.coreml_interp.registry import kernel

IOS18 = ct.target.iOS18
# fp32 network, same weights on both sides: sums of <= 144 products, fp32 rounding only
ATOL, RTOL = 1e-4, 1e-4


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 16, 3), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 8)).eval()


X = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)


def _convert(target, precision=ct.precision.FLOAT32):
    net = _net()
    traced = torch.jit.trace(net, torch.from_numpy(X))
    model = ct.convert(traced, inputs=[ct.TensorType(name="x", shape=X.shape)], convert_to="mlprogram",
                       minimum_deployment_target=target, compute_precision=precision)
    return net, model


@pytest.fixture(scope="module")
def ios18():
    return _convert(IOS18)


@pytest.fixture(scope="module")
def ios16():
    return _convert(IOS16)


def _config(op_config):
    return cto.OptimizationConfig(global_config=op_config)


def _decompressed_weights(model) -> list:
    """coremltools' own decompression of each conv/linear weight, in program order."""
    out = []
    for operation in model._mil_program.functions["main"].operations:
        if operation.op_type in ("conv", "linear"):
            w = operation.weight
            value = w.val if w.val is not None else w.op.materialized_val_inference()
            out.append(np.asarray(value, np.float32))
    return out


def _torch_reference(net, weights):
    layers = [m for m in net if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert len(layers) == len(weights)
    ref = _net()
    ref.load_state_dict(net.state_dict())
    with torch.no_grad():
        for layer, w in zip([m for m in ref if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))], weights):
            layer.weight.copy_(torch.from_numpy(w))
        return ref(torch.from_numpy(X)).numpy()


def _run_saved(model, tmp_path, name="compressed"):
    path = tmp_path / f"{name}.mlpackage"
    model.save(str(path))
    interp = CoreMLInterpreter(path)
    return interp, interp.predict({"x": X})[interp.output_names[0]]


COMPRESSIONS = {
    "int8-per-channel": (lambda m: cto.linear_quantize_weights(m, _config(cto.OpLinearQuantizerConfig(
        mode="linear_symmetric", dtype="int8", granularity="per_channel", weight_threshold=0))),
        "constexpr_blockwise_shift_scale"),
    "int4-per-block": (lambda m: cto.linear_quantize_weights(m, _config(cto.OpLinearQuantizerConfig(
        mode="linear", dtype="int4", granularity="per_block", block_size=4, weight_threshold=0))),
        "constexpr_blockwise_shift_scale"),
    "palettize-8bit": (lambda m: cto.palettize_weights(m, _config(cto.OpPalettizerConfig(
        nbits=8, mode="uniform", weight_threshold=0))), "constexpr_lut_to_dense"),
    "palettize-6bit": (lambda m: cto.palettize_weights(m, _config(cto.OpPalettizerConfig(
        nbits=6, mode="uniform", weight_threshold=0))), "constexpr_lut_to_dense"),
    "palettize-4bit-grouped": (lambda m: cto.palettize_weights(m, _config(cto.OpPalettizerConfig(
        nbits=4, mode="uniform", granularity="per_grouped_channel", group_size=4, weight_threshold=0))),
        "constexpr_lut_to_dense"),
    "palettize-2bit": (lambda m: cto.palettize_weights(m, _config(cto.OpPalettizerConfig(
        nbits=2, mode="uniform", weight_threshold=0))), "constexpr_lut_to_dense"),
    "prune": (lambda m: cto.prune_weights(m, _config(cto.OpMagnitudePrunerConfig(
        target_sparsity=0.5, weight_threshold=0))), "constexpr_sparse_to_dense"),
    "prune-then-palettize": (lambda m: cto.palettize_weights(
        cto.prune_weights(m, _config(cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0))),
        _config(cto.OpPalettizerConfig(nbits=4, mode="uniform", weight_threshold=0)), joint_compression=True),
        "constexpr_lut_to_sparse"),
    "prune-then-quantize": (lambda m: cto.linear_quantize_weights(
        cto.prune_weights(m, _config(cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0))),
        _config(cto.OpLinearQuantizerConfig(mode="linear_symmetric", weight_threshold=0)), joint_compression=True),
        "constexpr_sparse_blockwise_shift_scale"),
}


def _loaded_op_types(path):
    from coremltools.converters.mil.frontend.milproto.load import load

    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    return {o.op_type for o in load(spec, spec.specificationVersion, model.weights_dir).functions["main"].operations}


@pytest.mark.parametrize("case", list(COMPRESSIONS))
def test_ios18_compressed_model_matches_coremltools_decompression(case, ios18, tmp_path):
    net, model = ios18
    compress, op_type = COMPRESSIONS[case]
    compressed = compress(model)
    interp, out = _run_saved(compressed, tmp_path)
    assert op_type in _loaded_op_types(tmp_path / "compressed.mlpackage"), "the compression was not applied"
    # decompressed once, at load: no constexpr op is left for predict to run
    assert not [s.op_type for s in interp.program.steps if s.op_type.startswith("constexpr_")]
    weights = _decompressed_weights(compressed)
    assert_close(out, _torch_reference(net, weights), ATOL, RTOL, f"{case} against coremltools' decompression")
    uncompressed = net(torch.from_numpy(X)).detach().numpy()
    assert not np.allclose(out, uncompressed, atol=1e-7, rtol=0), f"{case}: the weights did not change"
    # compression error stays bounded: the logits move by less than a third of their spread
    assert np.abs(out - uncompressed).max() < np.ptp(uncompressed) / 3, f"{case}: decompressed far from the original"


@pytest.mark.parametrize("case, op_type", [
    ("quantize", "constexpr_affine_dequantize"), ("palettize", "constexpr_lut_to_dense"),
    ("prune", "constexpr_sparse_to_dense")])
def test_ios16_compressed_model_matches_coremltools_decompression(case, op_type, ios16, tmp_path):
    net, model = ios16
    compress = {
        "quantize": lambda m: cto.linear_quantize_weights(m, _config(cto.OpLinearQuantizerConfig(
            mode="linear", weight_threshold=0))),
        "palettize": lambda m: cto.palettize_weights(m, _config(cto.OpPalettizerConfig(
            nbits=6, mode="uniform", weight_threshold=0))),
        "prune": lambda m: cto.prune_weights(m, _config(cto.OpMagnitudePrunerConfig(
            target_sparsity=0.4, weight_threshold=0))),
    }[case]
    compressed = compress(model)
    interp, out = _run_saved(compressed, tmp_path)
    assert op_type in _loaded_op_types(tmp_path / "compressed.mlpackage")
    assert_close(out, _torch_reference(net, _decompressed_weights(compressed)), ATOL, RTOL, case)


def test_a_reloaded_and_resaved_compressed_package_runs(ios18, tmp_path):
    net, model = ios18
    compressed = COMPRESSIONS["palettize-4bit-grouped"][0](model)
    first = tmp_path / "first.mlpackage"
    compressed.save(str(first))
    reloaded = ct.models.MLModel(str(first), skip_model_load=True)
    _, out = _run_saved(reloaded, tmp_path, "second")
    expected = CoreMLInterpreter(first).predict({"x": X})
    assert_close(out, next(iter(expected.values())), 0, 0, "the re-saved package gives the first one's outputs")
    assert_close(out, _torch_reference(net, _decompressed_weights(compressed)), ATOL, RTOL)


def test_fp16_compressed_weights_are_rounded_to_fp16(tmp_path):
    net, model = _convert(IOS18, ct.precision.FLOAT16)
    compressed = COMPRESSIONS["int8-per-channel"][0](model)
    interp, out = _run_saved(compressed, tmp_path)
    weights = _decompressed_weights(compressed)
    assert all(w.dtype == np.float32 for w in weights)
    # fp16 activations: a few fp16 ulps of the logits
    assert_close(out, _torch_reference(net, weights), 2e-2, 2e-2, "fp16 program against fp32 torch")
    fp32 = CoreMLInterpreter(tmp_path / "compressed.mlpackage", compute_precision="fp32").predict({"x": X})
    assert_close(next(iter(fp32.values())), _torch_reference(net, [w.astype(np.float16).astype(np.float32)
                                                                   for w in weights]), ATOL, RTOL)


# the kernels one by one, against coremltools' decompress on layouts the optimizer does not produce

def test_lut_to_dense_vector_palettization_along_each_axis():
    rng = np.random.default_rng(1)
    indices = rng.integers(0, 4, (2, 4, 6)).astype(np.uint8)
    lut = rng.standard_normal((2, 1, 3, 4, 3)).astype(np.float32)  # 2 x 3 blocks, 4 palettes, vectors of 3
    for axis in (0, 1, 2, -1):
        expected = defs18.constexpr_lut_to_dense.decompress(indices, lut, np.int32(axis))
        out = kernel("constexpr_lut_to_dense")(indices=indices, lut=torch.from_numpy(lut), vector_axis=np.int32(axis))
        assert out.shape == expected.shape
        assert_close(out, expected, 0, 0, f"vector_axis {axis}")


def test_blockwise_shift_scale_blocks_on_every_axis():
    rng = np.random.default_rng(2)
    data = rng.integers(-8, 8, (4, 6, 2)).astype(np.int8)
    scale = rng.uniform(0.1, 1, (2, 3, 1)).astype(np.float32)
    offset = rng.integers(-2, 2, (2, 3, 1)).astype(np.int8)
    expected = defs18.constexpr_blockwise_shift_scale.decompress(data, scale, offset)
    out = kernel("constexpr_blockwise_shift_scale")(data=data, scale=torch.from_numpy(scale), offset=offset)
    assert_close(out, expected, 1e-6, 1e-6)
    assert out[1, 2, 0] == pytest.approx(scale[0, 1, 0] * (data[1, 2, 0] - offset[0, 1, 0]), abs=1e-6)


def test_sparse_ops_give_mask_and_values_that_sparse_to_dense_rebuilds():
    rng = np.random.default_rng(3)
    mask = (rng.uniform(size=(4, 6)) > 0.5).astype(np.uint8)
    nz = rng.integers(0, 2, int(mask.sum())).astype(np.uint8)
    lut = np.array([[[[2.0, 2.5], [3.0, 3.5]]]], np.float32)  # vectors of 2
    exp_mask, exp_values = defs18.constexpr_lut_to_sparse.decompress(mask, nz, lut, np.int32(0))
    out_mask, out_values = kernel("constexpr_lut_to_sparse")(indices_mask=mask, indices_nonzero_data=nz,
                                                             lut=torch.from_numpy(lut), vector_axis=np.int32(0))
    np.testing.assert_array_equal(out_mask, exp_mask)
    assert_close(out_values, exp_values, 0, 0)
    dense = kernel("constexpr_sparse_to_dense")(nonzero_data=out_values, mask=out_mask)
    assert_close(dense, defs18.constexpr_sparse_to_dense.decompress(exp_values, exp_mask), 0, 0)
    data = rng.integers(-5, 5, int(mask.sum())).astype(np.int8)
    scale = np.array([[0.5, 0.25, 2.0]], np.float32)  # blocks of 2 columns
    exp = defs18.constexpr_sparse_blockwise_shift_scale.decompress(mask, data, scale, None)
    got = kernel("constexpr_sparse_blockwise_shift_scale")(data_mask=mask, nonzero_data=data,
                                                           scale=torch.from_numpy(scale))
    np.testing.assert_array_equal(got[0], exp[0])
    assert_close(got[1], exp[1], 0, 0)


def test_ios16_packed_lut_and_mask():
    rng = np.random.default_rng(4)
    shape = np.array([3, 5], np.uint32)
    for nbits in (1, 2, 4, 6, 8):
        lut = rng.standard_normal(2 ** nbits).astype(np.float32)
        values = rng.integers(0, 2 ** nbits, 15)
        bits = ((values[:, None] >> np.arange(nbits)) & 1).astype(np.uint8).reshape(-1)
        packed = np.packbits(bits, bitorder="little")
        expected = defs16.constexpr_lut_to_dense.decompress(lut, packed, shape)
        out = kernel("constexpr_lut_to_dense")(indices=packed, lut=torch.from_numpy(lut), shape=shape)
        assert_close(out, expected, 0, 0, f"{nbits}-bit indices")
        assert_close(out, lut[values].reshape(3, 5), 0, 0)
    mask = np.packbits((rng.uniform(size=15) > 0.5).astype(np.uint8), bitorder="little")
    nz = rng.standard_normal(int(np.unpackbits(mask).sum())).astype(np.float32)
    out = kernel("constexpr_sparse_to_dense")(nonzero_data=torch.from_numpy(nz), mask=mask, shape=shape)
    assert_close(out, defs16.constexpr_sparse_to_dense.decompress(nz, mask, shape), 0, 0)


def test_ios16_affine_dequantize_per_axis_and_cast():
    q = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    zp, scale = np.array([1, 2, 3], np.uint8), np.array([0.5, 1.0, 2.0], np.float32)
    expected = defs16.constexpr_affine_dequantize.decompress(q, zp, scale, 1)
    out = kernel("constexpr_affine_dequantize")(quantized_data=q, zero_point=zp, scale=torch.from_numpy(scale),
                                                axis=np.int32(1))
    assert_close(out, expected, 0, 0)
    half = np.array([1.5, -2.25], np.float16)
    assert_close(kernel("constexpr_cast")(source_val=half, output_dtype="fp32"), half.astype(np.float32), 0, 0)


def test_a_constexpr_op_in_a_built_program_is_folded_and_used():
    indices = np.array([[0, 1], [2, 3]], dtype=types.np_uint2_dtype)
    lut = np.array([1.0, 2.0, 4.0, 8.0], np.float32).reshape(1, 1, 4, 1)
    x = np.ones((2, 2), np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=IOS18)
    def prog(x):
        return mb.add(x=x, y=mb.constexpr_lut_to_dense(indices=indices, lut=lut))

    interp = CoreMLInterpreter(convert(prog, opset=IOS18))
    assert [s.op_type for s in interp.program.steps] == ["add"]
    out = next(iter(interp.predict({"x": x}).values()))
    assert_close(out, [[2.0, 3.0], [5.0, 9.0]], 0, 0)


def test_constexpr_cast_ios17_fp16_weights():
    w = np.array([[0.1, -0.2], [0.3, 0.4]], np.float16)
    x = np.ones((2, 2), np.float32)

    @mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=IOS17)
    def prog(x):
        return mb.matmul(x=x, y=mb.constexpr_cast(source_val=w, output_dtype="fp32"))

    out = next(iter(CoreMLInterpreter(convert(prog, opset=IOS17)).predict({"x": x}).values()))
    assert_close(out, x @ w.astype(np.float32), 1e-6, 0)
