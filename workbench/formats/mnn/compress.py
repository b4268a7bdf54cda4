"""MNN compressed variants: MNN's own converter re-reads the exported .mnn and quantizes its weights.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). Weight quantization needs no data (nothing calibrates): the converter's
`--weightQuantBits` stores convolution and linear weights as 8- or 4-bit integers with a float scale and offset
per output channel (per block of input channels with `--weightQuantBlock`); MNN dequantizes them when it loads
the model, so activations stay float. Run in process through the converter's native entry point, as the
export is (never the `mnnconvert` script: it pip-installs and phones home).

Which quantizer, measured on MNN 3.6.1 (worst image's PSNR against PyTorch; trained super-resolution net /
trained digits net; dumping the files to JSON shows what each flag stores, and quantizing the torch weights
the same way reproduces every figure to 0.1 dB, so neither MNN's runtime nor its int4 packing is at fault):

- no flag: *asymmetric*, despite the converter's `--help` ("default: SYMMETRIC"; its config defaults to
  asymmetric). Each channel's grid is ``min + k * (max - min) / 255``, a float offset, so 0 is not on it: all
  the small weights of a channel (the super-resolution net's 3x3 convs: centre taps ~1.0, the rest ~1e-3) snap
  to one grid point up to half a step off, errors of one sign that add up over 576 taps of non-negative
  activations. 14.6 / 34.4 dB at 8 bits, -4.5 / 10.6 dB at 4 bits (block 32).
- `--weightQuantAsymmetric`, in any spelling (bare, =true, =false): *symmetric*, ``k * absmax / 127``. Zero is
  exact: 35.4 / 29.5 dB at 8 bits (block 32), but 27.7 / 3.9 dB at 4 bits (top-1 1/3 on the digits: their first
  conv has 9 weights a channel after BatchNorm folding, which 15 levels cannot hold).
- `--hqq` (on the asymmetric default; the symmetric flag turns it off): HQQ fits each channel's offset and
  scale to its weights. The one mode good on both nets: 33.8 / 48.1 dB at 8 bits (block 32), 25.6 / 22.4 dB
  at 4 bits per channel, top-1 6/6 (block 32 at 4 bits: 22.2 / 22.4).

MNN's full int8 (activations too) is its `mnnquant` tool, which reads calibration images from a folder with a
JSON config of its own rather than arrays; the workbench does not drive it yet.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ...files import atomic_output
from .export import convert

BLOCK = 32


def int8_weights(artifact, path, *, calibration=None, overwrite=False):
    """8-bit weights, HQQ-fitted scale and offset per block of BLOCK input channels, per output channel where
    a layer has fewer (MNN's --weightQuantBits 8 --weightQuantBlock 32 --hqq). Not MNN's plain default: its
    offset grid misses zero (14.6 dB on the super-resolution net, against 33.8)."""
    return _save(artifact, path, ("--weightQuantBits", "8", "--weightQuantBlock", str(BLOCK), "--hqq"),
                 f"int8_weights: 8-bit weights per block of {BLOCK} input channels (per output channel where a "
                 "layer has fewer), scale and offset fitted by HQQ (MNN --weightQuantBits 8 --hqq), float "
                 "activations", overwrite=overwrite)


def int4_weights(artifact, path, *, calibration=None, overwrite=False):
    """4-bit weights, HQQ-fitted scale and offset per output channel (MNN's --weightQuantBits 4 --hqq). Per
    channel rather than per block of 32: 25.6 dB against 22.2 on the super-resolution net, and smaller."""
    return _save(artifact, path, ("--weightQuantBits", "4", "--hqq"),
                 "int4_weights: 4-bit weights per output channel, scale and offset fitted by HQQ (MNN "
                 "--weightQuantBits 4 --hqq), float activations; expect ~22-26 dB PSNR against PyTorch",
                 overwrite=overwrite)


def _save(artifact, path, flags: tuple[str, ...], what: str, *, overwrite: bool):
    path = Path(path)
    with atomic_output(path, overwrite=overwrite) as out:
        convert(Path(artifact.path), out, source_format="MNN", extra=flags)
    return dataclasses.replace(artifact, path=path, notes=(what,) + tuple(artifact.notes), traced=None)
