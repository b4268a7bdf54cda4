"""ncnn: converted by pnnx from the ONNX export, run by ncnn's Python binding (the seeds' Android runtime).

ncnn takes the preprocessing natively, exact per channel: `Mat.from_pixels(..., PIXEL_RGB, w, h)` then
`substract_mean_normalize(mean, norm)`, i.e. (x - mean) * norm; the runner applies it that way. A model is
two files, NAME.ncnn.param (the graph; the artifact's path) and NAME.ncnn.bin (the weights) beside it.
"""

from .. import Format, Option, register
from ..common.mean_norm import MeanNorm

FORMAT = register(Format(
    name="ncnn", title="ncnn", runtime="ncnn", suffixes=(".ncnn.param", ".param"), package=__name__,
    modules=("ncnn", "pnnx"),
    exporter=".export:export_ncnn", runner=".runner:NcnnRunner", validator=".validate:check_ncnn",
    locator=".locate:locate",
    files=".files:files", floor=".floor:floor", native=MeanNorm(), precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16 stores weights in half precision and lets ncnn compute "
                                                "in it; fp32 for parity", ("fp32", "fp16"), flag="--precision",
                           panel=True),),
    runtime_options=(Option("threads", 1, "ncnn threads", flag="--threads"),),
    default=False, order=50,
    notes="pnnx converts the ONNX export; pip install pnnx ncnn. No compressed variant: ncnn's int8 needs its "
          "ncnn2table (calibration) and ncnn2int8 tools, which the pip ncnn and pnnx wheels do not ship (they are "
          "built from ncnn's sources), pnnx's only weight option is fp16=1 (the fp16 precision), and the Python "
          "binding quantizes single Mats (quantize_to_int8), not models",
))
