"""torch.swapaxes / swapdims (torchvision's maxvit_t: its SwapAxes module), for which coremltools 9.0 has no
conversion: "PyTorch convert function for op 'swapaxes' not implemented". They are transpose(x, a, b) under
another name, so the fix converts them with coremltools' own transpose.
"""

from __future__ import annotations

from . import op_fix


@op_fix("swapaxes", gap="convert function for op 'swapaxes' not implemented",
        note="swapaxes/swapdims converted as transpose (coremltools has no conversion for them)",
        ops=("swapaxes", "swapdims"))
def convert(context, node, original) -> bool:
    """Convert with coremltools' own swapaxes when it has one, else with its transpose; True when the fix ran."""
    if original is not None:
        original(context, node)
        return False
    from coremltools.converters.mil.frontend.torch.ops import transpose

    transpose(context, node)
    return True
