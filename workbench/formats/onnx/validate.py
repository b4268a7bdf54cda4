"""Checking an ONNX file before anything reads it: it parses, and its external data stays in its folder."""

from __future__ import annotations

from pathlib import Path

from ...errors import WorkbenchError, first_line, require


def check_onnx(path: Path) -> str:
    """Parse `path` without its external data, refuse data paths outside its folder, then onnx.checker."""
    from google.protobuf.message import DecodeError

    onnx = require("onnx", "onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, OSError) as exc:
        raise WorkbenchError(
            f"{path} is not a valid ONNX model (truncated or corrupt?): {first_line(exc)}. "
            "Download or export it again") from exc
    _check_onnx_external_data(model, path)
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:
        raise WorkbenchError(
            f"{path} is not a valid ONNX model: {first_line(exc)}. Download or export it again") from exc
    return "ONNX model: runs in ONNX Runtime; it cannot be converted to Core ML (coremltools takes PyTorch)"


def _onnx_tensors(graph):
    """Every tensor of an ONNX graph that can hold data: initializers and node attributes, subgraphs too."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield from (sparse.values, sparse.indices)
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _onnx_tensors(sub)


def _check_onnx_external_data(model, path: Path) -> None:
    """An external data location names a file in the model's folder; anything else would let a model file
    make the runtime read any file on the machine."""
    from onnx import TensorProto

    folder = path.resolve().parent
    for tensor in _onnx_tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        location = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / location).resolve()
        if not location or Path(location).is_absolute() or not target.is_relative_to(folder):
            raise WorkbenchError(
                f"{path}: tensor {tensor.name!r} keeps its data at {location!r}, outside the model's folder "
                f"{folder}; refused, a model may only read data files beside it. Put the data file next to "
                "the model and save it with a relative location (onnx.save(..., location=NAME))")
        if not target.is_file():
            raise WorkbenchError(
                f"{path}: tensor {tensor.name!r} keeps its data in {location!r}, which is missing from "
                f"{folder}; copy that file next to the model, or download or export the model again")
