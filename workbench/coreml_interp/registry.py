"""The op registry: one kernel per MIL op type, registered by decorator, duplicates refused.

A kernel is a plain function of the op's MIL inputs as keyword arguments. Tensors that vary at run time
arrive as float32 (or integer/bool) torch tensors; constants arrive as torch tensors when they are float
arrays and as numpy values or Python scalars otherwise (strides, axes, modes...). A kernel returns a
tensor, or a tuple for ops with several outputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import WorkbenchError

_KERNELS: dict[str, Callable] = {}
_SINCE: dict[str, int] = {}

# MIL ops coremltools registers that have no kernel, and why (tests/coreml_interp/test_coverage.py checks
# that every other registered op has one)
WITHOUT_KERNEL = {
    "const": "the program compiler turns const ops into constants",
    "_const_symbolic": "a const with a symbolic value, which only exists while coremltools builds a program; "
                       "the compiler turns it into a constant like const",
}


def op(*names: str, since: int = 13):
    """Register a kernel for the MIL ops `names` (available from opset iOS`since`). The default is
    coremltools' own for its core ops: iOS13, the neural-network era, whose ops ML programs kept (MIL
    programs may declare iOS13/14 and Core ML runs them); tests/coreml_interp/test_registry.py checks every
    kernel's `since` against coremltools' op registry."""

    def register(fn: Callable) -> Callable:
        for name in names:
            if name in _KERNELS:
                raise RuntimeError(f"MIL op {name!r} is registered twice ({_KERNELS[name].__module__} and "
                                   f"{fn.__module__})")
        for name in names:
            _KERNELS[name], _SINCE[name] = fn, since
        return fn

    return register


def kernel(name: str, opset: str = "") -> Callable:
    """The kernel for MIL op `name` in a program of `opset` ("iOS16"...). Raises a WorkbenchError naming the
    op and opset when there is no kernel, or when the op is newer than the program's opset."""
    _load()
    try:
        fn = _KERNELS[name]
    except KeyError:
        raise WorkbenchError(
            f"the Core ML interpreter does not implement MIL op {name!r}{f' (opset {opset})' if opset else ''}; "
            "check this model on a Mac, or report the op so a kernel can be added in "
            "workbench/coreml_interp/ops/") from None
    declared = _opset_number(opset)
    if declared is not None and declared < _SINCE[name]:
        raise WorkbenchError(f"MIL op {name!r} exists from opset iOS{_SINCE[name]}, but the program declares {opset}; "
                             f"the model is malformed: re-export it with minimum_deployment_target=iOS{_SINCE[name]} "
                             "or later")
    return fn


def since(name: str) -> int:
    """The first opset (iOS version) with MIL op `name`."""
    _load()
    return _SINCE[name]


def _opset_number(opset: str) -> int | None:
    match = re.fullmatch(r"iOS(\d+)", opset or "")
    return int(match.group(1)) if match else None


def known() -> list[str]:
    """Every MIL op type the interpreter runs."""
    _load()
    return sorted(_KERNELS)


def _load() -> None:
    from . import ops  # noqa: F401  (importing the package registers every family)
