"""The graph view of a Core AI asset: its program as text, because Netron cannot read it.

Netron 9.3.3 (the pinned version) has an MLIR reader (mlir.js), checked on an exported asset with that reader
itself (run in Node): on `main.mlirb` (MLIR bytecode) it stops at "Dialect 'aicode' is unknown.", and on the
program printed as MLIR text at "Unsupported dialect 'coreai'": its metadata knows no Core AI op. (Its app
also registers that reader for `.mlir`, `.mlirbc` and `.txt` only, not `.mlirb`.) So `netron_file` says so, and
`program_text` is the view: the program as Apple's MLIR bindings print it, with weights elided.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError, first_line

ELIDE = 16  # constants and resources larger than this many elements print as "elided"
NETRON_CANNOT = ("Netron 9.3.3 cannot read a Core AI program ({path}/main.mlirb: its MLIR reader knows no Core AI "
                 "dialect); show its program as text instead: workbench.formats.coreai.graph.program_text({path!r})")


def netron_file(path: str | Path) -> Path:
    """The file Netron opens for the asset at `path` (`Format.netron`): there is none, so this always raises a
    WorkbenchError that says so and names the text view (after the asset's files are checked: a damaged asset
    is named as such)."""
    from .validate import check_files

    check_files(Path(path))
    raise WorkbenchError(NETRON_CANNOT.format(path=str(path)))


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
