"""torch.addcmul / addcdiv (timm's convnextv2: GlobalResponseNorm's ``addcmul(bias, weight, x * nx)``), for
which coremltools 9.0 has no conversion: "PyTorch convert function for op 'addcmul' not implemented". The fix
writes them as what they are: input + value * tensor1 * tensor2 (or / tensor2).
"""

from __future__ import annotations

from . import op_fix


@op_fix("addcmul", gap="convert function for op 'addcmul' not implemented",
        note="addcmul/addcdiv converted as input + value * t1 * t2 (coremltools has no conversion for them)",
        ops=("addcmul", "addcdiv"))
def convert(context, node, original) -> bool:
    """Convert with coremltools' own op when it has one, else with mul/real_div and add; True when the fix ran."""
    if original is not None:
        original(context, node)
        return False
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    inputs = _get_inputs(context, node, min_expected=3)
    base, t1, t2 = inputs[:3]
    value = inputs[3].val if len(inputs) > 3 and inputs[3] is not None else 1
    kind = node.kind.lower()
    product = mb.real_div(x=t1, y=t2) if "addcdiv" in kind else mb.mul(x=t1, y=t2)
    if value is not None and float(value) != 1.0:
        product = mb.mul(x=product, y=float(value))
    context.add(mb.add(x=base, y=product, name=node.name))
    return True
