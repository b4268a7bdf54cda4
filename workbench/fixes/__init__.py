"""Workbench fixes for known converter gaps: applied before every Core ML conversion, listed in the artifact's
notes.

Two kinds, one registry. A module fix rewrites submodules of a copy of the model (the user's model is never
changed): it names the modules it finds and what replaces each. An op fix gives coremltools' torch frontend
a conversion for a torch op it lacks or gets wrong, for the duration of one conversion only. Each fix is a
module of this package, registered by decorator; a name registered twice is a bug. Every fix is tested to
give the same outputs as the module it replaces (tests/fixes/).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Fix:
    """A known converter gap and the workbench's way round it.

    gap: what the converter cannot do, as its error shows it. note: what the artifact's notes say when the fix
    ran. find/replace (module fix): find(model) yields the dotted names of the submodules to replace,
    replace(submodule) gives the replacement. ops/convert (op fix): the torch op kinds (as coremltools names
    them: "int", "swapaxes") and `convert(context, node, original)`, where `original` is coremltools' own
    conversion (None when it has none).
    """

    name: str
    gap: str
    note: str
    find: Callable | None = None
    replace: Callable | None = None
    ops: tuple[str, ...] = ()
    convert: Callable | None = None


_REGISTRY: dict[str, Fix] = {}
_discovered = False


def _add(fix: Fix) -> Fix:
    if fix.name in _REGISTRY:
        raise RuntimeError(f"workbench fix {fix.name!r} is registered twice")
    _REGISTRY[fix.name] = fix
    return fix


def module_fix(name: str, *, gap: str, note: str, find: Callable):
    """Register the decorated `replace(submodule) -> module` as the module fix `name`; `find(model)` yields the
    dotted names of the submodules it replaces."""
    def decorate(replace: Callable) -> Callable:
        _add(Fix(name, gap, note, find=find, replace=replace))
        return replace
    return decorate


def op_fix(name: str, *, gap: str, note: str, ops: tuple[str, ...]):
    """Register the decorated `convert(context, node, original)` as the op fix `name` for torch op kinds `ops`."""
    def decorate(convert: Callable) -> Callable:
        _add(Fix(name, gap, note, ops=tuple(ops), convert=convert))
        return convert
    return decorate


def unregister(name: str) -> None:
    """Remove a fix (tests register fixes of their own)."""
    _REGISTRY.pop(name, None)


def registry() -> dict[str, Fix]:
    """Every registered fix by name (this package's modules are imported on first use)."""
    global _discovered
    if not _discovered:
        _discovered = True
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(_REGISTRY)


def apply(module) -> tuple[object, tuple[str, ...]]:
    """`module` with every module fix applied: (a rewritten copy, or `module` itself when no fix applies; the
    notes of the fixes that ran, naming the submodules)."""
    found = {fix.name: list(fix.find(module)) for fix in registry().values() if fix.find is not None}
    found = {name: paths for name, paths in found.items() if paths}
    if not found:
        return module, ()
    fixed = copy.deepcopy(module)
    notes = []
    for name, paths in found.items():
        fix = _REGISTRY[name]
        for path in paths:
            parent, _, attr = path.rpartition(".")
            owner = fixed.get_submodule(parent) if parent else fixed
            setattr(owner, attr, fix.replace(getattr(owner, attr)))
        shown = ", ".join(paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
        notes.append(f"workbench fix {name}: {fix.note} ({shown})")
    return fixed, tuple(notes)


@contextlib.contextmanager
def converting() -> Iterator[list[str]]:
    """coremltools' torch frontend with the op fixes in place; yields the notes of the fixes that ran (filled
    as the conversion goes). The frontend's own conversions are back when the block ends."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import _TORCH_OPS_REGISTRY

    table = _TORCH_OPS_REGISTRY.name_to_func_mapping
    used: list[str] = []
    saved = {}
    for fix in registry().values():
        for kind in fix.ops:
            saved[kind] = table.get(kind)
            table[kind] = _recording(fix, saved[kind], used)
    try:
        yield used
    finally:
        for kind, original in saved.items():
            if original is None:
                table.pop(kind, None)
            else:
                table[kind] = original


def _recording(fix: Fix, original, used: list[str]):
    note = f"workbench fix {fix.name}: {fix.note}"

    def convert(context, node):
        if fix.convert(context, node, original) and note not in used:
            used.append(note)
    convert.__name__ = f"workbench_fix_{fix.name}"
    return convert


def modules_of_type(model, kind, where: Callable = lambda m: True) -> Iterator[str]:
    """Dotted names of `model`'s submodules of type `kind` (exactly, not subclasses) for which `where` holds."""
    for name, sub in model.named_modules():
        if name and type(sub) is kind and where(sub):
            yield name
