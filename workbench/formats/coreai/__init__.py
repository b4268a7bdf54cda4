"""Core AI: Apple's newer road to iOS and macOS 27 beside Core ML. coreai-torch converts a torch.export
program to an `.aimodel` asset (a folder: main.mlirb, MLIR bytecode; main.hash; metadata.json), run here by
Apple's own Core AI runtime, whose Linux build ships inside coreai-core.

Core AI has no scale/bias on image inputs: the preprocessing goes into the graph. Both packages are beta and
pinned (see docs/coreai.md for what may differ on a device).
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="coreai", title="Core AI", runtime="Core AI", suffixes=(".aimodel",), package=__name__,
    exporter=".export:export_coreai", runner=".runner:CoreAIRunner", validator=".validate:check_aimodel",
    locator=".locate:locate", precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16: weights and compute in Float16, float32 input and outputs "
                                                "(labelled; parity needs fp32)", ("fp32", "fp16")),),
    variants={name: f".compress:{name}" for name in ("int8_weights", "int4_weights", "palettize8", "palettize4")},
    default=False, order=35,
    notes="pip install coreai-torch==0.4.3 (pulls coreai-core 1.0.0b3, both beta; coreai-torch warns it is "
          "validated with torch<=2.13). Runs in Apple's Core AI runtime (Linux build): CPU only, no compute-unit "
          "choice or device specialization here, and no image inputs (on a device an input can be a pixel "
          "buffer, converted to a tensor by graph ops; the normalization stays in the graph either way). "
          "Variants: coreai-opt weight compression in the Android tools env (make .venv/android/.installed)",
))
