"""ONNX compressed variants: onnxruntime.quantization (and its float16 converter), each its own .onnx file.

Each variant is a function ``(artifact, path, *, calibration, overwrite) -> Artifact`` (see
`workbench.formats.Format.variants`). `int8` is static QDQ quantization calibrated on the sample images,
fed to the artifact as its own input (0-255 pixels in its channel order when the preprocessing is inside).
The calibration (images, preprocessing) is written into the file's metadata_props. The int8 files hold
full 8-bit weights (no `reduce_range`): phones' int8 kernels do not saturate; the x86 CPUs whose kernels do
(no VNNI) are run exactly by the runner (`session.x64quantprecision`, see runner.py).
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ...errors import WorkbenchError, first_line, require
from ...files import atomic_output
from .. import Calibration
from ..base import Artifact, quiet


def int8_dynamic(artifact, path, *, calibration=None, overwrite=False):
    """8-bit weights; activations quantized at run time from their own range (quantize_dynamic)."""
    q = _quantization()

    def compress(src, dst):
        q.quantize_dynamic(str(src), str(dst), weight_type=q.QuantType.QInt8)

    return _save(artifact, path, compress, "int8_dynamic", "8-bit weights, activations quantized at run time "
                 "(ONNX Runtime dynamic quantization)", overwrite=overwrite)


def int8(artifact, path, *, calibration: Calibration | None = None, overwrite=False):
    """8-bit weights (per channel) and activations (QDQ), the activation ranges calibrated on the images."""
    calibration = Calibration.require(calibration, "ONNX int8 is static quantization")
    q = _quantization()
    inputs = calibration.inputs

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{artifact.input_name: np.ascontiguousarray(x[None], np.float32)} for x in inputs])

        def get_next(self):
            return next(self.rows, None)

    def compress(src, dst):
        q.quantize_static(str(src), str(dst), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=True,
                          activation_type=q.QuantType.QInt8, weight_type=q.QuantType.QInt8,
                          calibrate_method=q.CalibrationMethod.MinMax)

    return _save(artifact, path, compress, "int8", "8-bit weights per channel and activations (static QDQ, MinMax "
                 f"ranges over {len(calibration.images)} calibration images)", calibration=calibration,
                 overwrite=overwrite)


int8.calibrates = True


def fp16(artifact, path, *, calibration=None, overwrite=False):
    """Weights and compute in float16, inputs and outputs kept float32 (onnxruntime's float16 converter)."""
    try:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError as exc:
        raise WorkbenchError("ONNX fp16 needs onnxruntime's float16 converter (onnxruntime.transformers), "
                             "which this onnxruntime lacks: pip install onnxconverter-common") from exc
    onnx = require("onnx", "onnx")

    def compress(src, dst):
        model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
        onnx.save(model, str(dst))

    return _save(artifact, path, compress, "fp16", "float16 weights and compute, float32 inputs and outputs",
                 overwrite=overwrite)


def _quantization():
    require("onnxruntime", "onnxruntime")
    import onnxruntime.quantization as q

    return q


def _save(artifact: Artifact, path, compress, name: str, what: str, *, calibration: Calibration | None = None,
          overwrite: bool = False) -> Artifact:
    """Compress the artifact's file into a temporary one, record how in its metadata_props, save it at `path`."""
    onnx = require("onnx", "onnx")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="workbench-") as tmp:
        work = Path(tmp) / f"{name}.onnx"
        try:
            with warnings.catch_warnings(), quiet("onnxruntime", "root"):
                warnings.simplefilter("ignore")
                compress(artifact.path, work)
        except WorkbenchError:
            raise
        except Exception as exc:
            raise WorkbenchError(f"ONNX {name} compression of {artifact.path} failed: {type(exc).__name__}: "
                                 f"{first_line(exc)}") from exc
        model = onnx.load(str(work))
    meta = {"workbench.compression": name}
    if artifact.preprocess is not None:
        meta["workbench.preprocess"] = json.dumps(artifact.preprocess.to_dict())
    if calibration is not None:
        meta["workbench.calibration"] = json.dumps(calibration.to_dict())
    kept = [p for p in model.metadata_props if p.key not in meta]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in meta.items():
        model.metadata_props.add(key=key, value=value)
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_bytes(model.SerializeToString())
    warning = calibration.warning() if calibration is not None else None
    return dataclasses.replace(artifact, path=path, notes=(what,) + ((warning,) if warning else ()), traced=None)
