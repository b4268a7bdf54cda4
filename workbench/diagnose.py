"""Turn a converter's exception into a ConversionError that names the op and suggests the known fixes."""

from __future__ import annotations

import re

from .errors import ConversionError, first_line

# (pattern in the converter's message, what it means and what to do). Order matters: first match wins.
KNOWN = [
    (r"ceil_mode", "MaxPool2d/AvgPool2d with ceil_mode=True: set ceil_mode=False and pad the input by one "
     "pixel on the bottom/right (F.pad) so the output size is unchanged"),
    (r"upsample|interpolate|resize|bicubic|align_corners",
     "an upsampling mode the target does not support: use nn.Upsample(mode='nearest') or mode='bilinear' with "
     "align_corners=False, or a ConvTranspose2d / PixelShuffle"),
    (r"data.dependent|GuardOnDataDependent|Could not guard|control flow|\bcond\b",
     "data-dependent control flow (an `if` or loop on tensor values): make the branch static, or use "
     "torch.cond / torch.where"),
    (r"trace|Tracer|TracingCheckError|not deterministic|Graphs differed",
     "the trace failed or is not faithful: try method='export' (torch.export) instead of tracing"),
    (r"dynamic shape|symbolic|SymInt",
     "a dynamic shape the converter cannot resolve: export with a fixed input size"),
]

_OP = re.compile(r"(?:op|operator|function for op|node)\s*[`'\"]([\w.:]+)[`'\"]", re.I)


def conversion_error(fmt: str, exc: BaseException, *, module: str = "") -> ConversionError:
    """A ConversionError for `exc` raised while exporting to `fmt`."""
    text = f"{type(exc).__name__}: {exc}"
    op = _OP.search(text)
    first = first_line(exc).rstrip(".")
    where = f" op '{op.group(1)}'" if op else ""
    fixes = [fix for pattern, fix in KNOWN if re.search(pattern, text, re.I)]
    if op and not fixes:
        fixes.append(f"the converter has no rule for '{op.group(1)}': rewrite that part of the model with "
                     "supported ops, or (Core ML) register one with coremltools' @register_torch_op")
    if not fixes:
        fixes.append("try method='export' (torch.export) instead of tracing, or simplify the failing module")
    subject = f" {module}" if module else ""
    return ConversionError(f"{fmt} export of{subject} failed at{where or ' conversion'}: {first[:400]}. "
                           f"Fix: {fixes[0]}")
