"""Core ML compressed variants: coremltools.optimize.coreml on an exported ML program, saved as its own .mlpackage.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). Weight compression (linear, palettization, pruning) needs no data. `int8`
quantizes activations too: coremltools calibrates them by running the model with MLModel.predict, which
needs macOS, so the ranges are measured here with the workbench's Core ML interpreter on the calibration
images and handed to coremltools' own graph passes, which insert the same quantize/dequantize pairs.
Every op is compressed whatever its size (coremltools skips weights under 2048 elements by default; the
tiny models of the tests would otherwise come back unchanged).
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError, first_line, require
from ...files import atomic_output
from .. import Calibration
from ..base import Artifact, quiet

BLOCK_SIZE = 32


def linear8(artifact, path, *, calibration=None, overwrite=False):
    """8-bit linear (symmetric) weights, one scale per output channel."""
    cto = _cto()
    config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                         weight_threshold=0)
    return _save(artifact, path, lambda m: cto.linear_quantize_weights(m, _config(config)), "linear8",
                 "8-bit linear weights, per output channel", overwrite=overwrite)


def linear8_block(artifact, path, *, calibration=None, overwrite=False):
    """8-bit linear weights, one scale per block of input channels (iOS18): BLOCK_SIZE, or the largest
    divisor of an op's input channels below it."""
    cto = _cto()

    def compress(mlmodel):
        ops = {}
        for name, cin in _weight_inputs(mlmodel).items():
            block = max(d for d in range(1, min(BLOCK_SIZE, cin) + 1) if cin % d == 0)
            ops[name] = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_block",
                                                   block_size=block, weight_threshold=0)
        config = cto.OptimizationConfig(
            global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_block",
                                                      block_size=BLOCK_SIZE, weight_threshold=0),
            op_name_configs=ops)
        return cto.linear_quantize_weights(mlmodel, config)

    return _save(artifact, path, compress, "linear8_block",
                 f"8-bit linear weights per block of {BLOCK_SIZE} input channels (or fewer where an op has fewer)",
                 ios18=True, overwrite=overwrite)


def _palettize(bits: int):
    def palettize(artifact, path, *, calibration=None, overwrite=False):
        cto = _cto()
        config = cto.OpPalettizerConfig(mode="custom", lut_function=_kmeans(bits), granularity="per_tensor",
                                        weight_threshold=0)
        what = f"{bits}-bit palettized weights (k-means, {2 ** bits} values per tensor)"
        return _save(artifact, path, lambda m: cto.palettize_weights(m, _config(config)), f"palettize{bits}",
                     what, overwrite=overwrite)

    palettize.__name__ = f"palettize{bits}"
    palettize.__doc__ = f"Weights palettized to {2 ** bits} values per tensor by k-means ({bits}-bit indices)."
    return palettize


palettize8, palettize6, palettize4, palettize2 = (_palettize(b) for b in (8, 6, 4, 2))


def _kmeans(bits: int):
    """Each tensor's palette by optimal 1-D k-means: coremltools' own (its bundled kmeans1d, which its
    "kmeans" mode uses for large fp16 tensors). Its "kmeans" mode needs scikit-learn for the others, and
    without it the only choice was a uniform palette, which a few large weights ruin: a trained
    super-resolution net's centre taps near 1.0 left its typical weights (about 1e-3) a step of 5e-3, and
    8-bit palettes came out at 7 dB PSNR against 33 dB for 8-bit linear."""
    from coremltools.models.neural_network.quantization_utils import _get_kmeans_lookup_table_and_weight

    def lut_function(weight: np.ndarray):
        lut, indices = _get_kmeans_lookup_table_and_weight(bits, weight, force_kmeans1d=True)
        return lut.astype(weight.dtype), indices.reshape(-1).astype(np.uint8)

    return lut_function


def prune50(artifact, path, *, calibration=None, overwrite=False):
    """Half of each weight tensor set to zero, smallest magnitudes first (stored sparse)."""
    cto = _cto()
    config = cto.OpMagnitudePrunerConfig(target_sparsity=0.5, weight_threshold=0)
    return _save(artifact, path, lambda m: cto.prune_weights(m, _config(config)), "prune50",
                 "50% magnitude pruning, stored sparse", overwrite=overwrite)


def int8(artifact, path, *, calibration: Calibration | None = None, overwrite=False):
    """8-bit activations calibrated on the sample images (their ranges measured by the Core ML interpreter),
    then 8-bit linear weights per channel."""
    calibration = Calibration.require(calibration, "Core ML int8 quantizes activations")
    cto = _cto()

    def compress(mlmodel):
        stats = _activation_ranges(artifact, calibration)
        a8 = _quantize_activations(mlmodel, stats)
        config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                             weight_threshold=0)
        return cto.linear_quantize_weights(a8, _config(config))

    return _save(artifact, path, compress, "int8", "8-bit activations (calibrated) and 8-bit weights per channel",
                 calibration=calibration, overwrite=overwrite)


int8.calibrates = True


# -- helpers ------------------------------------------------------------------------------------------
def _cto():
    require("coremltools", "coremltools")
    import coremltools.optimize.coreml as cto

    return cto


def _config(op_config):
    return _cto().OptimizationConfig(global_config=op_config)


def _load(artifact: Artifact):
    ct = require("coremltools", "coremltools")
    if Path(artifact.path).suffix != ".mlpackage":
        raise WorkbenchError(f"{artifact.path} is a neural network (.mlmodel): Core ML compression works on ML "
                             "programs; export with target iOS15 or later")
    with quiet("coremltools"):
        return ct.models.MLModel(str(artifact.path), skip_model_load=True)


def _save(artifact: Artifact, path, compress, name: str, what: str, *, ios18: bool = False,
          calibration: Calibration | None = None, overwrite: bool = False) -> Artifact:
    """Load the artifact's program, compress it, record how in its metadata and save it at `path`."""
    ct = require("coremltools", "coremltools")
    mlmodel = _load(artifact)
    if ios18 and mlmodel.get_spec().specificationVersion < ct._SPECIFICATION_VERSION_IOS_18:
        what += " (raises the minimum target to iOS18)"
    try:
        with warnings.catch_warnings(), quiet("coremltools"):
            warnings.simplefilter("ignore")
            compressed = compress(_at_least_ios18(mlmodel) if ios18 else mlmodel)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"Core ML {name} compression of {artifact.path} failed: {type(exc).__name__}: "
                             f"{first_line(exc)}") from exc
    meta = compressed.user_defined_metadata
    meta.update({k: v for k, v in mlmodel.user_defined_metadata.items() if k not in meta})
    meta["workbench.compression"] = name
    if calibration is not None:
        meta["workbench.calibration"] = json.dumps(calibration.to_dict())
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        compressed.save(str(tmp))
    warning = calibration.warning() if calibration is not None else None
    return dataclasses.replace(artifact, path=path, notes=(what,) + ((warning,) if warning else ()), traced=None)


def _at_least_ios18(mlmodel):
    """The program as an iOS18 one: coremltools quantizes per block only there."""
    import coremltools as ct

    spec = mlmodel.get_spec()
    if spec.specificationVersion >= ct._SPECIFICATION_VERSION_IOS_18:
        return mlmodel
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.models import utils

    return utils._apply_graph_pass(mlmodel, [], spec_version=ct._SPECIFICATION_VERSION_IOS_18,
                                   pymil_load_func=milproto_load.load, skip_model_load=True)


def _weight_inputs(mlmodel) -> dict[str, int]:
    """{op name: input channels} of every conv and linear op (the axis per-block quantization divides)."""
    spec = mlmodel.get_spec()
    result = {}
    for function in spec.mlProgram.functions.values():
        for block in function.block_specializations.values():
            consts = {}
            for operation in block.operations:
                if operation.type == "const":
                    value = operation.attributes.get("val")
                    shape = [d.constant.size for d in operation.outputs[0].type.tensorType.dimensions]
                    if value is not None and len(shape) >= 2:
                        consts[operation.outputs[0].name] = (operation.outputs[0].name, shape)
            for operation in block.operations:
                if operation.type in ("conv", "linear", "conv_transpose") and "weight" in operation.inputs:
                    args = operation.inputs["weight"].arguments
                    if args and args[0].name in consts:
                        name, shape = consts[args[0].name]
                        result[name] = int(shape[0] if operation.type == "conv_transpose" else shape[1])
    return result


def _activation_ranges(artifact: Artifact, calibration: Calibration) -> dict:
    """{tensor name: {"rmin", "rmax"}} of every op output over the calibration inputs, measured with the
    interpreter at fp32 (coremltools measures them with predict, on macOS only)."""
    import torch

    from ...coreml_interp import CoreMLInterpreter

    interp = CoreMLInterpreter(artifact.path, compute_precision="fp32")
    names = {step.name: [n for n, _ in step.outputs] for step in interp.program.steps}
    outputs = set(interp.output_names)
    stats: dict = defaultdict(dict)

    def record(name, value):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point() or name in outputs:
            return
        lo, hi = float(value.min()), float(value.max())
        entry = stats[name]
        entry["rmin"] = min(lo, entry.get("rmin", lo))
        entry["rmax"] = max(hi, entry.get("rmax", hi))

    def observe(op_type, op_name, values):
        if op_type != "const":
            for name, value in zip(names.get(op_name, ()), values):
                record(name, value)

    (input_name,) = interp.program.inputs if len(interp.program.inputs) == 1 else (artifact.input_name,)
    for x in calibration.inputs:
        feed = torch.from_numpy(np.ascontiguousarray(x[None], np.float32))
        record(input_name, feed)
        interp.program.run({input_name: feed}, fp16=False, observe=observe)
    return {k: {"rmin": np.float32(v["rmin"]), "rmax": np.float32(v["rmax"])} for k, v in stats.items()}


def _quantize_activations(mlmodel, stats: dict):
    """coremltools' linear_quantize_activations with ranges measured here (its own calibration needs macOS)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto import load as milproto_load
    from coremltools.converters.mil.mil.passes.graph_pass import PassOption
    from coremltools.converters.mil.mil.passes.pass_registry import PASS_REGISTRY
    from coremltools.models import utils

    config = _config(_cto().OpLinearQuantizerConfig(mode="linear_symmetric"))
    passes = []
    for name in ("compression::insert_prefix_quantize_dequantize_pair",
                 "compression::insert_suffix_quantize_dequantize_pair"):
        graph_pass = PASS_REGISTRY[name]
        graph_pass.set_options([PassOption("config", config)])
        graph_pass.set_options([PassOption("activation_stats", stats)])
        passes.append(graph_pass)
    passes.append(PASS_REGISTRY["common::dequantize_quantize_pair_elimination"])
    return utils._apply_graph_pass(mlmodel, passes, spec_version=ct._SPECIFICATION_VERSION_IOS_17,
                                   pymil_load_func=milproto_load.load, skip_model_load=True)
