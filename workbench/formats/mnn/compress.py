"""MNN compressed variants: MNN's own converter re-reads the exported .mnn and quantizes its weights.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). Weight quantization needs no data (nothing calibrates): the converter's
`--weightQuantBits` stores convolution and linear weights as 8- or 4-bit integers with a float scale per
output channel (per block of input channels with `--weightQuantBlock`); MNN dequantizes them when it loads
the model, so activations stay float. Run in process through the converter's native entry point, as the
export is (never the `mnnconvert` script: it pip-installs and phones home).

MNN's full int8 (activations too) is its `mnnquant` tool, which reads calibration images from a folder with a
JSON config of its own rather than arrays; the workbench does not drive it yet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..._files import atomic_output
from .export import convert

BLOCK = 32


def int8_weights(artifact, path, *, calibration=None, overwrite=False):
    """8-bit symmetric weights, one scale per output channel (MNN's --weightQuantBits 8)."""
    return _save(artifact, path, ("--weightQuantBits", "8"),
                 "int8_weights: 8-bit weights per output channel (MNN --weightQuantBits 8), float activations",
                 overwrite=overwrite)


def int4_weights(artifact, path, *, calibration=None, overwrite=False):
    """4-bit symmetric weights, one scale per block of BLOCK input channels (MNN's --weightQuantBits 4
    --weightQuantBlock 32; a layer with fewer input channels gets one per output channel). Symmetric: MNN's
    --weightQuantAsymmetric at 4 bits was twice as far off on the trained digits net (0.65 of range, top-1 3/6,
    against 0.30 and 6/6)."""
    return _save(artifact, path, ("--weightQuantBits", "4", "--weightQuantBlock", str(BLOCK)),
                 f"int4_weights: 4-bit weights per block of {BLOCK} input channels (per output channel where a "
                 "layer has fewer; MNN --weightQuantBits 4), float activations", overwrite=overwrite)


def _save(artifact, path, flags: tuple[str, ...], what: str, *, overwrite: bool):
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as out:
        convert(Path(artifact.path), out, source_format="MNN", extra=flags)
    return dataclasses.replace(artifact, path=path, notes=(what,) + tuple(artifact.notes), traced=None)
