"""Turn a converter's exception into a ConversionError that names the op and suggests the known fixes.

The op comes from the converter's own frames when its text does not quote it: coremltools' torch frontend
converts node by node in `convert_nodes`, whose `node` (kind, name, module scope) is still in the traceback.
A fix is suggested only for the errors it was shown to cure (tests/fixes/, tests/test_wild_models.py).
"""

from __future__ import annotations

import re

from .errors import ConversionError, first_line

_NUMPY_24 = ("numpy 2.4 no longer converts one-element arrays to Python scalars, which coremltools 9.0 does when "
             "it casts a traced shape (int(H * W)): install numpy<2.4 (pip install 'numpy<2.4'; the workbench's "
             "constraints.txt pins it), or convert with method='export' (--method export)")

# (pattern in the converter's message, what it means and what to do). Order matters: first match wins.
KNOWN = [
    (r"only 0-dimensional arrays can be converted to Python scalars", _NUMPY_24),
    (r"prelu op: rank 3 or rank 5 input", "Core ML's prelu takes per-channel alpha only on rank-4 input; the "
     "workbench rewrites nn.PReLU modules (fix prelu_rank2), so this is a functional F.prelu/torch.prelu: call "
     "it on x[:, :, None, None] and flatten back (method='export' fails the same way)"),
    (r"ceil_mode", "MaxPool2d/AvgPool2d with ceil_mode=True: set ceil_mode=False and pad the input by one "
     "pixel on the bottom/right (F.pad) so the output size is unchanged"),
    (r"upsample|interpolate|resize|bicubic|align_corners",
     "an upsampling mode the target does not support: use nn.Upsample(mode='nearest') or mode='bilinear' with "
     "align_corners=False, or a ConvTranspose2d / PixelShuffle"),
    (r"data.dependent|GuardOnDataDependent|Could not guard|control flow|\bcond\b",
     "data-dependent control flow (an `if` or loop on tensor values): make the branch static, or use "
     "torch.cond / torch.where"),
    (r"trace|Tracer|TracingCheckError|not deterministic|Graphs differed",
     "the trace failed or is not faithful: try method='export' (--method export: torch.export) instead of tracing"),
    (r"dynamic shape|symbolic|SymInt",
     "a dynamic shape the converter cannot resolve: export with a fixed input size"),
]

_OP = re.compile(r"(?:op|operator|function for op|node)\s*[`'\"]([\w.:]+)[`'\"]", re.I)


def converting_node(exc: BaseException) -> tuple[str, str] | None:
    """(op kind, module location) of the torch node coremltools was converting when `exc` was raised, or None
    when it was not raised there."""
    tb, found = exc.__traceback__, None
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code.co_name in ("convert_nodes", "convert_single_node") and "node" in frame.f_locals:
            found = frame.f_locals["node"]  # the innermost one: a node inside a block (loop, if) wins
        tb = tb.tb_next
    kind = getattr(found, "kind", None)
    if not isinstance(kind, str):
        return None
    where = ""
    try:
        scope = found.get_scope_info()[0]
        parts = scope if isinstance(scope, (list, tuple)) else [scope]
        where = "/".join(str(s) for s in parts if s and not str(s).isdigit())  # module path, not value names
    except Exception:  # the scope is a nicety; the kind is what matters
        pass
    return kind, where


def conversion_error(fmt: str, exc: BaseException, *, module: str = "") -> ConversionError:
    """A ConversionError for `exc` raised while exporting to `fmt`, naming the op (from the message, else
    from the converter's frames) and the fix known to cure it."""
    text = f"{type(exc).__name__}: {exc}"
    quoted = _OP.search(text)
    node = converting_node(exc)
    op = quoted.group(1) if quoted else node[0] if node else None
    first = first_line(exc).rstrip(".")
    where = f" op '{op}'" if op else ""
    if node and node[1]:
        where += f" (in {node[1]})"
    fixes = [fix for pattern, fix in KNOWN if re.search(pattern, text, re.I)]
    if op and not fixes:
        if re.search(r"not implemented|no (?:converter|rule)", text, re.I):
            fixes.append(f"the converter has no rule for '{op}': rewrite that part of the model with supported "
                         "ops, or (Core ML) register one with coremltools' @register_torch_op; a workbench fix "
                         "for it goes in workbench/fixes/")
        else:
            fixes.append(f"the converter fails on this '{op}': rewrite that part of the model with other ops "
                         "(the message says what it could not take)")
    if not fixes:
        fixes.append("try method='export' (--method export: torch.export) instead of tracing, or simplify the "
                     "failing module")
    subject = f" {module}" if module else ""
    return ConversionError(f"{fmt} export of{subject} failed at{where or ' conversion'}: {first[:400]}. "
                           f"Fix: {fixes[0]}")
