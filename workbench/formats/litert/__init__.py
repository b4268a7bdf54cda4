"""LiteRT (formerly TensorFlow Lite): converted by litert-torch in the Android tools env (`.venv/android`: it
pins typing_extensions below what Jupyter needs), run here by `ai-edge-litert`'s interpreter
(tflite-runtime fails under numpy 2).

LiteRT has no image preprocessing of its own: it goes into the graph.
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="litert", title="LiteRT", runtime="LiteRT", suffixes=(".tflite",), package=__name__,
    modules=("litert_torch", "ai_edge_litert"),
    exporter=".export:export_litert", runner=".runner:LiteRTRunner", validator=".validate:check_tflite",
    locator=".locate:locate", floor=".floor:floor", precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16 stores weights in half precision (labelled); fp32 for "
                                                "parity", ("fp32", "fp16"), flag="--precision", panel=True),),
    runtime_options=(Option("threads", 1, "LiteRT interpreter threads", flag="--threads"),),
    variants={"int8_dynamic": ".compress:int8_dynamic", "int8_weights": ".compress:int8_weights",
              "int8": ".compress:int8"},
    default=False, order=70,
    notes="converter in the Android tools env (make .venv/android/.installed); runtime: pip install ai-edge-litert. "
          "Variants by ai-edge-quantizer in that env, offline, from the .tflite (int8 calibrated on the sample "
          "images, full integer: int8 input and outputs)",
))
