"""ONNX: exported with torch's exporter, run by ONNX Runtime on the CPU."""

from .. import Format, Option, register

FORMAT = register(Format(
    name="onnx", title="ONNX", runtime="ONNX Runtime", suffixes=(".onnx",), package=__name__,
    modules=("onnx", "onnxscript", "onnxruntime"),
    exporter=".export:export_onnx", runner=".runner:OnnxRunner", validator=".validate:check_onnx",
    locator=".locate:locate",
    export_options=(Option("opset", None, "ONNX opset version (default: the exporter's)"),
                    Option("legacy", False, "use the legacy TorchScript-based exporter")),
    floor=".floor:floor", bare_export=".floor:bare_export",
    runtime_options=(Option("threads", None, "ONNX Runtime intra-op threads (default: all cores)", flag="--threads"),),
    variants={"int8_dynamic": ".compress:int8_dynamic", "int8": ".compress:int8", "fp16": ".compress:fp16"},
    default=True, order=10,
))
