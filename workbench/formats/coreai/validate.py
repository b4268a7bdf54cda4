"""Checking a Core AI `.aimodel` when it is loaded: a folder with its program, the program's hash and its
metadata, the program whole (its SHA-256 is the one `main.hash` records), then Apple's own reader."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ...errors import WorkbenchError, first_line
from . import _packages

PROGRAM, HASH, METADATA = "main.mlirb", "main.hash", "metadata.json"
MAGIC = b"ML\xefR"  # MLIR bytecode
AGAIN = "copy the whole .aimodel folder again, or export it again"


def check_files(path: Path) -> None:
    """The asset's files are there and whole, before Apple's reader parses anything; a WorkbenchError naming
    the file and the fix if not."""
    path = Path(path)
    if not path.exists():
        raise WorkbenchError(f"{path} does not exist; export the model to Core AI first")
    if not path.is_dir():
        raise WorkbenchError(f"{path} is a file, but a Core AI .aimodel is a folder (main.mlirb, main.hash, "
                             f"metadata.json; a zipped download?): unzip it, or {AGAIN}")
    program = path / PROGRAM
    if not program.is_file():
        found = ", ".join(sorted(p.name for p in path.iterdir())[:6]) or "nothing"
        raise WorkbenchError(f"{path} has no {PROGRAM} (it holds {found}), so it is not a Core AI model asset; "
                             f"{AGAIN}")
    data = program.read_bytes()
    if not data.startswith(MAGIC):
        raise WorkbenchError(f"{program} is not MLIR bytecode (no 'ML\\xefR' signature; another format?); {AGAIN}")
    digest = path / HASH
    if not digest.is_file():
        raise WorkbenchError(f"{path} is missing {HASH}, the checksum of its program; {AGAIN}")
    if hashlib.sha256(data).digest() != digest.read_bytes():
        raise WorkbenchError(f"{program} is truncated or damaged: its SHA-256 is not the one {HASH} records; {AGAIN}")
    meta = path / METADATA
    try:
        json.loads(meta.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise WorkbenchError(f"{path} is missing {METADATA}; {AGAIN}") from None
    except (ValueError, OSError) as exc:
        raise WorkbenchError(f"{meta} is damaged ({first_line(exc)}); {AGAIN}") from exc


def load(path: Path):
    """The checked asset (an AIModelAsset) and its summary; a WorkbenchError naming the file if Apple's reader
    refuses it."""
    from ._loop import native_captured

    check_files(path)
    api = _packages.asset_api()
    with native_captured() as said:
        try:
            asset = api.AIModelAsset.load(Path(path))
            summary = asset.summary(include_statistics=False)
        except (RuntimeError, ValueError, OSError) as exc:
            summary, error = None, first_line(exc)
        else:
            error = None
    if error or summary is None or not summary.function_names:
        why = error or (said[0] if said else "its program has no functions")
        raise WorkbenchError(f"Core AI cannot read {path} (truncated or corrupt?): {why}; {AGAIN}")
    if "main" not in summary.function_names:
        raise WorkbenchError(f"{path} has no function 'main' (it has {summary.function_names if summary else 'none'}); "
                             "the workbench runs a model's main function: export it again")
    return asset, summary


def metadata(path: Path) -> dict:
    """The workbench's keys in the asset's metadata.json (see export.META), as Python values."""
    doc = json.loads((Path(path) / METADATA).read_text(encoding="utf-8"))
    found = {}

    def walk(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and k.startswith("workbench."):
                    found[k] = v
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc)
    return found


def check_aimodel(path: Path) -> str:
    """Check `path` as `load_model` does: its files, then Apple's reader; a note naming its inputs and outputs."""
    _, summary = load(path)
    ins = [f"{n}: {t}" for n, t in summary.function_inputs("main")]
    outs = [f"{n}: {t}" for n, t in summary.function_outputs("main")]
    return (f"Core AI model: inputs {ins}, outputs {outs}; runs here in Apple's Core AI runtime (Linux build of "
            f"coreai-core {_packages.core_version()})")
