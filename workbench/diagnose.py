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


def autograd_functions(module, x) -> list[tuple[str, str, str]]:
    """(Function, dotted path of the module that calls it, that module's class) for each custom
    `torch.autograd.Function` (one defined outside torch) that one forward of `module` on `x` applies.

    A Function's forward is Python the exporters cannot see into: TorchScript refuses to save it ("Could not
    export Python function call"), and converters that read a trace meet an opaque PythonOp."""
    import torch

    stack: list[tuple[str, str]] = []
    found: dict[str, tuple[str, str, str]] = {}
    handles = []
    for name, sub in module.named_modules():
        handles.append(sub.register_forward_pre_hook(
            lambda m, a, name=name: stack.append((name, type(m).__name__))))
        handles.append(sub.register_forward_hook(lambda m, a, out: stack.pop() if stack else None))
    function = torch.autograd.Function
    original = function.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        if not cls.__module__.startswith("torch"):
            where, kind = stack[-1] if stack else ("", "")
            found.setdefault(cls.__name__, (cls.__name__, where, kind))
        return original.__func__(cls, *args, **kwargs)

    function.apply = classmethod(apply)
    try:
        with torch.no_grad():
            module(x)
    except Exception:  # reading the calls is a nicety: a forward that fails here names nothing
        pass
    finally:
        function.apply = original
        for h in handles:
            h.remove()
    return list(found.values())


def autograd_function_hint(functions: list[tuple[str, str, str]], text: str) -> str | None:
    """What to do when `text` (an exporter's error) comes from one of `functions` (`autograd_functions`), or
    None when it names none of them."""
    named = [f for f in functions if re.search(rf"\b{re.escape(f[0])}\b", text)]
    if not named and not re.search(r"PythonOp|Python function call|autograd\.Function", text, re.I):
        return None
    named = named or functions
    if not named:
        return None
    calls = "; ".join(f"{fn} (called by {kind} '{where}')" if where else f"{fn} (called by the model itself)"
                      for fn, where, kind in named[:3])
    return (f"the model calls the custom torch.autograd.Function {calls}, whose Python forward exporters cannot "
            "follow. Fix: for export, make that module compute its forward with torch ops directly (the Function "
            "is only there to save memory in training: a memory-efficient Swish is x * torch.sigmoid(x)), or use "
            "the library's export switch (efficientnet_pytorch: model.set_swish(memory_efficient=False))")
