"""Coverage: every MIL op coremltools registers has a kernel, or a reason in registry.WITHOUT_KERNEL; so a
coremltools upgrade that adds an op fails here, naming it."""

import importlib
import pkgutil
from pathlib import Path

from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

from workbench.coreml_interp import known, ops, registry

# coremltools' dialect ops that converted models keep (the others are rewritten into MIL ops by its passes)
DIALECT_OPS_IN_MODELS = {"coreml_update_state"}


def test_every_registered_mil_op_has_a_kernel_or_a_reason():
    registered = set(SSAOpRegistry.core_ops) | DIALECT_OPS_IN_MODELS
    missing = sorted(registered - set(known()) - set(registry.WITHOUT_KERNEL))
    assert not missing, (f"MIL ops coremltools registers with no kernel in workbench/coreml_interp/ops/ and no "
                         f"reason in registry.WITHOUT_KERNEL: {missing}")
    stale = sorted(set(registry.WITHOUT_KERNEL) - registered)
    assert not stale, f"registry.WITHOUT_KERNEL names ops coremltools no longer registers: {stale}"
    assert not set(registry.WITHOUT_KERNEL) & set(known()), "an op both has a kernel and a reason not to"


def test_every_kernel_is_a_registered_op():
    registered = set(SSAOpRegistry.core_ops) | DIALECT_OPS_IN_MODELS
    assert not sorted(set(known()) - registered), "kernels for ops coremltools does not register"


def test_every_ops_module_mirrors_a_test_file():
    here = Path(__file__).parent
    families = [m.name for m in pkgutil.iter_modules(ops.__path__) if not m.name.startswith("_")]
    for family in families:
        importlib.import_module(f"workbench.coreml_interp.ops.{family}")
    missing = [f for f in families if not (here / f"test_{f}.py").is_file()]
    assert not missing, f"ops modules without tests/coreml_interp/test_<module>.py: {missing}"


def test_every_neural_network_layer_type_has_a_builder_or_a_reason():
    from coremltools.proto import NeuralNetwork_pb2

    from workbench.coreml_interp.neuralnetwork import UNSUPPORTED_LAYERS, supported_layers

    declared = {f.name for f in NeuralNetwork_pb2.NeuralNetworkLayer.DESCRIPTOR.oneofs_by_name["layer"].fields}
    missing = sorted(declared - set(supported_layers()) - set(UNSUPPORTED_LAYERS))
    assert not missing, (f"NeuralNetwork.proto layer types with no builder in workbench/coreml_interp/neuralnetwork/ "
                         f"and no reason in UNSUPPORTED_LAYERS: {missing}")
    assert set(UNSUPPORTED_LAYERS) <= declared and not set(UNSUPPORTED_LAYERS) & set(supported_layers())
