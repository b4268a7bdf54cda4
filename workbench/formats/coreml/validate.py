"""Checking a Core ML file when it is loaded, not at first use: its spec parses and every weight is there."""

from __future__ import annotations

import struct
from pathlib import Path

from ...errors import WorkbenchError, first_line, require


def check_coreml(path: Path) -> None:
    """A Core ML model that can be read: its spec parses and an ML program's weights are all there."""
    from google.protobuf.message import DecodeError

    spec_path = _mlpackage_spec(path) if path.suffix.lower() == ".mlpackage" else path
    spec = require("coremltools.proto.Model_pb2", "coremltools").Model()
    try:
        spec.ParseFromString(spec_path.read_bytes())
    except (DecodeError, OSError) as exc:
        spec.Clear()
        detail = first_line(exc)
    else:
        detail = "no model type in the spec"
    if spec.specificationVersion < 1 or spec.WhichOneof("Type") is None:
        raise WorkbenchError(
            f"{spec_path} is not a readable Core ML model (truncated or corrupt?): {detail}. Download or "
            "export it again")
    if spec.WhichOneof("Type") == "mlProgram":
        if spec_path == path:
            raise WorkbenchError(
                f"{path} is an ML program in a bare .mlmodel file, which cannot hold its weights; use the "
                ".mlpackage it was saved as")
        _check_mlprogram_weights(spec.mlProgram, path, spec_path.parent)


def _mlpackage_spec(path: Path) -> Path:
    """The spec file of a .mlpackage, after checking the package's Manifest and that its items exist."""
    import json

    again = "copy the whole .mlpackage folder again, or export it again"
    if not path.is_dir():
        raise WorkbenchError(f"{path} is a file, but a .mlpackage is a folder (a zipped download?); unzip it, "
                             f"or {again}")
    manifest = path / "Manifest.json"
    if not manifest.is_file():
        raise WorkbenchError(f"{path} has no Manifest.json, so it is not a complete Core ML package; {again}")
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
        items = {key: entry["path"] for key, entry in doc["itemInfoEntries"].items()}
        root = items[doc["rootModelIdentifier"]]
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise WorkbenchError(f"{manifest} is damaged ({type(exc).__name__}: {exc}); {again}") from exc
    data = (path / "Data").resolve()
    for item in items.values():
        target = (data / str(item)).resolve()
        if not target.is_relative_to(data):
            raise WorkbenchError(f"{manifest} lists {item!r}, outside the package; refused. Export it again")
        if not target.exists():
            raise WorkbenchError(f"{path} is missing Data/{item} (listed in its Manifest.json); {again}")
    return data / str(root)


def _mil_blocks_blobs(blocks):
    for block in blocks:
        for op in block.operations:
            for value in op.attributes.values():
                if value.HasField("blobFileValue"):
                    yield value.blobFileValue
            yield from _mil_blocks_blobs(op.blocks)


def _check_mlprogram_weights(program, package: Path, model_folder: Path) -> None:
    """Every weight blob the program names exists and lies wholly inside its weights file.

    A blob file is a 64-byte header, then per blob a metadata record (sentinel 0xDEADBEEF, dtype, size,
    data offset) at the offset the spec gives; a truncated file cuts one of them short.
    """
    again = "copy the whole .mlpackage folder again, or export it again"
    inside = package.resolve()
    files: dict[Path, int] = {}
    for fn in program.functions.values():
        for blob in _mil_blocks_blobs(fn.block_specializations.values()):
            file = (model_folder / blob.fileName.removeprefix("@model_path/")).resolve()
            if not file.is_relative_to(inside):
                raise WorkbenchError(f"{package} names weights at {blob.fileName!r}, outside the package; "
                                     "refused. Export it again")
            shown = file.relative_to(inside)
            if file not in files:
                if not file.is_file():
                    raise WorkbenchError(f"{package} is missing its weights {shown}; {again}")
                files[file] = file.stat().st_size
            with file.open("rb") as f:
                f.seek(blob.offset)
                record = f.read(24)
            ok = len(record) == 24
            if ok:
                sentinel, _, size, offset = struct.unpack("<IIQQ", record)
                ok = sentinel == 0xDEADBEEF and offset + size <= files[file]
            if not ok:
                raise WorkbenchError(
                    f"{package}: its weights {shown} are truncated or damaged (the blob at offset "
                    f"{blob.offset} is not all there); {again}")
