"""What the fix tests share: convert a tiny model with and without the workbench, run the Core ML program."""

import logging
import warnings

import numpy as np
import torch

from workbench import CoreMLInterpreter
from workbench.formats.base import ExportSpec
from workbench.formats.coreml.export import export_coreml

logging.getLogger("coremltools").setLevel(logging.CRITICAL)


def raw_convert(module, shape):
    """coremltools alone, as a user would call it: raises where the converter has a gap."""
    import coremltools as ct

    traced = torch.jit.trace(module.eval(), torch.rand(shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ct.convert(traced, inputs=[ct.TensorType(name="image", shape=shape)],
                          minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32)


def workbench_convert(module, shape, path):
    """The workbench's Core ML export (fixes applied) at fp32; returns the artifact and the program's output
    on a fixed input next to PyTorch's."""
    spec = ExportSpec(module=module.eval(), input_shape=shape, output_names=("output",), source=type(module).__name__)
    artifact = export_coreml(spec, path / "m.mlpackage", precision="fp32")
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    got = CoreMLInterpreter(artifact.path).predict({"image": x})
    with torch.no_grad():
        want = module(torch.from_numpy(x)).numpy()
    return artifact, next(iter(got.values())), want
