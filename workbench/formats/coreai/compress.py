"""Core AI compressed variants: Apple's coreai-opt weight compression on the exported `.aimodel`, in the
Android tools env (see _compress.py for why there), each saved as its own `.aimodel`.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). All are weight-only and data-free (coreai-opt's passes on the Core AI
program: `quantize_weights`, `palettize_weights`), so they need no calibration images and no PyTorch module:
the weights are stored compressed and expanded to float before the op that uses them. The variant's name is
in the asset's metadata.json (workbench.compression).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...files import atomic_output
from ..base import Artifact
from ..common.tools_env import convert

HERE = Path(__file__).resolve().parent

WHAT = {
    "int8_weights": "8-bit linear weights (symmetric), one scale per output channel",
    "int4_weights": "4-bit linear weights (symmetric), one scale per output channel",
    "palettize8": "8-bit palettized weights (k-means, 256 values per tensor)",
    "palettize4": "4-bit palettized weights (k-means, 16 values per tensor)",
}


def _variant(name: str):
    def compress(artifact: Artifact, path, *, calibration=None, overwrite=False) -> Artifact:
        from .validate import check_files

        check_files(artifact.path)
        path = Path(path)
        with atomic_output(path, overwrite=overwrite) as out:
            result = convert(HERE / "_compress.py", {"model": str(artifact.path), "out": str(out), "variant": name},
                             what=f"Core AI {name} compression (coreai-opt)", packages="coreai-opt")
        notes = (f"{name}: {WHAT[name]}, weight-only: float compute (coreai-opt, in the tools env)",
                 *result["notes"])
        return dataclasses.replace(artifact, path=path, notes=notes, traced=None)

    compress.__name__ = name
    compress.__doc__ = f"{WHAT[name][0].upper()}{WHAT[name][1:]}; compute stays float."
    return compress


int8_weights, int4_weights, palettize8, palettize4 = (_variant(n) for n in WHAT)
