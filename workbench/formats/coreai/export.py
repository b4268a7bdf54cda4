"""Core AI export: torch.export, then Apple's coreai-torch converter, saved as an `.aimodel` folder.

The preprocessing goes into the graph (Core AI has no ImageType scale/bias: an image input on the device is a
pixel buffer whose conversion to a float tensor is ordinary graph ops, and Linux has no image inputs at all).
Class labels, the preprocessing and how the asset was made go into its metadata.json. fp16 is the model in
half precision between a float32 input and float32 outputs (weights and compute in Float16).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

from ...diagnose import conversion_error
from ...errors import WorkbenchError
from ...files import atomic_output
from ..base import Artifact, ExportSpec, quiet
from ..common.pytorch import half
from . import _packages

# what the asset's metadata.json carries, under these custom keys
META = {"version": "workbench.version", "source": "workbench.source", "preprocess": "workbench.preprocess",
        "labels": "workbench.labels", "task": "workbench.task", "precision": "workbench.precision",
        "outputs": "workbench.outputs", "compression": "workbench.compression"}
FP16_NOTE = "fp16: weights and compute in Float16, float32 input and outputs; fp32 for parity"



def exported_program(module, x, *, source: str = ""):
    """`module` captured by torch.export on `x` and decomposed as coreai-torch needs (its decomposition
    table); a ConversionError naming the op when torch.export fails."""
    import torch

    coreai_torch = _packages.converter()
    try:
        with warnings.catch_warnings(), quiet("torch.fx.experimental.symbolic_shapes", "torch._dynamo",
                                              "torch.export"):
            warnings.simplefilter("ignore")
            return torch.export.export(module, (x,)).run_decompositions(coreai_torch.get_decomp_table())
    except Exception as exc:
        raise conversion_error("Core AI (torch.export)", exc, module=source) from exc


@contextlib.contextmanager
def _rich_quiet():
    """coreai-torch prints "coreai-torch 0.4.3: converting 1 program(s) to Core AI" through rich's global console,
    which in a Jupyter kernel displays it as a notebook output rather than writing to stdout (so `quiet` misses
    it): the console is quiet meanwhile (rich's own switch)."""
    import rich

    console = rich.get_console()
    was, console.quiet = console.quiet, True
    try:
        yield
    finally:
        console.quiet = was


def convert(program, input_name: str, output_names, *, debug: bool = False, source: str = ""):
    """An AIProgram of `program` (coreai-torch's TorchConverter). debug: Apple's DEBUG mode, which keeps the
    map from each Core AI op back to its PyTorch node (the locator needs it; a shipped asset does not)."""
    coreai_torch = _packages.converter()
    mode = coreai_torch.TorchConverter.Mode
    try:
        with warnings.catch_warnings(), quiet("coreai_torch", "coreai"), _rich_quiet():
            warnings.simplefilter("ignore")
            converter = coreai_torch.TorchConverter(mode=mode.DEBUG if debug else mode.RELEASE)
            converter.add_exported_program(program, input_names=[input_name], output_names=list(output_names))
            return converter.to_coreai()
    except Exception as exc:
        raise conversion_error("Core AI", exc, module=source) from exc


def metadata(spec: ExportSpec, precision: str):
    """The asset's metadata: author, description, and the workbench's custom keys (see `META`)."""
    from ... import __version__

    meta = _packages.runtime().AIModelAssetMetadata()
    meta.author = "workbench"
    meta.model_description = f"{spec.source or 'model'} converted by the workbench"
    values = {"version": __version__, "source": spec.source, "precision": precision,
              "task": getattr(spec.task, "name", "") or "", "outputs": list(spec.output_names)}
    if spec.preprocess is not None:
        values["preprocess"] = json.dumps(spec.preprocess.to_dict())
    if spec.labels:
        values["labels"] = list(spec.labels)
    for key, value in values.items():
        meta.set_custom(META[key], value)
    return meta


def save(program, path: Path, meta, *, overwrite: bool = False) -> None:
    """Write `program` as the `.aimodel` folder `path`, atomically (a reader sees the old asset or the new)."""
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            with quiet("coreai"):
                program.save_asset(Path(tmp), metadata=meta)
        except RuntimeError as exc:
            cause = exc.__cause__ or exc
            raise WorkbenchError(f"Core AI could not save {path}: {type(cause).__name__}: {cause}") from exc


def export_coreai(spec: ExportSpec, path: Path, *, precision: str = "fp32", overwrite: bool = False) -> Artifact:
    """Write `spec` as a Core AI `.aimodel` (main.mlirb, main.hash, metadata.json) with the preprocessing
    (if any) in the graph, NCHW float32 in and out as in PyTorch.

    precision "fp16": the model computes in half precision (weights and ops Float16), input and outputs stay
    float32. Raises ConversionError naming the op when torch.export or coreai-torch fails.
    """
    path = Path(path)
    if path.suffix != ".aimodel":
        raise WorkbenchError(f"{path}: a Core AI asset is a folder named NAME.aimodel; use that suffix")
    model = spec.wrapped(bake=spec.preprocess)
    if precision == "fp16":
        model = half(model)
    x = spec.example_input(pixels=spec.preprocess is not None)
    program = exported_program(model, x, source=spec.source)
    save(convert(program, spec.input_name, spec.output_names, source=spec.source), path, metadata(spec, precision),
         overwrite=overwrite)
    notes = [n for n in [_packages.torch_note()] if n]
    if spec.preprocess is not None:
        notes.append("preprocessing in the graph: the asset takes 0-255 pixels (Core AI has no scale/bias on its "
                     "image inputs)")
    if precision == "fp16":
        notes.append(FP16_NOTE)
    # the decomposed program stays with the artifact (in memory): the locator converts it again with Apple's
    # debug map to compare it op by op
    return Artifact("coreai", path, spec.input_name, spec.output_names, tuple(x.shape), spec.preprocess,
                    precision=precision, notes=tuple(notes), traced=(program, spec.preprocess is not None))
