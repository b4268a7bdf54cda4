"""The graph view of a Core AI asset. Netron 9.3.3 (the pinned version) has an MLIR bytecode reader
(mlir.js), but it cannot open `main.mlirb`: Netron's app registers that reader for `.mlir`, `.mlirbc` and
`.txt` only, and, fed the bytes directly, the reader stops at Core AI's own dialects ("Dialect 'aicode' is
unknown"; its metadata knows no `coreai` ops). So the view is the program as text, which Apple's MLIR
bindings print, with weights elided."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError, first_line

ELIDE = 16  # constants and resources larger than this many elements print as "elided"


def netron_file(path: str | Path) -> Path | None:
    """The file Netron should open for the asset at `path`: None, Netron cannot read Core AI's program."""
    return None


def program_text(path: str | Path) -> str:
    """The asset's program as MLIR text (its graphs, ops, types and I/O names), weights elided."""
    from .validate import load

    asset, _ = load(Path(path))
    try:
        module = asset.program._module._mlir_module
        text = module.operation.get_asm(large_elements_limit=ELIDE, large_resource_limit=ELIDE)
    except Exception as exc:
        raise WorkbenchError(f"Core AI cannot print the program of {path}: {first_line(exc)}") from exc
    return text.split("\n{-#", 1)[0].rstrip() + "\n"
