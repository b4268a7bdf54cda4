"""MNN: converted from the ONNX export by MNN's converter, in process (never its `mnnconvert` script, which
pip-installs a logging SDK and reports usage over the network), run by MNN's Python binding.

MNN takes the preprocessing natively, exact per channel: `CVImageProcess({"mean": ..., "normal": ...})`,
i.e. (x - mean) * normal; the runner applies it that way.
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="mnn", title="MNN", runtime="MNN", suffixes=(".mnn",), package=__name__,
    exporter=".export:export_mnn", runner=".runner:MnnRunner", validator=".validate:check_mnn",
    native="mean_norm", precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16 stores weights in half precision (MNN's --fp16: errors "
                                                "up to ~3% of range); fp32 for parity", ("fp32", "fp16")),),
    runtime_options=(Option("threads", 1, "MNN threads"),),
    variants={"int8_weights": ".compress:int8_weights", "int4_weights": ".compress:int4_weights"},
    default=False, order=60,
    notes="converted in process from the ONNX export; pip install MNN. Variants quantize weights only (MNN's "
          "converter, --weightQuantBits) with HQQ-fitted scales and offsets (--hqq): MNN 3.6.1's plain default is "
          "asymmetric with an offset grid that misses zero (14.6 dB PSNR on the super-resolution net at 8 bits, "
          "33.8 with --hqq) and its --weightQuantAsymmetric flag gives symmetric; int4 costs ~22-26 dB. MNN's full "
          "int8 tool (mnnquant) calibrates from an image folder with a config of its own and is not driven here",
))
