"""registry.py: duplicates refused, an unknown op named with its opset, every op in exactly one ops module."""

import importlib
import pkgutil

import numpy as np
import pytest
from _mil import convert, mb, program

from workbench.coreml_interp import CoreMLInterpreter, known, ops, registry
from workbench.errors import WorkbenchError


def test_duplicate_registration_is_refused():
    with pytest.raises(RuntimeError, match=r"MIL op 'relu' is registered twice"):
        registry.op("relu")(lambda x: x)
    assert registry.kernel("relu").__module__ == "workbench.coreml_interp.ops.activation"


def test_unknown_op_names_the_op_and_the_opset():
    with pytest.raises(WorkbenchError, match=r"does not implement MIL op 'no_such_op' \(opset iOS17\)"):
        registry.kernel("no_such_op", "iOS17")
    with pytest.raises(WorkbenchError, match=r"'no_such_op'; check this model on a Mac"):
        registry.kernel("no_such_op")


def test_a_model_with_an_unimplemented_op_is_refused_at_load_naming_it(monkeypatch):
    x = np.ones((3, 3), np.float32)
    model = convert(program(lambda x: mb.band_part(x=x, lower=1, upper=0), x))
    registry._load()
    monkeypatch.delitem(registry._KERNELS, "band_part")  # every registered op has a kernel: pretend one is missing
    with pytest.raises(WorkbenchError, match=r"does not implement MIL op 'band_part' \(opset iOS16\)"):
        CoreMLInterpreter(model)


def _families():
    return [m.name for m in pkgutil.iter_modules(ops.__path__) if not m.name.startswith("_")]


def test_every_known_op_belongs_to_exactly_one_ops_module():
    owners = {}
    for family in _families():
        module = importlib.import_module(f"workbench.coreml_interp.ops.{family}")
        for name in known():
            if registry.kernel(name).__module__ == module.__name__:
                owners.setdefault(name, []).append(family)
    assert sorted(owners) == known(), f"ops with no module: {sorted(set(known()) - set(owners))}"
    assert all(len(v) == 1 for v in owners.values()), {k: v for k, v in owners.items() if len(v) > 1}


def test_every_ops_module_has_a_test_file():
    from pathlib import Path

    here = Path(__file__).parent
    missing = [f for f in _families() if not (here / f"test_{f}.py").is_file()]
    assert not missing, f"ops modules without tests/coreml_interp/test_<module>.py: {missing}"


def test_known_lists_the_families_ops():
    names = known()
    for op_type in ("conv", "relu", "softmax", "reduce_mean", "slice_by_index", "classify", "upsample_bilinear"):
        assert op_type in names
    assert names == sorted(set(names))


def test_an_op_newer_than_the_programs_opset_is_refused_naming_both():
    with pytest.raises(WorkbenchError, match=r"MIL op 'slice_update' exists from opset iOS18, but the program "
                                             r"declares iOS16.*minimum_deployment_target=iOS18"):
        registry.kernel("slice_update", "iOS16")
    assert registry.kernel("slice_update", "iOS18") is registry.kernel("slice_update")
    assert registry.since("quantize") == 17 and registry.since("relu") == 13


def test_every_kernel_is_available_from_the_opset_coremltools_registers_its_op_at():
    # coremltools' core ops carry the first opset they exist in (iOS13 for most: the neural-network era);
    # a later `since` would refuse programs that Core ML runs, an earlier one would accept malformed ones
    from coremltools.converters.mil.mil.ops.registry import SSAOpRegistry

    wrong = {}
    for name in known():
        variants = SSAOpRegistry.core_ops.get(name)
        if variants:  # coreml_update_state is a dialect op of coremltools' stateful conversion
            first = int(min(variants).name.removeprefix("iOS"))
            if registry.since(name) != first:
                wrong[name] = (registry.since(name), first)
    assert not wrong, f"{{op: (interpreter's since, coremltools' first opset)}}: {wrong}"
    assert registry.since("band_part") == 13 and registry.since("resample") == 15
