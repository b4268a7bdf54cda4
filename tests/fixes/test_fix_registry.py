"""The registry of workbench fixes: one name each, applied on a copy, op fixes only during a conversion."""

import pytest
import torch
from torch import nn

from workbench import fixes


def test_the_known_gaps_are_registered():
    assert {"prelu_rank2", "int_of_shape", "swapaxes", "addcmul"} <= set(fixes.registry())


def test_a_name_registered_twice_is_refused():
    fixes.registry()
    with pytest.raises(RuntimeError, match="workbench fix 'swapaxes' is registered twice"):
        fixes.op_fix("swapaxes", gap="", note="", ops=("swapaxes",))(lambda context, node, original: True)


def test_a_model_no_fix_applies_to_is_returned_as_it_is():
    model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.ReLU())
    assert fixes.apply(model) == (model, ())


def test_op_fixes_are_in_coremltools_only_while_converting():
    pytest.importorskip("coremltools")
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    table = _TORCH_OPS_REGISTRY.name_to_func_mapping
    before = dict(table)
    with fixes.converting() as used:
        assert table["swapaxes"].__name__ == "workbench_fix_swapaxes" and used == []
    assert table == before


def test_module_fix_by_decorator_rewrites_a_copy():
    class Doubler(nn.Module):
        def forward(self, x):
            return 2 * x

    find = lambda model: fixes.modules_of_type(model, nn.Identity)  # noqa: E731
    try:
        fixes.module_fix("test_identity", gap="", note="Identity doubled", find=find)(lambda m: Doubler())
        model = nn.Sequential(nn.Identity(), nn.Identity())
        fixed, notes = fixes.apply(model)
        assert fixed is not model and fixed(torch.ones(1)).item() == 4 and model(torch.ones(1)).item() == 1
        assert notes == ("workbench fix test_identity: Identity doubled (0, 1)",)
    finally:
        fixes.unregister("test_identity")
