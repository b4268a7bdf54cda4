"""MNN: converted from the ONNX export by MNN's converter, in process (never its `mnnconvert` script, which
pip-installs a logging SDK and reports usage over the network), run by MNN's Python binding.

MNN takes the preprocessing natively, exact per channel: `CVImageProcess({"mean": ..., "normal": ...})`,
i.e. (x - mean) * normal; the runner applies it that way.
"""

from .. import Format, Option, register
from ..common.mean_norm import MeanNorm

FORMAT = register(Format(
    name="mnn", title="MNN", runtime="MNN", suffixes=(".mnn",), package=__name__,
    modules=("MNN",),
    exporter=".export:export_mnn", runner=".runner:MnnRunner", validator=".validate:check_mnn",
    locator=".locate:locate",
    floor=".floor:floor", native=MeanNorm(), precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16 stores weights in half precision (MNN's --fp16, beyond the "
                                                "fp16 tolerance on some nets); fp32 for parity", ("fp32", "fp16"),
                           flag="--precision", panel=True),),
    runtime_options=(Option("threads", 1, "MNN threads", flag="--threads"),),
    variants={"int8_weights": ".compress:int8_weights", "int4_weights": ".compress:int4_weights"},
    default=False, order=60,
    notes="converted in process from the ONNX export; pip install MNN. Variants quantize weights only (MNN's "
          "converter, --weightQuantBits) with HQQ-fitted scales and offsets (--hqq): MNN 3.6.1's plain default is "
          "asymmetric with an offset grid that misses zero, and its --weightQuantAsymmetric flag gives symmetric "
          "(docs/compression.md has the figures). MNN's full int8 tool (mnnquant) calibrates from an image folder "
          "with a config of its own and is not driven here",
))
