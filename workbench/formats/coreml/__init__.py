"""Core ML: an ML program (or an iOS 13/14 neural network), run by coremltools' predict on macOS and by the
workbench's Core ML interpreter everywhere else."""

from .. import Format, Option, register
from .native import ImageType

TARGETS = ("iOS13", "iOS14", "iOS15", "iOS16", "iOS17", "iOS18")

FORMAT = register(Format(
    name="coreml", title="Core ML", runtime="Core ML", suffixes=(".mlpackage", ".mlmodel"), package=__name__,
    modules=("coremltools",),
    exporter=".export:export_coreml", runner=".runner:CoreMLRunner", validator=".validate:check_coreml",
    locator=".locate:locate", files=".files:files", netron=".files:netron_file", floor=".floor:floor",
    bare_export=".floor:bare_export", bench=".bench:run",
    native=ImageType(), precisions=("fp16", "fp32"), default_precision="fp16",
    export_options=(
        Option("target", "iOS16", "minimum deployment target (iOS13/iOS14: the legacy neural network)",
               flag="--target", panel=True, suggest=TARGETS),
        Option("precision", "fp16", "compute precision of an ML program", ("fp16", "fp32"), flag="--precision",
               panel=True),
        Option("normalization", "auto", "ImageType scale/bias when exact, else baked ('auto'), always "
               "the scalar approximation ('imagetype'), or always baked ('bake')", ("auto", "imagetype", "bake")),
        Option("method", "trace", "how the graph is captured: torch.jit.trace or torch.export", ("trace", "export"),
               flag="--method"),
        Option("check_trace", True, "torch's own check of the trace"),
        Option("nms", False, "detectors: Core ML's NonMaximumSuppression appended in a pipeline (as apps read "
               "boxes through Vision), at the task's score and IoU thresholds; the check compares its boxes",
               (False, True), flag="--nms"),
        Option("author", ""), Option("description", "")),
    runtime_options=(
        Option("engine", None, "'predict' (coremltools, macOS only) or 'interpreter' (any OS)",
               (None, "predict", "interpreter")),
        Option("compute_precision", None, "interpreter: None runs as declared (fp16 rounding), 'fp32' without",
               (None, "fp32"), flag="--coreml-compute-precision"),),
    live_options={"check_trace": False},
    variants={name: f".compress:{name}" for name in ("linear8", "linear8_block", "palettize8", "palettize6",
                                                      "palettize4", "palettize2", "prune50", "int8")},
    default=True, order=20,
))
